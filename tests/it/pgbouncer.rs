//! Why Duet does not run behind PgBouncer in transaction pool mode
//! (docs/decisions/0010-pgbouncer.md): sqlx's queries with arguments
//! prepare a named statement and execute it after a Sync, and PgBouncer
//! 1.18 may hand the two to different server connections. Against the
//! PgBouncer of scripts/pgbouncer.sh (`DUET_TEST_PGBOUNCER_URL`, two server
//! connections); skipped, saying so, without it. Should a later sqlx or
//! PgBouncer fix this, this test fails and the decision is due again.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

/// Failed queries of 4 clients × 50 concurrent `select $1 + $2 + i`: fifty
/// statements, so each connection names many.
async fn failures(pool: &PgPool) -> Vec<String> {
    let clients = (0..4i32).map(|client| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..50i32 {
                let sql = format!("select $1::int + $2::int + {i}");
                match sqlx::query_scalar::<_, i32>(AssertSqlSafe(sql)).bind(client).bind(i).fetch_one(&pool).await {
                    // Seen here too: Bind reaching another client's statement of the same name.
                    Ok(sum) if sum != client + 2 * i => failed.push(format!("wrong answer from another prepared statement: {sum}")),
                    Ok(_) => {}
                    Err(e) => failed.push(e.to_string()),
                }
            }
            failed
        })
    });
    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.await.unwrap());
    }
    failed
}

#[tokio::test]
async fn sqlx_prepared_statements_break_under_transaction_pooling() {
    let Ok(url) = std::env::var("DUET_TEST_PGBOUNCER_URL") else {
        eprintln!("skipped: DUET_TEST_PGBOUNCER_URL is not set (source scripts/services.sh scripts/pgbouncer.sh; ensure_pgbouncer)");
        return;
    };
    // With the statement cache (the default) and without it: capacity 0
    // still names each statement (sqlx-postgres 0.9 `prepare()`), it only
    // stops reusing them.
    for cache in [100, 0] {
        let options: PgConnectOptions = url.parse::<PgConnectOptions>().unwrap().statement_cache_capacity(cache);
        let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
        let failed = failures(&pool).await;
        eprintln!("statement cache {cache}: {} of 200 queries failed, e.g. {:?}", failed.len(), failed.first());
        assert!(
            !failed.is_empty(),
            "every query passed through PgBouncer with statement cache {cache}: see docs/decisions/0010-pgbouncer.md"
        );
        assert!(failed.iter().all(|e| e.contains("prepared statement")), "{failed:?}");
        pool.close().await;
    }
}

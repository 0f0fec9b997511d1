//! The job queue's schema is applied at start-up, safely by several processes.

use sqlx::postgres::PgPoolOptions;

#[tokio::test]
async fn concurrent_start_ups_apply_the_job_queue_schema_once() {
    let settings = crate::helpers::fresh_settings();
    duet_common::db::ensure_database(&settings.database_url).await.unwrap();
    let pools: Vec<_> = (0..4).map(|_| PgPoolOptions::new().max_connections(2).connect_lazy(&settings.database_url).unwrap()).collect();
    let results = futures_util::future::join_all(pools.iter().map(duet_jobs::setup)).await;
    for result in results {
        result.expect("every process starts");
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from apalis._sqlx_migrations").fetch_one(&pools[0]).await.unwrap();
    let expected = apalis_migrations();
    assert_eq!(applied, expected, "each migration applied once");
    drop(pools);
    crate::helpers::drop_test_data(&settings).await.unwrap();
}

fn apalis_migrations() -> i64 {
    apalis_postgres::PostgresStorage::migrations().iter().count() as i64
}

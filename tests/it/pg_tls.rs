//! Duet's PostgreSQL pool over TLS with `sslmode=verify-full`, against a
//! server that accepts nothing else (scripts/pg-tls.sh; `DUET_TEST_PG_TLS_URL`).

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::helpers::with_database;

/// The TLS server's URL, or `None` (the test is skipped, saying why).
fn tls_url() -> Option<String> {
    let url = std::env::var("DUET_TEST_PG_TLS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: DUET_TEST_PG_TLS_URL is not set (source scripts/services.sh scripts/pg-tls.sh; ensure_pg_tls)");
    }
    url
}

#[tokio::test]
async fn duet_migrates_and_writes_over_verified_tls() {
    let Some(admin_url) = tls_url() else { return };
    let url = with_database(&admin_url, &format!("duet_test_{}", Uuid::new_v4().simple()));
    duet_common::db::ensure_database(&url).await.expect("database created over TLS");
    duet_common::db::migrate(&url).await.expect("migrations applied over TLS");
    let pool = duet_common::db::connect(&url, 2).await.expect("Duet's pool connects with verify-full");
    let (ssl, version): (bool, String) =
        sqlx::query_as("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetch_one(&pool).await.unwrap();
    assert!(ssl, "the connection is encrypted");
    assert!(version.starts_with("TLSv1."), "{version}");
    let users: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&pool).await.unwrap();
    assert_eq!(users, 0);
    pool.close().await;
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let name = reqwest::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
    admin.execute(AssertSqlSafe(format!("drop database \"{name}\" with (force)"))).await.unwrap();
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_clearly() {
    let Some(url) = tls_url() else { return };
    let other_ca = std::env::var("DUET_TEST_PG_TLS_OTHER_CA").expect("scripts/pg-tls.sh exports DUET_TEST_PG_TLS_OTHER_CA");
    let (base, _) = url.split_once('?').unwrap();
    let wrong = format!("{base}?sslmode=verify-full&sslrootcert={other_ca}");
    let err = duet_common::db::connect(&wrong, 1).await.expect_err("a certificate the CA did not sign");
    let text = format!("{err:#}");
    assert!(text.contains("Failed to connect to PostgreSQL"), "{text}");
    assert!(text.contains("certificate") || text.contains("UnknownIssuer"), "the cause is named: {text}");

    // Without TLS the server refuses the connection outright.
    let plain = format!("{base}?sslmode=disable");
    let err = PgConnection::connect(&plain).await.expect_err("TLS required");
    assert!(err.to_string().contains("no encryption"), "{err}");
}

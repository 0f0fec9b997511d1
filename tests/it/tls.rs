//! A node serving TLS itself (`DUET_TLS_CERT` / `DUET_TLS_KEY`), with a
//! certificate from a local CA made by scripts/ca.sh: https and wss work for
//! a client that trusts the CA; plain HTTP and clients that do not trust it
//! get nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use duet_bench::client;
use uuid::Uuid;

use crate::helpers::TestApp;

/// A fresh CA and server certificate (SAN 127.0.0.1) in a directory of their own.
fn local_ca() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-tls-test-{}", Uuid::new_v4().simple()));
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ca.sh"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/ca.sh runs (it needs openssl)");
    assert!(status.success(), "scripts/ca.sh failed");
    dir
}

#[tokio::test]
async fn a_node_with_a_certificate_serves_https_and_wss_and_nothing_in_the_clear() {
    let ca = local_ca();
    let app = TestApp::spawn_with(|s| {
        s.tls_cert = Some(ca.join("server.pem"));
        s.tls_key = Some(ca.join("server.key"));
    })
    .await;
    let base = format!("https://{}", app.addr);
    client::trust_ca(&ca.join("ca.pem")).expect("the CA loads");
    let https = client::http_client().expect("an HTTPS client");

    let user = client::register(&https, &base, "tls").await.expect("registration over https");
    let me = https.get(format!("{base}/me")).bearer_auth(&user.token).send().await.expect("GET /me over https");
    assert_eq!(me.status(), 200);
    let (_tx, _rx, heartbeat_ms) =
        client::connect(&format!("wss://{}/ws", app.addr), &user.token, None).await.expect("a wss connection authenticates");
    assert!(heartbeat_ms > 0);

    let plain = reqwest::Client::new().get(format!("http://{}/healthz", app.addr)).send().await;
    assert!(plain.is_err(), "plain HTTP on the TLS port was answered: {plain:?}");
    let untrusting = reqwest::Client::new().get(format!("{base}/healthz")).send().await;
    assert!(untrusting.is_err(), "a client that does not trust the local CA accepted its certificate: {untrusting:?}");
    // The admin listener stays plain (loopback, the operator's network).
    let ready = reqwest::Client::new().get(app.admin_url("/healthz")).send().await.expect("admin /healthz");
    assert_eq!(ready.status(), 200);

    app.stop().await;
    std::fs::remove_dir_all(&ca).expect("the CA's directory is removed");
}

//! The real `duet` binary as a child process: start-up, signals, exit codes.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use duet_common::Settings;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::fresh_settings;

/// A `duet serve` child process on a free port, with its address.
pub struct DuetProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl DuetProcess {
    /// Starts `duet serve` with the test's settings and waits until it listens.
    pub async fn start(envs: &[(&str, String)]) -> DuetProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duet"))
            .arg("serve")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("DUET_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("duet starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("log line") {
                let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if log["message"] == "duet listening" {
                    return log["addr"].as_str().expect("addr logged").parse::<SocketAddr>().expect("an address");
                }
            }
            panic!("duet exited before listening");
        })
        .await
        .expect("duet listens within 30 s");
        // Keep draining the logs so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        DuetProcess { child, addr }
    }

    /// Settings of a fresh test database as environment variables.
    pub fn fresh_env() -> Vec<(&'static str, String)> {
        Self::env_of(&fresh_settings())
    }

    /// A test's settings as environment variables (on a free port), so the
    /// child joins the test's system: same database, same Redis prefix.
    pub fn env_of(s: &Settings) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", s.database_url.clone()),
            ("REDIS_URL", s.redis_url.clone()),
            ("DUET_REDIS_PREFIX", s.redis_prefix.clone()),
            ("DUET_HTTP_ADDR", "127.0.0.1:0".into()),
            ("DUET_DB_POOL_SIZE", s.db_pool_size.to_string()),
            ("DUET_RATE_LIMIT_PER_SEC", s.rate_limit_per_sec.to_string()),
            ("DUET_RATE_LIMIT_BURST", s.rate_limit_burst.to_string()),
            ("DUET_PRESENCE_TTL_SECS", s.presence_ttl_secs.to_string()),
            ("DUET_REGISTER_PER_IP_PER_HOUR", s.register_per_ip_per_hour.to_string()),
            ("DUET_LOGIN_PER_IP_PER_MIN", s.login_per_ip_per_min.to_string()),
            ("DUET_LOOKUP_PER_MIN", s.lookup_per_min.to_string()),
            ("DUET_SEARCH_PER_MIN", s.search_per_min.to_string()),
        ]
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(status.success());
    }
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let settings = fresh_settings();
    let mut duet = DuetProcess::start(&DuetProcess::env_of(&settings)).await;
    let health = reqwest::get(format!("http://{}/healthz", duet.addr)).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    duet.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), duet.child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "exit status {status}");
    crate::helpers::drop_test_data(&settings).await.unwrap();
}

#[tokio::test]
async fn production_without_a_jwt_secret_refuses_to_start() {
    let mut env = DuetProcess::fresh_env();
    env.push(("DUET_ENV", "production".into()));
    let output = Command::new(env!("CARGO_BIN_EXE_duet"))
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("DUET_JWT_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DUET_JWT_SECRET"));
}

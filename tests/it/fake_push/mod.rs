//! Local stand-ins for FCM (with Google's OAuth token endpoint) and APNs.
//!
//! They check what the real services check: the OAuth grant's RS256
//! signature and claims, the FCM bearer token and message shape, the APNs
//! ES256 provider token, its headers, HTTP/2, and the device token format;
//! and they answer like the real services, error bodies included. A test
//! can script a device's next answers, or hold its requests (to kill a
//! worker mid-send). APNs is served as h2c (HTTP/2 with prior knowledge)
//! rather than over TLS: that keeps a certificate authority out of the
//! tests, and the protocol check is the same: anything but HTTP/2 is refused.

pub mod apns;
pub mod fcm;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/push");
pub const FCM_PROJECT: &str = "duet-test";
pub const FCM_CLIENT_EMAIL: &str = "push@duet-test.iam.gserviceaccount.com";
pub const FCM_KEY_ID: &str = "test-key-1";
pub const APNS_KEY_ID: &str = "ABC123DEFG";
pub const APNS_TEAM_ID: &str = "TEAM123456";
pub const APNS_TOPIC: &str = "app.duet.test";

/// A request the fake accepted as well-formed (whatever it answered).
#[derive(Clone, Debug)]
pub struct Request {
    pub provider: &'static str,
    pub device: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// The HTTP status the fake answered.
    pub status: u16,
    pub at: std::time::Instant,
}

/// A scripted answer: status, optional `Retry-After`, and the error code
/// (FCM `errorCode`/`status`, APNs `reason`).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub code: &'static str,
}

impl Reply {
    pub fn new(status: u16, code: &'static str) -> Self {
        Reply { status, retry_after: None, code }
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Request>,
    /// Malformed requests and why: a test expects none.
    pub rejected: Vec<String>,
    scripts: HashMap<String, VecDeque<Reply>>,
    held: HashSet<String>,
    /// Requests parked on a held device, by device.
    held_requests: HashMap<String, usize>,
    pub access_tokens: HashSet<String>,
    pub grants: usize,
}

#[derive(Clone, Default)]
pub struct Shared {
    pub state: Arc<Mutex<State>>,
    pub changed: Arc<Notify>,
}

impl Shared {
    /// The scripted reply for the device, if any; parks forever if held.
    async fn reply_for(&self, device: &str) -> Option<Reply> {
        let held = {
            let mut state = self.state.lock().unwrap();
            let held = state.held.contains(device);
            if held {
                *state.held_requests.entry(device.to_owned()).or_default() += 1;
            }
            held
        };
        if held {
            self.changed.notify_waiters();
            // The worker sending this is meant to die while waiting.
            std::future::pending::<()>().await;
        }
        self.state.lock().unwrap().scripts.get_mut(device).and_then(|q| q.pop_front())
    }

    fn record(&self, request: Request) {
        self.state.lock().unwrap().requests.push(request);
        self.changed.notify_waiters();
    }

    fn reject(&self, why: String) {
        self.state.lock().unwrap().rejected.push(why);
        self.changed.notify_waiters();
    }
}

pub struct FakePush {
    pub shared: Shared,
    pub fcm_base: String,
    pub apns_base: String,
    pub credentials: PathBuf,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

async fn serve(app: impl poem::Endpoint + 'static) -> (String, tokio::task::JoinHandle<()>) {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind a fake server");
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}"), server)
}

impl FakePush {
    pub async fn start() -> FakePush {
        let shared = Shared::default();
        let (fcm_base, fcm_server) = serve(fcm::app(shared.clone())).await;
        let (apns_base, apns_server) = serve(apns::app(shared.clone())).await;
        let private_key = std::fs::read_to_string(format!("{FIXTURES}/TEST-ONLY-fcm-service-account-key.pem")).unwrap();
        let account = json!({
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": FCM_KEY_ID,
            "private_key": private_key,
            "client_email": FCM_CLIENT_EMAIL,
            "token_uri": format!("{fcm_base}/token"),
        });
        let credentials = std::env::temp_dir().join(format!("duet-test-fcm-{}.json", Uuid::new_v4().simple()));
        std::fs::write(&credentials, account.to_string()).unwrap();
        FakePush { shared, fcm_base, apns_base, credentials, _servers: vec![fcm_server, apns_server] }
    }

    /// Points the app's push settings at the fakes.
    pub fn configure(&self, settings: &mut duet_common::Settings) {
        settings.fcm_credentials = Some(self.credentials.clone());
        settings.fcm_base_url = self.fcm_base.clone();
        settings.apns_key = Some(format!("{FIXTURES}/TEST-ONLY-apns-key.p8").into());
        settings.apns_key_id = Some(APNS_KEY_ID.into());
        settings.apns_team_id = Some(APNS_TEAM_ID.into());
        settings.apns_topic = Some(APNS_TOPIC.into());
        settings.apns_base_url = self.apns_base.clone();
    }

    /// The device's next answers, in order; then 200s.
    pub fn script(&self, device: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared.state.lock().unwrap().scripts.entry(device.into()).or_default().extend(replies);
    }

    /// Requests for the device are received but never answered.
    pub fn hold(&self, device: &str) {
        self.shared.state.lock().unwrap().held.insert(device.into());
    }

    pub fn requests(&self, device: &str) -> Vec<Request> {
        self.shared.state.lock().unwrap().requests.iter().filter(|r| r.device == device).cloned().collect()
    }

    /// Requests the device accepted (answered 200).
    pub fn delivered(&self, device: &str) -> Vec<Request> {
        self.requests(device).into_iter().filter(|r| r.status == 200).collect()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().rejected.clone()
    }

    /// Waits until `done` holds, failing the test after 20 s.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.shared.changed.notified();
            if done(&self.shared.state.lock().unwrap()) {
                return;
            }
            let rejected = self.rejected();
            assert!(rejected.is_empty(), "the fake refused malformed requests: {rejected:?}");
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}; requests: {:#?}", self.shared.state.lock().unwrap().requests);
            }
        }
    }

    /// Requests parked on a held device.
    pub fn held_requests(&self, device: &str) -> usize {
        self.shared.state.lock().unwrap().held_requests.get(device).copied().unwrap_or(0)
    }

    /// Waits until a request for a held device has arrived.
    pub async fn wait_requests_including_held(&self, device: &str) {
        self.wait_for(&format!("a held request for {device}"), |s| s.held_requests.get(device).is_some_and(|n| *n >= 1)).await;
    }

    /// Waits until the device has received `n` requests.
    pub async fn wait_requests(&self, device: &str, n: usize) {
        self.wait_for(&format!("{n} request(s) for {device}"), |s| s.requests.iter().filter(|r| r.device == device).count() >= n).await;
    }
}

impl Drop for FakePush {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.credentials);
    }
}

//! Attachments against the local S3 server (scripts/s3.sh): uploads through
//! presigned URLs, the server's checks, downloads by members only, and
//! attachment messages over REST, the WebSocket and push.

mod flow;
mod limits;
mod rules;

use std::time::Duration;

use duet_common::Settings;
use duet_common::ids::ConversationId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, with_s3};

/// An app with attachments on, against the local S3 server.
pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(|settings| {
        with_s3(settings);
        configure(settings);
    })
    .await
}

/// `n` bytes that differ from any other test's, so a mix-up shows.
pub fn bytes(n: usize) -> Vec<u8> {
    let seed = uuid::Uuid::new_v4().as_u128();
    (0..n).map(|i| (seed.rotate_left((i % 128) as u32) as u8) ^ (i as u8)).collect()
}

/// `POST /conversations/{c}/attachments`.
pub async fn create(app: &TestApp, user: &TestUser, conversation: ConversationId, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/conversations/{conversation}/attachments"), Some(&user.token), body).await
}

/// `POST /conversations/{c}/attachments/{a}/complete`.
pub async fn complete(app: &TestApp, user: &TestUser, conversation: ConversationId, attachment: &str) -> (StatusCode, Value) {
    app.post(&format!("/conversations/{conversation}/attachments/{attachment}/complete"), Some(&user.token), json!({})).await
}

/// `GET /conversations/{c}/attachments/{a}`.
pub async fn download(app: &TestApp, user: &TestUser, conversation: ConversationId, attachment: &str) -> (StatusCode, Value) {
    app.get(&format!("/conversations/{conversation}/attachments/{attachment}"), Some(&user.token)).await
}

/// Starts an upload and expects 201; returns the answer.
pub async fn create_ok(app: &TestApp, user: &TestUser, conversation: ConversationId, kind: &str, content_type: &str, size: usize) -> Value {
    let (status, created) = create(app, user, conversation, json!({"kind": kind, "contentType": content_type, "size": size})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// PUTs `body` to an upload's presigned URL with the headers it names; returns the store's status.
pub async fn put(created: &Value, body: Vec<u8>) -> StatusCode {
    let upload = &created["upload"];
    assert_eq!(upload["method"], "PUT");
    let mut request = reqwest::Client::new().put(upload["url"].as_str().unwrap()).body(body);
    for (name, value) in upload["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.send().await.expect("the S3 server answers").status()
}

/// An attachment of `user`'s in `conversation`, uploaded and completed; returns its id.
pub async fn uploaded(app: &TestApp, user: &TestUser, conversation: ConversationId, kind: &str, content_type: &str) -> String {
    let data = bytes(1024);
    let created = create_ok(app, user, conversation, kind, content_type, data.len()).await;
    assert_eq!(put(&created, data).await, StatusCode::OK);
    let id = created["attachmentId"].as_str().unwrap().to_owned();
    let (status, body) = complete(app, user, conversation, &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

/// Sends a message of `kind` naming `payload` over REST.
pub async fn send(app: &TestApp, user: &TestUser, conversation: ConversationId, kind: &str, payload: Value) -> (StatusCode, Value) {
    let client_msg_id = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({"clientMsgId": client_msg_id, "type": kind, "payload": payload});
    app.post(&format!("/conversations/{conversation}/messages"), Some(&user.token), body).await
}

/// The test's own access to the bucket, with the server's credentials: to
/// write objects no client could, and to see what the server left.
pub struct Store {
    bucket: rusty_s3::Bucket,
    credentials: rusty_s3::Credentials,
    http: reqwest::Client,
}

impl Store {
    pub fn new(app: &TestApp) -> Store {
        let s = &app.settings.attachments;
        let endpoint = s.s3_endpoint.as_deref().expect("attachments on").parse().unwrap();
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, s.s3_bucket.clone(), s.s3_region.clone()).unwrap();
        let credentials =
            rusty_s3::Credentials::new(s.s3_access_key.as_ref().unwrap().expose(), s.s3_secret_key.as_ref().unwrap().expose());
        Store { bucket, credentials, http: reqwest::Client::new() }
    }

    /// Writes `body` as `content_type` at `key`, whatever was declared for it.
    pub async fn put(&self, key: &str, content_type: &str, body: Vec<u8>) {
        use rusty_s3::S3Action;
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(Duration::from_secs(60));
        let status = self.http.put(url).header("content-type", content_type).body(body).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK);
    }

    /// Whether an object is at `key`.
    pub async fn exists(&self, key: &str) -> bool {
        use rusty_s3::S3Action;
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(Duration::from_secs(60));
        let status = self.http.head(url).send().await.unwrap().status();
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "HEAD answered {status}");
        status == StatusCode::OK
    }
}

/// Where the server keeps an attachment's bytes.
pub fn object_key(conversation: ConversationId, attachment: &str) -> String {
    format!("conversations/{conversation}/{attachment}")
}

//! Limits on uploads (kinds, types, sizes, names, a per-user rate), the
//! store's own refusal of URLs that were tampered with or expired, and the
//! answer when no store is configured.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{create, create_ok, download, spawn_with, uploaded};
use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn uploads_are_refused_at_creation_when_too_large_of_a_type_not_allowed_or_badly_named() {
    let app = spawn_with(|s| s.attachments.attachment_max_image_bytes = 1000).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;

    let cases = [
        (json!({"kind": "image", "contentType": "image/png", "size": 1001}), "attachment_too_large"),
        (json!({"kind": "image", "contentType": "text/html", "size": 10}), "invalid_content_type"),
        (json!({"kind": "image", "contentType": "image/svg+xml", "size": 10}), "invalid_content_type"),
        (json!({"kind": "image", "contentType": "video/mp4", "size": 10}), "invalid_content_type"),
        (json!({"kind": "file", "contentType": "application/x-msdownload", "size": 10}), "invalid_content_type"),
        (json!({"kind": "file", "contentType": "application/pdf", "size": 10, "fileName": "../../etc/passwd"}), "invalid_file_name"),
        (json!({"kind": "file", "contentType": "application/zip", "size": 10, "fileName": "setup.exe"}), "invalid_file_name"),
        (json!({"kind": "file", "contentType": "text/plain", "size": 10, "fileName": "   "}), "invalid_file_name"),
        // Bounds the document declares are checked before the handler runs.
        (json!({"kind": "image", "contentType": "image/png", "size": 0}), "bad_request"),
        (json!({"kind": "sticker", "contentType": "image/png", "size": 10}), "bad_request"),
        (json!({"kind": "file", "contentType": "text/plain", "size": 10, "fileName": "x".repeat(256)}), "bad_request"),
        (json!({"contentType": "image/png", "size": 10}), "bad_request"),
    ];
    for (body, code) in cases {
        assert_error(&create(&app, &ann, conversation, body).await, StatusCode::BAD_REQUEST, code);
    }
    // The limit is per kind: a larger video is fine.
    create_ok(&app, &ann, conversation, "video", "video/mp4", 5000).await;
    let stored: i64 = sqlx::query_scalar("select count(*) from attachments").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn uploads_are_limited_per_user_per_hour() {
    let app = spawn_with(|s| s.attachments.attachment_uploads_per_hour = 2).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    for _ in 0..2 {
        create_ok(&app, &ann, conversation, "image", "image/gif", 10).await;
    }
    let response = app
        .http_raw()
        .post(app.url(&format!("/conversations/{conversation}/attachments")))
        .bearer_auth(&ann.token)
        .json(&json!({"kind": "image", "contentType": "image/gif", "size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["code"], "rate_limited");
    // Bob has his own budget.
    create_ok(&app, &bob, conversation, "image", "image/gif", 10).await;
}

#[tokio::test]
async fn the_store_refuses_download_urls_that_were_tampered_with_or_have_expired() {
    let app = spawn_with(|s| s.attachments.attachment_url_ttl_secs = 1).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let first = uploaded(&app, &ann, conversation, "file", "application/pdf").await;
    let second = uploaded(&app, &ann, conversation, "file", "application/pdf").await;
    let (status, file) = download(&app, &bob, conversation, &first).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let url = file["url"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // Another object under the same signature, or a changed signature: refused.
    let other_object = url.replace(&first, &second);
    let mut tampered = reqwest::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = match k.as_ref() {
                // One hex digit changed.
                "X-Amz-Signature" => format!("{}{}", &v[..v.len() - 1], if v.ends_with('0') { '1' } else { '0' }),
                _ => v.into_owned(),
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    assert_ne!(tampered.as_str(), url);
    for bad in [other_object, tampered.to_string()] {
        assert_eq!(http.get(&bad).send().await.unwrap().status(), StatusCode::FORBIDDEN, "{bad}");
    }
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::OK);

    // Past `expiresAt` (the URL lives 1 s here), the store refuses it.
    let expires_at: chrono::DateTime<chrono::Utc> = file["expiresAt"].as_str().unwrap().parse().unwrap();
    let wait = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1500);
    tokio::time::sleep(wait).await;
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // A new one is issued on request.
    let (_, again) = download(&app, &bob, conversation, &first).await;
    assert_eq!(http.get(again["url"].as_str().unwrap()).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_store_attachments_answer_503_and_other_messages_still_go() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&ann, &bob).await;
    let body = json!({"kind": "image", "contentType": "image/png", "size": 10});
    assert_error(&create(&app, &ann, conversation, body).await, StatusCode::SERVICE_UNAVAILABLE, "attachments_unavailable");
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_error(&download(&app, &ann, conversation, &unknown).await, StatusCode::SERVICE_UNAVAILABLE, "attachments_unavailable");
    app.send_ok(&ann, conversation, "text still works").await;
}

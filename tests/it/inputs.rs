//! Every string input of every operation (from the published OpenAPI
//! document) refuses control characters with 400 `{code, message}` naming
//! the field, never a 500. Message `text` may hold new lines and tabs, so it
//! is tried with NUL only (which the message rules refuse).

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::helpers::TestApp;

const CONTROLS: &[&str] = &["\u{0}", "\u{1}", "\u{1b}", "\u{7f}", "\u{85}"];

/// A valid value for a schema (the fields around the one under test).
fn valid(schema: &Value, doc: &Value, peer: &str) -> Value {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("string"), Some("uuid")) => json!(peer),
        (Some("string"), _) => json!("fine"),
        (Some("integer"), _) => json!(1),
        (Some("object"), _) => json!({}),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn every_string_field_of_every_operation_refuses_control_characters_naming_the_field() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let conversation_id = app.conversation(&ann, &bob).await;
    let message = app.send_ok(&ann, conversation_id, "a message to change").await;
    let message_id = message["id"].as_str().unwrap().to_owned();
    let conversation = conversation_id.to_string();
    let bob_id = bob.id.to_string();
    let doc: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let mut tried = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            let concrete =
                path.replace("{id}", if path.starts_with("/users") { &bob_id } else { &conversation }).replace("{messageId}", &message_id);
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            // Query parameters.
            for param in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query" && p["schema"]["type"] == "string")
            {
                let name = param["name"].as_str().unwrap();
                for control in CONTROLS {
                    let url = reqwest::Url::parse_with_params(&app.url(&concrete), [(name, format!("a{control}b"))]).unwrap();
                    let resp = app.http_raw().request(method.clone(), url).bearer_auth(&ann.token).send().await.unwrap();
                    check(resp, name, &format!("{method} {path} ?{name}={control:?}")).await;
                    tried += 1;
                }
            }
            // Body string properties.
            let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object() else { continue };
            let schema = &doc["components"]["schemas"][schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap()];
            let properties = schema["properties"].as_object().unwrap();
            let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for (field, field_schema) in properties.iter().filter(|(_, s)| s["type"] == "string") {
                // Message text and report details may hold line breaks and tabs; their own rules refuse NUL.
                let controls: &[&str] = if field == "text" || field == "details" { &["\u{0}"] } else { CONTROLS };
                for control in controls {
                    let mut body: Map<String, Value> =
                        required.iter().map(|name| (name.to_string(), valid(&properties[*name], &doc, &bob.id.to_string()))).collect();
                    if body.get("type") == Some(&json!("text")) || field == "text" {
                        body.insert("type".into(), json!("text"));
                        body.insert("text".into(), json!("hello"));
                    }
                    if field == "details" {
                        body.insert("userId".into(), json!(bob.id));
                    }
                    body.insert(
                        field.clone(),
                        json!(format!("a{control}b{}", "x".repeat(field_schema["minLength"].as_u64().unwrap_or(0) as usize))),
                    );
                    let resp = app
                        .http_raw()
                        .request(method.clone(), app.url(&concrete))
                        .bearer_auth(&ann.token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    check(resp, field, &format!("{method} {path} {field}={control:?}")).await;
                    tried += 1;
                }
            }
        }
    }
    assert!(tried > 50, "only {tried} inputs tried");
}

async fn check(resp: reqwest::Response, field: &str, what: &str) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert!(body["code"].is_string(), "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains(field)), "{what}: the message names `{field}`: {body}");
}

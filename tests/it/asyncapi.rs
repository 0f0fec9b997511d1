//! `openapi/asyncapi.yaml` against the protocol module it is generated
//! from: the committed file is the generated text, the server serves it, every
//! frame type is documented in its direction with a typed payload, and every
//! example parses into the protocol's own types.

use std::collections::BTreeSet;

use duet_common::protocol::{ClientEvent, ClientKind, ServerKind, asyncapi};
use serde_json::Value;

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/asyncapi.yaml")).expect("asyncapi.yaml is readable")
}

fn document() -> Value {
    serde_norway::from_str(&committed()).expect("asyncapi.yaml is YAML")
}

/// The committed document is what the code generates: regenerate it with
/// `cargo run --bin duet -- asyncapi > openapi/asyncapi.yaml`.
#[test]
fn committed_asyncapi_matches_the_code() {
    assert!(
        committed() == asyncapi::document(),
        "openapi/asyncapi.yaml is stale: run `cargo run --bin duet -- asyncapi > openapi/asyncapi.yaml`"
    );
}

#[tokio::test]
async fn the_server_serves_the_document_as_yaml_and_json() {
    let app = crate::helpers::TestApp::spawn().await;
    let http = reqwest::Client::new();
    let yaml = http.get(format!("http://{}/asyncapi.yaml", app.addr)).send().await.unwrap();
    assert_eq!(yaml.status(), reqwest::StatusCode::OK);
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    assert_eq!(yaml.text().await.unwrap(), asyncapi::document());
    let json = http.get(format!("http://{}/asyncapi.json", app.addr)).send().await.unwrap();
    assert_eq!(json.status(), reqwest::StatusCode::OK);
    assert_eq!(json.headers()["content-type"], "application/json");
    let served: Value = json.json().await.unwrap();
    assert_eq!(served, document());
}

/// Follows a local `$ref` like `#/channels/ws/messages/ClientAuth`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').expect("local reference");
    let target = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {reference}"));
    match target.get("$ref").and_then(Value::as_str) {
        Some(next) => resolve(doc, next),
        None => target,
    }
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                found.push(r.clone());
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_inside_the_document() {
    let doc = document();
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(found.len() > 50, "{}", found.len());
    for reference in found {
        resolve(&doc, &reference);
    }
}

/// The messages of the operation with `action`.
fn messages<'a>(doc: &'a Value, action: &str) -> Vec<&'a Value> {
    let operations = doc["operations"].as_object().expect("operations");
    let operation = operations.values().find(|op| op["action"] == action).unwrap_or_else(|| panic!("no `{action}` operation"));
    operation["messages"].as_array().unwrap().iter().map(|m| resolve(doc, m["$ref"].as_str().unwrap())).collect()
}

fn names(messages: &[&Value]) -> BTreeSet<String> {
    messages.iter().map(|m| m["name"].as_str().expect("every message has a name").to_owned()).collect()
}

#[test]
fn the_document_is_asyncapi_3() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["ws"]["address"], "/ws");
}

#[test]
fn every_frame_type_is_documented_in_its_direction_with_a_typed_payload() {
    let doc = document();
    let received = messages(&doc, "receive");
    let sent = messages(&doc, "send");
    let handled: BTreeSet<String> = ClientKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    let emitted: BTreeSet<String> = ServerKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(names(&received), handled, "client → server frames");
    assert_eq!(names(&sent), emitted, "server → client frames");
    for message in received.iter().chain(&sent) {
        let payload = resolve(&doc, message["payload"]["$ref"].as_str().expect("a named payload schema"));
        assert_eq!(payload["properties"]["type"]["const"], message["name"]);
        let data = resolve(&doc, payload["properties"]["data"]["$ref"].as_str().expect("typed data"));
        assert_eq!(data["type"], "object", "{}", message["name"]);
    }
}

#[test]
fn every_example_parses_into_the_protocols_types() {
    let doc = document();
    let mut checked = 0;
    for (action, client) in [("receive", true), ("send", false)] {
        for message in messages(&doc, action) {
            let name = message["name"].as_str().unwrap();
            let examples = message["examples"].as_array().unwrap_or_else(|| panic!("`{name}` has no examples"));
            assert!(!examples.is_empty(), "`{name}` has no examples");
            for example in examples {
                let frame = &example["payload"];
                assert_eq!(frame["type"], name, "example of `{name}` has another type");
                if client {
                    assert!(frame["id"].as_str().is_some(), "client examples carry a frame id: {frame}");
                    ClientEvent::parse(name, frame.get("data").cloned()).unwrap_or_else(|e| panic!("`{name}` example: {e}"));
                } else {
                    assert!(frame.get("id").is_none(), "server frames carry no id: {frame}");
                    let parsed: duet_common::protocol::ServerFrame =
                        serde_json::from_value(frame.clone()).unwrap_or_else(|e| panic!("`{name}` example: {e}"));
                    assert_eq!(parsed.event.kind().as_str(), name);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= ClientKind::ALL.len() + ServerKind::ALL.len());
}

/// The part of `docs/protocol.md` under the heading `title`.
fn section<'a>(guide: &'a str, title: &str) -> &'a str {
    let start = guide.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("docs/protocol.md has no `## {title}`"));
    let rest = &guide[start + title.len() + 4..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// `docs/protocol.md`, the human guide, lists every frame type in its direction's table.
#[test]
fn the_protocol_guide_lists_every_frame_type_in_its_direction() {
    let guide = include_str!("../../docs/protocol.md");
    let listed = |title: &str, kinds: Vec<&'static str>| -> Vec<&'static str> {
        let table = section(guide, title);
        kinds.into_iter().filter(|kind| !table.contains(&format!("| `{kind}` |"))).collect()
    };
    let client = listed("Client → server events", ClientKind::ALL.iter().map(|k| k.as_str()).collect());
    let server = listed("Server → client events", ServerKind::ALL.iter().map(|k| k.as_str()).collect());
    assert!(client.is_empty() && server.is_empty(), "missing from docs/protocol.md: client {client:?}, server {server:?}");
}

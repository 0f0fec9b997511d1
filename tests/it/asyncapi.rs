//! `openapi/asyncapi.yaml` against the gateway's own types: every event type
//! the gateway handles or emits is documented, in the right direction, and
//! every example parses into the gateway's types.

use std::collections::BTreeSet;

use duet_realtime::protocol::{CLIENT_EVENTS, ClientEvent, SERVER_EVENTS, ServerEvent};
use serde_json::Value;

fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/asyncapi.yaml")).expect("asyncapi.yaml is readable");
    serde_norway::from_str(&text).expect("asyncapi.yaml is YAML")
}

/// Follows a local `$ref` like `#/channels/ws/messages/auth`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').expect("local reference");
    let target = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {reference}"));
    match target.get("$ref").and_then(Value::as_str) {
        Some(next) => resolve(doc, next),
        None => target,
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
    assert!(doc["asyncapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["asyncapi"]);
    assert_eq!(doc["channels"]["ws"]["address"], "/ws");
}

#[test]
fn every_event_the_gateway_handles_or_emits_is_documented_in_its_direction() {
    let doc = document();
    let received = names(&messages(&doc, "receive"));
    let sent = names(&messages(&doc, "send"));
    let handled: BTreeSet<String> = CLIENT_EVENTS.iter().map(|s| s.to_string()).collect();
    let emitted: BTreeSet<String> = SERVER_EVENTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(received, handled, "client → server events");
    assert_eq!(sent, emitted, "server → client events");
}

#[test]
fn every_example_parses_into_the_gateways_types() {
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
                let data = frame.get("data").cloned();
                if client {
                    assert!(frame["id"].as_str().is_some(), "client examples carry a frame id: {frame}");
                    ClientEvent::parse(name, data).unwrap_or_else(|e| panic!("`{name}` example: {e}"));
                } else {
                    assert!(frame.get("id").is_none(), "server frames carry no id: {frame}");
                    assert!(frame["ts"].as_i64().is_some(), "server frames carry ts: {frame}");
                    ServerEvent::parse(name, data.unwrap_or(Value::Null)).unwrap_or_else(|e| panic!("`{name}` example: {e}"));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= CLIENT_EVENTS.len() + SERVER_EVENTS.len());
}

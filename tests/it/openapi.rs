use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

/// The committed spec is, byte for byte, what the code generates:
/// regenerate it with `cargo run --bin duet -- openapi > openapi/openapi.json`.
#[test]
fn committed_openapi_is_the_generated_text() {
    let generated = format!("{}\n", duet::openapi_spec());
    assert!(COMMITTED == generated, "openapi/openapi.json is stale: run `cargo run --bin duet -- openapi > openapi/openapi.json`");
}

/// A repeated key (poem writes a path shared by two APIs twice) is lost by
/// every JSON parser but one: the document must have none.
#[test]
fn the_document_has_no_repeated_keys() {
    let mut de = serde_json::Deserializer::from_str(COMMITTED);
    UniqueKeys.deserialize(&mut de).unwrap_or_else(|e| panic!("openapi/openapi.json: {e}"));
    let mut de = serde_json::Deserializer::from_str(r#"{"a": {"b": 1, "b": 2}}"#);
    assert!(UniqueKeys.deserialize(&mut de).is_err(), "the check must see a repeated key");
}

#[test]
fn every_operation_is_in_the_document() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let ids: HashSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let changes = ["editMessage", "unsendMessage", "hideMessage", "setReaction", "removeReaction"];
    for id in ["register", "login", "createConversation", "sendMessage", "listConversations", "listMessages", "markRead"]
        .into_iter()
        .chain(changes)
    {
        assert!(ids.contains(id), "`{id}` is missing");
    }
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one() {
    let app = crate::helpers::TestApp::spawn().await;
    let response = reqwest::get(app.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(format!("{}\n", response.text().await.unwrap()), COMMITTED);
    let page = reqwest::get(app.url("/docs")).await.unwrap();
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let page = page.text().await.unwrap();
    assert!(page.contains("\"createConversation\"") && page.contains("\"sendMessage\""), "the API page lacks operations");
}

/// What the framework refuses before a handler runs has the statuses the
/// document declares, and `{code, message}` bodies.
#[tokio::test]
async fn unsupported_and_oversized_bodies_are_refused_with_their_codes() {
    let app = crate::helpers::TestApp::spawn().await;
    let http = reqwest::Client::new();
    let plain = http.post(app.url("/auth/login")).body(r#"{"email":"a@b.co","password":"x"}"#).send().await.unwrap();
    assert_eq!(plain.status(), reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(plain.json::<serde_json::Value>().await.unwrap()["code"], "unsupported_media_type");
    let huge = format!(r#"{{"email":"a@b.co","password":"{}"}}"#, "x".repeat(70_000));
    let big = http.post(app.url("/auth/login")).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(big.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.json::<serde_json::Value>().await.unwrap()["code"], "request_too_large");
    let login = http.post(app.url("/auth/login")).json(&serde_json::json!({"email": "a@b.co", "password": "x"})).send().await.unwrap();
    assert_eq!(login.headers()["cache-control"], "no-store", "token answers are never cached");
    assert_eq!(login.headers()["x-content-type-options"], "nosniff");
    let anonymous = http.get(app.url("/me")).send().await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let body = anonymous.json::<serde_json::Value>().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    let typed = http.post(app.url("/auth/login")).json(&serde_json::json!({"email": 5, "password": "x"})).send().await.unwrap();
    let body = typed.json::<serde_json::Value>().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("`email`") && message.contains("string") && !message.contains("LoginRequest"), "{body}");
    let missing = http.post(app.url("/auth/register")).json(&serde_json::json!({"email": "a@b.co", "name": "A"})).send().await.unwrap();
    let body = missing.json::<serde_json::Value>().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("\"password\" is a required property"), "{body}");
}

/// Fields that can be absent are left out, never `null` (the document
/// declares none nullable).
#[tokio::test]
async fn absent_fields_are_left_out_not_null() {
    let app = crate::helpers::TestApp::spawn().await;
    let (ann, bob) = (app.register("Ann").await, app.register("Bob").await);
    let (_, me) = app.get("/me", Some(&ann.token)).await;
    assert!(me.get("phone").is_none() && me.get("lastSeenAt").is_none(), "{me}");
    let conversation = app.conversation(&ann, &bob).await;
    let (_, list) = app.get("/conversations", Some(&ann.token)).await;
    assert!(list["items"].is_array() && list.get("nextCursor").is_none(), "{list}");
    let (_, empty) = app.get(&format!("/conversations/{conversation}"), Some(&ann.token)).await;
    assert!(empty["id"].is_string() && empty.get("lastMessage").is_none(), "{empty}");
    app.send_ok(&ann, conversation, "hi").await;
    let (_, page) = app.get(&format!("/conversations/{conversation}/messages"), Some(&bob.token)).await;
    assert!(page["items"][0].get("payload").is_none(), "{page}");
    assert!(!COMMITTED.contains("\"nullable\""), "nothing is declared nullable");
}

/// Walks a JSON document and fails on an object with a repeated key.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("the key {key:?} is repeated")));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Every setting the code reads is documented in the README's settings table.
#[test]
fn every_setting_is_documented_in_the_readme() {
    let settings = concat!(include_str!("../../common/src/settings.rs"), include_str!("../../common/src/settings/attachments.rs"));
    let readme = include_str!("../../README.md");
    let missing: Vec<&str> = settings
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|env| !readme.contains(&format!("| `{env}` |")))
        .collect();
    assert!(missing.is_empty(), "settings missing from README.md: {missing:?}");
}

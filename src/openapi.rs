//! The OpenAPI document: poem-openapi's output, made into one that every
//! mainstream client generator reads unchanged.
//!
//! poem-openapi gets most of it right from the handlers' types. What it
//! cannot express, this module settles, in one pass over the JSON:
//! - APIs combined from several `impl OpenApi` blocks that share a path
//!   (the command side's POST and the query side's GET on `/conversations`)
//!   come out as the same key twice, and JSON parsers keep only the last
//!   (poem-web/poem#1032): the copies are merged here.
//! - Every operation returns the one error type, so poem lists every error
//!   status on every operation. Each operation here declares only the
//!   statuses its refusals ([`ErrorCode`]s, listed beside each handler as
//!   `ERRORS`) and the framework can give, and names those codes.
//! - A field's description on a `$ref` becomes an `allOf` wrapper, which
//!   generators turn into `T & unknown` or drop: it is replaced by the bare
//!   `$ref`.
//! - Media types lose their `; charset=utf-8` parameter, which some
//!   generators do not recognise as JSON.

use std::collections::BTreeMap;
use std::fmt;

use duet_common::ErrorCode;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};

/// Operations with a JSON body can also be refused before any handler runs.
const BODY_ERRORS: &[ErrorCode] = &[ErrorCode::BadRequest, ErrorCode::RequestTooLarge, ErrorCode::UnsupportedMediaType];
/// Operations with parameters refuse unparsable ones.
const PARAMETER_ERRORS: &[ErrorCode] = &[ErrorCode::BadRequest];
/// Operations behind `Authorization: Bearer`.
const AUTH_ERRORS: &[ErrorCode] = &[ErrorCode::Unauthorized, ErrorCode::TokenExpired, ErrorCode::SessionRevoked];
/// Any operation: a browser origin not allowed (CORS), a server fault, or
/// PostgreSQL unreachable.
const SERVER_ERRORS: &[ErrorCode] = &[ErrorCode::OriginNotAllowed, ErrorCode::Internal, ErrorCode::Unavailable];

/// Turns poem-openapi's document into the published one. `errors` lists,
/// by operation id, the refusals each handler can answer.
pub fn publish(raw: &str, errors: &[(&str, &[ErrorCode])]) -> String {
    let mut doc = parse_merging_paths(raw);
    let errors: BTreeMap<&str, &[ErrorCode]> = errors.iter().copied().collect();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for operation in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
                let own = errors.get(id.as_str()).unwrap_or_else(|| panic!("operation `{id}` lists no ERRORS"));
                declare_errors(operation, own);
            }
        }
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/ErrorCode") {
        schema["description"] = Value::String(catalogue());
    }
    unwrap_single_refs(&mut doc);
    plain_json_media_types(&mut doc);
    forbid_control_characters(&mut doc);
    serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
}

/// No control characters (NUL, ESC, DEL, C1: `char::is_control`) in request
/// strings: the rule `duet_common::http` applies before any handler.
const NO_CONTROLS: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]*$";

/// Request strings that may hold line breaks and tabs (their own rules refuse the rest), and the free-form payload.
const CONTROLS_ALLOWED: &[&str] = &["text", "payload", "details"];

/// States the control-character rule as a `pattern` on every request
/// string (query parameters and body properties) that has no pattern,
/// format or enum of its own, so generated clients and fuzzers know it.
fn forbid_control_characters(doc: &mut Value) {
    let free = |schema: &Value| {
        schema["type"] == "string" && schema.get("pattern").is_none() && schema.get("format").is_none() && schema.get("enum").is_none()
    };
    let mut bodies = Vec::new();
    for item in doc["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut()) {
        for operation in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if parameter["in"] == "query" && free(&parameter["schema"]) {
                    parameter["schema"]["pattern"] = NO_CONTROLS.into();
                }
            }
            if let Some(name) = operation
                .pointer("/requestBody/content/application~1json/schema/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                bodies.push(name.to_owned());
            }
        }
    }
    for name in bodies {
        let Some(properties) = doc.pointer_mut(&format!("/components/schemas/{name}/properties")).and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, schema) in properties.iter_mut() {
            if !CONTROLS_ALLOWED.contains(&field.as_str()) && free(schema) {
                schema["pattern"] = NO_CONTROLS.into();
            }
        }
    }
}

/// Replaces poem's error responses by the statuses `own` and the
/// framework's refusals can give, each naming its codes.
fn declare_errors(operation: &mut Value, own: &[ErrorCode]) {
    let mut codes: Vec<ErrorCode> = Vec::new();
    if operation.get("requestBody").is_some() {
        codes.extend(BODY_ERRORS);
    }
    if operation.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty()) {
        codes.extend(PARAMETER_ERRORS);
    }
    if operation.get("security").is_some() {
        codes.extend(AUTH_ERRORS);
    }
    codes.extend(own);
    codes.extend(SERVER_ERRORS);
    let mut seen = Vec::new();
    codes.retain(|c| {
        !seen.contains(c) && {
            seen.push(*c);
            true
        }
    });

    let responses = operation["responses"].as_object_mut().expect("every operation has responses");
    let template = responses.get("400").cloned().expect("poem lists the error responses");
    let rate_limited = responses.get("429").cloned();
    responses.retain(|status, _| status.starts_with('2'));
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in &codes {
        by_status.entry(code.status()).or_default().push(*code);
    }
    for (status, codes) in &by_status {
        let mut response = match (status, &rate_limited) {
            (429, Some(r)) => r.clone(),
            _ => template.clone(),
        };
        let names: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
        response["description"] = Value::String(names.join(", "));
        responses.insert(status.to_string(), response);
    }

    let mut lines = vec!["Errors:".to_owned()];
    lines.extend(codes.iter().map(|c| format!("- `{}` ({}): {}", c.as_str(), c.status(), c.meaning())));
    let description = match operation.get("description").and_then(Value::as_str) {
        Some(text) => format!("{text}\n\n{}", lines.join("\n")),
        None => lines.join("\n"),
    };
    operation["description"] = Value::String(description);
}

/// The error code catalogue, as the `ErrorCode` schema's description.
fn catalogue() -> String {
    let mut text = String::from(
        "Machine-readable error codes of the REST API and the WebSocket `error` frame. \
         Codes are stable; new ones may be added, so treat an unknown code by its HTTP status.\n\n\
         | code | status | meaning |\n|---|---|---|\n",
    );
    for code in ErrorCode::ALL {
        text.push_str(&format!("| `{}` | {} | {} |\n", code.as_str(), code.status(), code.meaning()));
    }
    text
}

/// `{"allOf": [{"$ref": X}, {"description": …}], …}` → `{"$ref": X}`.
fn unwrap_single_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let single = map.get("allOf").and_then(Value::as_array).and_then(|all| {
                let (refs, rest): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|s| s.get("$ref").is_some());
                let only_descriptions = rest.iter().all(|s| s.as_object().is_some_and(|o| o.keys().all(|k| k == "description")));
                (refs.len() == 1 && only_descriptions).then(|| refs[0]["$ref"].clone())
            });
            if let Some(reference) = single {
                *map = Map::from_iter([("$ref".to_owned(), reference)]);
                return;
            }
            map.values_mut().for_each(unwrap_single_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_single_refs),
        _ => {}
    }
}

/// `"application/json; charset=utf-8"` content keys → `"application/json"`.
fn plain_json_media_types(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(content)) = map.get_mut("content")
                && let Some(media) = content.remove("application/json; charset=utf-8")
            {
                content.insert("application/json".to_owned(), media);
            }
            map.values_mut().for_each(plain_json_media_types);
        }
        Value::Array(items) => items.iter_mut().for_each(plain_json_media_types),
        _ => {}
    }
}

/// Parses the document, merging the methods of a path that appears more
/// than once in `paths`. Panics on anything but poem's own output.
fn parse_merging_paths(raw: &str) -> Value {
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(DocumentVisitor).expect("poem-openapi writes valid JSON")
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OpenAPI document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut doc = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = match key.as_str() {
                "paths" => access.next_value::<MergedPaths>()?.0,
                _ => access.next_value::<Value>()?,
            };
            doc.insert(key, value);
        }
        Ok(Value::Object(doc))
    }
}

/// `paths`, with repeated keys merged method by method.
struct MergedPaths(Value);

impl<'de> serde::Deserialize<'de> for MergedPaths {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = MergedPaths;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the paths object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<MergedPaths, A::Error> {
                let mut paths = Map::new();
                while let Some((path, item)) = access.next_entry::<String, Map<String, Value>>()? {
                    let merged = paths.entry(path.clone()).or_insert_with(|| json!({}));
                    for (method, operation) in item {
                        let previous = merged.as_object_mut().expect("a path item is an object").insert(method.clone(), operation);
                        assert!(previous.is_none(), "{method} {path} is defined twice");
                    }
                }
                Ok(MergedPaths(Value::Object(paths)))
            }
        }
        de.deserialize_map(PathsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_paths_are_merged_method_by_method() {
        let raw = r#"{"openapi":"3.0.0","paths":{"/a":{"post":{"operationId":"p"}},"/b":{"get":{}},"/a":{"get":{"operationId":"g"}}}}"#;
        let doc = parse_merging_paths(raw);
        assert_eq!(doc["paths"]["/a"]["post"]["operationId"], "p");
        assert_eq!(doc["paths"]["/a"]["get"]["operationId"], "g");
        assert_eq!(doc["paths"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn a_described_ref_becomes_a_bare_ref() {
        let mut doc = json!({"properties": {"x": {"allOf": [{"$ref": "#/c/X"}], "description": "d"}, "y": {"allOf": [{"$ref": "#/c/X"}, {"$ref": "#/c/Y"}]}, "z": {"allOf": [{"$ref": "#/c/Z"}, {"description": "d"}]}}});
        unwrap_single_refs(&mut doc);
        assert_eq!(doc["properties"]["x"], json!({"$ref": "#/c/X"}));
        assert_eq!(doc["properties"]["y"]["allOf"].as_array().unwrap().len(), 2);
        assert_eq!(doc["properties"]["z"], json!({"$ref": "#/c/Z"}));
    }
}

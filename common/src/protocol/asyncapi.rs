//! The AsyncAPI 3.0 document of the WebSocket protocol, generated from the
//! protocol's tables: one message per frame type and direction, each with
//! its own payload schema (`type` a const, the envelope fields, `data` as
//! schemars derives it from the Rust type). `duet asyncapi` prints it;
//! `openapi/asyncapi.yaml` is its committed copy; the server serves it at
//! `/asyncapi.yaml` and `/asyncapi.json`.
//!
//! Schemas are JSON Schema draft-07 (AsyncAPI 3.0's default schema format),
//! all under `#/components/schemas`. Keys come out sorted, so the output is
//! deterministic.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{ClientKind, MAX_FRAME_ID_CHARS, ServerKind, examples};

const SCHEMAS: &str = "#/components/schemas/";

/// The document as YAML (as committed in `openapi/asyncapi.yaml`).
pub fn document() -> String {
    let yaml = serde_norway::to_string(&document_value()).expect("the document serializes");
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.lines() {
        out.push_str(&quote_timestamp(line));
        out.push('\n');
    }
    out
}

/// Quotes a plain scalar that YAML 1.1 readers (js-yaml, PyYAML) would turn
/// into a date: the examples' RFC 3339 strings must stay strings.
fn quote_timestamp(line: &str) -> std::borrow::Cow<'_, str> {
    let indent = line.len() - line.trim_start().len();
    let at = match line.find(": ") {
        Some(colon) => colon + 2,
        None if line[indent..].starts_with("- ") => indent + 2,
        None => return line.into(),
    };
    let value = &line.as_bytes()[at..];
    let date_like = value.len() >= 10 && value[..4].iter().all(u8::is_ascii_digit) && value[4] == b'-' && value[7] == b'-';
    if date_like && !value.contains(&b'\'') { format!("{}'{}'", &line[..at], &line[at..]).into() } else { line.into() }
}

/// The document as JSON.
pub fn document_json() -> String {
    serde_json::to_string_pretty(&document_value()).expect("the document serializes")
}

/// Which way a frame goes.
#[derive(Clone, Copy)]
enum Direction {
    Client,
    Server,
}

/// One frame type of one direction, before its schema is assembled.
struct Frame {
    direction: Direction,
    wire: &'static str,
    name: &'static str,
    summary: &'static str,
    data: Value,
    examples: Vec<Value>,
}

impl Frame {
    /// The message's key, e.g. `ClientDelivered`, and its payload schema's, `ClientDeliveredFrame`.
    fn key(&self) -> String {
        match self.direction {
            Direction::Client => format!("Client{}", self.name),
            Direction::Server => format!("Server{}", self.name),
        }
    }
}

/// The document as a JSON value.
pub fn document_value() -> Value {
    let mut generator = SchemaSettings::draft07().with(|s| s.definitions_path = "/components/schemas".into()).into_generator();
    let mut frames = Vec::new();
    for kind in ClientKind::ALL {
        let data = kind.data_schema(&mut generator).to_value();
        let examples = examples::client(*kind);
        frames.push(Frame {
            direction: Direction::Client,
            wire: kind.as_str(),
            name: kind.name(),
            summary: kind.summary(),
            data,
            examples,
        });
    }
    for kind in ServerKind::ALL {
        let data = kind.data_schema(&mut generator).to_value();
        let examples = examples::server(*kind);
        frames.push(Frame {
            direction: Direction::Server,
            wire: kind.as_str(),
            name: kind.name(),
            summary: kind.summary(),
            data,
            examples,
        });
    }
    let mut schemas = generator.take_definitions(true);
    for schema in schemas.values_mut() {
        omit_nulls(schema);
        drop_unsigned_formats(schema);
    }

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let (mut received, mut sent) = (Vec::new(), Vec::new());
    let mut next_id = 0;
    for frame in &frames {
        let key = frame.key();
        let frame_schema = frame_schema(frame, &schemas);
        let examples: Vec<Value> = frame
            .examples
            .iter()
            .map(|data| {
                let payload = match frame.direction {
                    Direction::Client => {
                        next_id += 1;
                        json!({"type": frame.wire, "id": format!("f{next_id}"), "ts": 1_700_000_000_000i64, "data": data})
                    }
                    Direction::Server => json!({"type": frame.wire, "ts": 1_700_000_000_001i64, "data": data}),
                };
                json!({"payload": payload})
            })
            .collect();
        let direction = match frame.direction {
            Direction::Client => "client → server",
            Direction::Server => "server → client",
        };
        messages.insert(
            key.clone(),
            json!({
                "name": frame.wire,
                "title": format!("{} ({direction})", frame.wire),
                "summary": frame.summary,
                "payload": {"$ref": format!("{SCHEMAS}{key}Frame")},
                "examples": examples,
            }),
        );
        schemas.insert(format!("{key}Frame"), frame_schema);
        channel_messages.insert(key.clone(), json!({"$ref": format!("#/components/messages/{key}")}));
        let reference = json!({"$ref": format!("#/channels/ws/messages/{key}")});
        match frame.direction {
            Direction::Client => received.push(reference),
            Direction::Server => sent.push(reference),
        }
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Duet realtime gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "pathname": "/ws",
                "description": "The all-in-one process (`duet serve`); the realtime service in a split deployment.",
            },
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "The WebSocket connection",
                "description": CHANNEL,
                "bindings": {"ws": {
                    "method": "GET",
                    "headers": {
                        "type": "object",
                        "properties": {
                            "Authorization": {"type": "string", "description": "`Bearer <jwt>`; optional (an `auth` frame works too)."},
                            "Origin": {"type": "string", "description": "Checked against `DUET_ALLOWED_ORIGINS` when present."},
                        },
                    },
                }},
                "messages": channel_messages,
            },
        },
        "operations": {
            "receiveClientFrames": {
                "action": "receive",
                "title": "Frames the gateway receives from clients",
                "channel": {"$ref": "#/channels/ws"},
                "messages": received,
            },
            "sendServerFrames": {
                "action": "send",
                "title": "Frames the gateway sends to clients",
                "channel": {"$ref": "#/channels/ws"},
                "messages": sent,
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    })
}

/// A frame's payload schema: the envelope, `type` fixed, `data` typed.
fn frame_schema(frame: &Frame, schemas: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    properties.insert("type".into(), json!({"type": "string", "const": frame.wire}));
    let required = match frame.direction {
        Direction::Client => {
            properties.insert(
                "id".into(),
                json!({
                    "type": "string", "minLength": 1, "maxLength": MAX_FRAME_ID_CHARS,
                    "description": "The client's frame id; replies carry it as `data.ref`, errors name it. Optional, but without it errors cannot name the frame.",
                }),
            );
            properties.insert("ts".into(), json!({"type": "integer", "description": "Client time, unix ms (informational)."}));
            // Absent `data` reads as `{}`: it may be left out when nothing in it is required.
            let needs_data = data_required(&frame.data, schemas);
            if needs_data { json!(["type", "data"]) } else { json!(["type"]) }
        }
        Direction::Server => {
            properties.insert("ts".into(), json!({"type": "integer", "description": "Server time, unix ms."}));
            json!(["type", "ts", "data"])
        }
    };
    properties.insert("data".into(), frame.data.clone());
    json!({"type": "object", "required": required, "properties": properties})
}

/// Whether the data schema (a reference into `schemas`) requires any field.
fn data_required(data: &Value, schemas: &Map<String, Value>) -> bool {
    let schema = match data.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(SCHEMAS)) {
        Some(name) => &schemas[name],
        None => data,
    };
    schema.get("required").and_then(Value::as_array).is_some_and(|r| !r.is_empty())
}

/// Absent fields are omitted on the wire, never `null`: drops the `null`
/// that schemars allows for every `Option`, everywhere in `schema`.
fn omit_nulls(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".into(), only);
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(options)) = map.get_mut(key) else {
            continue;
        };
        options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
        if options.len() == 1 {
            let only = options.remove(0);
            map.remove(key);
            if map.is_empty() {
                *schema = only;
                return omit_nulls(schema);
            }
            // draft-07 ignores the siblings of a `$ref`: keep them beside an `allOf`.
            map.insert("allOf".into(), json!([only]));
        }
    }
    for value in map.values_mut() {
        match value {
            Value::Object(_) => omit_nulls(value),
            Value::Array(items) => items.iter_mut().for_each(omit_nulls),
            _ => {}
        }
    }
}

/// Drops schemars' `uint32`/`uint64` formats, which no JSON Schema or
/// AsyncAPI tool knows (`minimum: 0` already says it).
fn drop_unsigned_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("uint")) {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unsigned_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unsigned_formats),
        _ => {}
    }
}

const DESCRIPTION: &str = "\
Duet's WebSocket protocol at `GET /ws`. Text frames only, each a JSON
envelope `{\"type\", \"id\", \"ts\", \"data\"}`. Client frames carry their own
`id`; a server frame that answers one carries it back as `data.ref`.
Server pushes carry no `id`. A field that can be absent is omitted, never
`null`. Human-oriented guide with a worked session: `docs/protocol.md`.
Generated from `duet_common::protocol` (`duet asyncapi`).

Close codes: 1000 normal, 1002 broken framing (unmasked frame, reserved
bits, unknown opcode), 1003 unsupported data, 1007 text that is not UTF-8, 1008 too many invalid
frames, 1009 frame too large, 1012 server restarting (reconnect and
sync), 1013 client too slow (reconnect and sync), 4401 invalid or expired
token (at connect, or when the session's token expires: refresh and reconnect
with the new one) or revoked session (logout, password change: sign in
again), 4408 no authentication in time or no frame within the presence TTL.
";

const CHANNEL: &str = "\
Authenticate with `Authorization: Bearer <jwt>` on the upgrade request,
or with an `auth` frame within `DUET_AUTH_TIMEOUT_SECS` (10 s). Before
the upgrade: `Origin` outside `DUET_ALLOWED_ORIGINS` → HTTP 403
`origin_not_allowed`; too many handshakes from one IP → HTTP 429
`rate_limited` with `Retry-After`.
";

//! Names the field a refused request body got wrong.
//!
//! poem-openapi checks a body against its type before the handler runs, and
//! its message names the Rust type, not the field (`Expected input type
//! "string", found 5`). When it refuses a body, the body is checked again,
//! against the operation's schema in the published OpenAPI document, by a
//! JSON Schema validator, whose first error names the field and the rule.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

/// Each operation's request body, by method and route template.
#[derive(Clone, Default)]
pub struct BodySchemas(Arc<HashMap<(String, String), Body>>);

/// One operation's request body: its validator, and the properties it declares.
struct Body {
    validator: jsonschema::Validator,
    declared: HashSet<String>,
}

impl BodySchemas {
    /// The validators of every operation with a JSON body in `openapi`.
    pub fn from_openapi(openapi: &Value) -> Self {
        let mut validators = HashMap::new();
        let components = openapi.get("components").cloned().unwrap_or(Value::Null);
        for (path, item) in openapi["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") else { continue };
                let root = json!({ "allOf": [schema], "components": components });
                let resolved = match schema.get("$ref").and_then(Value::as_str) {
                    Some(reference) => reference.strip_prefix("#/").and_then(|p| openapi.pointer(&format!("/{p}"))).unwrap_or(schema),
                    None => schema,
                };
                let declared = resolved["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
                match jsonschema::draft7::new(&root) {
                    Ok(validator) => {
                        // Keyed by the route label a request is matched to (`crate::metrics::route_label`).
                        validators.insert((method.to_uppercase(), crate::metrics::route_label(path)), Body { validator, declared });
                    }
                    Err(e) => tracing::warn!(%path, %method, error = %e, "no validator for a request body"),
                }
            }
        }
        BodySchemas(Arc::new(validators))
    }

    /// The top-level properties the body of `method route` declares; others are ignored.
    pub fn declared(&self, method: &str, route: &str) -> Option<&HashSet<String>> {
        self.0.get(&(method.to_owned(), route.to_owned())).map(|body| &body.declared)
    }

    /// What is wrong with `body` for `method route`, naming the field; `None`
    /// when it is not JSON, the route has no body schema, or nothing is wrong.
    pub fn explain(&self, method: &str, route: &str, body: &[u8]) -> Option<String> {
        let validator = &self.0.get(&(method.to_owned(), route.to_owned()))?.validator;
        let value: Value = serde_json::from_slice(body).ok()?;
        let error = validator.iter_errors(&value).next()?;
        let field = error.instance_path().to_string();
        let field = field.trim_start_matches('/').replace('/', ".");
        Some(if field.is_empty() { format!("invalid request body: {error}") } else { format!("invalid request body: `{field}`: {error}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BodySchemas {
        BodySchemas::from_openapi(&json!({
            "paths": {"/auth/login": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}}}}}},
            "components": {"schemas": {"Login": {
                "type": "object",
                "required": ["email", "password"],
                "properties": {"email": {"type": "string", "maxLength": 254}, "password": {"type": "string"}}
            }}}
        }))
    }

    #[test]
    fn the_explanation_names_the_field_and_the_rule() {
        let wrong_type = schemas().explain("POST", "/auth/login", br#"{"email": 5, "password": "x"}"#).unwrap();
        assert!(wrong_type.contains("`email`") && wrong_type.contains("string"), "{wrong_type}");
        let missing = schemas().explain("POST", "/auth/login", br#"{"email": "a@b.co"}"#).unwrap();
        assert!(missing.contains("password") && missing.contains("required"), "{missing}");
        assert_eq!(schemas().explain("POST", "/auth/login", br#"{"email": "a@b.co", "password": "x"}"#), None);
        assert_eq!(schemas().explain("POST", "/elsewhere", b"{}"), None);
        assert_eq!(schemas().explain("POST", "/auth/login", b"not json"), None);
    }
}

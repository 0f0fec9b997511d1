//! HTTP plumbing shared by every service: request ids and spans, metrics,
//! JSON error bodies for errors raised outside our handlers, and the
//! operations endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, handler};
use tokio::io::AsyncReadExt;
use tracing::Instrument;

use crate::body_schemas::BodySchemas;
use crate::context::AppContext;
use crate::error::{ErrorBody, ErrorCode};
use crate::metrics::{HttpLabels, Metrics, RouteLabels, Routes};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest request body: a message (4,000 characters of text, a 16 KiB
/// payload) with room to spare. Larger bodies are refused with 413 before
/// they are read; a chunked body is cut off here, so never read whole.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Wraps the whole app: a request id and span per request, metrics, and
/// `{code, message}` bodies for errors raised by the framework itself
/// (unknown route, bad JSON, missing token).
///
/// A request body must arrive whole within `body_timeout` of its headers,
/// or the answer is 408: a client trickling its body holds no task for long.
pub fn wrap(
    app: impl Endpoint + 'static,
    metrics: Arc<Metrics>,
    routes: Routes,
    bodies: BodySchemas,
    body_timeout: Duration,
) -> impl Endpoint {
    let routes = Arc::new(routes);
    app.around(move |ep, req| {
        let (metrics, routes, bodies) = (metrics.clone(), routes.clone(), bodies.clone());
        async move { handle(ep, req, &metrics, &routes, &bodies, body_timeout).await }
    })
}

async fn handle<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    metrics: &Metrics,
    routes: &Routes,
    bodies: &BodySchemas,
    body_timeout: Duration,
) -> poem::Result<Response> {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().to_string();
    let route = routes.label(req.uri().path());
    let span = tracing::info_span!("http", %request_id, %method, %route);
    let started = Instant::now();
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A body within bounds is kept, to name the field if it is refused.
    let mut body = None;
    let query_control = control_in_query(&req);
    let answer = match declared {
        _ if query_control.is_some() => Ok(control_refusal(query_control.as_deref().unwrap_or_default())),
        Some(length) if length > MAX_BODY_BYTES => {
            Ok(error_response(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {MAX_BODY_BYTES} bytes")))
        }
        Some(0) => ep.call(req).instrument(span.clone()).await.map(IntoResponse::into_response),
        Some(_) | None if declared.is_some() || req.headers().contains_key(header::TRANSFER_ENCODING) => {
            let mut read = Vec::new();
            let mut source = req.take_body().into_async_read().take(MAX_BODY_BYTES + 1);
            let reading = source.read_to_end(&mut read);
            match tokio::time::timeout(body_timeout, reading).await {
                Err(_) => Ok(error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body did not arrive within {} s", body_timeout.as_secs()),
                )),
                Ok(Err(e)) => Ok(error_response(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}"))),
                Ok(Ok(_)) if read.len() as u64 > MAX_BODY_BYTES => {
                    Ok(error_response(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {MAX_BODY_BYTES} bytes")))
                }
                Ok(Ok(_)) => match control_in_body(&read, bodies.declared(&method, &route)) {
                    Some(field) => Ok(control_refusal(&field)),
                    None => {
                        req.set_body(Body::from_vec(read.clone()));
                        body = Some(read);
                        ep.call(req).instrument(span.clone()).await.map(IntoResponse::into_response)
                    }
                },
            }
        }
        _ => ep.call(req).instrument(span.clone()).await.map(IntoResponse::into_response),
    };
    let mut resp = match answer {
        Ok(resp) => resp.into_response(),
        Err(err) if err.is_from_response() => err.into_response(),
        Err(err) => {
            let named = match (&body, err.status()) {
                (Some(body), StatusCode::BAD_REQUEST) => bodies.explain(&method, &route, body),
                _ => None,
            };
            error_response(err.status(), named.unwrap_or_else(|| err.to_string()))
        }
    };
    let status = resp.status().as_u16();
    span.in_scope(|| tracing::debug!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "answered"));
    if let Ok(value) = request_id.parse() {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    secure_headers(&route, resp.headers_mut());
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = routes.allow(&route).and_then(|allow| allow.parse().ok())
    {
        // RFC 9110 §15.5.6: a 405 names the methods the resource answers.
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    metrics
        .http_duration
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
    Ok(resp)
}

/// Fields whose strings may hold control characters: message text and a
/// report's details (new lines and tabs; their own rules refuse the rest)
/// and the free-form payload.
const CONTROLS_ALLOWED: &[&str] = &["text", "payload", "details"];

/// The first query parameter holding a control character (NUL, ESC, DEL …).
fn control_in_query(req: &Request) -> Option<String> {
    req.uri().query()?;
    let pairs = req.params::<Vec<(String, String)>>().ok()?;
    pairs.into_iter().find(|(name, value)| has_control(name) || has_control(value)).map(|(name, _)| name)
}

/// The first JSON body field (as a path, `a.b`) whose string holds a control
/// character. Only the properties the operation declares are looked at:
/// others are ignored, as poem-openapi ignores them.
fn control_in_body(body: &[u8], declared: Option<&std::collections::HashSet<String>>) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        match value {
            serde_json::Value::String(s) if has_control(s) => Some(path.to_owned()),
            serde_json::Value::Array(items) => items.iter().find_map(|v| walk(v, path)),
            serde_json::Value::Object(map) => map.iter().find_map(|(key, v)| {
                let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if has_control(key) {
                    Some(here)
                } else if path.is_empty() && CONTROLS_ALLOWED.contains(&key.as_str()) {
                    None
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match (value, declared) {
        (serde_json::Value::Object(map), Some(declared)) => {
            let known = map.into_iter().filter(|(key, _)| declared.contains(key)).collect();
            walk(&serde_json::Value::Object(known), "")
        }
        (value, _) => walk(&value, ""),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// 400 naming `field`, with the field's own code where it has one.
fn control_refusal(field: &str) -> Response {
    let code = match field {
        "email" => ErrorCode::InvalidEmail,
        "password" => ErrorCode::InvalidPassword,
        "name" => ErrorCode::InvalidName,
        "phone" => ErrorCode::InvalidPhone,
        "clientMsgId" => ErrorCode::InvalidClientMsgId,
        "token" => ErrorCode::InvalidToken,
        "q" => ErrorCode::InvalidQuery,
        "cursor" => ErrorCode::InvalidCursor,
        _ => ErrorCode::BadRequest,
    };
    let message = format!("`{field}` must not contain control characters");
    let body = serde_json::to_string(&ErrorBody { code, message }).expect("serializing an error body");
    Response::builder().status(StatusCode::BAD_REQUEST).content_type("application/json").body(body)
}

/// Headers every answer carries: no content-type sniffing, no referrer;
/// token answers (`/auth/…`) are never cached; the API page may run only
/// its own inline script and style (it loads nothing from elsewhere).
fn secure_headers(route: &str, headers: &mut poem::http::HeaderMap) {
    use poem::http::HeaderValue;
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if route.starts_with("/auth/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if route == "/docs" {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
}

/// A `{code, message}` response for a framework error.
fn error_response(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::OriginNotAllowed,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::RequestTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let message = if status.is_server_error() {
        tracing::error!(%message, "framework error");
        "internal server error".to_owned()
    } else if status == StatusCode::UNAUTHORIZED && message == "authorization error" {
        // poem's text for a request without (or with a malformed) `Authorization` header.
        "this operation needs an `Authorization: Bearer <token>` header".to_owned()
    } else {
        without_type_names(message)
    };
    let body = serde_json::to_string(&ErrorBody { code, message }).expect("serializing an error body");
    Response::builder().status(status).content_type("application/json").body(body)
}

/// poem-openapi names the Rust type that failed to parse (`failed to parse
/// "SendMessageRequest": field …`, `… (occurred while parsing
/// "LoginRequest")`): that is ours, not the client's.
fn without_type_names(mut message: String) -> String {
    if let Some(start) = message.find("failed to parse \"")
        && let Some(end) = message[start..].find("\": ")
    {
        message.replace_range(start..start + end + 3, "");
    }
    if let Some(start) = message.find(" (occurred while parsing \"")
        && let Some(end) = message[start..].find("\")")
    {
        message.replace_range(start..start + end + 2, "");
    }
    message
}

/// Adds `/healthz` and `/readyz`, for load balancers (on both listeners).
pub fn health_routes(route: Route) -> Route {
    route.at("/healthz", healthz).at("/readyz", readyz)
}

/// Adds `/metrics`: on the admin listener only, never on the public port.
pub fn metrics_routes(route: Route) -> Route {
    route.at("/metrics", metrics_text)
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[handler]
async fn readyz(ctx: Data<&AppContext>) -> Response {
    let (ready, body) = crate::readiness::check(&ctx).await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Response::builder().status(status).content_type("application/json").body(body.to_string())
}

#[handler]
fn metrics_text(ctx: Data<&AppContext>) -> Response {
    Response::builder().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(ctx.metrics.encode())
}

/// An API that is part of the spec whether or not this process serves it.
///
/// `duet serve --only …` runs a subset of services; the OpenAPI document
/// stays the whole contract, while only the served operations are routed.
pub struct Served<T>(pub Option<T>);

impl<T: poem_openapi::OpenApi> poem_openapi::OpenApi for Served<T> {
    fn meta() -> Vec<poem_openapi::registry::MetaApi> {
        T::meta()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry)
    }

    fn add_routes(
        self,
        route_table: &mut std::collections::HashMap<
            String,
            std::collections::HashMap<poem::http::Method, poem::endpoint::BoxEndpoint<'static>>,
        >,
    ) {
        if let Some(api) = self.0 {
            api.add_routes(route_table)
        }
    }
}

/// Tags grouping the operations in the API documentation.
#[derive(poem_openapi::Tags)]
pub enum ApiTags {
    /// Registration and login.
    Auth,
    /// Accounts and user look-up.
    Users,
    /// 1:1 conversations, their messages and receipts.
    Conversations,
    /// Push notification devices.
    Devices,
    /// Full-text search over the caller's messages.
    Search,
    /// Presence privacy, blocks and reports.
    Privacy,
    /// Images, videos, voice notes and files in object storage: presigned uploads and downloads.
    Attachments,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_fields_not_types() {
        let poem =
            r#"parse request payload error: failed to parse "SendMessageRequest": field `text` verification failed. maxLength(4000)"#;
        assert_eq!(without_type_names(poem.into()), "parse request payload error: field `text` verification failed. maxLength(4000)");
        assert_eq!(without_type_names("other".into()), "other");
        let nested = r#"parse request payload error: Expected input type "string", found 5. (occurred while parsing "LoginRequest")"#;
        assert_eq!(without_type_names(nested.into()), r#"parse request payload error: Expected input type "string", found 5."#);
    }
}

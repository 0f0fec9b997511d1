//! Fake Google OAuth token endpoint and FCM HTTP v1 `messages:send`.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{EndpointExt, IntoResponse, Request as HttpRequest, Response, Route, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FCM_CLIENT_EMAIL, FCM_KEY_ID, FCM_PROJECT, FIXTURES, Reply, Request, Shared};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

pub fn app(shared: Shared) -> impl poem::Endpoint {
    Route::new().at("/token", post(token)).at("/v1/projects/*rest", post(send)).data(shared)
}

#[derive(Deserialize)]
struct Grant {
    scope: String,
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder().status(StatusCode::from_u16(status).unwrap()).content_type("application/json").body(body.to_string())
}

/// Google's token endpoint: checks the JWT-bearer grant like the real one.
#[handler]
async fn token(req: &HttpRequest, body: String, Data(shared): Data<&Shared>) -> Response {
    let form: HashMap<String, String> =
        body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.replace("%3A", ":"))).collect();
    let refuse = |why: String| {
        shared.reject(format!("token: {why}"));
        json_response(400, json!({"error": "invalid_grant", "error_description": why}))
    };
    if req.content_type() != Some("application/x-www-form-urlencoded") {
        return refuse("content type must be application/x-www-form-urlencoded".into());
    }
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse(format!("bad grant_type {:?}", form.get("grant_type")));
    }
    let Some(assertion) = form.get("assertion") else { return refuse("no assertion".into()) };
    let public = std::fs::read(format!("{FIXTURES}/TEST-ONLY-fcm-service-account-key.pub.pem")).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("http://{}/token", req.header("host").unwrap_or(""))]);
    validation.set_issuer(&[FCM_CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let header = match jsonwebtoken::decode_header(assertion) {
        Ok(h) => h,
        Err(e) => return refuse(format!("undecodable JWT: {e}")),
    };
    if header.kid.as_deref() != Some(FCM_KEY_ID) {
        return refuse(format!("kid {:?} is not the key's private_key_id", header.kid));
    }
    let claims = match jsonwebtoken::decode::<Grant>(assertion, &DecodingKey::from_rsa_pem(&public).unwrap(), &validation) {
        Ok(data) => data.claims,
        Err(e) => return refuse(format!("Invalid JWT: {e}")),
    };
    if claims.scope != SCOPE {
        return refuse(format!("scope {}", claims.scope));
    }
    let access = format!("ya29.test-{}", uuid::Uuid::new_v4().simple());
    {
        let mut state = shared.state.lock().unwrap();
        state.access_tokens.insert(access.clone());
        state.grants += 1;
    }
    json_response(200, json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
}

fn google_error(status: u16, code: &str, message: &str) -> Value {
    let status_name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    json!({"error": {
        "code": status,
        "message": message,
        "status": status_name,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
    }})
}

/// What makes a `messages:send` body invalid, per the v1 API reference.
fn shape_error(body: &Value) -> Option<String> {
    let message = body.get("message")?.as_object().map(|_| &body["message"]);
    let Some(message) = message else { return Some("no `message` object".into()) };
    let targets = ["token", "topic", "condition"].iter().filter(|k| message.get(**k).is_some()).count();
    if targets != 1 || message["token"].as_str().is_none_or(str::is_empty) {
        return Some("exactly one target, a non-empty `token`, is required".into());
    }
    let strings = |v: &Value| v.as_object().is_some_and(|o| o.values().all(Value::is_string));
    if message.get("data").is_some_and(|d| !strings(d)) {
        return Some("`data` must map strings to strings".into());
    }
    if message.get("notification").is_some_and(|n| !strings(n)) {
        return Some("`notification` fields must be strings".into());
    }
    if message.pointer("/android/notification/notification_count").is_some_and(|c| !c.is_i64()) {
        return Some("`notification_count` must be an integer".into());
    }
    None
}

#[handler]
async fn send(req: &HttpRequest, Path(rest): Path<String>, body: String, Data(shared): Data<&Shared>) -> Response {
    if rest != format!("{FCM_PROJECT}/messages:send") {
        shared.reject(format!("fcm: unknown path {rest}"));
        return json_response(404, google_error(404, "UNSPECIFIED_ERROR", "Requested entity was not found."));
    }
    let bearer = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    if !shared.state.lock().unwrap().access_tokens.contains(bearer) {
        shared.reject(format!("fcm: bad authorization {bearer:?}"));
        return json_response(401, google_error(401, "THIRD_PARTY_AUTH_ERROR", "Request had invalid authentication credentials."));
    }
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            shared.reject(format!("fcm: not JSON: {e}"));
            return json_response(400, google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."));
        }
    };
    if let Some(why) = shape_error(&body).or_else(|| (req.content_type() != Some("application/json")).then(|| "content type".into())) {
        shared.reject(format!("fcm: {why}"));
        return json_response(400, google_error(400, "INVALID_ARGUMENT", &format!("Invalid JSON payload received. {why}")));
    }
    let device = body["message"]["token"].as_str().unwrap().to_owned();
    let reply = shared.reply_for(&device).await.unwrap_or(Reply::new(200, ""));
    let headers = req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
    shared.record(Request { provider: "fcm", device, headers, body, status: reply.status, at: std::time::Instant::now() });
    if reply.status == 200 {
        let id = uuid::Uuid::new_v4().as_u128() % 10u128.pow(16);
        return json_response(200, json!({"name": format!("projects/{FCM_PROJECT}/messages/0:{id}")}));
    }
    let message = match reply.code {
        "UNREGISTERED" => "Requested entity was not found.",
        "INVALID_ARGUMENT" => "The registration token is not a valid FCM registration token",
        "QUOTA_EXCEEDED" => "Quota exceeded for quota metric 'Send requests'.",
        _ => "The service is currently unavailable.",
    };
    let mut response = json_response(reply.status, google_error(reply.status, reply.code, message));
    if let Some(secs) = reply.retry_after {
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    response.into_response()
}

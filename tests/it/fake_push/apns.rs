//! Fake APNs provider API: `POST /3/device/{token}` over HTTP/2.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::{StatusCode, Version};
use poem::web::{Data, Path};
use poem::{EndpointExt, Request as HttpRequest, Response, Route, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC, FIXTURES, Reply, Request, Shared};

pub fn app(shared: Shared) -> impl poem::Endpoint {
    Route::new().at("/3/device/:token", post(push)).data(shared)
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
}

fn error(status: u16, reason: &str) -> Response {
    let mut body = json!({"reason": reason});
    if status == 410 {
        body["timestamp"] = json!(chrono::Utc::now().timestamp_millis());
    }
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("apns-id", uuid::Uuid::new_v4().to_string().to_uppercase())
        .content_type("application/json")
        .body(body.to_string())
}

/// Apple's checks, in the order APNs reports them, as `(status, reason)`.
fn check(req: &HttpRequest, token: &str, body: &str) -> Result<(), (u16, String)> {
    if req.version() != Version::HTTP_2 {
        return Err((505, format!("HTTP/2 required, got {:?}", req.version())));
    }
    let Some(auth) = req.header("authorization") else { return Err((403, "MissingProviderToken".into())) };
    let Some(jwt) = auth.strip_prefix("bearer ") else { return Err((403, "InvalidProviderToken".into())) };
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| (403, "InvalidProviderToken".to_owned()))?;
    if header.kid.as_deref() != Some(APNS_KEY_ID) {
        return Err((403, "InvalidProviderToken".into()));
    }
    let public = std::fs::read(format!("{FIXTURES}/TEST-ONLY-apns-key.pub.pem")).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims::<&str>(&[]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(jwt, &DecodingKey::from_ec_pem(&public).unwrap(), &validation)
        .map_err(|_| (403, "InvalidProviderToken".to_owned()))?
        .claims;
    let age = chrono::Utc::now().timestamp() - claims.iat;
    if claims.iss != APNS_TEAM_ID {
        return Err((403, "InvalidProviderToken".into()));
    }
    if !(-60..=3600).contains(&age) {
        return Err((403, "ExpiredProviderToken".into()));
    }
    match req.header("apns-topic") {
        None => return Err((400, "MissingTopic".into())),
        Some(t) if t != APNS_TOPIC => return Err((400, "TopicDisallowed".into())),
        _ => {}
    }
    let push_type = req.header("apns-push-type").unwrap_or("");
    if !matches!(push_type, "alert" | "background") {
        return Err((400, "InvalidPushType".into()));
    }
    match (push_type, req.header("apns-priority")) {
        (_, Some(p)) if !matches!(p, "5" | "10") => return Err((400, "BadPriority".into())),
        ("background", Some("10")) => return Err((400, "BadPriority".into())),
        _ => {}
    }
    if req.header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Err((400, "BadCollapseId".into()));
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((400, "BadDeviceToken".into()));
    }
    if body.len() > 4096 {
        return Err((413, "PayloadTooLarge".into()));
    }
    let payload: Value = serde_json::from_str(body).map_err(|_| (400, "PayloadEmpty".to_owned()))?;
    if !payload["aps"].is_object() {
        return Err((400, "PayloadEmpty".into()));
    }
    if push_type == "background" && payload["aps"]["content-available"] != 1 {
        return Err((400, "PayloadEmpty".into()));
    }
    Ok(())
}

#[handler]
async fn push(req: &HttpRequest, Path(token): Path<String>, body: String, Data(shared): Data<&Shared>) -> Response {
    let reply = match check(req, &token, &body) {
        // A malformed device token is how a stale token looks: answered the
        // way APNs does, and recorded like any well-formed request.
        Err((_, reason)) if reason == "BadDeviceToken" => Reply::new(400, "BadDeviceToken"),
        Err((status, reason)) => {
            shared.reject(format!("apns: {status} {reason}"));
            return error(status, &reason);
        }
        Ok(()) => shared.reply_for(&token).await.unwrap_or(Reply::new(200, "")),
    };
    let headers: HashMap<String, String> =
        req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    shared.record(Request { provider: "apns", device: token, headers, body, status: reply.status, at: std::time::Instant::now() });
    if reply.status == 200 {
        return Response::builder().status(StatusCode::OK).header("apns-id", uuid::Uuid::new_v4().to_string().to_uppercase()).finish();
    }
    let mut response = error(reply.status, reply.code);
    if let Some(secs) = reply.retry_after {
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn register_then_login_returns_a_token_that_opens_me() {
    let app = TestApp::spawn().await;
    let user = app.register("Ann").await;
    let (status, me) = app.get("/me", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], user.id.to_string());
    assert_eq!(me["email"], user.email);

    let (status, body) =
        app.post("/auth/login", None, json!({"email": user.email.to_uppercase(), "password": crate::helpers::PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], user.id.to_string());
    let (status, _) = app.get("/me", Some(body["token"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn registration_input_errors_have_codes() {
    let app = TestApp::spawn().await;
    let user = app.register("Ann").await;
    let cases = [
        (
            json!({"email": user.email.to_uppercase(), "password": crate::helpers::PASSWORD, "name": "B"}),
            StatusCode::CONFLICT,
            "email_taken",
        ),
        (json!({"email": "not-an-email", "password": crate::helpers::PASSWORD, "name": "B"}), StatusCode::BAD_REQUEST, "invalid_email"),
        (json!({"email": "b@example.com", "password": "short", "name": "B"}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"email": "b@example.com", "password": crate::helpers::PASSWORD, "name": "  "}), StatusCode::BAD_REQUEST, "invalid_name"),
        (
            json!({"email": "b@example.com", "password": crate::helpers::PASSWORD, "name": "B", "phone": "555"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (json!({"email": "b@example.com", "name": "B"}), StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (body, status, code) in cases {
        assert_error(&app.post("/auth/register", None, body).await, status, code);
    }
    let (status, body) = app.request(reqwest::Method::POST, "/auth/register", None, None).await;
    assert!(status.is_client_error(), "{status} {body}");
}

#[tokio::test]
async fn guessable_blank_and_control_character_passwords_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        ("        ", "password_too_weak"),
        ("\0\0\0\0\0\0\0\0", "invalid_password"),
        ("password123", "password_too_weak"),
        ("dana@example.com", "password_too_weak"),
    ];
    for (password, code) in cases {
        let refused = app.post("/auth/register", None, json!({"email": "dana@example.com", "password": password, "name": "Dana"})).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, code);
        assert!(refused.1["message"].as_str().unwrap().contains("`password`"), "{}", refused.1);
    }
    let weak = app.post("/auth/register", None, json!({"email": "dana@example.com", "password": "password123", "name": "Dana"})).await;
    // The estimator's advice is passed on.
    assert!(weak.1["message"].as_str().unwrap().len() > "`password` is too easy to guess: ".len(), "{}", weak.1);
}

#[tokio::test]
async fn login_failures_look_the_same_for_unknown_email_and_wrong_password() {
    let app = TestApp::spawn().await;
    let user = app.register("Ann").await;
    let wrong_password = app.post("/auth/login", None, json!({"email": user.email, "password": "wrong password"})).await;
    let unknown_email = app.post("/auth/login", None, json!({"email": "nobody@example.com", "password": "wrong password"})).await;
    assert_error(&wrong_password, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(wrong_password, unknown_email);
}

fn sign(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
    sign_with_kid(claims, alg, secret, Some("default"))
}

pub fn sign_with_kid(claims: serde_json::Value, alg: Algorithm, secret: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

/// The claims of a token Duet issued (read without checking them).
pub fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64_like::decode(payload)).unwrap()
}

#[tokio::test]
async fn tokens_are_refused_unless_signed_and_claimed_exactly_right() {
    let app = TestApp::spawn().await;
    let user = app.register("Ann").await;
    let secret = app.settings.jwt_secret().as_bytes().to_vec();
    let now = Utc::now().timestamp();
    let claims = |patch: serde_json::Value| {
        let sid = claims_of(&user.token)["sid"].clone();
        let mut c = json!({"sub": user.id, "sid": sid, "iss": "duet", "aud": "duet-clients", "iat": now, "nbf": now, "exp": now + 600, "jti": uuid::Uuid::new_v4()});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    // The control: a well-formed token works.
    let good = sign(claims(json!({})), Algorithm::HS256, &secret);
    assert_eq!(app.get("/me", Some(&good)).await.0, StatusCode::OK);

    let header_none = {
        use base64_like::encode;
        format!("{}.{}.", encode(br#"{"alg":"none","typ":"JWT"}"#), encode(claims(json!({})).to_string().as_bytes()))
    };
    // Signed right but expired: a code of its own, so the client refreshes.
    let expired = app.get("/me", Some(&sign(claims(json!({"exp": now - 120})), Algorithm::HS256, &secret))).await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "token_expired");
    let refused = [
        ("expired with a wrong secret", sign(claims(json!({"exp": now - 120})), Algorithm::HS256, b"another-secret-another-secret-xx")),
        ("no kid", sign_with_kid(claims(json!({})), Algorithm::HS256, &secret, None)),
        ("unknown kid", sign_with_kid(claims(json!({})), Algorithm::HS256, &secret, Some("retired"))),
        ("no sid", sign(claims(json!({"sid": null})), Algorithm::HS256, &secret)),
        ("not yet valid", sign(claims(json!({"nbf": now + 600})), Algorithm::HS256, &secret)),
        ("no exp", sign(claims(json!({"exp": null})), Algorithm::HS256, &secret)),
        ("wrong audience", sign(claims(json!({"aud": "someone-else"})), Algorithm::HS256, &secret)),
        ("wrong issuer", sign(claims(json!({"iss": "evil"})), Algorithm::HS256, &secret)),
        ("wrong algorithm", sign(claims(json!({})), Algorithm::HS512, &secret)),
        ("wrong secret", sign(claims(json!({})), Algorithm::HS256, b"another-secret-another-secret-xx")),
        ("alg none", header_none),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (why, token) in refused {
        let response = app.get("/me", Some(&token)).await;
        assert_eq!(response.0, StatusCode::UNAUTHORIZED, "{why} accepted: {}", response.1);
        assert_eq!(response.1["code"], "unauthorized", "{why}");
    }
    assert_error(&app.get("/me", None).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn lookup_finds_users_by_email_only_for_signed_in_callers() {
    let app = TestApp::spawn().await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let (status, found) = app.get(&format!("/users/lookup?email={}", bob.email.to_uppercase()), Some(&ann.token)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["id"], bob.id.to_string());
    assert_eq!(found["name"], "Bob");
    assert!(found.get("email").is_none(), "lookup must not leak more than id and name: {found}");
    assert_error(&app.get("/users/lookup?email=nobody@example.com", Some(&ann.token)).await, StatusCode::NOT_FOUND, "user_not_found");
    assert_error(&app.get(&format!("/users/lookup?email={}", bob.email), None).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Base64url without padding, enough to forge an unsigned token and read a payload.
mod base64_like {
    pub fn decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let sextets: Vec<u32> = text.bytes().map(|c| ALPHABET.iter().position(|a| *a == c).unwrap() as u32).collect();
        let mut out = Vec::new();
        for chunk in sextets.chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, s)| acc | (s << (18 - 6 * i)));
            for i in 0..chunk.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

/// Lookalike addresses that normalize alike (NFKC, lowercase) are one
/// account: registering one taken that way is a conflict, and either signs in.
#[tokio::test]
async fn lookalike_emails_are_one_account() {
    let app = TestApp::spawn().await;
    let email = format!("kate-{}@example.com", uuid::Uuid::new_v4().simple());
    let (status, body) =
        app.post("/auth/register", None, json!({"email": email, "password": crate::helpers::PASSWORD, "name": "Kate"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fullwidth_k = email.replacen('k', "\u{FF4B}", 1);
    let again = app.post("/auth/register", None, json!({"email": fullwidth_k, "password": crate::helpers::PASSWORD, "name": "Kat"})).await;
    assert_error(&again, StatusCode::CONFLICT, "email_taken");
    let kelvin = email.replacen('k', "\u{212A}", 1);
    let (status, body) = app.post("/auth/login", None, json!({"email": kelvin, "password": crate::helpers::PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

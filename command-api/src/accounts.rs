//! Registration and login.

use duet_common::ApiError;
use duet_common::auth::{hash_password, verify_password};
use duet_common::db::is_constraint_violation;
use duet_common::domain::{User, canonical_email, validate_password};
use duet_common::error::ErrorCode;
use duet_common::ids::UserId;
use sqlx::PgPool;

pub use duet_common::domain::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
pub const MAX_NAME_CHARS: usize = 100;

macro_rules! user_columns {
    () => {
        "id, email, phone, name, created_at, last_seen_at"
    };
}

pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: String,
    pub phone: Option<String>,
}

/// Creates an account. Emails are compared case-insensitively.
pub async fn register(db: &PgPool, input: Registration) -> Result<User, ApiError> {
    let email = normalize_email(&input.email)?;
    validate_password(&input.password, &[&email, &input.name])?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(ApiError::new(ErrorCode::InvalidName, format!("`name` needs 1 to {MAX_NAME_CHARS} characters")));
    }
    let phone = match input.phone.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if is_e164(p) => Some(p.to_owned()),
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidPhone, "`phone` must be in E.164 form, e.g. +14155550123")),
    };
    let hash = hash_password(input.password).await?;
    let inserted = sqlx::query_as::<_, User>(concat!(
        "insert into users (id, email, phone, name, password_hash) values ($1, $2, $3, $4, $5) returning ",
        user_columns!()
    ))
    .bind(UserId::new())
    .bind(&email)
    .bind(&phone)
    .bind(name)
    .bind(&hash)
    .fetch_one(db)
    .await;
    match inserted {
        Ok(user) => Ok(user),
        Err(e) if is_constraint_violation(&e, "users_email_key") => {
            Err(ApiError::new(ErrorCode::EmailTaken, "an account with this email exists"))
        }
        Err(e) if is_constraint_violation(&e, "users_phone_key") => {
            Err(ApiError::new(ErrorCode::PhoneTaken, "an account with this phone number exists"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The account for these credentials. Wrong email and wrong password are
/// refused identically, in about the same time.
pub async fn login(db: &PgPool, email: &str, password: String) -> Result<User, ApiError> {
    let refused = || ApiError::Unauthorized("email or password is incorrect".into());
    let email = canonical_email(email);
    // PostgreSQL text cannot hold NUL: no account has such an email.
    if email.contains('\0') {
        return Err(refused());
    }
    let found: Option<(String, UserId)> =
        sqlx::query_as("select password_hash, id from users where email = $1").bind(&email).fetch_optional(db).await?;
    let (hash, id) = match found {
        Some((hash, id)) => (Some(hash), Some(id)),
        None => (None, None),
    };
    if password.len() > MAX_PASSWORD_BYTES || !verify_password(password, hash).await? {
        return Err(refused());
    }
    let id = id.ok_or_else(refused)?;
    Ok(sqlx::query_as::<_, User>(concat!("select ", user_columns!(), " from users where id = $1")).bind(id).fetch_one(db).await?)
}

fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = canonical_email(email);
    if email.len() <= 254 && email_address::EmailAddress::is_valid(&email) && email.contains('.') {
        Ok(email)
    } else {
        Err(ApiError::new(ErrorCode::InvalidEmail, "`email` is not a valid email address"))
    }
}

fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(normalize_email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@x.com", "a b@x.com", "ann@localhost"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn phones_are_e164() {
        assert!(is_e164("+14155550123"));
        for bad in ["14155550123", "+0123456789", "+1", "+1415555012a"] {
            assert!(!is_e164(bad), "{bad:?} accepted");
        }
    }
}

use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use duet_common::json_string::JsonString;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::Commands;
use crate::devices::{self, Device, Platform};

pub struct DevicesApi(pub Commands);

#[derive(Object)]
struct RegisterDeviceRequest {
    platform: Platform,
    /// The FCM registration token or APNs device token: printable ASCII.
    #[oai(validator(pattern = "^[!-~]{1,4096}$"))]
    token: JsonString,
}

#[derive(Object)]
struct UnregisterDeviceRequest {
    #[oai(validator(pattern = "^[!-~]{1,4096}$"))]
    token: JsonString,
}

#[derive(ApiResponse)]
enum RegisterDeviceResponse {
    /// The token was known and is refreshed (and now belongs to the caller).
    #[oai(status = 200)]
    Existing(Json<Device>),
    #[oai(status = 201)]
    Created(Json<Device>),
}

#[derive(ApiResponse)]
enum UnregisterDeviceResponse {
    /// The token is gone (or was never the caller's).
    #[oai(status = 204)]
    Removed,
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] =
    &[("registerDevice", &[ErrorCode::InvalidToken]), ("unregisterDevice", &[ErrorCode::InvalidToken])];

#[OpenApi(tag = "ApiTags::Devices")]
impl DevicesApi {
    /// Register a push token for the caller.
    #[oai(path = "/devices/register", method = "post", operation_id = "registerDevice")]
    async fn register(&self, auth: BearerAuth, body: Json<RegisterDeviceRequest>) -> ApiResult<RegisterDeviceResponse> {
        let (device, created) = devices::register(&self.0.ctx.db, auth.user_id(), body.0.platform, &body.0.token).await?;
        Ok(if created { RegisterDeviceResponse::Created(Json(device)) } else { RegisterDeviceResponse::Existing(Json(device)) })
    }

    /// Remove a push token (on logout).
    #[oai(path = "/devices/unregister", method = "post", operation_id = "unregisterDevice")]
    async fn unregister(&self, auth: BearerAuth, body: Json<UnregisterDeviceRequest>) -> ApiResult<UnregisterDeviceResponse> {
        devices::unregister(&self.0.ctx.db, auth.user_id(), &body.0.token).await?;
        Ok(UnregisterDeviceResponse::Removed)
    }
}

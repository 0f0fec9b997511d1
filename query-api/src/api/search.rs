use duet_common::auth::BearerAuth;
use duet_common::error::{ApiResult, ErrorCode};
use duet_common::http::ApiTags;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::Queries;
use crate::search::{self, SearchResults};

pub struct SearchApi(pub Queries);

#[derive(ApiResponse)]
enum SearchResponse {
    #[oai(status = 200)]
    Ok(Json<SearchResults>),
}

/// The refusals each operation here can answer, by operation id (for the API document).
pub const ERRORS: &[(&str, &[ErrorCode])] =
    &[("searchMessages", &[ErrorCode::InvalidQuery, ErrorCode::InvalidLimit, ErrorCode::RateLimited])];

#[OpenApi(tag = "ApiTags::Search")]
impl SearchApi {
    /// Full-text search over the messages the caller sent or received. Limited per user.
    #[oai(path = "/search", method = "get", operation_id = "searchMessages")]
    async fn search(
        &self,
        auth: BearerAuth,
        /// 1 to 200 characters; web-search syntax (`"phrase"`, `-word`, `or`).
        #[oai(validator(min_length = 1, max_length = 200))]
        q: Query<String>,
        /// 1 to 100; default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
    ) -> ApiResult<SearchResponse> {
        self.0.limit_search(auth.user_id()).await?;
        Ok(SearchResponse::Ok(Json(search::search(&self.0, auth.user_id(), &q.0, limit.0).await?)))
    }
}

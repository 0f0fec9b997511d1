//! The query side's HTTP operations (poem-openapi), one file per area.

mod conversations;
mod privacy;
mod search;
mod users;

pub use conversations::ConversationsQueryApi;
pub use privacy::PrivacyQueryApi;
pub use search::SearchApi;
pub use users::UsersApi;

use duet_common::ErrorCode;

use crate::Queries;

/// Every query-side operation.
pub type QueryApi = (UsersApi, ConversationsQueryApi, SearchApi, PrivacyQueryApi);

/// The refusals of every query-side operation, by operation id.
pub fn errors() -> impl Iterator<Item = (&'static str, &'static [ErrorCode])> {
    [users::ERRORS, conversations::ERRORS, search::ERRORS, privacy::ERRORS].into_iter().flatten().copied()
}

pub fn api(queries: Queries) -> QueryApi {
    (UsersApi(queries.clone()), ConversationsQueryApi(queries.clone()), SearchApi(queries.clone()), PrivacyQueryApi(queries))
}

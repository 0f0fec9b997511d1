//! The query side's HTTP operations (poem-openapi), one file per area.

mod conversations;
mod search;
mod users;

pub use conversations::ConversationsQueryApi;
pub use search::SearchApi;
pub use users::UsersApi;

use crate::Queries;

/// Every query-side operation.
pub type QueryApi = (UsersApi, ConversationsQueryApi, SearchApi);

pub fn api(queries: Queries) -> QueryApi {
    (UsersApi(queries.clone()), ConversationsQueryApi(queries.clone()), SearchApi(queries))
}

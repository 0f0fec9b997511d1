//! The query side's HTTP operations (poem-openapi), one file per area.

mod users;

pub use users::UsersApi;

use crate::Queries;

/// Every query-side operation.
pub type QueryApi = UsersApi;

pub fn api(queries: Queries) -> QueryApi {
    UsersApi(queries)
}

//! Integration tests: each starts the real service on port 0 against its own
//! fresh PostgreSQL database and its own Redis key prefix.

mod fake_push;
mod helpers;

mod accounts;
mod conversations;
mod jobs;
mod messages;
mod openapi;
mod receipts;

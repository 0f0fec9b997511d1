//! Integration tests: each starts the real service on port 0 against its own
//! fresh PostgreSQL database and its own Redis key prefix.

mod helpers;
mod ws;

mod accounts;
mod asyncapi;
mod conversations;
mod messages;
mod openapi;
mod ops;
mod process;
mod receipts;
mod ws_session;
mod ws_delivery;
mod ws_presence;
mod ws_limits;
mod ws_nodes;

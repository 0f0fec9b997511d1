//! Integration tests: each starts the real service on port 0 against its own
//! fresh PostgreSQL database and its own Redis key prefix.

mod fake_push;
mod helpers;
mod ws;

mod abuse;
mod accounts;
mod analytics;
mod asyncapi;
mod attachments;
mod bench_smoke;
mod blocks;
mod change_requests;
mod conversation_pages;
mod conversations;
mod history;
mod inputs;
mod integrity;
mod jobs;
mod message_changes;
mod messages;
mod migrations;
mod openapi;
mod ops;
mod plans;
mod privacy;
mod process;
mod projections;
mod projector_bench;
mod reactions;
mod read_side_support;
mod receipts;
mod redis_faults;
mod replica;
mod replies;
mod sessions;
mod timeouts;
mod tls;
mod ws_delivery;
mod ws_limits;
mod ws_nodes;
mod ws_presence;
mod ws_protocol;
mod ws_session;

//! `--verify-db`: after the run, every member's unread count and markers as
//! the query API serves them (`GET /conversations`, a projection that may
//! trail) against PostgreSQL (the source of truth), read again and again
//! until they agree or `--settle-timeout` runs out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::Deserialize;
use sqlx::postgres::PgPoolOptions;

use crate::report::Projections;

/// One member of one conversation, to check.
pub(crate) struct Member {
    pub(crate) user_id: String,
    pub(crate) token: String,
    pub(crate) conversation: String,
    /// The node whose query API is asked first.
    pub(crate) home: usize,
}

/// What is compared: (unread count, last read seq, last delivered seq).
type Marks = (i64, i64, i64);

/// Between two reads of both sides.
const POLL: Duration = Duration::from_millis(200);

/// Unread as PostgreSQL defines it (the `unread_messages` view), with both markers.
const TRUTH: &str = r#"
select cm.conversation_id::text, cm.user_id::text,
       (select count(*) from unread_messages u
         where u.user_id = cm.user_id and u.conversation_id = cm.conversation_id) as unread,
       cm.last_read_seq, cm.last_delivered_seq
from conversation_members cm
where cm.conversation_id = any($1::uuid[])
"#;

pub(crate) async fn run(
    db_url: &str,
    http: &reqwest::Client,
    bases: &[String],
    members: Vec<Member>,
    settle: Duration,
) -> anyhow::Result<Projections> {
    let db = PgPoolOptions::new().max_connections(2).connect(db_url).await.context("Failed to connect to --verify-db")?;
    let ids: Vec<uuid::Uuid> = members.iter().map(|m| m.conversation.parse()).collect::<Result<_, _>>().context("conversation id")?;
    eprintln!("verifying {} members' unread counts and markers against PostgreSQL…", members.len());
    let began = Instant::now();
    loop {
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as(TRUTH).bind(&ids).fetch_all(&db).await.context("Failed to read the markers")?;
        let truth: HashMap<(String, String), Marks> = rows.into_iter().map(|(c, u, n, r, d)| ((c, u), (n, r, d))).collect();
        let served: Vec<Result<Marks, String>> =
            futures_util::stream::iter(&members).map(|m| served(http, bases, m)).buffered(16).collect().await;
        let mismatched: Vec<(&Member, Result<Marks, String>, Option<&Marks>)> = members
            .iter()
            .zip(served)
            .filter_map(|(m, api)| {
                let db = truth.get(&(m.conversation.clone(), m.user_id.clone()));
                (api.as_ref().ok() != db || db.is_none()).then_some((m, api, db))
            })
            .collect();
        let elapsed = began.elapsed();
        if mismatched.is_empty() || elapsed >= settle {
            for (m, api, db) in mismatched.iter().take(5) {
                eprintln!(
                    "projection mismatch: user {} conversation {}: API (unread, read, delivered) {api:?}, PostgreSQL {db:?}",
                    m.user_id, m.conversation
                );
            }
            db.close().await;
            return Ok(Projections {
                checked: members.len() as u64,
                mismatched: mismatched.len() as u64,
                settle_ms: elapsed.as_millis() as u64,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Summary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    id: String,
    unread_count: i64,
    last_read_seq: i64,
    last_delivered_seq: i64,
}

/// The member's marks as the query API serves them: its home node first,
/// then the others; or why they could not be read.
async fn served(http: &reqwest::Client, bases: &[String], m: &Member) -> Result<Marks, String> {
    let mut why = String::new();
    for i in 0..bases.len() {
        let base = &bases[(m.home + i) % bases.len()];
        let response = match http.get(format!("{base}/conversations?limit=100")).bearer_auth(&m.token).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                why = format!("{base}: HTTP {}", r.status());
                continue;
            }
            Err(e) => {
                why = format!("{base}: {e}");
                continue;
            }
        };
        let page: Page = match response.json().await {
            Ok(page) => page,
            Err(e) => {
                why = format!("{base}: {e}");
                continue;
            }
        };
        return match page.items.into_iter().find(|c| c.id == m.conversation) {
            Some(c) => Ok((c.unread_count, c.last_read_seq, c.last_delivered_seq)),
            None => Err(format!("{base}: the conversation is not in the list")),
        };
    }
    Err(why)
}

//! The consistency checker: from every send's outcome, every live delivery,
//! every resume sync and each reader's final sync, decide whether anything
//! acked was lost, anything unexpected appeared, anything reached the app
//! twice, or any conversation was out of order.
//!
//! What counts, with reconnects in play:
//! - **lost**: an acked message (or one delivered live) missing from a
//!   member's final `chat.sync` view from seq 0.
//! - **duplicates**: one logical message (sender + clientMsgId) stored
//!   under two message ids or seqs (a resend the server did not
//!   deduplicate: a second ack with the same id and seq is the expected
//!   answer, not a duplicate); the same seq pushed twice on one
//!   connection; or a message pushed live to the very connection that
//!   first sent it (that connection has the ack). The same message arriving
//!   live and again in a resume sync, or on two connections, is the
//!   protocol's documented overlap: the app keeps one copy per seq, as the
//!   SDK's store does, so it is not counted.
//! - **order errors**: two message ids at one seq anywhere; a connection's
//!   live seqs not strictly increasing; a sync page not contiguous from its
//!   cursor (the final view must be exactly 1..=n).
//! - **unexpected**: a message no member of the conversation sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// A message as an observer saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub seq: i64,
    pub id: String,
    pub client_msg_id: String,
    pub sender_id: String,
}

/// What one member's session (the app) received.
#[derive(Debug, Default)]
pub struct ReaderLog {
    /// Live `chat.message.new` frames in arrival order: (connection number, message, arrival).
    pub live: Vec<(u32, Seen, Instant)>,
    /// Resume syncs after reconnects, page by page: (the page's `afterSeq`, its messages).
    pub resumed: Vec<(i64, Vec<Seen>)>,
    /// The final `chat.sync` view from seq 0.
    pub synced: Vec<Seen>,
    /// When that sync was asked for. A message acked later may have been
    /// stored after the view was taken, so its absence proves nothing.
    pub sync_started: Option<Instant>,
    /// Live frames of this user's own messages on the connection that first sent them.
    pub echoes: u64,
}

/// What one sender was told about its sends.
#[derive(Debug, Default)]
pub struct SenderLog {
    pub user_id: String,
    /// clientMsgIds put on the wire at least once.
    pub sent: HashSet<String>,
    /// First acks: clientMsgId → (seq, message id, when the ack arrived).
    pub acked: HashMap<String, (i64, String, Instant)>,
    /// Later acks of the same clientMsgId that named another seq or id.
    pub other_acks: Vec<(String, i64, String)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub lost: u64,
    pub unexpected: u64,
    pub duplicates: u64,
    pub order_errors: u64,
    /// Acked only after a reader's final sync began (the drain timed out
    /// first), and missing from that view: neither lost nor proven kept.
    pub unchecked: u64,
}

impl Verdict {
    /// Nothing wrong was found.
    pub fn sound(&self) -> bool {
        self.lost == 0 && self.unexpected == 0 && self.duplicates == 0 && self.order_errors == 0
    }

    /// Nothing wrong was found, and every acked message was checked.
    pub fn clean(&self) -> bool {
        self.sound() && self.unchecked == 0
    }

    /// `CLEAN`, `INCOMPLETE` (nothing wrong, but some acks came after the
    /// final sync began: raise `--drain-timeout`) or `FAILED`.
    pub fn label(&self) -> &'static str {
        match (self.sound(), self.unchecked) {
            (true, 0) => "CLEAN",
            (true, _) => "INCOMPLETE",
            (false, _) => "FAILED",
        }
    }

    pub fn add(&mut self, other: &Verdict) {
        self.lost += other.lost;
        self.unexpected += other.unexpected;
        self.duplicates += other.duplicates;
        self.order_errors += other.order_errors;
        self.unchecked += other.unchecked;
    }
}

/// Checks one conversation's senders and readers.
pub fn check(senders: &[&SenderLog], readers: &[&ReaderLog]) -> Verdict {
    let mut verdict = Verdict::default();
    // The one id every observer must agree on at each seq, and the ids each logical message was stored under.
    let mut id_at: BTreeMap<i64, &str> = BTreeMap::new();
    let mut stored: HashMap<(&str, &str), HashSet<(&str, i64)>> = HashMap::new();
    let sent: HashMap<&str, &str> = senders.iter().flat_map(|s| s.sent.iter().map(move |c| (c.as_str(), s.user_id.as_str()))).collect();
    let mut all: Vec<(i64, &str, &str, &str)> = Vec::new();
    for sender in senders {
        for (client_msg_id, (seq, id, _)) in &sender.acked {
            all.push((*seq, id, &sender.user_id, client_msg_id));
        }
        for (client_msg_id, seq, id) in &sender.other_acks {
            all.push((*seq, id, &sender.user_id, client_msg_id));
        }
    }
    for reader in readers {
        let seen = reader.live.iter().map(|(_, m, _)| m).chain(reader.resumed.iter().flat_map(|(_, page)| page)).chain(&reader.synced);
        for m in seen {
            if sent.get(m.client_msg_id.as_str()) != Some(&m.sender_id.as_str()) {
                verdict.unexpected += 1;
            }
            all.push((m.seq, &m.id, &m.sender_id, &m.client_msg_id));
        }
    }
    for (seq, id, sender, client_msg_id) in all {
        match id_at.get(&seq) {
            Some(known) if *known != id => verdict.order_errors += 1,
            Some(_) => {}
            None => {
                id_at.insert(seq, id);
            }
        }
        stored.entry((sender, client_msg_id)).or_default().insert((id, seq));
    }
    verdict.duplicates += stored.values().map(|copies| copies.len() as u64 - 1).sum::<u64>();

    for reader in readers {
        verdict.duplicates += reader.echoes;
        // Live, per connection: strictly increasing seqs; a repeat is a duplicate.
        let mut last: HashMap<u32, i64> = HashMap::new();
        let mut pushed: HashSet<(u32, i64)> = HashSet::new();
        for (conn, m, _) in &reader.live {
            let last = last.entry(*conn).or_default();
            if !pushed.insert((*conn, m.seq)) {
                verdict.duplicates += 1;
            } else if m.seq <= *last {
                verdict.order_errors += 1;
            }
            *last = (*last).max(m.seq);
        }
        // Every sync page is contiguous from its cursor; the final view is 1..=n.
        for (after, page) in reader.resumed.iter().map(|(a, p)| (*a, p.as_slice())).chain([(0, reader.synced.as_slice())]) {
            let mut expected = after + 1;
            for m in page {
                if m.seq != expected {
                    verdict.order_errors += 1;
                }
                expected = m.seq + 1;
            }
        }
        // Every acked message, and every one delivered live before the final sync, is in the final view.
        let in_view: HashSet<&str> = reader.synced.iter().map(|m| m.id.as_str()).collect();
        for sender in senders {
            for (_, id, at) in sender.acked.values() {
                if in_view.contains(id.as_str()) {
                    continue;
                }
                match reader.sync_started {
                    Some(started) if *at >= started => verdict.unchecked += 1,
                    _ => verdict.lost += 1,
                }
            }
        }
        let acked: HashSet<&str> = senders.iter().flat_map(|s| s.acked.values().map(|(_, id, _)| id.as_str())).collect();
        let mut counted: HashSet<&str> = HashSet::new();
        for (_, m, at) in &reader.live {
            let before_view = reader.sync_started.is_none_or(|started| *at < started);
            if before_view && !in_view.contains(m.id.as_str()) && !acked.contains(m.id.as_str()) && counted.insert(&m.id) {
                verdict.lost += 1;
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests;

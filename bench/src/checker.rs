//! The consistency checker: from every send's outcome, every live delivery
//! and each reader's final sync, decide whether anything acked was lost,
//! anything unexpected appeared, or any conversation was out of order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// What one reader (the receiving user of a conversation) saw.
#[derive(Debug, Default)]
pub struct ReaderLog {
    /// Live `chat.message.new` deliveries, in arrival order: (seq, message id, clientMsgId).
    pub live: Vec<(i64, String, String)>,
    /// The final `chat.sync` view from seq 0: (seq, message id, clientMsgId, sender id).
    pub synced: Vec<(i64, String, String, String)>,
    /// When that sync was asked for. A message acked later may have been
    /// stored after the view was taken, so its absence proves nothing.
    pub sync_started: Option<Instant>,
}

/// What one sender was told about its sends.
#[derive(Debug, Default)]
pub struct SenderLog {
    pub user_id: String,
    /// clientMsgIds sent.
    pub sent: HashSet<String>,
    /// Acks: clientMsgId → (seq, message id, when the ack arrived).
    pub acked: HashMap<String, (i64, String, Instant)>,
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
        self.lost == 0 && self.unexpected == 0 && self.order_errors == 0
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
}

/// Checks one conversation's senders and readers.
pub fn check(senders: &[&SenderLog], readers: &[&ReaderLog]) -> Verdict {
    let mut verdict = Verdict::default();
    // The one id every observer must agree on at each seq.
    let mut id_at: BTreeMap<i64, String> = BTreeMap::new();
    let mut agree = |seq: i64, id: &str, verdict: &mut Verdict| match id_at.get(&seq) {
        Some(known) if known != id => verdict.order_errors += 1,
        Some(_) => {}
        None => {
            id_at.insert(seq, id.to_owned());
        }
    };
    let sent: HashMap<&str, &str> = senders.iter().flat_map(|s| s.sent.iter().map(move |c| (c.as_str(), s.user_id.as_str()))).collect();
    for sender in senders {
        for (seq, id, _) in sender.acked.values() {
            agree(*seq, id, &mut verdict);
        }
    }
    for reader in readers {
        // Live: strictly increasing seqs; a repeat with the same id is a duplicate.
        let mut last = 0i64;
        let mut seen: HashSet<i64> = HashSet::new();
        for (seq, id, client_msg_id) in &reader.live {
            agree(*seq, id, &mut verdict);
            if !sent.contains_key(client_msg_id.as_str()) {
                verdict.unexpected += 1;
            }
            if !seen.insert(*seq) {
                verdict.duplicates += 1;
            } else if *seq <= last {
                verdict.order_errors += 1;
            }
            last = last.max(*seq);
        }
        // Sync: exactly 1..=n, every message one we sent.
        let mut expected = 1i64;
        let mut in_view: HashSet<&str> = HashSet::new();
        for (seq, id, client_msg_id, sender) in &reader.synced {
            agree(*seq, id, &mut verdict);
            if *seq != expected {
                verdict.order_errors += 1;
            }
            expected = seq + 1;
            if sent.get(client_msg_id.as_str()) != Some(&sender.as_str()) {
                verdict.unexpected += 1;
            }
            in_view.insert(id);
        }
        // Every acked message is in every reader's final view.
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
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(acks: &[(&str, i64, &str)]) -> SenderLog {
        SenderLog {
            user_id: "u".into(),
            sent: acks.iter().map(|(c, _, _)| c.to_string()).collect(),
            acked: acks.iter().map(|(c, s, i)| (c.to_string(), (*s, i.to_string(), Instant::now()))).collect(),
        }
    }

    fn reader(live: &[(i64, &str, &str)], synced: &[(i64, &str, &str)]) -> ReaderLog {
        ReaderLog {
            live: live.iter().map(|(s, i, c)| (*s, i.to_string(), c.to_string())).collect(),
            synced: synced.iter().map(|(s, i, c)| (*s, i.to_string(), c.to_string(), "u".to_string())).collect(),
            sync_started: None,
        }
    }

    #[test]
    fn a_clean_run_is_clean() {
        let s = sender(&[("a", 1, "m1"), ("b", 2, "m2")]);
        let r = reader(&[(1, "m1", "a"), (2, "m2", "b")], &[(1, "m1", "a"), (2, "m2", "b")]);
        assert!(check(&[&s], &[&r]).clean());
    }

    #[test]
    fn each_fault_is_counted() {
        let s = sender(&[("a", 1, "m1"), ("b", 2, "m2"), ("c", 3, "m3")]);
        // m3 lost, m2 delivered twice, an unknown message, and m1 arriving after m2.
        let r =
            reader(&[(2, "m2", "b"), (1, "m1", "a"), (2, "m2", "b"), (4, "x", "zzz")], &[(1, "m1", "a"), (2, "m2", "b"), (4, "x", "zzz")]);
        let v = check(&[&s], &[&r]);
        assert_eq!(v.lost, 1);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.unexpected, 2);
        assert_eq!(v.order_errors, 2, "m1 after m2 live, and the gap at 3 in sync");
    }

    #[test]
    fn two_ids_at_one_seq_is_an_error() {
        let s = sender(&[("a", 1, "m1")]);
        let r = reader(&[(1, "other", "a")], &[(1, "m1", "a")]);
        assert!(check(&[&s], &[&r]).order_errors >= 1);
    }

    #[test]
    fn a_message_acked_after_the_final_sync_began_is_unchecked_not_lost() {
        let sync_started = Instant::now();
        let mut s = sender(&[("a", 1, "m1")]);
        s.acked.insert("b".into(), (2, "m2".into(), sync_started + std::time::Duration::from_millis(1)));
        s.sent.insert("b".into());
        let mut r = reader(&[(1, "m1", "a")], &[(1, "m1", "a")]);
        r.sync_started = Some(sync_started);
        let v = check(&[&s], &[&r]);
        assert_eq!((v.lost, v.unchecked, v.label()), (0, 1, "INCOMPLETE"));
        // Acked before the sync began and missing from it: lost.
        r.sync_started = Some(sync_started + std::time::Duration::from_secs(1));
        assert_eq!(check(&[&s], &[&r]).label(), "FAILED");
    }
}

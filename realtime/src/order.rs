//! The writer's bookkeeping of message order, kept apart from the socket
//! and the store so it can be tested alone: per conversation, the last seq
//! the client holds and the live messages held behind a gap.
//!
//! A live message at or below the last seq is a duplicate; the next one goes
//! out at once; one after a gap is held until the gap closes by itself or
//! its window passes. Then [`close_gaps`] says, in seq order, what to read
//! from the store and which held message follows each read.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use duet_common::ids::ConversationId;
use tokio::time::Instant;

/// Messages held behind a gap, by seq.
pub type Held<T> = BTreeMap<i64, T>;

pub struct Order<T> {
    /// Last seq the client holds, per conversation.
    last: HashMap<ConversationId, i64>,
    /// Live messages that arrived after a gap, per conversation, and until
    /// when to wait for the gap to close.
    held: HashMap<ConversationId, (Instant, Held<T>)>,
}

/// One step of closing a conversation's gaps.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// Push the stored messages with `after < seq < before`, in seq order.
    Fill { after: i64, before: i64 },
    /// Push this held message.
    Push(T),
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Order { last: HashMap::new(), held: HashMap::new() }
    }
}

impl<T> Order<T> {
    /// The last seq the client holds in the conversation, if known.
    pub fn last(&self, conversation_id: ConversationId) -> Option<i64> {
        self.last.get(&conversation_id).copied()
    }

    /// What the client holds, as learned elsewhere (its marker, a sync).
    pub fn set_last(&mut self, conversation_id: ConversationId, seq: i64) {
        self.last.insert(conversation_id, seq);
    }

    /// The client now holds `seq` (never moves back).
    pub fn advance(&mut self, conversation_id: ConversationId, seq: i64) {
        let last = self.last.entry(conversation_id).or_insert(seq);
        *last = (*last).max(seq);
    }

    /// A live message: `Some(item)` when it is next in line (push it, then
    /// [`Order::advance`]), `None` when it is a duplicate (dropped) or after
    /// a gap (held until `now + window` at the latest, counted from the
    /// first message held in the conversation).
    pub fn offer(&mut self, conversation_id: ConversationId, seq: i64, item: T, now: Instant, window: Duration) -> Option<T> {
        let last = self.last(conversation_id).unwrap_or(0);
        if seq <= last {
            return None;
        }
        if seq > last + 1 {
            let (_, held) = self.held.entry(conversation_id).or_insert_with(|| (now + window, BTreeMap::new()));
            held.insert(seq, item);
            return None;
        }
        Some(item)
    }

    /// The held message next in line in the conversation, if any; held
    /// messages the client already holds are dropped.
    pub fn next_held(&mut self, conversation_id: ConversationId) -> Option<T> {
        let last = self.last(conversation_id).unwrap_or(0);
        let (_, held) = self.held.get_mut(&conversation_id)?;
        while held.first_key_value().is_some_and(|(seq, _)| *seq <= last) {
            held.pop_first();
        }
        let next = match held.first_key_value() {
            Some((seq, _)) if *seq == last + 1 => held.pop_first().map(|(_, item)| item),
            _ => None,
        };
        if held.is_empty() {
            self.held.remove(&conversation_id);
        }
        next
    }

    /// The conversations whose gap window has passed, with their held messages (no longer held).
    pub fn due(&mut self, now: Instant) -> Vec<(ConversationId, Held<T>)> {
        let due: Vec<ConversationId> = self.held.iter().filter(|(_, h)| h.0 <= now).map(|(c, _)| *c).collect();
        due.into_iter().filter_map(|c| self.held.remove(&c).map(|(_, held)| (c, held))).collect()
    }

    /// When the next gap window passes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.0).min()
    }
}

/// Closes a conversation's gaps for good, the client holding `last`: before
/// each held message, what is missing below it is read from the store.
/// Held messages the client already holds are dropped.
pub fn close_gaps<T>(mut last: i64, held: Held<T>) -> Vec<Step<T>> {
    let mut steps = Vec::new();
    for (seq, item) in held {
        if seq <= last {
            continue;
        }
        if seq > last + 1 {
            steps.push(Step::Fill { after: last, before: seq });
        }
        steps.push(Step::Push(item));
        last = seq;
    }
    steps
}

#[cfg(test)]
mod tests;

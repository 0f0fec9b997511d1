//! The writer's ordering without a socket or a store: live messages in seq
//! order, each once, gaps filled from a store stand-in.

use super::*;

const C: ConversationId = ConversationId(uuid::Uuid::from_u128(1));
const D: ConversationId = ConversationId(uuid::Uuid::from_u128(2));
const WINDOW: Duration = Duration::from_millis(50);

/// A session's writer reduced to its order: live messages in, pushed seqs
/// out, gaps filled from `stored` (every seq of the conversation) once
/// their window passes.
struct Session {
    order: Order<i64>,
    stored: Vec<i64>,
    pushed: Vec<i64>,
    now: Instant,
}

impl Session {
    /// The client holds `last` in conversation `C`; the store holds `1..=stored`.
    fn new(last: i64, stored: i64) -> Self {
        let mut order = Order::default();
        order.set_last(C, last);
        Session { order, stored: (1..=stored).collect(), pushed: Vec::new(), now: Instant::now() }
    }

    fn push(&mut self, seq: i64) {
        self.pushed.push(seq);
        self.order.advance(C, seq);
    }

    fn live(&mut self, seq: i64) {
        if let Some(seq) = self.order.offer(C, seq, seq, self.now, WINDOW) {
            self.push(seq);
            while let Some(seq) = self.order.next_held(C) {
                self.push(seq);
            }
        }
    }

    fn window_passes(&mut self) {
        self.now += WINDOW;
        for (conversation_id, held) in self.order.due(self.now) {
            for step in close_gaps(self.order.last(conversation_id).unwrap(), held) {
                match step {
                    Step::Fill { after, before } => {
                        let missing: Vec<i64> = self.stored.iter().copied().filter(|s| *s > after && *s < before).collect();
                        missing.into_iter().for_each(|seq| self.push(seq));
                    }
                    Step::Push(seq) => self.push(seq),
                }
            }
        }
    }
}

#[test]
fn in_order_live_messages_go_out_at_once_and_duplicates_are_dropped() {
    let mut s = Session::new(0, 3);
    for seq in [1, 1, 2, 1, 3, 2] {
        s.live(seq);
    }
    assert_eq!(s.pushed, vec![1, 2, 3]);
    assert_eq!(s.order.next_deadline(), None, "nothing held");
}

#[test]
fn a_message_after_a_gap_waits_for_the_gap_to_close_live() {
    let mut s = Session::new(1, 4);
    s.live(4);
    s.live(3);
    assert_eq!(s.pushed, Vec::<i64>::new(), "3 and 4 wait for 2");
    assert_eq!(s.order.next_deadline(), Some(s.now + WINDOW), "the window runs from the first held message");
    s.live(2);
    assert_eq!(s.pushed, vec![2, 3, 4]);
    assert_eq!(s.order.next_deadline(), None);
}

#[test]
fn gaps_still_open_when_the_window_passes_are_filled_from_the_store_in_seq_order() {
    let mut s = Session::new(1, 9);
    for seq in [5, 3, 9, 5] {
        s.live(seq);
    }
    assert!(s.pushed.is_empty());
    s.window_passes();
    assert_eq!(s.pushed, (2..=9).collect::<Vec<_>>(), "each seq once, in order");
    // Late live copies of what was filled are duplicates.
    for seq in [2, 4, 8] {
        s.live(seq);
    }
    assert_eq!(s.pushed, (2..=9).collect::<Vec<_>>());
}

#[test]
fn the_plan_reads_only_what_is_missing_before_each_held_message() {
    let held: Held<&str> = [(3, "three"), (4, "four"), (7, "seven")].into_iter().collect();
    assert_eq!(
        close_gaps(1, held),
        vec![
            Step::Fill { after: 1, before: 3 },
            Step::Push("three"),
            Step::Push("four"),
            Step::Fill { after: 4, before: 7 },
            Step::Push("seven")
        ]
    );
}

#[test]
fn held_messages_the_client_got_meanwhile_are_dropped() {
    // A sync delivered up to 5 while 3 and 6 were held.
    let mut order = Order::default();
    order.set_last(C, 1);
    let now = Instant::now();
    assert_eq!(order.offer(C, 3, 3, now, WINDOW), None);
    assert_eq!(order.offer(C, 6, 6, now, WINDOW), None);
    order.advance(C, 5);
    assert_eq!(order.next_held(C), Some(6));
    assert_eq!(order.next_held(C), None);
    assert_eq!(order.next_deadline(), None);
    // And when the window passes instead, the plan skips them.
    let held: Held<i64> = [(3, 3), (6, 6)].into_iter().collect();
    assert_eq!(close_gaps(5, held), vec![Step::Push(6)]);
}

#[test]
fn each_conversation_keeps_its_own_order_and_window() {
    let mut order = Order::default();
    let start = Instant::now();
    order.set_last(C, 0);
    order.set_last(D, 0);
    assert_eq!(order.offer(C, 2, "c2", start, WINDOW), None);
    assert_eq!(order.offer(D, 1, "d1", start, WINDOW), Some("d1"));
    order.advance(D, 1);
    assert_eq!(order.offer(D, 3, "d3", start + WINDOW, WINDOW), None);
    assert_eq!(order.next_held(D), None, "D still misses 2");
    let due = order.due(start + WINDOW);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, C, "only C's window has passed");
    assert_eq!(order.next_deadline(), Some(start + 2 * WINDOW));
    assert_eq!(order.last(C), Some(0));
    assert_eq!(order.last(D), Some(1));
}

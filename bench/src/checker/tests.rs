use std::time::{Duration, Instant};

use super::*;

fn seen(seq: i64, id: &str, client_msg_id: &str) -> Seen {
    Seen { seq, id: id.into(), client_msg_id: client_msg_id.into(), sender_id: "u".into() }
}

fn sender(acks: &[(&str, i64, &str)]) -> SenderLog {
    SenderLog {
        user_id: "u".into(),
        sent: acks.iter().map(|(c, _, _)| c.to_string()).collect(),
        acked: acks.iter().map(|(c, s, i)| (c.to_string(), (*s, i.to_string(), Instant::now()))).collect(),
        other_acks: Vec::new(),
    }
}

/// A reader with live frames on connection 1 and a final view.
fn reader(live: &[(i64, &str, &str)], synced: &[(i64, &str, &str)]) -> ReaderLog {
    let at = Instant::now();
    ReaderLog {
        live: live.iter().map(|(s, i, c)| (1, seen(*s, i, c), at)).collect(),
        synced: synced.iter().map(|(s, i, c)| seen(*s, i, c)).collect(),
        ..ReaderLog::default()
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
    let r = reader(&[(2, "m2", "b"), (1, "m1", "a"), (2, "m2", "b"), (4, "x", "zzz")], &[(1, "m1", "a"), (2, "m2", "b"), (4, "x", "zzz")]);
    let v = check(&[&s], &[&r]);
    assert_eq!(v.lost, 1);
    assert_eq!(v.duplicates, 1);
    assert_eq!(v.unexpected, 2);
    assert_eq!(v.order_errors, 2, "m1 after m2 live, and the gap at 3 in sync");
    assert_eq!(v.label(), "FAILED");
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
    s.acked.insert("b".into(), (2, "m2".into(), sync_started + Duration::from_millis(1)));
    s.sent.insert("b".into());
    let mut r = reader(&[(1, "m1", "a")], &[(1, "m1", "a")]);
    r.sync_started = Some(sync_started);
    let v = check(&[&s], &[&r]);
    assert_eq!((v.lost, v.unchecked, v.label()), (0, 1, "INCOMPLETE"));
    // Acked before the sync began and missing from it: lost.
    r.sync_started = Some(sync_started + Duration::from_secs(1));
    assert_eq!(check(&[&s], &[&r]).label(), "FAILED");
}

#[test]
fn the_overlap_of_a_reconnect_is_not_a_fault() {
    // A resend answered with the same ack, m2 live on connection 1 and again
    // live on connection 2 and in connection 2's resume sync from 1.
    let mut s = sender(&[("a", 1, "m1"), ("b", 2, "m2"), ("c", 3, "m3")]);
    s.other_acks.push(("b".into(), 2, "m2".into()));
    let at = Instant::now();
    let mut r = reader(&[(1, "m1", "a"), (2, "m2", "b")], &[(1, "m1", "a"), (2, "m2", "b"), (3, "m3", "c")]);
    r.live.push((2, seen(2, "m2", "b"), at));
    r.live.push((2, seen(3, "m3", "c"), at));
    r.resumed.push((1, vec![seen(2, "m2", "b"), seen(3, "m3", "c")]));
    let v = check(&[&s], &[&r]);
    assert!(v.clean(), "{v:?}");
}

#[test]
fn a_resend_stored_twice_is_a_duplicate() {
    // The server acked clientMsgId b twice under different seqs.
    let mut s = sender(&[("a", 1, "m1"), ("b", 2, "m2")]);
    s.other_acks.push(("b".into(), 3, "m3".into()));
    let r = reader(&[], &[(1, "m1", "a"), (2, "m2", "b"), (3, "m3", "b")]);
    let v = check(&[&s], &[&r]);
    assert_eq!((v.duplicates, v.lost, v.order_errors), (1, 0, 0), "{v:?}");
}

#[test]
fn an_own_message_pushed_back_to_its_sending_connection_is_a_duplicate() {
    let s = sender(&[("a", 1, "m1")]);
    let mut r = reader(&[], &[(1, "m1", "a")]);
    r.echoes = 1;
    assert_eq!(check(&[&s], &[&r]).duplicates, 1);
}

#[test]
fn a_resume_page_with_a_hole_is_an_order_error() {
    let s = sender(&[("a", 1, "m1"), ("b", 2, "m2"), ("c", 3, "m3")]);
    let mut r = reader(&[], &[(1, "m1", "a"), (2, "m2", "b"), (3, "m3", "c")]);
    r.resumed.push((1, vec![seen(3, "m3", "c")]));
    assert_eq!(check(&[&s], &[&r]).order_errors, 1);
}

#[test]
fn a_message_delivered_live_then_missing_from_the_final_view_is_lost() {
    // Unacked (the ack went with a dead connection) but delivered: it was stored.
    let mut s = sender(&[("a", 1, "m1")]);
    s.sent.insert("b".into());
    let r = reader(&[(1, "m1", "a"), (2, "m2", "b")], &[(1, "m1", "a")]);
    assert_eq!(check(&[&s], &[&r]).lost, 1);
}

//! The fold of a batch's merges per entry ([`Fold`]), without Redis.

use chrono::DateTime;
use duet_common::domain::MessageType;
use duet_common::ids::MessageId;
use uuid::Uuid;

use super::*;

struct Entry {
    user: UserId,
    peer: UserId,
    conversation: ConversationId,
}

const ANN_BOB: Entry =
    Entry { user: UserId(Uuid::from_u128(1)), peer: UserId(Uuid::from_u128(2)), conversation: ConversationId(Uuid::from_u128(10)) };

fn message(seq: i64, to_user: bool) -> Op {
    let (sender_id, receiver_id) = if to_user { (ANN_BOB.peer, ANN_BOB.user) } else { (ANN_BOB.user, ANN_BOB.peer) };
    Op::Message {
        message: Message {
            id: MessageId(Uuid::from_u128(1000 + seq as u128)),
            conversation_id: ANN_BOB.conversation,
            seq,
            sender_id,
            receiver_id,
            kind: MessageType::Text,
            text: Some(format!("m{seq}")),
            payload: None,
            client_msg_id: format!("c{seq}"),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_000_000 + seq).unwrap(),
            reply_to: None,
            edited_at: None,
            edit_count: 0,
            deleted_at: None,
            reactions: None,
            change_seq: None,
            hidden_at: None,
        },
        to_user,
    }
}

fn marker(field: Marker, seq: i64) -> Op {
    Op::Marker { field, seq }
}

fn merges(entry: &Entry, ops: impl IntoIterator<Item = Op>) -> Vec<Merge> {
    ops.into_iter().map(|op| Merge { user: entry.user, peer: entry.peer, conversation: entry.conversation, op }).collect()
}

/// The fold of `ops` into Ann's entry: markers, newest seq, sorted unread seqs, rebuilt.
fn folded(ops: Vec<Op>) -> ([i64; 4], Option<i64>, Vec<i64>, bool) {
    let merges = merges(&ANN_BOB, ops);
    let folds = fold(&merges);
    assert_eq!(folds.len(), 1, "one entry");
    let f = &folds[0];
    let mut unread = f.to_user.clone();
    unread.sort_unstable();
    unread.dedup();
    (f.markers, f.newest.map(|m| m.seq), unread, f.rebuilt)
}

#[test]
fn markers_fold_to_their_maximum_whatever_the_order() {
    let ops = vec![
        marker(Marker::MyRead, 3),
        marker(Marker::PeerDelivered, 7),
        marker(Marker::MyRead, 5),
        marker(Marker::MyRead, 4),
        marker(Marker::PeerDelivered, 2),
        marker(Marker::MyDelivered, 6),
    ];
    let mut reversed = ops.clone();
    reversed.reverse();
    assert_eq!(folded(ops).0, [6, 5, 7, 0], "MyDelivered, MyRead, PeerDelivered, PeerRead (0: no news)");
    assert_eq!(folded(reversed).0, [6, 5, 7, 0]);
}

#[test]
fn only_the_newest_message_is_the_preview_even_when_it_arrives_first() {
    let (_, newest, _, _) = folded(vec![message(5, true), message(3, false), message(4, true)]);
    assert_eq!(newest, Some(5));
    let (_, newest, _, _) = folded(vec![message(3, false), message(4, true), message(5, true)]);
    assert_eq!(newest, Some(5));
}

#[test]
fn unread_seqs_are_the_union_of_messages_to_the_owner_and_a_rebuilds_seqs() {
    let (_, _, unread, rebuilt) = folded(vec![
        message(2, true),
        message(3, false),
        message(4, true),
        message(4, true), // delivered twice
        Op::Rebuilt { unread: vec![1, 2] },
    ]);
    assert_eq!(unread, vec![1, 2, 4], "the owner's own message 3 is never unread");
    assert!(rebuilt);
}

#[test]
fn merges_fold_per_user_and_conversation_in_order_of_first_appearance() {
    let bob_ann = Entry { user: ANN_BOB.peer, peer: ANN_BOB.user, conversation: ANN_BOB.conversation };
    let ann_cat = Entry { user: ANN_BOB.user, peer: UserId(Uuid::from_u128(3)), conversation: ConversationId(Uuid::from_u128(11)) };
    let mut all = merges(&ANN_BOB, [marker(Marker::MyRead, 1)]);
    all.extend(merges(&bob_ann, [marker(Marker::PeerRead, 1)]));
    all.extend(merges(&ann_cat, [Op::Created { at_micros: 42 }]));
    all.extend(merges(&ANN_BOB, [marker(Marker::MyRead, 2)]));
    let folds = fold(&all);
    let keys: Vec<_> = folds.iter().map(|f| (f.user, f.conversation)).collect();
    assert_eq!(
        keys,
        vec![(ANN_BOB.user, ANN_BOB.conversation), (bob_ann.user, bob_ann.conversation), (ann_cat.user, ann_cat.conversation)]
    );
    assert_eq!(folds[0].markers, [0, 2, 0, 0]);
    assert_eq!(folds[2].created_micros, Some(42));
}

#[test]
fn an_entry_with_more_unread_seqs_than_a_piece_holds_is_split_and_only_the_first_piece_carries_the_rest() {
    let rebuilt = Op::Rebuilt { unread: (1..=(SEQS_PER_ENTRY as i64 + 1)).collect() };
    let merges = merges(&ANN_BOB, [marker(Marker::MyRead, 9), message(7, false), rebuilt]);
    let folds = fold(&merges);
    let mut args = Vec::new();
    assert_eq!(folds[0].push_args(&mut args).unwrap(), 2);
    // Per piece: conversation, peer, created, 4 markers, seq, at, json, rebuilt, count, seqs.
    let first = &args[..12 + SEQS_PER_ENTRY];
    let second = &args[12 + SEQS_PER_ENTRY..];
    assert_eq!(first[3..8], ["0", "9", "0", "0", "7"]);
    assert_eq!(first[11], SEQS_PER_ENTRY.to_string());
    assert_eq!(second[3..8], ["0", "0", "0", "0", "0"], "markers and preview once");
    assert_eq!(second[10..], ["1", "1", &(SEQS_PER_ENTRY + 1).to_string()]);
}

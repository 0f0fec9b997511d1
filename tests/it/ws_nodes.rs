//! Gateway: a node killed mid-flow, and a node shut down gracefully.
//!
//! The killed node is the real `duet` binary in a child process, SIGKILLed
//! with no chance to close anything.

use std::collections::{BTreeMap, HashMap};

use duet_common::protocol::ServerKind;

use crate::helpers::TestApp;
use crate::process::DuetProcess;
use crate::ws::{WsClient, seqs};

#[tokio::test]
async fn a_node_killed_while_messages_flow_loses_nothing_acked_and_its_users_go_offline() {
    // A short presence TTL, so the dead node's users lapse within the test.
    let survivor = TestApp::spawn_with(|s| s.presence_ttl_secs = 2).await;
    let ann = survivor.register("Ann").await;
    let bob = survivor.register("Bob").await;
    // Presence is shown to contacts by default (tests/it/privacy.rs); here to everyone.
    survivor.set_presence_visibility(&ann, "everyone").await;
    let conversation = survivor.conversation(&ann, &bob).await;
    let DuetProcess { child: mut doomed, addr: doomed_addr } = DuetProcess::start(&DuetProcess::env_of(&survivor.settings)).await;

    let mut b = WsClient::connect(&survivor, &bob).await;
    b.keep_alive(std::time::Duration::from_millis(500));
    let mut a = WsClient::connect_addr(doomed_addr, &ann).await;
    let ann_online = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(ann_online["status"], "online");
    let mut acked: HashMap<String, (String, i64)> = HashMap::new();
    let mut sent = 0;
    for round in 0..6 {
        for _ in 0..10 {
            sent += 1;
            a.send_message_nowait(conversation, &format!("c{sent}"), &format!("message {sent}")).await;
        }
        if round == 5 {
            break; // these ten are in flight when the node dies
        }
        for _ in 0..10 {
            let ack = a.next_matching(ServerKind::Ack, |_| true).await;
            acked.insert(
                ack["clientMsgId"].as_str().unwrap().into(),
                (ack["messageId"].as_str().unwrap().into(), ack["seq"].as_i64().unwrap()),
            );
        }
    }
    doomed.start_kill().expect("SIGKILL sent");
    let (frames, close) = a.drain_until_gone().await;
    assert_eq!(close, None, "a killed node sends no close");
    for (kind, ack) in frames.iter().filter(|(kind, _)| kind == ServerKind::Ack.as_str()) {
        assert_eq!(kind, ServerKind::Ack.as_str());
        acked
            .insert(ack["clientMsgId"].as_str().unwrap().into(), (ack["messageId"].as_str().unwrap().into(), ack["seq"].as_i64().unwrap()));
    }
    doomed.wait().await.unwrap();
    assert!(acked.len() >= 50, "at least the first 50 were acked");
    // Nobody closed Ann's session: the surviving node's sweeper notices her presence lapse.
    let ann_offline = b.next_matching(ServerKind::PresenceUpdate, |u| u["userId"] == ann.id.to_string()).await;
    assert_eq!(ann_offline["status"], "offline");

    // Ann reconnects to the surviving node; Bob syncs from the start.
    let mut a = WsClient::connect(&survivor, &ann).await;
    a.keep_alive(std::time::Duration::from_millis(500));
    a.sync(serde_json::json!({})).await;
    let synced = b.sync_conversation(conversation, 0, 100).await;
    let stored: BTreeMap<i64, (String, String)> = synced
        .iter()
        .map(|m| (m["seq"].as_i64().unwrap(), (m["clientMsgId"].as_str().unwrap().into(), m["id"].as_str().unwrap().into())))
        .collect();
    assert_eq!(stored.len(), synced.len(), "no seq twice");
    assert_eq!(seqs(&synced), (1..=synced.len() as i64).collect::<Vec<_>>(), "no gaps, in order");
    for (client_msg_id, (message_id, seq)) in &acked {
        assert_eq!(stored.get(seq), Some(&(client_msg_id.clone(), message_id.clone())), "acked {client_msg_id} missing or changed");
    }
    println!("{} acked before the kill, {} stored", acked.len(), synced.len());
}

#[tokio::test]
async fn a_graceful_shutdown_finishes_in_flight_sends_then_closes_1012() {
    let survivor = TestApp::spawn().await;
    let node = survivor.spawn_peer().await;
    let ann = survivor.register("Ann").await;
    let bob = survivor.register("Bob").await;
    let conversation = survivor.conversation(&ann, &bob).await;
    let mut a = WsClient::connect(&node, &ann).await;
    a.send_message(conversation, "before").await;
    for i in 0..20 {
        a.send_message_nowait(conversation, &format!("in-flight-{i}"), "during shutdown").await;
    }
    let stopping = tokio::spawn(node.stop());
    let (frames, close) = a.drain_until_gone().await;
    assert_eq!(close, Some(1012));
    stopping.await.unwrap();
    let acks: Vec<i64> = frames.iter().filter(|(k, _)| k == ServerKind::Ack.as_str()).map(|(_, d)| d["seq"].as_i64().unwrap()).collect();
    assert_eq!(acks, (2..2 + acks.len() as i64).collect::<Vec<_>>(), "acks in order, none skipped");
    let stored: i64 = sqlx::query_scalar("select count(*) from messages where conversation_id = $1")
        .bind(conversation)
        .fetch_one(&survivor.db)
        .await
        .unwrap();
    assert_eq!(stored, 1 + acks.len() as i64, "every stored send was acked; nothing half-done");
}

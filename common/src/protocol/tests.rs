//! The protocol tables against themselves and against serde.

use super::*;
use crate::domain::MessageType;
use crate::error::ErrorCode;
use crate::ids::{ConversationId, MessageId, UserId};

#[test]
fn every_client_kind_parses_by_its_wire_name_and_others_do_not() {
    for kind in ClientKind::ALL {
        assert_eq!(ClientKind::from_wire(kind.as_str()), Some(*kind));
        let err = ClientEvent::parse(kind.as_str(), Some(serde_json::json!({"bogus": []}))).err();
        assert!(!matches!(err, Some(ParseError::UnknownType(_))), "{kind:?} is listed but not handled");
    }
    assert!(matches!(ClientEvent::parse("chat.nope", None), Err(ParseError::UnknownType(_))));
    assert_eq!(ClientEvent::parse(ClientKind::Ping.as_str(), None).unwrap(), ClientEvent::Ping(PingData {}));
    assert_eq!(ClientEvent::parse(ClientKind::Sync.as_str(), Some(Value::Null)).unwrap(), ClientEvent::Sync(SyncIn::default()));
}

#[test]
fn every_example_parses_into_its_variant() {
    for kind in ClientKind::ALL {
        for data in examples::client(*kind) {
            let event = ClientEvent::from_data(*kind, data.clone()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(event.kind(), *kind);
        }
    }
    for kind in ServerKind::ALL {
        for data in examples::server(*kind) {
            let event = ServerEvent::from_data(*kind, data.clone()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(event.kind(), *kind);
            assert_eq!(serde_json::to_value(&event).unwrap()["data"], data, "{kind:?} example is not as the server writes it");
        }
    }
}

#[test]
fn a_server_frame_is_type_ts_data_and_decodes_back() {
    let error = ServerEvent::Error(ErrorData { reference: None, code: ErrorCode::InvalidJson, message: "no".into(), retry_after_ms: None });
    let text = error.encode();
    assert!(text.starts_with(r#"{"type":"error","ts":"#), "{text}");
    assert!(text.ends_with(r#","data":{"code":"invalid_json","message":"no"}}"#), "{text}");
    let frame: ServerFrame = serde_json::from_str(&text).unwrap();
    assert_eq!(frame.event, error);
}

#[test]
fn the_borrowed_message_frame_is_the_event_frame() {
    let message = Message {
        id: MessageId::new(),
        conversation_id: ConversationId::new(),
        seq: 3,
        sender_id: UserId::new(),
        receiver_id: UserId::new(),
        kind: MessageType::Text,
        text: Some("hi".into()),
        payload: None,
        client_msg_id: "c-1".into(),
        created_at: Utc::now(),
        reply_to: None,
        edited_at: None,
        edit_count: 0,
        deleted_at: None,
        reactions: None,
        change_seq: None,
        hidden_at: None,
    };
    let text = message_frame(&message);
    assert!(!text.contains("null"), "absent fields are omitted: {text}");
    let frame: ServerFrame = serde_json::from_str(&text).unwrap();
    assert_eq!(frame.event, ServerEvent::Message(NewMessageData { message: message.clone() }));
    let owned: Value = serde_json::from_str(&ServerEvent::Message(NewMessageData { message }).encode()).unwrap();
    let borrowed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(owned["data"], borrowed["data"]);
}

#[test]
fn a_client_frame_round_trips() {
    let frame = ClientFrame {
        id: Some("f1".into()),
        ts: None,
        event: ClientEvent::Typing(TypingIn { conversation_id: ConversationId::default(), state: TypingState::Stop }),
    };
    let text = frame.encode();
    let envelope: RawClientFrame = serde_json::from_str(&text).unwrap();
    assert_eq!(envelope.kind, ClientKind::Typing.as_str());
    assert_eq!(serde_json::from_str::<ClientFrame>(&text).unwrap(), frame);
}

//! Parsing and serializing the protocol's messages.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::hub::{PresenceList, Record};

fn parse_err(text: &str) -> RequestError {
    Request::parse(text).unwrap_err()
}

fn epoch() -> Epoch {
    Epoch::from_u64(0xfeed)
}

#[test]
fn subscribe_parses_with_and_without_since() {
    let Request::Subscribe { id, topic, since } =
        Request::parse(r#"{"type":"subscribe","id":1,"topic":"prices.*"}"#).unwrap()
    else {
        panic!("not a subscribe")
    };
    assert_eq!(
        (id, topic.as_str(), since),
        (Some(RequestId::Number(1)), "prices.*", None)
    );

    let text = r#"{"type":"subscribe","id":"a","topic":"t","since":{"epoch":"000000000000feed","offset":7}}"#;
    let Request::Subscribe { since, .. } = Request::parse(text).unwrap() else {
        panic!()
    };
    assert_eq!(
        since,
        Some(Since::Position(Position {
            epoch: epoch(),
            offset: 7
        }))
    );

    let text = r#"{"type":"subscribe","topic":"p.*","since":{"p.a":{"epoch":"000000000000feed","offset":1},"p.b":{"epoch":"000000000000feed","offset":2}}}"#;
    let Request::Subscribe { since, .. } = Request::parse(text).unwrap() else {
        panic!()
    };
    let Some(Since::Topics(map)) = since else {
        panic!("not a map")
    };
    assert_eq!(map.len(), 2);
    assert_eq!(map["p.b"].offset, 2);
}

#[test]
fn a_bad_since_names_the_problem() {
    let e =
        parse_err(r#"{"type":"subscribe","id":3,"topic":"t","since":{"epoch":"nope","offset":1}}"#);
    assert_eq!(e.id, Some(RequestId::Number(3)));
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.reason.contains("since"), "{}", e.reason);
    let e = parse_err(r#"{"type":"subscribe","topic":"p.*","since":{"p.a":5}}"#);
    assert!(e.reason.contains("since.p.a"), "{}", e.reason);
}

#[test]
fn publish_keeps_data_verbatim_including_null() {
    let text = r#"{"type":"publish","id":9,"topic":"chat.room1","data":{"text": "hi", "n": [1, 2.50]},"key":"k"}"#;
    let Request::Publish {
        id,
        topic,
        data,
        key,
    } = Request::parse(text).unwrap()
    else {
        panic!()
    };
    assert_eq!(id, Some(RequestId::Number(9)));
    assert_eq!(topic, "chat.room1");
    assert_eq!(data.get(), r#"{"text": "hi", "n": [1, 2.50]}"#);
    assert_eq!(key.as_deref(), Some("k"));

    let Request::Publish { data, .. } =
        Request::parse(r#"{"type":"publish","topic":"t","data":null}"#).unwrap()
    else {
        panic!()
    };
    assert_eq!(data.get(), "null");
    let e = parse_err(r#"{"type":"publish","id":"x","topic":"t"}"#);
    assert_eq!(
        (e.id, e.code),
        (Some(RequestId::Text("x".into())), ErrorCode::BadRequest)
    );
    assert!(e.reason.contains("data"));
}

#[test]
fn malformed_requests_are_errors_that_echo_the_id_when_readable() {
    let e = parse_err("{not json");
    assert_eq!((e.id, e.code), (None, ErrorCode::MalformedJson));
    let e = parse_err(r#"{"type":"dance","id":4}"#);
    assert_eq!(
        (e.id.clone(), e.code),
        (Some(RequestId::Number(4)), ErrorCode::UnknownType)
    );
    assert!(e.reason.contains("\"dance\""));
    let e = parse_err(r#"{"type":"subscribe","id":5}"#);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.reason.contains("topic"));
    let e = parse_err(r#"{"type":"subscribe","id":6,"topic":"t","colour":1}"#);
    assert_eq!(
        (e.id.clone(), e.code),
        (Some(RequestId::Number(6)), ErrorCode::BadRequest)
    );
    assert!(e.reason.contains("colour"), "{}", e.reason);
    let e = parse_err(
        r#"{"type":"unsubscribe","id":7,"topic":"t","since":{"epoch":"000000000000feed","offset":1}}"#,
    );
    assert!(
        e.reason.contains("unsubscribe does not take \"since\""),
        "{}",
        e.reason
    );
    let e = parse_err(r#"{"type":"subscribe","topic":"t","data":1}"#);
    assert!(e.reason.contains("\"data\""));
    let e = parse_err(r#"{"id":8,"topic":"t"}"#);
    assert_eq!(e.id, Some(RequestId::Number(8)));
    let e = parse_err(r#"[1,2]"#);
    assert_eq!((e.id, e.code), (None, ErrorCode::BadRequest));
    let long = format!(
        r#"{{"type":"unsubscribe","id":"{}","topic":"t"}}"#,
        "i".repeat(200)
    );
    assert_eq!(parse_err(&long).id, None);
    let long_key = format!(
        r#"{{"type":"publish","topic":"t","data":1,"key":"{}"}}"#,
        "k".repeat(300)
    );
    assert!(parse_err(&long_key).reason.contains("key"));
}

#[test]
fn requests_round_trip_through_to_json() {
    let requests = [
        r#"{"type":"subscribe","id":1,"topic":"a.*","since":{"a.b":{"epoch":"000000000000feed","offset":3}}}"#,
        r#"{"type":"subscribe","id":"s","topic":"a","since":{"epoch":"000000000000feed","offset":3}}"#,
        r#"{"type":"unsubscribe","topic":"a"}"#,
        r#"{"type":"publish","id":2,"topic":"a","data":{"x":[1,true,null]},"key":"k"}"#,
        r#"{"type":"presence","id":3,"topic":"chat.lobby"}"#,
    ];
    for text in requests {
        let request = Request::parse(text).unwrap();
        assert_eq!(request.to_json(), text);
    }
}

#[test]
fn server_messages_serialize_as_documented() {
    let mut topics = BTreeMap::new();
    topics.insert(
        "prices.AAPL".to_owned(),
        TopicStatus {
            epoch: epoch(),
            offset: 42,
            recovered: Some(true),
        },
    );
    let ack = ServerMessage::Ack(Ack::subscribed(Some(RequestId::Number(1)), topics));
    assert_eq!(
        serde_json::to_value(&ack).unwrap(),
        json!({"type": "ack", "id": 1, "topics": {"prices.AAPL": {"epoch": "000000000000feed", "offset": 42, "recovered": true}}})
    );
    let published = Position {
        epoch: epoch(),
        offset: 5,
    };
    let ack = ServerMessage::Ack(Ack::published(None, "t".into(), published));
    assert_eq!(
        ack.to_string(),
        r#"{"type":"ack","topic":"t","epoch":"000000000000feed","offset":5}"#
    );
    assert_eq!(
        ServerMessage::Ack(Ack::unsubscribed(Some(RequestId::Text("u".into())))).to_string(),
        r#"{"type":"ack","id":"u"}"#
    );
    let error = RequestError::new(None, ErrorCode::Forbidden, "no").to_reply();
    assert_eq!(
        error.to_string(),
        r#"{"type":"error","code":"forbidden","reason":"no"}"#
    );
}

#[test]
fn presence_parses_takes_only_a_topic_and_its_ack_lists_the_clients() {
    let Request::Presence { id, topic } =
        Request::parse(r#"{"type":"presence","id":"p","topic":"chat.lobby"}"#).unwrap()
    else {
        panic!("not a presence request")
    };
    assert_eq!(
        (id, topic.as_str()),
        (Some(RequestId::Text("p".into())), "chat.lobby")
    );
    let e = parse_err(r#"{"type":"presence","id":1}"#);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.reason.contains("presence needs \"topic\""),
        "{}",
        e.reason
    );
    let e = parse_err(r#"{"type":"presence","topic":"t","data":1}"#);
    assert!(
        e.reason.contains("presence does not take \"data\""),
        "{}",
        e.reason
    );
    assert!(parse_err(r#"{"type":"dance"}"#).reason.contains("presence"));

    let list = PresenceList {
        count: 3,
        clients: vec![
            PresenceEntry::new("00000000000000aa-1", Some("alice")),
            PresenceEntry::new("00000000000000bb-7", None),
        ],
    };
    let ack = ServerMessage::Ack(Ack::presence(
        Some(RequestId::Number(4)),
        "chat.lobby".into(),
        list,
    ));
    assert_eq!(
        serde_json::to_value(&ack).unwrap(),
        json!({"type": "ack", "id": 4, "topic": "chat.lobby", "count": 3, "truncated": true,
               "clients": [{"client": "00000000000000aa-1", "user": "alice"},
                           {"client": "00000000000000bb-7"}]})
    );
    let ServerMessage::Ack(parsed) = ServerMessage::parse(&ack.to_string()).unwrap() else {
        panic!()
    };
    assert_eq!((parsed.count, parsed.truncated), (Some(3), true));
    assert_eq!(parsed.clients.unwrap()[0].user.as_deref(), Some("alice"));
    let whole = Ack::presence(None, "t".into(), PresenceList::default());
    assert_eq!(
        ServerMessage::Ack(whole).to_string(),
        r#"{"type":"ack","topic":"t","count":0,"clients":[]}"#
    );
    let disabled = RequestError::new(None, ErrorCode::PresenceDisabled, "no").to_reply();
    assert_eq!(
        disabled.to_string(),
        r#"{"type":"error","code":"presence_disabled","reason":"no"}"#
    );
}

#[test]
fn server_messages_parse_back() {
    let ack = ServerMessage::Ack(Ack::published(
        Some(RequestId::Number(3)),
        "t".into(),
        Position {
            epoch: epoch(),
            offset: 5,
        },
    ));
    let ServerMessage::Ack(parsed) = ServerMessage::parse(&ack.to_string()).unwrap() else {
        panic!()
    };
    assert_eq!(parsed.offset, Some(5));
    let error = RequestError::new(Some(RequestId::Number(1)), ErrorCode::NotSubscribed, "x");
    let ServerMessage::Error(parsed) = ServerMessage::parse(&error.to_reply().to_string()).unwrap()
    else {
        panic!()
    };
    assert_eq!(parsed.code, ErrorCode::NotSubscribed);
    assert!(ServerMessage::parse(r#"{"type":"party"}"#).is_err());
    assert!(ServerMessage::parse(r#"{"type":"ack","bogus":1}"#).is_err());
}

#[test]
fn the_hubs_envelope_parses_as_a_delivery() {
    let record = Arc::new(Record::new(
        "prices.AAPL".into(),
        Position {
            epoch: epoch(),
            offset: 12,
        },
        Some("AAPL".into()),
        1_700_000_000_000,
        Bytes::from_static(br#"{"bid":1.25}"#),
    ));
    let frame = record.frame().as_bytes();
    // The frame is a single unmasked text frame with a 7- or 16-bit length.
    let header = if frame[1] == 126 { 4 } else { 2 };
    let text = std::str::from_utf8(&frame[header..]).unwrap();
    let ServerMessage::Message(delivery) = ServerMessage::parse(text).unwrap() else {
        panic!("not a message: {text}")
    };
    assert_eq!(delivery.topic, "prices.AAPL");
    assert_eq!(delivery.position(), record.position());
    assert_eq!(delivery.key.as_deref(), Some("AAPL"));
    assert_eq!(delivery.ts, 1_700_000_000_000);
    assert_eq!(delivery.data.get(), r#"{"bid":1.25}"#);
    let again = ServerMessage::parse(&ServerMessage::Message(delivery).to_string()).unwrap();
    assert!(matches!(again, ServerMessage::Message(d) if d.offset == 12));
}

//! Lent events: the same events, output and states as `poll_event`, whatever the input.

use std::ops::ControlFlow;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::close::CloseFrame;
use crate::config::Config;
use crate::connection::tests::{deflate_params, take_output};
use crate::connection::{Connection, SendOptions, State};
use crate::deflate::DeflateParams;
use crate::error::SendError;

fn client(deflate: Option<DeflateParams>) -> Connection {
    let mut n = 7u32;
    Connection::client(Config::default(), deflate, move || {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
        n.to_be_bytes()
    })
}

fn server(deflate: Option<DeflateParams>) -> Connection {
    Connection::server(Config::default(), deflate)
}

/// How a test consumes events.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// `poll_event`.
    Owned,
    /// `for_each_ref`, copying each event out.
    Batch,
    /// `for_each_ref` breaking at every event, which `take_lent` then takes.
    BreakAndTake,
}

/// Every event the connection yields for `input`, fed in the pieces `cuts` makes, read the
/// `reader` way, as owned messages; then what it queued and where it ended.
type Outcome = (Vec<Result<Message, ProtocolError>>, Vec<u8>, State, bool);

fn run(reader: Reader, deflate: Option<DeflateParams>, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut s = server(deflate);
    let mut events = Vec::new();
    let mut points = cuts.to_vec();
    points.extend([0, input.len()]);
    points.sort_unstable();
    for w in points.windows(2) {
        s.receive(&input[w[0]..w[1]]);
        match reader {
            Reader::Owned => events.extend(std::iter::from_fn(|| s.poll_event())),
            Reader::BreakAndTake => loop {
                match s.for_each_ref(|_, _| ControlFlow::Break(())) {
                    Ok(ControlFlow::Break(())) => events.push(Ok(s.take_lent().expect("lent"))),
                    Ok(ControlFlow::Continue(())) => break,
                    Err(e) => {
                        events.push(Err(e));
                        break;
                    }
                }
            },
            Reader::Batch => {
                let result = s.for_each_ref(|message, _| {
                    events.push(Ok(message.to_message()));
                    ControlFlow::Continue(())
                });
                match result {
                    Ok(flow) => assert_eq!(flow, ControlFlow::Continue(())),
                    Err(e) => events.push(Err(e)),
                }
            }
        }
    }
    let out = take_output(&mut s);
    (events, out, s.state(), s.has_failed())
}

/// Frames a client would send: messages of every kind, fragmented or not, compressed or not,
/// with control frames between them.
fn wire(
    deflate: Option<DeflateParams>,
    msgs: &[(u8, Vec<u8>, usize, bool)],
    close: bool,
) -> Vec<u8> {
    let mut c = client(deflate);
    for (kind, data, fragment, compress) in msgs {
        let options = SendOptions {
            compress: *compress,
            fragment_size: (*fragment < 300).then_some(*fragment),
        };
        let msg = match kind % 4 {
            0 => Message::text(String::from_utf8_lossy(data).into_owned()),
            1 => Message::binary(data.clone()),
            2 => Message::Ping(Bytes::copy_from_slice(&data[..data.len().min(125)])),
            _ => Message::Pong(Bytes::copy_from_slice(&data[..data.len().min(125)])),
        };
        c.send_with(msg, options).unwrap();
    }
    if close {
        c.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
            .unwrap();
    }
    take_output(&mut c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    // Whatever arrives, split anywhere, and whatever breaks on the way (a byte changed), the
    // three ways to read give the same events, the same answers and the same end.
    #[test]
    fn lent_and_owned_events_agree(
        msgs in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..400), 1usize..400, any::<bool>()),
            0..8,
        ),
        close in any::<bool>(),
        compress in any::<bool>(),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let deflate = compress.then(deflate_params);
        let mut input = wire(deflate, &msgs, close);
        if let Some((at, byte)) = corrupt && !input.is_empty() {
            let i = at.index(input.len());
            input[i] ^= byte;
        }
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        let owned = run(Reader::Owned, deflate, &input, &cuts);
        prop_assert_eq!(&run(Reader::BreakAndTake, deflate, &input, &cuts), &owned);
        prop_assert_eq!(&run(Reader::Batch, deflate, &input, &cuts), &owned);
    }
}

#[test]
fn an_echo_from_the_lent_bytes_is_the_echo_of_the_owned_message() {
    for deflate in [None, Some(deflate_params())] {
        let msgs = [
            (0, b"hello".to_vec(), 400, true),
            (1, vec![9; 3000], 400, true),
            (1, vec![1; 5000], 700, false),
            (2, b"ping".to_vec(), 400, false),
            (0, "tether ".repeat(100).into_bytes(), 50, true),
        ];
        let input = wire(deflate, &msgs, false);

        let mut owned = server(deflate);
        owned.receive(&input);
        while let Some(event) = owned.poll_event() {
            let msg = event.unwrap();
            if msg.is_data() {
                owned.send(msg).unwrap();
            }
        }

        let mut lent = server(deflate);
        lent.receive(&input);
        let flow = lent
            .for_each_ref(|message, sender| {
                if message.is_data() {
                    sender.send_ref(message).unwrap();
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(flow, ControlFlow::Continue(()));
        assert_eq!(take_output(&mut lent), take_output(&mut owned));
    }
}

#[test]
fn a_break_leaves_the_event_lent_and_the_rest_buffered() {
    let input = wire(
        None,
        &[
            (0, b"one".to_vec(), 400, false),
            (1, vec![2; 4000], 400, false),
            (0, b"three".to_vec(), 400, false),
        ],
        false,
    );
    let mut s = server(None);
    s.receive(&input);
    let mut seen = Vec::new();
    let flow = s
        .for_each_ref(|message, _| {
            seen.push(message.payload().len());
            if message.payload().len() > 100 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(flow, ControlFlow::Break(()));
    assert_eq!(seen, [3, 4000]);
    assert!(
        s.has_buffered_input(),
        "the third message is still buffered"
    );
    assert_eq!(s.take_lent(), Some(Message::binary(vec![2; 4000])));
    assert_eq!(s.take_lent(), None, "taken once");
    assert_eq!(s.poll_event(), Some(Ok(Message::text("three"))));
    assert_eq!(s.poll_event(), None);
    assert!(!s.has_buffered_input());
}

/// The first buffered event, lent to `check` (the handler then breaks).
fn first_lent(conn: &mut Connection, check: impl FnOnce(MessageRef<'_>, &mut Sender<'_>)) {
    let mut check = Some(check);
    let flow = conn.for_each_ref(|message, sender| {
        (check.take().expect("called once"))(message, sender);
        ControlFlow::Break(())
    });
    assert_eq!(flow, Ok(ControlFlow::Break(())));
}

#[test]
fn a_loan_ends_at_the_next_poll_or_receive() {
    let input = wire(
        None,
        &[
            (1, b"ab".to_vec(), 400, false),
            (1, b"cd".to_vec(), 400, false),
        ],
        false,
    );
    let mut s = server(None);
    s.receive(&input);
    first_lent(&mut s, |message, _| {
        assert_eq!(message, MessageRef::Binary(b"ab"))
    });
    // Not taken: the next poll ends the loan and moves on.
    first_lent(&mut s, |message, _| {
        assert_eq!(message, MessageRef::Binary(b"cd"))
    });
    // New input ends it too; nothing is lent afterwards.
    s.receive(&wire(None, &[(0, b"ef".to_vec(), 400, false)], false));
    assert_eq!(s.take_lent(), None);
    assert_eq!(s.poll_event(), Some(Ok(Message::text("ef"))));
}

#[test]
fn a_ping_is_answered_and_a_close_replied_to_while_lent() {
    let mut s = server(None);
    let mut input = wire(None, &[(2, b"hi".to_vec(), 400, false)], true);
    input.extend(wire(None, &[(0, b"after".to_vec(), 400, false)], false));
    s.receive(&input);
    let mut seen = Vec::new();
    let flow = s.for_each_ref(|message, _| {
        seen.push(message.to_message());
        ControlFlow::Continue(())
    });
    assert_eq!(flow, Ok(ControlFlow::Continue(())));
    assert_eq!(
        seen,
        [
            Message::Ping(Bytes::from_static(b"hi")),
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))),
        ],
        "nothing after the close"
    );
    let out = take_output(&mut s);
    // RFC 6455 §5.5.2 and §5.5.1: a pong with the ping's data, then the close reply.
    assert_eq!(&out[..4], &[0x8a, 2, b'h', b'i']);
    assert_eq!(&out[4..], &[0x88, 2, 0x03, 0xe8]);
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn a_lent_close_reads_back_as_a_close_frame_ref() {
    let mut s = server(None);
    s.receive(&wire(None, &[], true));
    first_lent(&mut s, |message, sender| {
        assert_eq!(
            message,
            MessageRef::Close(Some(CloseFrameRef {
                code: CloseCode::NORMAL,
                reason: "bye",
            }))
        );
        assert_eq!(message.payload(), b"bye");
        // Closed: the reply to the close is queued, and nothing more may be sent.
        assert_eq!(sender.send_text("late"), Err(SendError::Closed));
    });
    assert_eq!(
        s.take_lent(),
        Some(Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "bye"
        ))))
    );
}

#[test]
fn bad_text_fails_with_1007_after_the_events_before_it() {
    let mut input = wire(None, &[(1, b"ok".to_vec(), 400, false)], false);
    // A text frame, masked with a zero key, that is not UTF-8 (RFC 6455 §8.1).
    input.extend([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]);
    let mut s = server(None);
    s.receive(&input);
    let mut seen = 0;
    let result = s.for_each_ref(|_, _| {
        seen += 1;
        ControlFlow::Continue(())
    });
    assert_eq!(result, Err(ProtocolError::InvalidUtf8));
    assert_eq!(seen, 1);
    let out = take_output(&mut s);
    assert_eq!(out[0], 0x88);
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1007);
    assert_eq!(
        s.for_each_ref(|_, _| ControlFlow::Continue(())),
        Ok(ControlFlow::Continue(()))
    );
}

#[test]
fn the_sender_checks_what_connection_send_checks() {
    let config = Config {
        max_outbound_buffer: 10,
        ..Config::default()
    };
    let mut s = Connection::server(config, None);
    s.receive(&wire(None, &[(1, b"x".to_vec(), 400, false)], false));
    first_lent(&mut s, |_, sender| {
        assert_eq!(
            sender.send_ref(MessageRef::Ping(&[0; 126])),
            Err(SendError::ControlFrameTooLong(126))
        );
        sender.send_binary(&[1; 20]).unwrap();
        assert_eq!(sender.pending_transmit(), 22);
        // `max_outbound_buffer` bytes are queued: the queue is full.
        assert_eq!(sender.send_text("more"), Err(SendError::Full));
        assert_eq!(
            sender.send_ref(MessageRef::Close(Some(CloseFrameRef {
                code: CloseCode(1005),
                reason: "",
            }))),
            Err(SendError::InvalidCloseCode(1005))
        );
        sender
            .send_ref(MessageRef::Close(Some(CloseFrameRef {
                code: CloseCode::GOING_AWAY,
                reason: "later",
            })))
            .unwrap();
    });
    assert_eq!(s.state(), State::CloseSent);
    let mut s2 = Connection::server(Config::default(), None);
    s2.receive(&wire(None, &[(1, b"x".to_vec(), 400, false)], false));
    first_lent(&mut s2, |_, sender| {
        sender
            .send_with(
                Message::binary(vec![3; 5000]),
                SendOptions::fragmented(2048),
            )
            .unwrap();
    });
    let out = take_output(&mut s2);
    // Three frames: binary, continuation, final continuation (RFC 6455 §5.4).
    assert_eq!(out[0], 0x02);
    assert_eq!(out.len(), 5000 + 3 * 4);
}

#[test]
fn a_reassembled_compressed_message_is_lent_inflated() {
    let deflate = Some(deflate_params());
    let text = "squeeze ".repeat(300);
    let input = wire(deflate, &[(0, text.clone().into_bytes(), 100, true)], false);
    let mut s = server(deflate);
    s.receive(&input);
    first_lent(&mut s, |message, _| {
        assert_eq!(message, MessageRef::Text(&text))
    });
    assert_eq!(s.take_lent(), Some(Message::text(text)));
}

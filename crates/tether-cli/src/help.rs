//! The long help of the client commands: examples, and the exit status table.

/// `tether --help`: examples.
pub const MAIN_EXAMPLES: &str = "\
Examples:
  tether serve                                   # gateway on http://127.0.0.1:8080/
  tether connect ws://127.0.0.1:8080/echo        # type lines, see them echoed
  tether sub ws://127.0.0.1:8080/ws 'stocks.*'   # follow topics
  tether pub ws://127.0.0.1:8080/ws news.local '{\"headline\": \"hi\"}'

Run `tether help COMMAND` for a command's options and examples.";

/// `tether connect --help`: examples, behaviour, exit statuses.
pub const CONNECT_HELP: &str = concat!(
    "\
Examples:
  tether connect ws://127.0.0.1:8080/echo
  echo hello | tether connect ws://127.0.0.1:8080/echo          # prints hello, exits 0
  printf '\\x00\\xff' | tether connect --binary ws://127.0.0.1:8080/echo   # prints 00ff
  tether connect -v -H 'Cookie: session=1' --origin https://example.com wss://example.com/live
  tether connect --subprotocol tether.pubsub.v1 ws://127.0.0.1:8080/ws
  tether connect --listen-tcp 127.0.0.1:6380 ws://gateway:8080/bridge/redis
      then: redis-cli -p 6380 PING

When stdin is not a terminal, tether reads it to the end, sends --close (1000 by default),
waits for the server's close and exits with a status that tells how the connection ended.
With -n N it closes after receiving N messages instead, for servers that drop their replies
once they see a close. Ctrl-C sends close 1001 and waits for the server's reply.
Received text messages are printed one per line; binary ones as hex or base64
(--show-binary). -v prints the handshake as sent and received, and every frame header on
the wire (frames, not messages: a fragmented message shows each fragment; compressed ones
show rsv1=1 and their compressed length).

--listen-tcp carries each TCP connection accepted on ADDR over its own WebSocket (binary
messages, subprotocol \"binary\" unless --subprotocol is given), with flow control both
ways. The client's EOF sends close 1000 and ends the session both ways (WebSocket has no
half-close); the server's close 1000 ends the TCP connection with EOF, other codes reset it.

",
    "Exit status:
  0  closed normally: the server closed with 1000 (normal) or 1001 (going away) or without
     a code, or it answered the close that tether sent at the end of stdin
  1  another error: unreadable --ca file, local I/O error, invalid input on stdin
  2  usage error: unknown option, bad value
  3  the server closed with another code (1008 policy, 1011 server error, 4000-4999...)
  4  connection lost: closed without a closing handshake (1006), broken protocol, no answer
     to pings within three --ping-interval, or no answer to our close in time
  5  handshake refused: the server answered with an HTTP status other than 101 (printed
     with the response body), or with an invalid handshake
  6  cannot connect: the host name does not resolve, no TCP connection to its addresses,
     or not open within --connect-timeout
  7  TLS failed: certificate not trusted, expired or not valid for the host; or no TLS"
);

/// `tether pub --help`.
pub const PUB_HELP: &str = "\
Examples:
  tether pub ws://127.0.0.1:8080/ws news.local '{\"headline\": \"hello\"}'
  tether pub ws://127.0.0.1:8080/ws news.local 'plain text goes as a JSON string'
  seq 1 100 | tether pub --token \"$TOKEN\" ws://127.0.0.1:8080/ws counter.test

Each message waits for the server's ack; refusals (forbidden, invalid_topic, too_large...)
are printed with the message number, and the exit status is then 8. Other statuses as for
`tether connect`: 5 refused handshake, 6 cannot connect, 7 TLS, 4 connection lost.";

/// `tether sub --help`.
pub const SUB_HELP: &str = "\
Examples:
  tether sub ws://127.0.0.1:8080/ws news.local
  tether sub --json ws://127.0.0.1:8080/ws 'stocks.*' scores.final
  tether sub --since 8f3a1c0b2e7d4a51:42 -n 10 ws://127.0.0.1:8080/ws news.local

One line per message: its data (a JSON string as its text); --json prints the whole
envelope with topic, epoch and offset. After a lost connection tether reconnects with
backoff (0.1 s doubling up to --max-backoff) and resumes every topic after the last message
printed: no gap and no duplicate while the gateway's history reaches back (gaps and reset
histories are reported on stderr). A refused handshake (4xx) or subscribe is not retried:
exit 5 or 8.";

/// `tether bench --help`: the workloads, the output, how to read it.
pub const BENCH_HELP: &str = "\
Examples:
  tether bench echo --url ws://127.0.0.1:8080/echo -c 64 --size 16 --in-flight 16 --duration 10s
  tether bench echo --url ws://127.0.0.1:8080/echo -c 16 --size 65536 --request-response --json
  tether bench connect --url ws://127.0.0.1:8080/echo -c 16 --duration 10s
  tether bench idle --url ws://127.0.0.1:8080/echo -n 10000 --sources 127.0.0.1-127.0.0.16 \\
      --server-pid \"$(pidof tether)\"
  tether bench fanout --url ws://127.0.0.1:8080/ws -n 10000 --topic bench --rate 100

Workloads:
  echo     -c connections each keep --in-flight messages in flight; every echo is checked
           (opcode, length, every byte); latency from send to echo. --deflate offers
           permessage-deflate and runs on the tether client instead of the raw one: heavier
           per message, so watch load_bound. With --server-pid, the server's CPU time in
           the measured window, as a share of it and per echoed message: it compares
           servers also when the load tool is the bottleneck.
  connect  -c connectors each open a connection, complete the opening and closing
           handshakes and start again; latency of the opening handshake.
  idle     opens -n connections (over the --sources addresses, so past one ephemeral port
           range), holds them for --hold, and with --server-pid reports the server's RSS
           (VmRSS) before and after, and the bytes per connection. Refused handshakes count
           as errors: `tether serve` allows 256 connections per source address by default
           (limits.max_connections_per_ip; or spread them with --sources).
  fanout   -n subscribers on a tether.pubsub.v1 route, one publisher at --rate per second
           (over a WebSocket on --url, or the HTTP API with --publish-url); latency from
           publish to delivery from a timestamp in the payload; drops are missing offsets
           (and deliveries not in by --settle), so nothing else may publish to the topic
           meanwhile. MB/s counts the whole delivered messages (envelope and data). With
           --server-pid, the server's CPU time from the first publish on, per delivery.

Every run reports messages/s, MB/s of payload (MB = 10^6 bytes), latency p50/p99/p999/max
(HDR histogram, microseconds), errors and drops; --json prints one object on stdout. A
progress line goes to stderr once a second (not with --json when stderr is no terminal).

The raw client writes frames built and masked once per connection with a fixed masking
key (6b 3e 91 d4): fine over loopback to a server under test, not for the open Internet
(RFC 6455 \u{a7}10.3 asks for a fresh random key per frame against proxy cache poisoning).
The tool measures its own CPU time: at 90% of --threads or more, load_bound is true and a
warning says the figures measure the load tool, not the server. The soft open-files limit
is raised to the hard one; a run that cannot fit under it is refused.

Exit status: 0 the run saw no error, 1 it did (wrong echo, failed connection; the report
is printed anyway) or could not start, 2 bad command line.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_help_documents_every_exit_status() {
        use crate::exit::Status::*;
        for status in [
            Normal, Other, Usage, CloseCode, Abnormal, Refused, Connect, Tls,
        ] {
            let row = format!("\n  {}  ", status as u8);
            assert!(CONNECT_HELP.contains(&row), "{status:?} missing");
        }
        assert!(PUB_HELP.contains("exit status is then 8"));
    }
}

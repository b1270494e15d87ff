#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/TARGET/NAME, for every fuzz target.

    python3 fuzz/make-corpus.py

Run it again after changing a target's input layout (the leading settings bytes documented
in fuzz/src/lib.rs and fuzz/fuzz_targets/*.rs). Seeds are small and meaningful: the
RFC 6455 §5.7 and RFC 7692 §7.2.3 examples, the RFC 6455 §1.2/§1.3 handshake, and a few
edge cases (limits, bad UTF-8, wrong masking). It writes only the files it names.
"""
import os, struct, zlib
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
KEY = bytes([0x37, 0xfa, 0x21, 0x3d])

def mask(data, key=KEY):
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))

def frame(first, payload, key=None):
    n = len(payload)
    m = 0x80 if key else 0
    if n < 126: h = bytes([first, m | n])
    elif n < 65536: h = bytes([first, m | 126]) + struct.pack('>H', n)
    else: h = bytes([first, m | 127]) + struct.pack('>Q', n)
    if key: return h + key + mask(payload, key)
    return h + payload

def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f: f.write(data)

def deflate_raw(data):
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b'\x00\x00\xff\xff')
    return out[:-4]

HELLO_Z = bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
HELLO_Z2 = bytes([0xf2, 0x00, 0x11, 0x00, 0x00])  # RFC 7692 §7.2.3.2, with context
CLOSE_1000 = struct.pack('>H', 1000)

# frame: RFC 6455 §5.7 examples and edge shapes
write('frame', 'rfc6455-5.7-unmasked-hello', bytes.fromhex('810548656c6c6f'))
write('frame', 'rfc6455-5.7-masked-hello', bytes.fromhex('818537fa213d7f9f4d5158'))
write('frame', 'rfc6455-5.7-fragment-1', bytes.fromhex('010348656c'))
write('frame', 'rfc6455-5.7-fragment-2', bytes.fromhex('80026c6f'))
write('frame', 'rfc6455-5.7-ping', bytes.fromhex('890548656c6c6f'))
write('frame', 'rfc6455-5.7-masked-pong', bytes.fromhex('8a8537fa213d7f9f4d5158'))
write('frame', 'rfc6455-5.7-binary-256', bytes.fromhex('827e0100'))
write('frame', 'rfc6455-5.7-binary-64k', bytes.fromhex('827f0000000000010000'))
write('frame', 'masked-close-1000', frame(0x88, CLOSE_1000, KEY))
write('frame', 'rfc7692-compressed-hello', bytes([0xc1, 0x07]) + HELLO_Z)
write('frame', 'nonminimal-length-16', bytes.fromhex('827e0005') + b'Hello')

# connection seeds: [settings, windows, chunk_shift, chunk_seed, send] + wire bytes
ECHO, DEFLATE, SNCT, CNCT, NOPONG, EOF, COMPRESS_ALL, WRONG_MASK = 0x10, 0x01, 0x02, 0x04, 0x08, 0x20, 0x40, 0x80
def conn_seeds(target, key):
    def f(first, payload): return frame(first, payload, key)
    basic = f(0x81, b'Hello') + f(0x89, b'Hello') + f(0x82, bytes(range(256))) + f(0x8a, b'') + f(0x88, CLOSE_1000 + b'bye')
    write(target, 'text-ping-binary-close', bytes([ECHO | EOF, 0x77, 12, 1, 0]) + basic)
    write(target, 'byte-at-a-time', bytes([ECHO, 0x77, 0, 7, 2]) + basic)
    frag = f(0x01, b'Hel') + f(0x89, b'mid') + f(0x80, b'lo') + f(0x02, b'\x00\x01') + f(0x00, b'') + f(0x80, b'\x02')
    write(target, 'rfc6455-5.7-fragmented', bytes([ECHO, 0x77, 3, 2, 1]) + frag + f(0x88, b''))
    deflated = f(0xc1, HELLO_Z) + f(0xc1, HELLO_Z2) + f(0x41, HELLO_Z[:3]) + f(0x80, HELLO_Z[3:]) + f(0x81, b'plain') + f(0x88, CLOSE_1000)
    write(target, 'rfc7692-deflate-hello', bytes([DEFLATE | ECHO | COMPRESS_ALL, 0x77, 5, 3, 2]) + deflated)
    nct = f(0xc1, HELLO_Z) + f(0xc1, HELLO_Z) + f(0xc2, deflate_raw(b'abc' * 100))
    write(target, 'rfc7692-no-context-takeover', bytes([DEFLATE | SNCT | CNCT | ECHO, 0x00, 6, 4, 131]) + nct)
    bomb = f(0xc2, deflate_raw(bytes(2 << 20)))
    write(target, 'deflate-over-limit', bytes([DEFLATE | ECHO, 0x77, 12, 5, 0]) + bomb)
    write(target, 'invalid-utf8', bytes([ECHO, 0x77, 2, 6, 0]) + f(0x81, bytes.fromhex('cebae1bdb9cf83cebcceb5eda080656469746564')))
    write(target, 'bad-close-code', bytes([0, 0x77, 12, 8, 0]) + f(0x88, struct.pack('>H', 1005)))
    write(target, 'ping-125-no-autopong', bytes([NOPONG, 0x77, 12, 9, 0]) + f(0x89, b'p' * 125) + f(0x89, b'x' * 126))
    wrong = frame(0x81, b'Hello', None if key else KEY)
    write(target, 'wrong-masking-accepted', bytes([WRONG_MASK | ECHO, 0x77, 12, 10, 0]) + wrong + f(0x88, b''))
    write(target, 'wrong-masking-refused', bytes([ECHO, 0x77, 12, 11, 0]) + wrong)
def extra(target, key):
    def f(first, payload): return frame(first, payload, key)
    data = ('κόσμε ' * 60).encode()
    write(target, 'echo-compressed-fragmented', bytes([DEFLATE | ECHO, 0x77, 12, 12, 0x03]) + f(0x81, data) + f(0x82, bytes(300)) + f(0x88, CLOSE_1000))
extra('connection_server', KEY)
extra('connection_client', None)
conn_seeds('connection_server', KEY)
conn_seeds('connection_client', None)

# handshake_request
def req(extra=b'', first=b'GET /chat HTTP/1.1', version=b'13', key=b'dGhlIHNhbXBsZSBub25jZQ=='):
    return (first + b'\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            (b'Sec-WebSocket-Key: ' + key + b'\r\n' if key else b'') +
            b'Origin: http://example.com\r\n' + extra +
            b'Sec-WebSocket-Version: ' + version + b'\r\n\r\n')
write('handshake_request', 'rfc6455-1.2', req(b'Sec-WebSocket-Protocol: chat, superchat\r\n'))
write('handshake_request', 'deflate-offers', req(b'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate\r\n'))
write('handshake_request', 'deflate-no-context-takeover', req(b'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=8\r\n'))
write('handshake_request', 'version-8', req(version=b'8'))
write('handshake_request', 'missing-key', req(key=None))
write('handshake_request', 'post', req(first=b'POST /chat HTTP/1.1'))
write('handshake_request', 'with-frame-after-head', req() + frame(0x81, b'Hello', KEY))

# handshake_response
def resp(extra=b'', accept=b's3pPLMBiTxaQ9kYGzzhZRbK+xOo='):
    return (b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
            b'Sec-WebSocket-Accept: ' + accept + b'\r\n' + extra + b'\r\n')
write('handshake_response', 'rfc6455-1.3', resp())
write('handshake_response', 'deflate', resp(b'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n'))
write('handshake_response', 'deflate-window-bits', resp(b'Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n'))
write('handshake_response', 'subprotocol-not-offered', resp(b'Sec-WebSocket-Protocol: chat\r\n'))
write('handshake_response', 'wrong-accept', resp(accept=b'AAAAAAAAAAAAAAAAAAAAAAAAAAA='))
write('handshake_response', 'forbidden', b'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
write('handshake_response', 'with-frame-after-head', resp() + frame(0x81, b'Hello'))

# inflate: [flags, windows, chunk_shift, chunk_seed] + data
write('inflate', 'rfc7692-hello', bytes([0, 0x77, 2, 1]) + HELLO_Z)
write('inflate', 'rfc7692-hello-client', bytes([1, 0x77, 12, 2]) + HELLO_Z)
write('inflate', 'rfc7692-stored-hello', bytes([0, 0x77, 1, 3]) + bytes.fromhex('0005 00faff 48656c6c6f'.replace(' ', '')))
write('inflate', 'rfc7692-bfinal-hello', bytes([0, 0x77, 3, 4]) + bytes.fromhex('f348cdc9c90700 00'.replace(' ', '')))
write('inflate', 'over-limit', bytes([0, 0x77, 12, 5]) + deflate_raw(bytes(2 << 20)))
write('inflate', 'text-window-8', bytes([6, 0x00, 4, 6]) + deflate_raw(b'The quick brown fox jumps over the lazy dog. ' * 20))
write('inflate', 'round-trip-text', bytes([0, 0x77, 5, 7]) + 'κόσμε Hello Hello Hello 𝄞'.encode() * 4)

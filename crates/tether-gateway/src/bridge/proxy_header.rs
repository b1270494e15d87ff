//! The PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`, section 2.2): the
//! first bytes a bridge sends to its backend, so the backend sees the client's address
//! instead of the gateway's.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with (section 2.2).
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Version 2 in the high nibble, command PROXY (`0x1`) in the low one.
const VERSION_2_PROXY: u8 = 0x21;
/// Address family `AF_INET` (`0x1`) in the high nibble, `STREAM` (`0x1`) in the low one.
const TCP_OVER_IPV4: u8 = 0x11;
/// Address family `AF_INET6` (`0x2`), `STREAM`.
const TCP_OVER_IPV6: u8 = 0x21;

/// The header for a connection from `source` (the WebSocket client) to `destination` (the
/// address the client connected to). IPv4 on both ends gives the 28-byte `TCP over IPv4`
/// form; anything else the 52-byte `TCP over IPv6` form, IPv4 addresses mapped into IPv6
/// (`::ffff:a.b.c.d`).
pub fn header_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2_PROXY);
    match (source.ip().to_canonical(), destination.ip().to_canonical()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(TCP_OVER_IPV4);
            // The length of the address block that follows: 2 × 4 address bytes, 2 × 2 ports.
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            out.push(TCP_OVER_IPV6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_matches_the_spec_layout_byte_for_byte() {
        let header = header_v2(
            "192.168.0.1:56324".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
            0x21,                   // version 2, PROXY
            0x11,                   // AF_INET, STREAM
            0x00, 0x0C,             // 12 address bytes follow
            0xC0, 0xA8, 0x00, 0x01, // 192.168.0.1
            0x0A, 0x00, 0x00, 0x01, // 10.0.0.1
            0xDC, 0x04,             // 56324
            0x01, 0xBB,             // 443
        ];
        assert_eq!(header, expected);
    }

    #[test]
    fn ipv6_header_and_mixed_families() {
        let header = header_v2(
            "[2001:db8::1]:1000".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        );
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(&header[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(
            &header[16..32],
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            &header[32..48],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(&header[48..], &[0x03, 0xE8, 0x00, 0x50]);
        // An IPv4 client on an IPv6 listener: the client is mapped into IPv6.
        let mixed = header_v2("127.0.0.1:5".parse().unwrap(), "[::1]:6".parse().unwrap());
        assert_eq!(mixed[13], 0x21);
        assert_eq!(
            &mixed[16..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1]
        );
        // A mapped address on both ends is plain IPv4.
        let mapped = header_v2(
            "[::ffff:10.0.0.2]:7".parse().unwrap(),
            "10.0.0.1:8".parse().unwrap(),
        );
        assert_eq!(mapped.len(), 28);
        assert_eq!(&mapped[16..20], &[10, 0, 0, 2]);
    }
}

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::decode::crc32c;
use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

type Fields = (Option<SocketAddr>, Option<SocketAddr>, Vec<(u8, Vec<u8>)>);

/// Decodes a buffer that must hold exactly one complete header.
fn header(buf: &[u8]) -> Fields {
    match decode(buf).unwrap() {
        Decoded::Header {
            src,
            dst,
            len,
            tlvs,
        } => {
            assert_eq!(len, buf.len(), "header length");
            (src, dst, tlvs)
        }
        other => panic!("expected a header, got {other:?}"),
    }
}

fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const V4_BODY: [u8; 12] = [192, 168, 0, 1, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb];

#[test]
fn round_trips_every_version_and_family() {
    let pairs = [
        ("192.168.0.1:56324", "10.0.0.1:443"),
        ("[2001:db8::1]:40000", "[2001:db8::2]:8443"),
        ("0.0.0.0:0", "255.255.255.255:65535"),
        ("[::]:0", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
    ];
    for (src, dst) in pairs {
        for version in [Version::V1, Version::V2] {
            let bytes = encode(version, addr(src), addr(dst));
            let (s, d, tlvs) = header(&bytes);
            assert_eq!((s, d), (Some(addr(src)), Some(addr(dst))), "{version:?}");
            assert!(tlvs.is_empty());
        }
        let dgram = encode_with(Version::V2, Transport::Dgram, addr(src), addr(dst)).unwrap();
        assert_eq!(dgram[13] & 0x0f, 0x2, "DGRAM transport nibble");
        assert_eq!(header(&dgram).0, Some(addr(src)));
    }
}

#[test]
fn v2_ipv4_matches_bytes_written_from_the_spec() {
    // §2.2 by hand: signature, 0x21 (v2, PROXY), 0x11 (AF_INET, STREAM), length 12,
    // then src addr, dst addr, src port, dst port, all in network byte order.
    let expected: &[u8] = &[
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
        0x21, 0x11, 0x00, 0x0c, // ver/cmd, fam, len
        0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
        0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
        0xdc, 0x04, 0x01, 0xbb, // 56324, 443
    ];
    let src = addr("192.168.0.1:56324");
    let dst = addr("10.0.0.1:443");
    assert_eq!(encode(Version::V2, src, dst), expected);
    assert_eq!(header(expected), (Some(src), Some(dst), vec![]));
    assert_eq!(expected, v2(0x21, 0x11, &V4_BODY));
}

#[test]
fn v1_matches_the_spec_text() {
    let bytes = encode(Version::V1, addr("192.168.0.1:56324"), addr("10.0.0.1:443"));
    assert_eq!(bytes, b"PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n");
    let worst = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst.len(), 104);
    assert!(header(worst).0.is_some());
}

#[test]
fn mixed_families_are_sent_as_mapped_ipv6() {
    let src = addr("192.0.2.7:1234");
    let dst = addr("[2001:db8::1]:443");
    let mapped = addr("[::ffff:192.0.2.7]:1234");
    for version in [Version::V1, Version::V2] {
        let (s, d, _) = header(&encode(version, src, dst));
        assert_eq!((s, d), (Some(mapped), Some(dst)), "{version:?}");
    }
}

#[test]
fn v1_cannot_carry_udp() {
    let err = encode_with(
        Version::V1,
        Transport::Dgram,
        addr("1.2.3.4:1"),
        addr("5.6.7.8:2"),
    );
    assert!(matches!(err, Err(ProxyError::Unsupported(_))));
}

#[test]
fn unknown_local_unspec_and_unix_give_no_address() {
    assert_eq!(header(b"PROXY UNKNOWN\r\n"), (None, None, vec![]));
    assert_eq!(
        header(b"PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n"),
        (None, None, vec![])
    );
    assert_eq!(header(&encode_local_v2()), (None, None, vec![]));
    // LOCAL ignores the family byte and the block, whatever they hold.
    assert_eq!(header(&v2(0x20, 0x77, &[1, 2, 3])), (None, None, vec![]));
    assert_eq!(header(&v2(0x21, 0x00, &[9; 5])), (None, None, vec![]));
    let mut unix = vec![b'/'; 216];
    unix.extend_from_slice(&[0xe0, 0x00, 0x01, 0x42]);
    assert_eq!(
        header(&v2(0x21, 0x31, &unix)),
        (None, None, vec![(0xe0, vec![0x42])])
    );
}

#[test]
fn tlvs_round_trip_and_stop_at_the_header() {
    let src = addr("[2001:db8::1]:1");
    let dst = addr("[2001:db8::2]:2");
    let tlvs: [(u8, &[u8]); 3] = [(0x02, b"example.com"), (0x04, &[0; 5]), (0xe1, b"")];
    let mut bytes = encode_v2_with_tlvs(Transport::Stream, src, dst, &tlvs).unwrap();
    let (s, d, got) = header(&bytes);
    assert_eq!((s, d), (Some(src), Some(dst)));
    let want: Vec<(u8, Vec<u8>)> = tlvs.iter().map(|(k, v)| (*k, v.to_vec())).collect();
    assert_eq!(got, want);
    // Application data after the header is left alone.
    let header_len = bytes.len();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert!(matches!(decode(&bytes), Ok(Decoded::Header { len, .. }) if len == header_len));
    let huge = vec![0u8; V2_MAX_LEN];
    let err = encode_v2_with_tlvs(Transport::Stream, src, dst, &[(0xe0, &huge)]);
    assert!(matches!(err, Err(ProxyError::Unsupported(_))));
}

#[test]
fn crc32c_is_checked() {
    // RFC 3720 B.4 / the usual check value of CRC-32C.
    assert_eq!(crc32c(*b"123456789"), 0xe306_9283);
    let mut body = V4_BODY.to_vec();
    body.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
    let mut bytes = v2(0x21, 0x11, &body);
    let crc = crc32c(bytes.iter().copied());
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(header(&bytes).2, vec![(0x03, crc.to_be_bytes().to_vec())]);
    bytes[0x10] ^= 1; // flip a bit of the source address
    assert!(matches!(decode(&bytes), Err(ProxyError::V2Tlv(_))));
    let mut short = V4_BODY.to_vec();
    short.extend_from_slice(&[0x03, 0x00, 0x02, 0, 0]);
    assert!(matches!(
        decode(&v2(0x21, 0x11, &short)),
        Err(ProxyError::V2Tlv(_))
    ));
}

#[test]
fn every_prefix_is_incomplete_with_a_sane_bound() {
    let headers = [
        encode(Version::V1, addr("1.2.3.4:5"), addr("6.7.8.9:10")),
        encode(Version::V1, addr("[::1]:5"), addr("[::2]:10")),
        b"PROXY UNKNOWN\r\n".to_vec(),
        encode(Version::V2, addr("1.2.3.4:5"), addr("6.7.8.9:10")),
        encode(Version::V2, addr("[::1]:5"), addr("[::2]:10")),
        encode_local_v2(),
    ];
    for full in headers {
        for cut in 0..full.len() {
            match decode(&full[..cut]).unwrap() {
                Decoded::Incomplete { needed_at_least } => {
                    assert!(needed_at_least > cut, "{cut} of {full:?}");
                    assert!(needed_at_least <= full.len(), "{cut} of {full:?}");
                }
                other => panic!("prefix of {cut} bytes decoded as {other:?}"),
            }
        }
    }
}

#[test]
fn refuses_what_is_not_a_proxy_header() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05hello",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXZ",
        b"\r\n\r\n\x00\r\nQUIT\x0b",
        b"\r\n\r\n\x01",
    ] {
        assert!(
            matches!(decode(input), Err(ProxyError::NoSignature)),
            "{input:?}"
        );
    }
}

#[test]
fn refuses_malformed_v1() {
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        b"PROXY TCP4\r\n",
        b"PROXY \r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 [::1] ::1 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999999999999999999\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n",
        b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.\xc3\xa94 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    ];
    for input in cases {
        assert!(
            matches!(decode(input), Err(ProxyError::V1Malformed(_))),
            "{:?} gave {:?}",
            String::from_utf8_lossy(input),
            decode(input)
        );
    }
    // Binary garbage is refused before any CRLF arrives.
    assert!(matches!(
        decode(b"PROXY \x00"),
        Err(ProxyError::V1Malformed(_))
    ));
}

#[test]
fn refuses_v1_lines_past_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'a');
    assert!(matches!(decode(&long), Err(ProxyError::V1TooLong)));
    long.truncate(V1_MAX_LEN - 1);
    assert!(matches!(
        decode(&long),
        Ok(Decoded::Incomplete {
            needed_at_least: V1_MAX_LEN
        })
    ));
    // 105 characters + CRLF = 107: the longest line allowed.
    long.truncate(V1_MAX_LEN - 2);
    long.extend_from_slice(b"\r\n");
    assert_eq!(header(&long), (None, None, vec![]));
    // One more and the CRLF lands at bytes 108-109.
    let mut too_long = long[..V1_MAX_LEN - 2].to_vec();
    too_long.extend_from_slice(b"a\r\n");
    assert!(matches!(decode(&too_long), Err(ProxyError::V1TooLong)));
}

#[test]
fn refuses_malformed_v2() {
    let err = |bytes: &[u8]| decode(bytes).unwrap_err();
    assert!(matches!(
        err(&v2(0x11, 0x11, &V4_BODY)),
        ProxyError::V2Version(1)
    ));
    assert!(matches!(
        err(&v2(0x31, 0x11, &V4_BODY)),
        ProxyError::V2Version(3)
    ));
    assert!(matches!(
        err(&v2(0x22, 0x11, &V4_BODY)),
        ProxyError::V2Command(2)
    ));
    assert!(matches!(
        err(&v2(0x2f, 0x11, &V4_BODY)),
        ProxyError::V2Command(0xf)
    ));
    for family in [0x10, 0x13, 0x20, 0x30, 0x01, 0x41, 0xff] {
        assert!(matches!(err(&v2(0x21, family, &V4_BODY)), ProxyError::V2Family(f) if f == family));
    }
    assert!(matches!(
        err(&v2(0x21, 0x11, &V4_BODY[..11])),
        ProxyError::V2AddressLength {
            len: 11,
            needed: 12
        }
    ));
    assert!(matches!(
        err(&v2(0x21, 0x21, &[0; 35])),
        ProxyError::V2AddressLength {
            len: 35,
            needed: 36
        }
    ));
    assert!(matches!(
        err(&v2(0x21, 0x31, &[0; 215])),
        ProxyError::V2AddressLength { .. }
    ));
    // Refused from the fixed 16 bytes alone, before the announced body arrives.
    let mut big = v2(0x21, 0x11, &[]);
    big[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(err(&big), ProxyError::V2TooLong(_)));
    let mut truncated_tlv = V4_BODY.to_vec();
    truncated_tlv.extend_from_slice(&[0x01, 0x00]);
    assert!(matches!(
        err(&v2(0x21, 0x11, &truncated_tlv)),
        ProxyError::V2Tlv(_)
    ));
    let mut overrun = V4_BODY.to_vec();
    overrun.extend_from_slice(&[0x01, 0x00, 0x05, b'a', b'b']);
    assert!(matches!(
        err(&v2(0x21, 0x11, &overrun)),
        ProxyError::V2Tlv(_)
    ));
}

#[test]
fn truncated_v2_waits_for_the_announced_length() {
    let mut body = vec![7; 36];
    body.extend_from_slice(&[0xe0, 0x00, 0x01, 0x09]);
    let full = v2(0x21, 0x21, &body);
    assert!(matches!(
        decode(&full[..20]),
        Ok(Decoded::Incomplete {
            needed_at_least: 56
        })
    ));
    assert_eq!(header(&full).2, vec![(0xe0, vec![9])]);
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn read_header_v1_returns_what_followed_the_line() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let mut sent = encode(
        Version::V1,
        addr("[2001:db8::7]:4321"),
        addr("[2001:db8::1]:80"),
    );
    sent.extend_from_slice(b"GET / HTTP/1.1\r\n");
    client.write_all(&sent).await.unwrap();
    let (src, leftover) = read_header(&mut server, TIMEOUT).await.unwrap();
    assert_eq!(src, Some(addr("[2001:db8::7]:4321")));
    // Whatever was read past the CRLF comes back, and the rest is still in the stream.
    let mut rest = leftover;
    client.shutdown().await.unwrap();
    server.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"GET / HTTP/1.1\r\n");
}

#[tokio::test]
async fn read_header_v2_reads_exactly_the_header() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let tlvs: [(u8, &[u8]); 1] = [(0x02, b"a.example")];
    let mut sent = encode_v2_with_tlvs(
        Transport::Stream,
        addr("1.2.3.4:5"),
        addr("6.7.8.9:10"),
        &tlvs,
    )
    .unwrap();
    sent.extend_from_slice(b"payload");
    client.write_all(&sent).await.unwrap();
    let (src, leftover) = read_header(&mut server, TIMEOUT).await.unwrap();
    assert_eq!(src, Some(addr("1.2.3.4:5")));
    assert!(leftover.is_empty());
    let mut payload = [0u8; 7];
    server.read_exact(&mut payload).await.unwrap();
    assert_eq!(&payload, b"payload");
}

#[tokio::test]
async fn read_header_handles_a_header_sent_byte_by_byte() {
    for sent in [
        encode(Version::V1, addr("1.2.3.4:5"), addr("6.7.8.9:10")),
        encode(Version::V2, addr("[::1]:5"), addr("[::2]:10")),
        encode_local_v2(),
    ] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move { read_header(&mut server, TIMEOUT).await });
        for byte in &sent {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (_, leftover) = reader.await.unwrap().unwrap();
        assert!(leftover.is_empty());
    }
}

#[tokio::test]
async fn read_header_fails_cleanly() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"PROXY TCP4 1.2").await.unwrap();
    drop(client);
    assert!(matches!(
        read_header(&mut server, TIMEOUT).await,
        Err(ProxyError::Eof)
    ));

    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"SSH-2.0-OpenSSH\r\n").await.unwrap();
    assert!(matches!(
        read_header(&mut server, TIMEOUT).await,
        Err(ProxyError::NoSignature)
    ));

    // A peer that sends half a header and then nothing is cut off at the deadline.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&V2_SIGNATURE[..5]).await.unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        read_header(&mut server, Duration::from_millis(50)).await,
        Err(ProxyError::Timeout)
    ));
    assert!(started.elapsed() < TIMEOUT);
    drop(client);
}

//! Codec tests: byte-exact vectors written by hand from RFC 4271/4760/6793/1997, round
//! trips, and hostile input that must produce errors, never panics.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn marker() -> Vec<u8> {
    vec![0xFF; 16]
}

fn with_header(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = marker();
    v.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn our_open(asn: u32) -> Open {
    Open {
        asn,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::FourOctetAs(asn),
        ],
    }
}

#[test]
fn open_byte_exact() {
    #[rustfmt::skip]
    let expected = with_header(1, &[
        0x04,                   // version
        0xFD, 0xE9,             // my AS 65001
        0x00, 0x5A,             // hold time 90
        192, 0, 2, 1,           // BGP identifier
        20,                     // optional parameters length
        0x02, 18,               // parameter: capabilities, 18 bytes
        0x01, 4, 0x00, 0x01, 0x00, 0x01, // MP IPv4 unicast
        0x01, 4, 0x00, 0x02, 0x00, 0x01, // MP IPv6 unicast
        0x41, 4, 0x00, 0x00, 0xFD, 0xE9, // 4-octet AS 65001
    ]);
    assert_eq!(expected.len(), 49);
    let msg = Message::Open(our_open(65001));
    assert_eq!(msg.encode().unwrap(), expected);
    assert_eq!(decode(&expected).unwrap(), Some((msg, 49)));
}

#[test]
fn open_four_byte_asn_uses_as_trans() {
    let asn = 4_200_000_000u32;
    let bytes = Message::Open(our_open(asn)).encode().unwrap();
    assert_eq!(&bytes[20..22], &AS_TRANS.to_be_bytes());
    assert_eq!(&bytes[43..49], &[0x41, 4, 0xFA, 0x56, 0xEA, 0x00]);
    let (msg, _) = decode(&bytes).unwrap().unwrap();
    assert!(matches!(msg, Message::Open(o) if o.asn == asn && o.four_octet_as()));
}

#[test]
fn open_without_capabilities_speaks_ipv4_only() {
    let mut o = our_open(65001);
    o.capabilities.clear();
    let bytes = Message::Open(o.clone()).encode().unwrap();
    let (msg, _) = decode(&bytes).unwrap().unwrap();
    let Message::Open(d) = msg else { panic!() };
    assert_eq!(d, o);
    assert!(d.supports(AFI_IPV4, SAFI_UNICAST));
    assert!(!d.supports(AFI_IPV6, SAFI_UNICAST));
    assert!(!d.four_octet_as());
}

fn announce_v4() -> Update {
    Update {
        withdrawn: vec![],
        attributes: vec![
            Attribute::Origin(ORIGIN_IGP),
            Attribute::AsPath(vec![AsSegment {
                kind: AS_SEQUENCE,
                asns: vec![65001],
            }]),
            Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
            Attribute::Communities(vec![GRACEFUL_SHUTDOWN]),
        ],
        nlri: vec!["10.200.0.10/32".parse().unwrap()],
    }
}

#[test]
fn update_byte_exact() {
    #[rustfmt::skip]
    let expected = with_header(2, &[
        0x00, 0x00,                         // withdrawn routes length
        0x00, 27,                           // total path attribute length
        0x40, 1, 1, 0,                      // ORIGIN IGP (well-known transitive)
        0x40, 2, 6, 2, 1, 0x00, 0x00, 0xFD, 0xE9, // AS_PATH AS_SEQUENCE [65001]
        0x40, 3, 4, 192, 0, 2, 1,           // NEXT_HOP
        0xC0, 8, 4, 0xFF, 0xFF, 0x00, 0x00, // COMMUNITIES GRACEFUL_SHUTDOWN
        32, 10, 200, 0, 10,                 // NLRI 10.200.0.10/32
    ]);
    assert_eq!(expected.len(), 55);
    let msg = Message::Update(announce_v4());
    assert_eq!(msg.encode().unwrap(), expected);
    assert_eq!(decode(&expected).unwrap(), Some((msg, 55)));
}

#[test]
fn update_withdraw_byte_exact() {
    let expected = with_header(2, &[0, 5, 32, 10, 200, 0, 10, 0, 0]);
    let msg = Message::Update(Update {
        withdrawn: vec!["10.200.0.10/32".parse().unwrap()],
        ..Update::default()
    });
    assert_eq!(msg.encode().unwrap(), expected);
    assert_eq!(decode(&expected).unwrap(), Some((msg, 28)));
}

#[test]
fn update_mp_reach_v6_byte_exact() {
    let nh: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let pfx: ipnet::IpNet = "2001:db8:ff::a/128".parse().unwrap();
    let mut body = vec![0, 0, 0, 48, 0x40, 1, 1, 0, 0x40, 2, 0];
    body.extend_from_slice(&[0x80, 14, 38, 0, 2, 1, 16]);
    body.extend_from_slice(&nh.octets());
    body.push(0);
    body.push(128);
    body.extend_from_slice(
        &"2001:db8:ff::a"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    let expected = with_header(2, &body);
    let msg = Message::Update(Update {
        attributes: vec![
            Attribute::Origin(0),
            Attribute::AsPath(vec![]),
            Attribute::MpReach {
                afi: AFI_IPV6,
                safi: SAFI_UNICAST,
                next_hops: vec![IpAddr::V6(nh)],
                nlri: vec![pfx],
            },
        ],
        ..Update::default()
    });
    assert_eq!(msg.encode().unwrap(), expected);
    assert_eq!(decode(&expected).unwrap(), Some((msg, expected.len())));
}

#[test]
fn keepalive_and_notification_byte_exact() {
    assert_eq!(Message::Keepalive.encode().unwrap(), with_header(4, &[]));
    let cease = Message::Notification(Notification::new(notif::CEASE, notif::CEASE_ADMIN_SHUTDOWN));
    let bytes = with_header(3, &[6, 2]);
    assert_eq!(cease.encode().unwrap(), bytes);
    assert_eq!(decode(&bytes).unwrap(), Some((cease, 21)));
}

#[test]
fn two_byte_as_path_maps_large_asns_to_as_trans() {
    let opts = CodecOptions {
        four_octet_as: false,
    };
    let mut u = announce_v4();
    u.attributes[1] = Attribute::AsPath(vec![AsSegment {
        kind: AS_SEQUENCE,
        asns: vec![4_200_000_000],
    }]);
    let bytes = Message::Update(u).encode_with(opts).unwrap();
    let (msg, _) = decode_with(&bytes, opts).unwrap().unwrap();
    let Message::Update(d) = msg else { panic!() };
    assert_eq!(
        d.attributes[1],
        Attribute::AsPath(vec![AsSegment {
            kind: AS_SEQUENCE,
            asns: vec![u32::from(AS_TRANS)],
        }])
    );
}

#[test]
fn partial_input_needs_more_bytes() {
    let bytes = Message::Update(announce_v4()).encode().unwrap();
    for n in 0..bytes.len() {
        assert_eq!(decode(&bytes[..n]).unwrap(), None, "prefix of {n} bytes");
    }
    let mut two = bytes.clone();
    two.extend_from_slice(&Message::Keepalive.encode().unwrap());
    let (_, used) = decode(&two).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        decode(&two[used..]).unwrap(),
        Some((Message::Keepalive, 19))
    );
}

fn notification_of(buf: &[u8]) -> (u8, u8) {
    match decode(buf) {
        Err(BgpError::Malformed { notification, .. }) => (notification.code, notification.subcode),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn header_errors() {
    assert_eq!(notification_of(&[0xFF, 0xFF, 0x00]), (1, 1));
    let mut short = with_header(4, &[]);
    short[17] = 18;
    assert_eq!(notification_of(&short), (1, 2));
    let mut long = marker();
    long.extend_from_slice(&[0x10, 0x01, 2]);
    assert_eq!(notification_of(&long), (1, 2), "4097 bytes");
    assert_eq!(
        notification_of(&with_header(4, &[0])),
        (1, 2),
        "KEEPALIVE with a body"
    );
    assert_eq!(notification_of(&with_header(9, &[])), (1, 3));
}

#[test]
fn open_and_update_errors() {
    let mut bad_version = Message::Open(our_open(65001)).encode().unwrap();
    bad_version[19] = 3;
    assert_eq!(notification_of(&bad_version), (2, 1));
    let mut bad_hold = Message::Open(our_open(65001)).encode().unwrap();
    bad_hold[22..24].copy_from_slice(&[0, 2]);
    assert_eq!(notification_of(&bad_hold), (2, 6));
    // ORIGIN 3.
    let bad_origin = with_header(2, &[0, 0, 0, 4, 0x40, 1, 1, 3]);
    assert_eq!(notification_of(&bad_origin), (3, 6));
    // Attribute length running past the attribute block.
    let overrun = with_header(2, &[0, 0, 0, 4, 0x40, 1, 9, 0]);
    assert_eq!(notification_of(&overrun), (3, 1));
    // Prefix length 33.
    let bad_prefix = with_header(2, &[0, 0, 0, 0, 33, 10, 0, 0, 0, 1]);
    assert_eq!(notification_of(&bad_prefix), (3, 10));
    // Duplicate ORIGIN.
    let dup = with_header(2, &[0, 0, 0, 8, 0x40, 1, 1, 0, 0x40, 1, 1, 0]);
    assert_eq!(notification_of(&dup), (3, 1));
}

/// splitmix64: tiny, seedable, dependency-free.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic_and_reencode() {
    let seeds = [
        Message::Open(our_open(65001)).encode().unwrap(),
        Message::Update(announce_v4()).encode().unwrap(),
        Message::Keepalive.encode().unwrap(),
        with_header(3, &[6, 2, 1, 2, 3]),
    ];
    let mut rng = Rng(0xB6B);
    for i in 0..200_000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let at = 16 + rng.below(buf.len() - 16);
                    buf[at] = rng.next() as u8;
                }
                1 if buf.len() > 19 => {
                    buf.truncate(19 + rng.below(buf.len() - 19));
                }
                2 => {
                    for _ in 0..rng.below(8) {
                        buf.push(rng.next() as u8);
                    }
                }
                _ => {
                    let len = HEADER_LEN + rng.below(buf.len());
                    buf[16..18].copy_from_slice(&(len as u16).to_be_bytes());
                }
            }
        }
        if let Ok(Some((msg, used))) = decode(&buf) {
            assert!(used <= buf.len());
            if let Ok(again) = msg.encode() {
                assert_eq!(decode(&again).unwrap().map(|(m, _)| m), Some(msg));
            }
        }
    }
}

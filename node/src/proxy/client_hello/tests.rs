use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(alpn: &[&[u8]], roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The first flight of a real rustls client: its ClientHello record(s).
fn rustls_hello(name: &str, sni: bool, alpn: &[&[u8]]) -> Vec<u8> {
    let mut config = client_config(alpn, rustls::RootCertStore::empty());
    config.enable_sni = sni;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn hello(buf: &[u8]) -> ClientHelloInfo {
    match parse(buf).unwrap() {
        Parsed::Hello(info) => info,
        other => panic!("expected a hello, got {other:?}"),
    }
}

/// Re-frames the single handshake record of `hello` into records cut at `cuts` (offsets
/// into the handshake bytes).
fn split_records(hello: &[u8], cuts: &[usize]) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let handshake = &hello[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(handshake.len());
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let part = &handshake[w[0]..w[1]];
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn reads_sni_and_alpn_from_a_rustls_hello() {
    let bytes = rustls_hello("Api.Example.COM", true, &[b"h2", b"http/1.1"]);
    let info = hello(&bytes);
    assert_eq!(info.sni.as_deref(), Some("api.example.com"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(info.legacy_version, 0x0303);
}

#[test]
fn no_sni_when_the_client_sends_none() {
    let bytes = rustls_hello("example.com", false, &[]);
    let info = hello(&bytes);
    assert_eq!(info.sni, None);
    assert!(info.alpn.is_empty());
    // rustls never sends an IP address as SNI either.
    assert_eq!(hello(&rustls_hello("192.0.2.1", true, &[b"h2"])).sni, None);
}

#[test]
fn byte_by_byte_is_incomplete_until_the_last_byte() {
    let bytes = rustls_hello("example.com", true, &[b"h2"]);
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut]).unwrap() {
            Parsed::Incomplete { needed_at_least } => {
                assert!(
                    needed_at_least > cut && needed_at_least <= bytes.len(),
                    "{cut}"
                );
            }
            Parsed::Hello(_) => panic!("complete after only {cut} of {} bytes", bytes.len()),
        }
    }
    assert_eq!(hello(&bytes).sni.as_deref(), Some("example.com"));
}

#[test]
fn reassembles_a_hello_split_across_records() {
    let bytes = rustls_hello("split.example.com", true, &[b"h2"]);
    let expected = hello(&bytes);
    let handshake_len = bytes.len() - RECORD_HEADER_LEN;
    // Two records, cut inside the handshake header, inside the SNI, and near the end.
    for cut in [1, 3, 4, handshake_len / 2, handshake_len - 1] {
        let split = split_records(&bytes, &[cut]);
        assert_eq!(hello(&split), expected, "cut at {cut}");
        for prefix in 0..split.len() {
            assert!(
                matches!(parse(&split[..prefix]), Ok(Parsed::Incomplete { needed_at_least }) if needed_at_least > prefix),
                "cut {cut}, prefix {prefix}"
            );
        }
    }
    // One byte per record: still within the limits for a hello this size.
    let every_byte: Vec<usize> = (1..handshake_len).collect();
    assert_eq!(hello(&split_records(&bytes, &every_byte)), expected);
}

#[test]
fn refuses_what_is_not_tls() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        // SSLv2-compatible ClientHello: 2-byte header with the high bit set, msg type 1.
        b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10",
        b"\x16\x02\x00",
        b"\x16\x03\x05",
        b"\x17\x03\x03\x00\x10",
        b"\x00",
    ] {
        assert!(
            matches!(parse(input), Err(HelloError::NotTls)),
            "{input:?} gave {:?}",
            parse(input)
        );
    }
}

#[test]
fn refuses_other_records_and_messages() {
    let bytes = rustls_hello("example.com", true, &[]);
    let mut split = split_records(&bytes, &[10]);
    // The second record turned into change_cipher_spec.
    let second = RECORD_HEADER_LEN + 10;
    split[second] = 20;
    assert!(matches!(
        parse(&split),
        Err(HelloError::UnexpectedRecord(20))
    ));
    split[second] = 22;
    split[second + 1] = 4;
    assert!(matches!(parse(&split), Err(HelloError::Malformed(_))));
    // A ServerHello (type 2) where a ClientHello should be, refused at its first byte.
    let mut server_hello = bytes.clone();
    server_hello[RECORD_HEADER_LEN] = 2;
    assert!(matches!(
        parse(&server_hello[..RECORD_HEADER_LEN + 1]),
        Err(HelloError::NotClientHello(2))
    ));
    // Empty and over-long records.
    assert!(matches!(
        parse(b"\x16\x03\x01\x00\x00"),
        Err(HelloError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"\x16\x03\x01\x40\x01"),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn refuses_oversize_hellos_early() {
    // A handshake header announcing 20 000 bytes: refused from its first 9 bytes.
    assert!(matches!(
        parse(b"\x16\x03\x01\x40\x00\x01\x00\x4e\x20"),
        Err(HelloError::TooLarge)
    ));
    // A 16 000-byte hello sent in 1-byte records would take 96 000 bytes: refused once
    // the record headers alone push it past MAX_BYTES, before all of it is buffered.
    let mut tiny_records = Vec::new();
    for byte in [1u8, 0x00, 0x3e, 0x80].into_iter().chain([0; 300]) {
        tiny_records.extend_from_slice(&[22, 3, 1, 0, 1, byte]);
    }
    assert!(matches!(parse(&tiny_records), Err(HelloError::TooLarge)));
    assert!(matches!(
        parse(&tiny_records[..6 * 100]),
        Ok(Parsed::Incomplete { .. })
    ));
}

/// A minimal hello body with the given extensions block (None: no extensions at all).
fn synthetic(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    if let Some(ext) = extensions {
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(ext);
    }
    let mut handshake = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn sni_ext(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut list = (entry.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&entry);
    ext(0, &list)
}

#[test]
fn synthetic_hellos_cover_the_edges() {
    let info = hello(&synthetic(None));
    assert_eq!((info.sni, info.alpn.len()), (None, 0));
    assert_eq!(
        hello(&synthetic(Some(&sni_ext(b"WWW.Example.org."))))
            .sni
            .as_deref(),
        Some("www.example.org")
    );
    assert_eq!(
        hello(&synthetic(Some(&sni_ext(b"_acme.example"))))
            .sni
            .as_deref(),
        Some("_acme.example")
    );
    for ip in [&b"2001:db8::1"[..], b"192.0.2.1", b"192.0.2.1."] {
        assert_eq!(hello(&synthetic(Some(&sni_ext(ip)))).sni, None, "{ip:?}");
    }
    let long_label = [b'a'; 64];
    let long_name = [b"a.".as_slice(); 128].concat();
    for bad in [
        &b""[..],
        b".",
        b"a..b",
        b"-a.example",
        b"a-.example",
        b"a b.example",
        b"a/b",
        b"caf\xc3\xa9.example",
        b"\xff",
        &long_label,
        &long_name,
    ] {
        assert!(
            matches!(
                parse(&synthetic(Some(&sni_ext(bad)))),
                Err(HelloError::InvalidSni)
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn refuses_malformed_extensions() {
    let alpn = |list: &[u8]| {
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(list);
        ext(16, &data)
    };
    let two_names = {
        let entry = [0u8, 0, 1, b'a'];
        let mut list = 8u16.to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        list.extend_from_slice(&entry);
        ext(0, &list)
    };
    let cases: Vec<Vec<u8>> = vec![
        ext(0, &[]),                       // no server name list
        ext(0, &[0, 0]),                   // empty server name list
        ext(0, &[0, 4, 0, 0, 9, b'a']),    // name longer than the list
        [sni_ext(b"a"), vec![0]].concat(), // trailing byte in the extensions
        two_names,
        [sni_ext(b"a.example"), sni_ext(b"b.example")].concat(), // duplicate extension
        alpn(&[]),                                               // empty ALPN list
        alpn(&[0]),                                              // empty protocol name
        alpn(&[3, b'h', b'2']),                                  // protocol longer than the list
        ext(16, &[0, 3, 2, b'h', b'2', 0]),                      // bytes after the ALPN list
        vec![0, 0, 0],                                           // truncated extension header
        vec![0, 16, 0, 9, 0],                                    // extension longer than the block
    ];
    for extensions in cases {
        let input = synthetic(Some(&extensions));
        assert!(
            matches!(parse(&input), Err(HelloError::Malformed(_))),
            "{extensions:?} gave {:?}",
            parse(&input)
        );
    }
}

#[test]
fn refuses_malformed_hello_bodies() {
    let base = synthetic(None);
    let body_at = RECORD_HEADER_LEN + 4;
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut m = base.clone();
        f(&mut m);
        parse(&m)
    };
    // legacy_version 2.0
    assert!(matches!(
        mutate(&|m| m[body_at] = 2),
        Err(HelloError::Malformed(_))
    ));
    // session id of 33 bytes (lengths no longer add up either way)
    assert!(matches!(
        mutate(&|m| m[body_at + 34] = 33),
        Err(HelloError::Malformed(_))
    ));
    // odd cipher suite length
    assert!(matches!(
        mutate(&|m| m[body_at + 36] = 1),
        Err(HelloError::Malformed(_))
    ));
    // zero compression methods
    assert!(matches!(
        mutate(&|m| m[body_at + 39] = 0),
        Err(HelloError::Malformed(_))
    ));
    // handshake length shorter than the body: the hello ends inside the random
    assert!(matches!(
        mutate(&|m| m[RECORD_HEADER_LEN + 3] = 20),
        Err(HelloError::Malformed(_))
    ));
}

#[tokio::test]
async fn peek_returns_every_byte_and_the_backend_can_finish_the_handshake() {
    let cert = rcgen::generate_simple_self_signed(vec!["backend.example".into()]).unwrap();
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.clone()).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&[b"h2", b"http/1.1"], roots)));
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key.into())
        .unwrap();
    server_config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let (client_io, mut lb_io) = tokio::io::duplex(64 * 1024);
    let client = tokio::spawn(async move {
        let name = ServerName::try_from("backend.example").unwrap();
        let mut tls = connector.connect(name, client_io).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await.unwrap();
        pong
    });

    let (info, replay) = peek_client_hello(&mut lb_io, TIMEOUT).await.unwrap();
    assert_eq!(info.sni.as_deref(), Some("backend.example"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

    // The "backend" sees the replayed bytes, then the live stream.
    let (read_half, write_half) = tokio::io::split(lb_io);
    let stream = tokio::io::join(std::io::Cursor::new(replay).chain(read_half), write_half);
    let mut tls = tokio::time::timeout(TIMEOUT, acceptor.accept(stream))
        .await
        .unwrap()
        .unwrap();
    let mut ping = [0u8; 4];
    tls.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
    tls.write_all(b"pong").await.unwrap();
    tls.flush().await.unwrap();
    let pong = tokio::time::timeout(TIMEOUT, client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"pong");
}

#[tokio::test]
async fn peek_fails_cleanly() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(matches!(
        peek_client_hello(&mut server, TIMEOUT).await,
        Err(HelloError::NotTls)
    ));

    let hello_bytes = rustls_hello("example.com", true, &[]);
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&hello_bytes[..40]).await.unwrap();
    drop(client);
    assert!(matches!(
        peek_client_hello(&mut server, TIMEOUT).await,
        Err(HelloError::Eof)
    ));

    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&hello_bytes[..40]).await.unwrap();
    assert!(matches!(
        peek_client_hello(&mut server, Duration::from_millis(50)).await,
        Err(HelloError::Timeout)
    ));
    drop(client);
}

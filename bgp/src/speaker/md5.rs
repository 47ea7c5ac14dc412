//! TCP MD5 signatures (RFC 2385) on BGP sockets: the `password` many routers require.
//! Linux `TCP_MD5SIG`; the key is bound to the peer's address, on the connecting socket
//! for active sessions and on the listener for passive ones.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// Longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` of `<linux/tcp.h>`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MAX_KEY_LEN],
}

/// Requires segments between `socket` and `peer` to carry an MD5 signature with `key`.
/// `local` is the socket's own family: an IPv6 socket names an IPv4 peer by its
/// IPv4-mapped address.
pub(crate) fn set_key(
    socket: &impl AsRawFd,
    local: SocketAddr,
    peer: IpAddr,
    key: &[u8],
) -> io::Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TCP MD5 key has 1..=80 bytes",
        ));
    }
    // SAFETY: all-zero bytes are a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let peer = match (local, peer) {
        (SocketAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
        (_, p) => p,
    };
    match peer {
        IpAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe {
                std::ptr::write(
                    (&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
        }
        IpAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    (&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a valid tcp_md5sig that outlives the call; the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel() {
        // 128 (sockaddr_storage) + 1 + 1 + 2 + 4 + 80.
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn sets_a_key_on_v4_and_v6_sockets() {
        let s4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = s4.local_addr().unwrap();
        set_key(&s4, local, "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        assert!(set_key(&s4, local, "127.0.0.2".parse().unwrap(), b"").is_err());
        assert!(set_key(&s4, local, "127.0.0.2".parse().unwrap(), &[b'x'; 81]).is_err());
        if let Ok(s6) = std::net::TcpListener::bind("[::1]:0") {
            let local = s6.local_addr().unwrap();
            set_key(&s6, local, "::1".parse().unwrap(), b"secret").unwrap();
        }
    }
}

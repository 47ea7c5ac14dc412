//! Client sockets: connecting from a spread of loopback source addresses, and the
//! one-byte echo round trip that proves a proxied connection reached its backend.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest a single connect + echo may take before it counts as a failure.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `i`-th of `sources` loopback source addresses (127.1.x.y), or `None` to let the
/// kernel choose (127.0.0.1 towards a loopback target).
///
/// Why: at tens of thousands of connections a second, one source address runs out of
/// ephemeral ports to the same destination while closed connections sit in TIME_WAIT;
/// every address of 127/8 is local, so spreading sources multiplies the 4-tuples.
pub fn source(i: usize, sources: u32, target: SocketAddr) -> Option<IpAddr> {
    if sources == 0 || !target.ip().is_loopback() || !target.is_ipv4() {
        return None;
    }
    let n = (i as u32 % sources) + 1;
    Some(IpAddr::V4(Ipv4Addr::new(
        127,
        1,
        (n >> 8) as u8,
        (n & 0xff) as u8,
    )))
}

/// Connects to `addr`, from `src` when given (port chosen at connect time, with
/// IP_BIND_ADDRESS_NO_PORT, so the kernel can reuse a port towards other destinations).
pub async fn connect(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = src {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        s.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = s.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, sends one byte and waits for it to come back.
pub async fn echo_round_trip(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let round_trip = async {
        let mut s = connect(addr, src).await?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        if b[0] != b'x' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "echo returned a different byte",
            ));
        }
        Ok(s)
    };
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, round_trip).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect + echo timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_only_for_ipv4_loopback() {
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source(0, 0, lo), None);
        assert_eq!(source(0, 300, lo), Some("127.1.0.1".parse().unwrap()));
        assert_eq!(source(299, 300, lo), Some("127.1.1.44".parse().unwrap()));
        assert_eq!(source(300, 300, lo), Some("127.1.0.1".parse().unwrap()));
        assert_eq!(source(0, 4, "10.0.0.1:80".parse().unwrap()), None);
    }
}

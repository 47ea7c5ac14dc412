//! Command-line parsing (`--flag value` pairs), kept dependency-free.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What to run.
#[derive(Debug)]
pub enum Command {
    Serve(ServeOpts),
    Rate(RateOpts),
    Hold(HoldOpts),
}

/// `serve`: echo backend.
#[derive(Debug)]
pub struct ServeOpts {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
}

/// What a client does on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Send one byte, read it back (the `serve` echo backend, or any L4 proxy to it).
    Echo,
    /// One HTTP/1.1 `GET`; a 2xx response with its whole body counts.
    Http,
    /// A full TLS handshake (no session resumption), then the HTTP/1.1 `GET`.
    Https,
}

impl Proto {
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "echo" => Ok(Proto::Echo),
            "http" => Ok(Proto::Http),
            "https" => Ok(Proto::Https),
            other => Err(format!(
                "--proto: expected echo, http or https, got {other:?}"
            )),
        }
    }
}

/// What HTTP clients ask for.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Request path.
    pub path: String,
    /// `Host` header, and the TLS server name (SNI) when it is a DNS name.
    pub host: String,
}

/// `rate`: connect/echo/close loop.
#[derive(Debug)]
pub struct RateOpts {
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Total connections per second across all workers; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub threads: usize,
    pub sources: u32,
    pub proto: Proto,
    pub http: HttpTarget,
}

/// `hold`: open connections and keep them idle.
#[derive(Debug)]
pub struct HoldOpts {
    pub addr: SocketAddr,
    pub count: usize,
    pub concurrency: usize,
    pub threads: usize,
    pub sources: u32,
    pub hold: Duration,
    /// `Echo` or `Http` (a held connection is a plain TCP one).
    pub proto: Proto,
    pub http: HttpTarget,
}

struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(rest: &[String], known: &[&str]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            if !known.contains(&name) {
                return Err(format!("unknown flag --{name}"));
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        Ok(Self(map))
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}")),
        }
    }

    fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        let s: f64 = self.num(name, default)?;
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("--{name}: not a duration in seconds: {s}"))
    }

    fn addr(&self, name: &str) -> Result<SocketAddr, String> {
        let v = self.required(name)?;
        v.parse()
            .map_err(|_| format!("--{name}: not an IP:port: {v:?}"))
    }

    fn proto(&self) -> Result<Proto, String> {
        self.0
            .get("proto")
            .map_or(Ok(Proto::Echo), |v| Proto::parse(v))
    }

    /// `--path` (default `/`) and `--host` (default the target address).
    fn http(&self, addr: SocketAddr) -> Result<HttpTarget, String> {
        let path = self.0.get("path").cloned().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("--path: not an absolute path: {path:?}"));
        }
        let host = self
            .0
            .get("host")
            .cloned()
            .unwrap_or_else(|| addr.to_string());
        if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("--host: not a host name: {host:?}"));
        }
        Ok(HttpTarget { path, host })
    }
}

fn at_least_one(name: &str, v: usize) -> Result<usize, String> {
    if v == 0 {
        return Err(format!("--{name} must be at least 1"));
    }
    Ok(v)
}

/// Parses `argv` (without the program name).
pub fn parse(argv: &[String]) -> Result<Command, String> {
    let (mode, rest) = argv.split_first().ok_or("no mode given")?;
    match mode.as_str() {
        "serve" => {
            let f = Flags::parse(rest, &["listen", "threads"])?;
            let listen = f
                .required("listen")?
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse()
                        .map_err(|_| format!("--listen: not an IP:port: {a:?}"))
                })
                .collect::<Result<Vec<SocketAddr>, String>>()?;
            Ok(Command::Serve(ServeOpts {
                listen,
                threads: at_least_one("threads", f.num("threads", 1)?)?,
            }))
        }
        "rate" => {
            let f = Flags::parse(
                rest,
                &[
                    "addr",
                    "concurrency",
                    "duration",
                    "warmup",
                    "rate",
                    "threads",
                    "sources",
                    "proto",
                    "path",
                    "host",
                ],
            )?;
            let addr = f.addr("addr")?;
            let rate = match f.num("rate", 0.0f64)? {
                r if r > 0.0 => Some(r),
                _ => None,
            };
            Ok(Command::Rate(RateOpts {
                addr,
                concurrency: at_least_one("concurrency", f.num("concurrency", 64)?)?,
                duration: f.secs("duration", 5.0)?,
                warmup: f.secs("warmup", 0.5)?,
                rate,
                threads: at_least_one("threads", f.num("threads", 1)?)?,
                sources: f.num("sources", 0)?,
                proto: f.proto()?,
                http: f.http(addr)?,
            }))
        }
        "hold" => {
            let f = Flags::parse(
                rest,
                &[
                    "addr",
                    "count",
                    "concurrency",
                    "threads",
                    "sources",
                    "hold-secs",
                    "proto",
                    "path",
                    "host",
                ],
            )?;
            let addr = f.addr("addr")?;
            let proto = f.proto()?;
            if proto == Proto::Https {
                return Err("hold: --proto https is not supported (echo or http)".into());
            }
            Ok(Command::Hold(HoldOpts {
                addr,
                count: at_least_one("count", f.num("count", 0)?)?,
                concurrency: at_least_one("concurrency", f.num("concurrency", 256)?)?,
                threads: at_least_one("threads", f.num("threads", 1)?)?,
                sources: f.num("sources", 0)?,
                hold: f.secs("hold-secs", 600.0)?,
                proto,
                http: f.http(addr)?,
            }))
        }
        other => Err(format!("unknown mode {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_each_mode_with_defaults() {
        let Command::Rate(r) = parse(&argv("rate --addr 127.0.0.1:80 --rate 1000")).unwrap() else {
            panic!()
        };
        assert_eq!(r.concurrency, 64);
        assert_eq!(r.rate, Some(1000.0));
        assert_eq!(r.duration, Duration::from_secs(5));
        let Command::Serve(s) = parse(&argv("serve --listen 127.0.0.1:1,127.0.0.1:2")).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.listen.len(), 2);
        let Command::Hold(h) = parse(&argv("hold --addr [::1]:9 --count 10")).unwrap() else {
            panic!()
        };
        assert_eq!(h.count, 10);
        assert_eq!(h.proto, Proto::Echo);
        let Command::Rate(r) = parse(&argv(
            "rate --addr 127.0.0.1:80 --proto https --host bench.local",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.proto, Proto::Https);
        assert_eq!(
            (r.http.path.as_str(), r.http.host.as_str()),
            ("/", "bench.local")
        );
        let Command::Hold(h) =
            parse(&argv("hold --addr 127.0.0.1:80 --count 1 --proto http")).unwrap()
        else {
            panic!()
        };
        assert_eq!(h.http.host, "127.0.0.1:80");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&argv("rate")).is_err());
        assert!(parse(&argv("rate --addr nope")).is_err());
        assert!(parse(&argv("rate --addr 127.0.0.1:1 --bogus 1")).is_err());
        assert!(parse(&argv("hold --addr 127.0.0.1:1 --count 0")).is_err());
        assert!(parse(&argv("rate --addr 127.0.0.1:1 --duration -1")).is_err());
        assert!(parse(&argv("fly")).is_err());
        assert!(parse(&argv("rate --addr 127.0.0.1:1 --proto gopher")).is_err());
        assert!(parse(&argv("rate --addr 127.0.0.1:1 --path x")).is_err());
        assert!(parse(&argv("hold --addr 127.0.0.1:1 --count 1 --proto https")).is_err());
    }
}

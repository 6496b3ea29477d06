//! What every HTTP backend shares: the ureq agent (TLS verified by default, a private CA with
//! `--cacert`, no verification only with `--insecure-tls`), URLs whose credentials are kept
//! apart and redacted from every message, and the classing of answers and failures.

use std::time::{Duration, SystemTime};

use ureq::tls::{RootCerts, TlsConfig};

use super::Options;
use crate::error::{Class, Error, Result};

/// An `Authorization` header value. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An `http(s)://[user[:password]@]host[:port]/path/` URL taken apart.
#[derive(Debug, Clone)]
pub struct Url {
    /// `scheme://host:port/path/`, without credentials, always ending in `/`.
    pub base: String,
    /// The URL for messages: the password replaced by `***`.
    pub redacted: String,
    /// `Basic …` from the user and password, if the URL had them.
    pub auth: Option<Secret>,
}

impl Url {
    /// Parses `s`. Errors never repeat the password.
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| Error::Usage(format!("{}: {why}", redact(s)));
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("not an http:// or https:// URL"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("not an http:// or https:// URL"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = host.rsplit_once(']').map_or(host, |(_, p)| p).rsplit_once(':').map(|(_, p)| p);
        if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad(
                "the port is not a number (in a user name or password, write / @ : % as %2F %40 %3A %25)",
            ));
        }
        let path = if path.ends_with('/') { path.to_string() } else { format!("{path}/") };
        let base = format!("{scheme}://{host}{path}");
        base.parse::<ureq::http::Uri>().map_err(|_| bad("not a valid URL"))?;
        let (auth, redacted) = match userinfo {
            // `http://ann:12/x@host/` is host `ann`, port 12, path `/x@host/` to a URL parser,
            // but most likely a password with a `/` in it.
            None => (None, redact(&base)),
            Some(ui) => {
                let (user, pass) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user name"))?;
                let pass = match pass {
                    Some(p) => percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?,
                    None => String::new(),
                };
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                let shown = if ui.contains(':') {
                    format!("{}:***", ui.split(':').next().unwrap_or(""))
                } else {
                    ui.to_string()
                };
                (Some(Secret(format!("Basic {token}"))), format!("{scheme}://{shown}@{host}{path}"))
            }
        };
        Ok(Url { base, redacted, auth })
    }
}

/// `s` with the password of any `scheme://user:password@` in it replaced by `***`. The
/// password ends at the last `@`, not at the first `/`: a password with a `/` that was not
/// written `%2F` (as `openssl rand -base64` makes them) is no URL, but must not show either.
/// A path with an `@` after `host:port` looks the same and is hidden too.
pub fn redact(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else { return s.to_string() };
    let Some(at) = s[start..].rfind('@').map(|i| start + i) else { return s.to_string() };
    match s[start..at].find(':') {
        Some(c) => format!("{}***{}", &s[..start + c + 1], &s[at..]),
        None => s.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The agent for one backend: statuses are ours to class, not errors; connect and per-read
/// timeouts so a dead peer becomes a transient failure instead of a hang.
pub fn agent(opts: &Options) -> Result<ureq::Agent> {
    let mut tls = TlsConfig::builder();
    if opts.insecure_tls {
        tls = tls.disable_verification(true);
    } else if !opts.cacert.is_empty() {
        // As restic does: the given CAs replace the built-in roots.
        let mut certs = Vec::new();
        for path in &opts.cacert {
            // A file that cannot be read is a wrong argument, as one without a certificate is.
            let pem =
                std::fs::read(path).map_err(|e| Error::Usage(format!("--cacert {}: {e}", path.display())))?;
            let before = certs.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    certs.push(c);
                }
            }
            if certs.len() == before {
                return Err(Error::Usage(format!("--cacert {}: no PEM certificate in it", path.display())));
            }
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_per_write(Some(Duration::from_secs(60)))
        .max_redirects(0)
        // Stages keep several requests in flight (`--connections`): keep that many
        // connections open for reuse rather than the default three.
        .max_idle_connections(64)
        .max_idle_connections_per_host(64)
        .build();
    Ok(config.new_agent())
}

/// The class of an HTTP status that is not a success.
pub fn class_of(status: u16) -> Class {
    match status {
        404 | 410 => Class::NotFound,
        408 | 425 | 429 | 500..=599 => Class::Transient,
        _ => Class::Permanent,
    }
}

/// The error for a response with a failing status, about `what` (a redacted location and
/// path). `Retry-After` is kept for the retry wrapper.
pub fn status_error(resp: &ureq::http::Response<ureq::Body>, what: &str) -> Error {
    let status = resp.status();
    let code = status.as_u16();
    let class = class_of(code);
    let reason = status.canonical_reason().unwrap_or("");
    let hint = match code {
        401 => " (wrong user or password in the repository URL?)",
        403 => " (not allowed: wrong credentials, or an append-only server?)",
        _ => "",
    };
    // A missing file ends in "not found (HTTP 404)" of its own: the status once.
    let msg = if class == Class::NotFound {
        what.to_string()
    } else {
        format!("{what}: HTTP {code} {reason}{hint}")
    };
    let mut e = Error::remote(class, Some(code), msg);
    if let Error::Backend(r) = &mut e {
        r.retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, SystemTime::now()));
    }
    e
}

/// The error for a request that got no answer.
pub fn transport_error(e: ureq::Error, what: &str) -> Error {
    use ureq::Error as U;
    let (class, why) = match &e {
        // rustls reports a failed handshake (an unknown CA, plain HTTP on the other end) as
        // InvalidData: that fails the same way every time.
        U::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            (Class::Permanent, tls_why(&io.to_string()))
        }
        // A name the resolver says does not exist (a typo in the host) stays so: trying
        // again for two minutes, saying nothing, helps nobody. A resolver that could not
        // answer ("Temporary failure in name resolution") is worth another try.
        U::Io(io) if io.to_string().contains("Name or service not known") => {
            (Class::Permanent, format!("host not found ({io})"))
        }
        U::Io(io) => (Class::Transient, io_reason(io)),
        U::Timeout(t) => (Class::Transient, format!("timed out ({t})")),
        U::ConnectionFailed => (Class::Transient, "connection failed".into()),
        U::Protocol(p) => (Class::Transient, format!("HTTP protocol error: {p}")),
        U::HostNotFound => (Class::Permanent, "host not found".into()),
        U::Tls(_) | U::Pem(_) | U::Rustls(_) => (Class::Permanent, tls_why(&e.to_string())),
        _ => (Class::Permanent, e.to_string()),
    };
    Error::remote(class, None, format!("{what}: {}", redact(&why)))
}

/// A failed TLS handshake, with what to do about it: a server that answered in plain HTTP
/// (rustls sees no TLS record) needs `http://`, not another CA.
fn tls_why(why: &str) -> String {
    let hint = if why.contains("InvalidContentType") {
        "the server does not speak TLS: is it a plain http:// server?"
    } else {
        "for a private CA use --cacert FILE; --insecure-tls skips verification"
    };
    format!("TLS: {why} ({hint})")
}

/// The error for a body that failed part-way: always worth another try.
pub fn body_error(e: std::io::Error, what: &str) -> Error {
    Error::remote(Class::Transient, None, format!("{what}: reading the answer: {}", redact(&io_reason(&e))))
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused (is the server running?)".into(),
        K::ConnectionReset => "connection reset".into(),
        K::UnexpectedEof => "connection closed before the answer was complete".into(),
        _ => e.to_string(),
    }
}

/// The most [`read_range_body`] sets aside before the bytes arrive.
const RESERVE_AT_MOST: u64 = 64 << 20;

/// Appends the `len` bytes at `offset` from the answer to a ranged GET to `buf`. A server
/// that ignores the range sends the whole object: the bytes before `offset` are skipped. A
/// body that stops early leaves what arrived appended and is a transient error, so the retry
/// wrapper asks for the rest; but a body that ends where its framing (`Content-Length` or
/// chunks) says it ends came whole from a shorter object, which no retry lengthens.
pub fn read_range_body(
    resp: ureq::http::Response<ureq::Body>,
    what: &str,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<()> {
    use std::io::Read;
    let partial = resp.status().as_u16() == 206;
    // ureq reports a connection closed before the framed end as an error; an unframed body
    // (closed by the server) cannot tell a cut from the end.
    let headers = resp.headers();
    let framed = headers.contains_key("content-length")
        || headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = resp.into_body().into_reader();
    if !partial && offset > 0 {
        let skipped = std::io::copy(&mut (&mut body).take(offset), &mut std::io::sink())
            .map_err(|e| body_error(e, what))?;
        if skipped < offset {
            return Err(Error::format(format!(
                "{what}: shorter than {len} bytes at offset {offset} (truncated?)"
            )));
        }
    }
    let start = buf.len();
    // Room for exactly the range: `read_to_end` alone doubles, and a caller bounding its
    // memory by the bytes it asked for (fetch-pack) would hold up to twice that. Capped, so
    // a bogus length is not an allocation up front.
    buf.reserve_exact(len.min(RESERVE_AT_MOST) as usize);
    body.take(len).read_to_end(buf).map_err(|e| body_error(e, what))?;
    let got = (buf.len() - start) as u64;
    if got < len && framed {
        return Err(Error::format(format!(
            "{what}: shorter than {len} bytes at offset {offset}, only {got} there (truncated?)"
        )));
    }
    if got < len {
        return Err(Error::remote(
            Class::Transient,
            None,
            format!("{what}: the answer stopped after {got} of {len} bytes at offset {offset}"),
        ));
    }
    Ok(())
}

/// The whole body of an answer, appended to `buf`; a body cut short is a transient error.
pub fn read_all(resp: ureq::http::Response<ureq::Body>, what: &str, buf: &mut Vec<u8>) -> Result<()> {
    std::io::Read::read_to_end(&mut resp.into_body().into_reader(), buf).map_err(|e| body_error(e, what))?;
    Ok(())
}

/// The `Content-Length` of an answer to HEAD.
pub fn content_length(resp: &ureq::http::Response<ureq::Body>, what: &str) -> Result<u64> {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::remote(Class::Permanent, None, format!("{what}: no Content-Length in the answer to HEAD"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host name that does not resolve fails at once; a resolver that is down is retried.
    #[test]
    fn an_unknown_host_is_not_retried() {
        let io = |m: &str| ureq::Error::Io(std::io::Error::other(m.to_string()));
        let e = transport_error(
            io("failed to lookup address information: Name or service not known"),
            "rest:http://nosuch.invalid/config",
        );
        assert_eq!(e.class(), Some(Class::Permanent));
        assert!(e.to_string().contains("host not found"), "{e}");
        let e = transport_error(
            io("failed to lookup address information: Temporary failure in name resolution"),
            "rest:http://example.org/config",
        );
        assert_eq!(e.class(), Some(Class::Transient));
    }

    #[test]
    fn credentials_stay_out_of_sight() {
        let u = Url::parse("https://alice:s%40cret@example.org:8000/repo").unwrap();
        assert_eq!(u.base, "https://example.org:8000/repo/");
        assert_eq!(u.redacted, "https://alice:***@example.org:8000/repo/");
        assert_eq!(u.auth.as_ref().unwrap().expose(), "Basic YWxpY2U6c0BjcmV0");
        let dbg = format!("{u:?}");
        assert!(
            !dbg.contains("s%40cret") && !dbg.contains("s@cret") && !dbg.contains("YWxpY2U6c0BjcmV0"),
            "{dbg}"
        );
        assert_eq!(redact("rest:http://u:pw@h:1/x/y"), "rest:http://u:***@h:1/x/y");
        // A password with a '/' not written %2F: the URL does not parse, and must not show it.
        assert_eq!(redact("rest:http://u:ab/cd@h:1/x@y/"), "rest:http://u:***@y/");
        assert_eq!(redact("rest:http://h:1/a@b"), "rest:http://h:***@b");
        for (url, pw) in [("http://u:ab/cd@h:1/x/", "cd"), ("http://u:1/pw@h:1/x/", "pw")] {
            let shown = match Url::parse(url) {
                Ok(u) => u.redacted,
                Err(e) => e.to_string(),
            };
            assert!(!shown.contains(pw), "{url}: {shown}");
        }
        assert!(Url::parse("http://[::1]:8000/r/").is_ok());
        assert_eq!(redact("rest:http://u@h/"), "rest:http://u@h/");
        let e = Url::parse("ftp://u:topsecret@h/").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        let plain = Url::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!((plain.base.as_str(), plain.auth.is_none()), ("http://127.0.0.1:8000/", true));
    }

    #[test]
    fn statuses_have_classes() {
        assert_eq!(class_of(404), Class::NotFound);
        assert_eq!(class_of(503), Class::Transient);
        assert_eq!(class_of(429), Class::Transient);
        assert_eq!(class_of(401), Class::Permanent);
        assert_eq!(class_of(400), Class::Permanent);
    }
}

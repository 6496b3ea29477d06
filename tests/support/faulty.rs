//! A fault-injecting HTTP proxy of our own, between a client and a real server on 127.0.0.1:
//! it answers a share of the requests with 500 or 503 itself and cuts a share of the bodies
//! half-way, on a fixed schedule so a failing run can be repeated. One request per
//! connection (`Connection: close`), plain HTTP/1.1 with `Content-Length` bodies: enough for
//! restic's REST protocol and S3 as our client, rclone and moto speak them. [`Faulty::with_rule`]
//! picks other requests to fail (every upload of a part, say).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub errors_500: AtomicU64,
    pub errors_503: AtomicU64,
    pub cut_bodies: AtomicU64,
}

/// Which status, if any, the proxy answers request number `n` (from 0) with itself, given its
/// method and target (`/bucket/key?query`). [`LOST`] passes the request on and drops the answer.
pub type Rule = fn(n: u64, method: &str, target: &str) -> Option<u16>;

/// The request reaches the server, the answer never reaches the client (the connection is
/// closed): the server did the work and the client cannot know.
pub const LOST: u16 = 0;

/// A running proxy; stops when dropped.
pub struct Faulty {
    /// Its port on 127.0.0.1.
    pub port: u16,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Which fault, if any, request number `n` (from 0) gets: every 7th a 503, every 11th a
/// 500, and every 3rd answer with a body of more than 64 bytes is cut half-way.
fn fault(n: u64, _method: &str, _target: &str) -> Option<u16> {
    match n {
        n if n % 7 == 3 => Some(503),
        n if n % 11 == 5 => Some(500),
        _ => None,
    }
}

impl Faulty {
    /// A proxy in front of `127.0.0.1:upstream`, with the fixed schedule of faults.
    pub fn start(upstream: u16) -> Faulty {
        Faulty::with_rule(upstream, fault, true)
    }

    /// A proxy that fails the requests `rule` picks, and cuts every third body if `cut`.
    pub fn with_rule(upstream: u16, rule: Rule, cut: bool) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let c = c.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, upstream, &c, rule, cut);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Faulty { port, counts, stop, thread: Some(thread) }
    }

    pub fn count(&self, which: fn(&Counts) -> &AtomicU64) -> u64 {
        which(&self.counts).load(Ordering::SeqCst)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request or response head (start line and headers) and its body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Reads a head, then a body of `Content-Length` bytes, or (when `to_eof`) up to EOF.
    fn read(r: &mut impl BufRead, to_eof: bool) -> std::io::Result<Message> {
        let mut start = String::new();
        r.read_line(&mut start)?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 || l == "\r\n" || l == "\n" {
                break;
            }
            if let Some((k, v)) = l.trim_end().split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut m = Message { start: start.trim_end().to_string(), headers, body: Vec::new() };
        match m.header("content-length").and_then(|v| v.parse::<u64>().ok()) {
            Some(n) => {
                r.take(n).read_to_end(&mut m.body)?;
            }
            None if to_eof => {
                r.read_to_end(&mut m.body)?;
            }
            None => {}
        }
        Ok(m)
    }

    /// Writes the head with `Content-Length` set to the body's full length and
    /// `Connection: close`, then the first `body_len` bytes of the body.
    fn write(&self, w: &mut impl Write, body_len: usize) -> std::io::Result<()> {
        let mut head = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let k_l = k.to_ascii_lowercase();
            if !matches!(k_l.as_str(), "content-length" | "connection" | "transfer-encoding" | "keep-alive") {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len()));
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body[..body_len])?;
        w.flush()
    }
}

fn serve(conn: TcpStream, upstream: u16, counts: &Counts, rule: Rule, cut: bool) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut req = Message::read(&mut r, false)?;
    let n = counts.requests.fetch_add(1, Ordering::SeqCst);
    let mut out = conn;
    let mut words = req.start.split(' ');
    let (m, t) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let fault = rule(n, m, t);
    if let Some(code) = fault.filter(|c| *c != LOST) {
        let (reason, extra) = match code {
            503 => ("Service Unavailable", "Retry-After: 0\r\n"),
            _ => ("Internal Server Error", ""),
        };
        let which = if code == 503 { &counts.errors_503 } else { &counts.errors_500 };
        which.fetch_add(1, Ordering::SeqCst);
        let msg =
            format!("HTTP/1.1 {code} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
        out.write_all(msg.as_bytes())?;
        return out.shutdown(Shutdown::Both);
    }
    // Upstream as HTTP/1.0, so its answer is never chunked and ends at EOF.
    let mut parts = req.start.splitn(3, ' ');
    let (method, target) =
        (parts.next().unwrap_or("GET").to_string(), parts.next().unwrap_or("/").to_string());
    req.start = format!("{method} {target} HTTP/1.0");
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    req.write(&mut up, req.body.len())?;
    let mut resp = Message::read(&mut BufReader::new(up), method != "HEAD")?;
    if fault == Some(LOST) {
        counts.cut_bodies.fetch_add(1, Ordering::SeqCst);
        return out.shutdown(Shutdown::Both);
    }
    resp.start = resp.start.replacen("HTTP/1.0", "HTTP/1.1", 1);
    if method == "HEAD" {
        // Keep the upstream's Content-Length (the file's size) for a HEAD.
        let mut head = format!("{}\r\n", resp.start);
        for (k, v) in resp.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("connection")) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        out.write_all(head.as_bytes())?;
        return out.shutdown(Shutdown::Both);
    }
    let cut = cut && matches!(n % 3, 0) && resp.body.len() > 64 && resp.start.contains(" 20");
    let send = if cut { resp.body.len() / 2 } else { resp.body.len() };
    if cut {
        counts.cut_bodies.fetch_add(1, Ordering::SeqCst);
    }
    resp.write(&mut out, send)?;
    out.shutdown(Shutdown::Both)
}

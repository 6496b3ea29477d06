//! A real REST server for the tests: Debian's `rclone serve restic` on 127.0.0.1, on a free
//! port, over HTTP or HTTPS (a private CA and a server certificate made with `openssl`), with
//! or without basic auth. Killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the server.
#[derive(Clone, Debug, Default)]
pub struct RcloneOpts {
    /// Serve HTTPS with this certificate chain and key.
    pub tls: Option<Certs>,
    /// Require basic auth with this user and password.
    pub auth: Option<(String, String)>,
}

/// A private CA and a certificate for 127.0.0.1 signed by it.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The CA certificate (PEM): what `--cacert` takes.
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Certs {
    /// Makes a CA and a server certificate for IP 127.0.0.1 in `dir`. (A self-signed server
    /// certificate will not do: webpki refuses a CA certificate as the server's own.)
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        Certs { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") }
    }
}

/// A running `rclone serve restic`.
pub struct Rclone {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The directory it serves.
    pub root: PathBuf,
    https: bool,
}

/// A port nothing listens on right now (the OS's pick, released at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits up to `limit` for `child`, told to listen on `port`, to accept connections. False
/// when it exits first (the port was taken in between) or never listens. A connection only
/// counts when it is not the probe connected to itself (its source port, taken from the
/// same range as `port`, can be `port`: TCP then connects a socket to itself) and the
/// server is still running a moment later (a server that lost the port to another exits).
pub fn listening(child: &mut Child, port: u16, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            if s.local_addr().map_or(true, |a| a.port() != port) {
                drop(s);
                std::thread::sleep(Duration::from_millis(200));
                return child.try_wait().unwrap().is_none();
            }
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Rclone {
    /// Starts a server for `root` and waits until it accepts connections.
    pub fn start(root: &Path, opts: &RcloneOpts) -> Rclone {
        std::fs::create_dir_all(root).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut c = Command::new("rclone");
            c.args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")]);
            if let Some(t) = &opts.tls {
                c.arg("--cert").arg(&t.cert).arg("--key").arg(&t.key);
            }
            if let Some((u, p)) = &opts.auth {
                c.args(["--user", u, "--pass", p]);
            }
            c.arg(root).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run rclone (is it installed?): {e}"));
            if listening(&mut child, port, Duration::from_secs(20)) {
                return Rclone { child, port, root: root.to_path_buf(), https: opts.tls.is_some() };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("rclone serve restic did not start");
    }

    /// `rest:http(s)://[userinfo@]127.0.0.1:PORT/path` (`userinfo` as `user:pass`).
    pub fn url(&self, userinfo: Option<&str>, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let ui = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!("rest:{scheme}://{ui}127.0.0.1:{}/{}", self.port, path.trim_start_matches('/'))
    }
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

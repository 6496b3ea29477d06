//! A second, independent S3 server for the tests: npm's `s3rver` (Node.js) on 127.0.0.1, on a
//! free port, serving HTTPS with a certificate of a private CA ([`Certs`]), killed when
//! dropped. It is found as `$SLUICE_S3RVER` if set, else `target/npm/node_modules/.bin/s3rver`,
//! where `tests/deps.sh` installs it. Unlike moto it checks every request's signature against
//! its one account, access key `S3RVER` and secret `S3RVER` ([`ACCESS_KEY`], [`SECRET_KEY`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::rclone::{free_port, listening, Certs};

/// The environment variable naming the `s3rver` to run.
pub const S3RVER_ENV: &str = "SLUICE_S3RVER";
/// The credentials s3rver accepts (its built-in account).
pub const ACCESS_KEY: &str = "S3RVER";
pub const SECRET_KEY: &str = "S3RVER";

/// The `s3rver` to run.
pub fn s3rver_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(S3RVER_ENV) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/npm/node_modules/.bin/s3rver")
}

/// A running `s3rver` over HTTPS.
pub struct S3rver {
    child: Child,
    pub port: u16,
}

impl S3rver {
    /// Starts a server keeping its buckets in `data` and waits until it accepts connections.
    pub fn start(data: &Path, certs: &Certs) -> S3rver {
        let bin = s3rver_bin();
        assert!(
            bin.exists(),
            "{} not found: run tests/deps.sh (npm install --prefix target/npm s3rver), or set {S3RVER_ENV}",
            bin.display()
        );
        std::fs::create_dir_all(data).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut c = Command::new(&bin);
            c.arg("-d").arg(data).args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"]);
            // Path-style only: `127.0.0.1` is no domain a bucket could be a subdomain of.
            c.arg("--no-vhost-buckets").arg("--key").arg(&certs.key).arg("--cert").arg(&certs.cert);
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            if listening(&mut child, port, Duration::from_secs(30)) {
                return S3rver { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3rver did not start");
    }

    /// `s3:https://127.0.0.1:PORT/bucket/prefix`.
    pub fn url(&self, bucket_and_prefix: &str) -> String {
        format!("s3:https://127.0.0.1:{}/{}", self.port, bucket_and_prefix.trim_start_matches('/'))
    }
}

impl Drop for S3rver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real S3 server for the tests: `moto_server` (PyPI `moto[server]`) on 127.0.0.1, on a free
//! port, over HTTP or HTTPS, killed when dropped. It is found as `$SLUICE_MOTO` if set, else
//! `target/venv/bin/moto_server`, the virtualenv `.ci/run` creates (either way with a `python`
//! beside it that has boto3, as in any virtualenv moto was installed into).
//!
//! Without authentication (moto's default) any credentials are accepted. With
//! [`MotoOpts::auth`] every request must be signed by an access key that moto's IAM knows:
//! the server is started with `INITIAL_NO_AUTH_ACTION_COUNT=3` and those three free actions
//! create a user, give it every permission and make its access key.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::rclone::{free_port, Certs};

/// The environment variable naming the `moto_server` to run.
pub const MOTO_ENV: &str = "SLUICE_MOTO";

/// The `moto_server` to run.
pub fn moto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(MOTO_ENV) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/moto_server")
}

/// How to start the server.
#[derive(Clone, Debug, Default)]
pub struct MotoOpts {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<Certs>,
    /// Check signatures against moto's IAM (see the module docs).
    pub auth: bool,
}

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    pub port: u16,
    https: bool,
    /// With [`MotoOpts::auth`]: the access key id and secret moto's IAM made.
    pub key: Option<(String, String)>,
}

impl Moto {
    /// Starts a server and waits until it answers.
    pub fn start(opts: &MotoOpts) -> Moto {
        let bin = moto_bin();
        assert!(
            bin.exists(),
            "{} not found: run .ci/run, or python3 -m venv target/venv && target/venv/bin/pip install \
             'moto[server]', or set {MOTO_ENV}",
            bin.display()
        );
        for _ in 0..5 {
            let port = free_port();
            let mut c = Command::new(&bin);
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            if let Some(t) = &opts.tls {
                c.arg("-s").arg("-c").arg(&t.cert).arg("-k").arg(&t.key);
            }
            if opts.auth {
                c.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
            }
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let mut m = Moto { child, port, https: opts.tls.is_some(), key: None };
                    if opts.auth {
                        m.key = Some(m.make_user());
                    }
                    return m;
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken in between: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Makes an IAM user allowed everything and returns its access key id and secret, with
    /// boto3 from moto's own virtualenv (three actions, all before authentication starts).
    fn make_user(&self) -> (String, String) {
        let python = moto_bin().with_file_name("python");
        let script = "import boto3, json, sys\n\
            iam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                aws_access_key_id='setup', aws_secret_access_key='setup')\n\
            iam.create_user(UserName='sluice')\n\
            iam.put_user_policy(UserName='sluice', PolicyName='all', PolicyDocument=json.dumps(\n\
                {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]}))\n\
            k = iam.create_access_key(UserName='sluice')['AccessKey']\n\
            print(k['AccessKeyId'], k['SecretAccessKey'])\n";
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(self.endpoint())
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(out.status.success(), "IAM setup on moto: {}", String::from_utf8_lossy(&out.stderr));
        let s = String::from_utf8(out.stdout).unwrap();
        let mut it = s.split_whitespace();
        (it.next().unwrap().to_string(), it.next().unwrap().to_string())
    }

    /// `s3:http(s)://127.0.0.1:PORT/bucket/prefix`.
    pub fn url(&self, bucket_and_prefix: &str) -> String {
        format!("s3:{}/{}", self.endpoint(), bucket_and_prefix.trim_start_matches('/'))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

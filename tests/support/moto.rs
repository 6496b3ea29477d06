//! A real S3 server for the tests: `moto_server` (PyPI `moto[server]`) on 127.0.0.1, on a free
//! port, over HTTP or HTTPS, killed when dropped. It is found as `$SLUICE_MOTO` if set, else
//! `target/venv/bin/moto_server`, the virtualenv `.ci/run` creates (either way with a `python`
//! beside it that has boto3, as in any virtualenv moto was installed into).
//!
//! Without authentication (moto's default) any credentials are accepted. With
//! [`MotoOpts::auth`] every request must be signed by an access key that moto's IAM knows:
//! the server is started with `INITIAL_NO_AUTH_ACTION_COUNT=6` and those six free actions
//! create a user with every permission and its access key, and a role with every permission
//! assumed once for temporary credentials (a session token).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::rclone::{free_port, listening, Certs};

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
    /// With [`MotoOpts::auth`]: temporary credentials (key id, secret, session token).
    pub session: Option<(String, String, String)>,
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
                c.env("INITIAL_NO_AUTH_ACTION_COUNT", "6");
            }
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            if listening(&mut child, port, Duration::from_secs(30)) {
                let mut m = Moto { child, port, https: opts.tls.is_some(), key: None, session: None };
                if opts.auth {
                    m.make_identities();
                }
                return m;
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

    /// Makes an IAM user and a role, both allowed everything, with boto3 from moto's own
    /// virtualenv (six actions, all before authentication starts); keeps the user's access key
    /// and the role's temporary credentials.
    fn make_identities(&mut self) {
        let python = moto_bin().with_file_name("python");
        let script = "import boto3, json, sys\n\
            kw = dict(endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                aws_access_key_id='setup', aws_secret_access_key='setup')\n\
            iam, sts = boto3.client('iam', **kw), boto3.client('sts', **kw)\n\
            allow = json.dumps({'Version': '2012-10-17',\n\
                'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]})\n\
            iam.create_user(UserName='sluice')\n\
            iam.put_user_policy(UserName='sluice', PolicyName='all', PolicyDocument=allow)\n\
            k = iam.create_access_key(UserName='sluice')['AccessKey']\n\
            trust = json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow',\n\
                'Principal': {'AWS': '*'}, 'Action': 'sts:AssumeRole'}]})\n\
            arn = iam.create_role(RoleName='r', AssumeRolePolicyDocument=trust)['Role']['Arn']\n\
            iam.put_role_policy(RoleName='r', PolicyName='all', PolicyDocument=allow)\n\
            c = sts.assume_role(RoleArn=arn, RoleSessionName='sluice')['Credentials']\n\
            print(k['AccessKeyId'], k['SecretAccessKey'])\n\
            print(c['AccessKeyId'], c['SecretAccessKey'], c['SessionToken'])\n";
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(self.endpoint())
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(out.status.success(), "IAM setup on moto: {}", String::from_utf8_lossy(&out.stderr));
        let s = String::from_utf8(out.stdout).unwrap();
        let w: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(w.len(), 5, "IAM setup on moto printed {s:?}");
        self.key = Some((w[0].into(), w[1].into()));
        self.session = Some((w[2].into(), w[3].into(), w[4].into()));
    }

    /// What `script` prints, run by the `python` of moto's virtualenv with `c`, a boto3 S3
    /// client of this server, and `args` as `sys.argv[1:]`: a second, independent S3 client
    /// to look at what sluice left on the server.
    pub fn boto3(&self, script: &str, args: &[&str]) -> String {
        let python = moto_bin().with_file_name("python");
        let prelude = "import boto3, sys\n\
            c = boto3.client('s3', endpoint_url=sys.argv.pop(1), region_name='us-east-1',\n\
                aws_access_key_id='look', aws_secret_access_key='look', verify=False)\n";
        let out = Command::new(&python)
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .arg(self.endpoint())
            .args(args)
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(out.status.success(), "boto3 {script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The multipart uploads under way in `bucket` (started, neither completed nor aborted):
    /// `key upload-id` each.
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let script =
            "for u in c.list_multipart_uploads(Bucket=sys.argv[1]).get('Uploads', []): print(u['Key'], u['UploadId'])\n";
        self.boto3(script, &[bucket]).lines().map(str::to_string).collect()
    }

    /// The names of the objects in `bucket` whose names begin with `prefix` (the first 1000).
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let script = "for o in c.list_objects_v2(Bucket=sys.argv[1], Prefix=sys.argv[2]).get('Contents', []): print(o['Key'])\n";
        self.boto3(script, &[bucket, prefix]).lines().map(str::to_string).collect()
    }

    /// The ETag of an object (`"md5-N"` for one stored in N parts).
    pub fn etag(&self, bucket: &str, key: &str) -> String {
        let script = "print(c.head_object(Bucket=sys.argv[1], Key=sys.argv[2])['ETag'])\n";
        self.boto3(script, &[bucket, key]).trim().to_string()
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

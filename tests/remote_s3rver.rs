//! `s3:` over HTTPS against a second, independent S3 server: npm's `s3rver` (see
//! `support/s3rver.rs`) serving a certificate of a private CA, so that TLS and `--cacert` are
//! exercised on a server other than moto. restic writes and sluice restores, sluice writes and
//! restic checks and restores; the right CA is accepted, a wrong one or none refused with one
//! line (not retried), and `--insecure-tls` skips the check only when asked.
//!
//! Every process of this test binary trusts the test CA through its environment: sluice's
//! tools through `RESTIC_CACERT`, restic (Go) through `SSL_CERT_FILE`, its system roots. The
//! checks that need no CA or another one run their stage with `RESTIC_CACERT` removed.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::rclone::Certs;
use support::s3rver::{S3rver, ACCESS_KEY, SECRET_KEY};
use support::*;

/// The certificates every server of this process serves, and a second CA that signed none of
/// them; made once, when the first test starts, and the environment set for them.
struct Tls {
    certs: Certs,
    other_ca: PathBuf,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("s3rver-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let certs = Certs::make(&dir.join("ok"));
        let other_ca = Certs::make(&dir.join("other")).ca;
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("RESTIC_CACERT", &certs.ca);
        std::env::set_var("SSL_CERT_FILE", &certs.ca);
        for k in ["AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE", "RESTIC_REPOSITORY"] {
            std::env::remove_var(k);
        }
        Tls { certs, other_ca }
    })
}

/// A server keeping its buckets under `dir`, and a [`Restic`] for `bucket_and_prefix` on it.
fn server(dir: &Path, bucket_and_prefix: &str) -> (S3rver, Restic) {
    let server = S3rver::start(&dir.join("s3rver"), &tls().certs);
    let r = support::remote::remote(&dir.join("r"), server.url(bucket_and_prefix));
    (server, r)
}

/// No stream shows the secret key (s3rver's is also its key id, so only stderr and the last
/// stdout are searched for the access key's secret by name).
fn quiet(res: &PipelineResult, what: &str) {
    for s in res.stderrs.iter().chain([&res.stdout]) {
        let s = String::from_utf8_lossy(s);
        assert!(!s.contains("AWS_SECRET_ACCESS_KEY="), "{what}: {s}");
    }
}

#[test]
fn restic_writes_sluice_restores() {
    let td = tempdir();
    let (_server, r) = server(td.path(), "bucket/some/prefix");
    let src = support::remote::edge_tree(td.path(), 31);
    support::remote::restic_writes_sluice_restores(&r, &src, &td.path().join("out"), None, &quiet);
}

#[test]
fn sluice_backs_up_restic_checks() {
    let td = tempdir();
    // The bucket does not exist yet: init-repo makes it.
    let (_server, r) = server(td.path(), "fresh/repo");
    let src = support::remote::edge_tree(td.path(), 32);
    support::remote::sluice_writes_restic_restores(&r, &src, &td.path().join("out"), Some(4), &quiet);
}

/// `snapshots ARGS` on `r` with `RESTIC_CACERT` removed from its environment.
fn snapshots_without_env(r: &Restic, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin("snapshots"));
    c.args(args).args(repo_args(r)).env_remove("RESTIC_CACERT");
    c.output().unwrap()
}

#[test]
fn certificates_are_checked() {
    let td = tempdir();
    let (_server, r) = server(td.path(), "tls/repo");
    r.init(2, &[]);
    let tls = tls();
    let ca = tls.certs.ca.to_str().unwrap();
    let other = tls.other_ca.to_str().unwrap();

    // The right CA given as a flag.
    let ok = snapshots_without_env(&r, &["--cacert", ca]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // No CA, or one that did not sign the server's certificate: one line, exit 1, no retries.
    for (what, args) in [("no --cacert", &[][..]), ("another CA", &["--cacert", other][..])] {
        let t0 = Instant::now();
        let out = snapshots_without_env(&r, args);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line(&out.stderr, what);
        assert!(line.starts_with("snapshots: s3:https://127.0.0.1:"), "{what}: {line}");
        assert!(line.contains("TLS") && line.contains("--cacert"), "{what}: {line}");
        assert!(out.stdout.is_empty(), "{what}: something on stdout");
        assert!(t0.elapsed() < Duration::from_secs(20), "{what}: a TLS failure was retried");
    }

    // Every tool that reaches the server refuses the wrong CA the same way, even with the
    // right one in the environment: the flag wins.
    for (name, args) in [("walk", &["latest"][..]), ("fetch-pack", &[][..])] {
        let mut argv = tool(&r, name, args);
        argv.extend([OsString::from("--cacert"), OsString::from(other)]);
        let res = Pipeline::new().stage(argv).run();
        assert_eq!(res.codes(), [1], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.starts_with(&format!("{name}: s3:https://127.0.0.1:")), "{name}: {line}");
    }

    // --insecure-tls skips verification, and only when asked: the wrong CA no longer matters.
    let insecure = snapshots_without_env(&r, &["--cacert", other, "--insecure-tls"]);
    assert!(insecure.status.success(), "{}", String::from_utf8_lossy(&insecure.stderr));
    assert!(String::from_utf8_lossy(&insecure.stdout).contains("\"type\":\"end\""));
}

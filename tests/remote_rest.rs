//! `rest:` repositories against a real REST server (`rclone serve restic` on 127.0.0.1) and
//! the real restic 0.14, with the round trips every server must pass (`support/remote.rs`):
//! restic writes and sluice restores, sluice writes and restic checks and restores, at each
//! of restic's pack sizes; HTTPS with a private CA; faults on the way; basic auth; a missing
//! repository; a dead server. The password in the URL must never show in any argv, stream,
//! message or `Debug` text.

mod support;

use std::time::{Duration, Instant};

use support::backup::{init_repo, Backup};
use support::rclone::{free_port, Certs, Rclone, RcloneOpts};
use support::remote::{remote, vs_source};
use support::*;

const USER: &str = "sluice";
/// The basic-auth password, carried in the repository URL.
const URL_PW: &str = "url-pw-7Hq2xK";

fn userinfo() -> String {
    format!("{USER}:{URL_PW}")
}

fn with_auth() -> RcloneOpts {
    RcloneOpts { auth: Some((USER.into(), URL_PW.into())), ..RcloneOpts::default() }
}

/// Asserts that neither the URL's password nor the basic-auth token made of it appears in any
/// stderr or in the stdout of `res`.
fn no_secret(res: &PipelineResult, what: &str) {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(userinfo());
    let mut streams: Vec<&[u8]> = res.stderrs.iter().map(Vec::as_slice).collect();
    streams.push(&res.stdout);
    for s in streams {
        let s = String::from_utf8_lossy(s);
        assert!(!s.contains(URL_PW) && !s.contains(&token), "{what}: the URL's password leaked:\n{s}");
    }
}

#[test]
fn restic_writes_sluice_restores() {
    let td = tempdir();
    let src = support::remote::edge_tree(td.path(), 11);
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let r = remote(&td.path().join("r"), server.url(Some(&userinfo()), "repo/"));
    support::remote::restic_writes_sluice_restores(&r, &src, &td.path().join("out"), None, &no_secret);
}

#[test]
fn sluice_backs_up_restic_checks() {
    let td = tempdir();
    let src = support::remote::edge_tree(td.path(), 12);
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let r = remote(&td.path().join("r"), server.url(Some(&userinfo()), "repo/"));
    support::remote::sluice_writes_restic_restores(&r, &src, &td.path().join("out"), Some(4), &no_secret);
    // Only complete files under their final names on the server: no temporaries.
    let bad = support::backup::repo_files_not_named_by_hash(&server.root.join("repo"));
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn every_pack_size() {
    // restic's 4, 16, 64 and 128 MiB packs, written by restic and by sluice, over REST.
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let url = |name: &str| server.url(Some(&userinfo()), &format!("{}/", name.replace('/', "-")));
    support::remote::at_every_pack_size(td.path(), &url, &no_secret);
}

#[test]
fn https_with_a_private_ca() {
    let td = tempdir();
    let certs = Certs::make(&td.path().join("certs"));
    let ca = certs.ca.to_str().unwrap().to_string();
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts { tls: Some(certs), auth: None });
    let r = remote(&td.path().join("r"), server.url(None, ""));
    let line = support::remote::private_ca(&r, td.path(), &ca, "rest:https://127.0.0.1:", &no_secret);
    assert!(line.contains("TLS"), "{line}");

    // --insecure-tls only when asked.
    let insecure = Pipeline::new().stage(tool(&r, "snapshots", &["--insecure-tls"])).run();
    insecure.assert_ok();
}

/// A `--cacert` (or `RESTIC_CACERT`) file that is missing or unreadable exited 1, as a
/// repository that failed, while one holding no certificate exited 2: both are the user's
/// argument being wrong, so both are usage errors (2), in one line naming the file.
#[test]
fn a_bad_cacert_file_is_a_usage_error() {
    let td = tempdir();
    let not_pem = td.path().join("not-pem.crt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let missing = td.path().join("missing.crt");
    let dir = td.path().join("a-directory.crt");
    std::fs::create_dir(&dir).unwrap();
    let r = remote(&td.path().join("r"), format!("rest:https://127.0.0.1:{}/", free_port()));
    for file in [&not_pem, &missing, &dir] {
        let f = file.to_str().unwrap();
        for (name, args) in [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..])] {
            let by_flag = Pipeline::new().stage(tool(&r, name, &[&["--cacert", f][..], args].concat())).run();
            let by_env = Pipeline::new().stage(tool(&r, name, args)).env("RESTIC_CACERT", f).run();
            for (how, res) in [("--cacert", by_flag), ("RESTIC_CACERT", by_env)] {
                assert_eq!(res.codes(), [2], "{name} with {how} {f}:\n{}", res.report());
                let line = one_line(&res.stderrs[0], name);
                assert!(line.starts_with(&format!("{name}: --cacert {f}: ")), "{line}");
            }
        }
    }
}

#[test]
fn wrong_credentials_are_one_line() {
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let good = remote(&td.path().join("r"), server.url(Some(&userinfo()), ""));
    good.init(2, &[]);
    let bad = remote(&td.path().join("r"), server.url(Some("sluice:wrong-pw-31x"), ""));
    for (name, args) in [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..])] {
        let t0 = Instant::now();
        let res = Pipeline::new().stage(tool(&bad, name, args)).run();
        assert_eq!(res.codes(), [1], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.contains("401"), "{name}: {line}");
        assert!(line.contains("sluice:***@"), "{name}: {line}");
        assert!(!line.contains("wrong-pw-31x"), "{name} shows the password: {line}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{name}: a 401 was retried");
    }
}

/// A password with a '/' in it (as `openssl rand -base64` makes them), put in the URL as it
/// is: the authority then ends at that '/', and every tool printed the password whole in its
/// message (`rest:http://sluice:ab/Zq...@127.0.0.1:.../`) and tried to reach a host named
/// after the user. Now the URL is refused at once, with the password hidden and the way to
/// write it; written `%2F`, it works.
#[test]
fn a_password_with_a_slash_never_shows() {
    const PW: &str = "ab/Zq81w+x";
    let td = tempdir();
    let server = Rclone::start(
        &td.path().join("srv"),
        &RcloneOpts { auth: Some((USER.into(), PW.into())), ..Default::default() },
    );
    let good = remote(&td.path().join("r"), server.url(Some("sluice:ab%2FZq81w+x"), "slash/"));
    good.init(2, &[]);
    let raw = remote(&td.path().join("r"), server.url(Some(&format!("{USER}:{PW}")), "slash/"));
    for (name, args) in [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..])] {
        let t0 = Instant::now();
        let res = Pipeline::new().stage(tool(&raw, name, args)).run();
        assert_eq!(res.codes(), [2], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(!line.contains("Zq81w"), "{name} shows the password: {line}");
        assert!(line.contains("%2F"), "{name}: {line}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{name}: retried");
    }
    let res = Pipeline::new().stage(tool(&good, "snapshots", &[])).run();
    assert_eq!(res.codes(), [0], "{}", res.report());
}

#[test]
fn missing_repository_exits_10() {
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts::default());
    let r = remote(&td.path().join("r"), server.url(None, "nothing-here/"));
    for (name, args) in
        [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..]), ("push", &[][..])]
    {
        let res = Pipeline::new().stage(tool(&r, name, args)).run();
        assert_eq!(res.codes(), [10], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.contains("does not exist"), "{name}: {line}");
    }
}

#[test]
fn dead_server_gives_up_within_the_limit() {
    let td = tempdir();
    let port = free_port();
    let url = format!("rest:http://{}@127.0.0.1:{port}/", userinfo());
    let r = remote(&td.path().join("r"), url);
    for (name, args) in [("snapshots", &[][..]), ("fetch-pack", &[][..])] {
        let t0 = Instant::now();
        let res = Pipeline::new().stage(tool(&r, name, args)).env("SLUICE_RETRY_TIMEOUT", "2").run();
        let took = t0.elapsed();
        assert_eq!(res.codes(), [1], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.contains("connection refused") && line.contains("gave up after"), "{name}: {line}");
        no_secret(&res, name);
        assert!(took < Duration::from_secs(10), "{name} took {took:?} with a 2 s limit");
    }
    // A malformed limit is a usage error, not a silent default.
    let res = Pipeline::new().stage(tool(&r, "snapshots", &[])).env("SLUICE_RETRY_TIMEOUT", "soon").run();
    assert_eq!(res.codes(), [2], "{}", res.report());
}

/// A server that answers every request with 503 and `Retry-After: 0` was asked again about
/// 190 times a second until the retry limit: its wait now only ever lengthens our own backoff.
/// (The fault-injecting proxy answers its 503s with `Retry-After: 0`; here it answers all.)
#[test]
fn retry_after_zero_is_not_a_hot_loop() {
    let td = tempdir();
    let refusing = support::faulty::Faulty::with_rule(free_port(), |_, _, _| Some(503), false);
    let r = remote(&td.path().join("r"), format!("rest:http://127.0.0.1:{}/", refusing.port));
    let t0 = Instant::now();
    let res = Pipeline::new().stage(tool(&r, "snapshots", &[])).env("SLUICE_RETRY_TIMEOUT", "2").run();
    let took = t0.elapsed();
    assert_eq!(res.codes(), [1], "{}", res.report());
    let line = one_line(&res.stderrs[0], "snapshots");
    assert!(line.contains("503") && line.contains("gave up after"), "{line}");
    let n = refusing.count(|c| &c.requests);
    assert!(n < 20, "{n} requests in {took:?}: {line}");
    assert!(took < Duration::from_secs(10), "took {took:?} with a 2 s limit");
}

#[test]
fn backup_then_restore_both_over_rest() {
    // sluice on both ends, the repository only on the server: init, back up, restore.
    let td = tempdir();
    let src = td.path().join("src");
    support::remote::small_tree(&src);
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let r = remote(&td.path().join("r"), server.url(Some(&userinfo()), "b/"));
    init_repo(&r, 1);
    let s = Backup::of(&["."]).in_dir(&src).run(&r);
    let out = td.path().join("out");
    let res = support::backup::restore(&r, s["snapshot_id"].as_str().unwrap(), &out);
    no_secret(&res, "restore");
    compare_trees(&src, &out, &vs_source()).unwrap();
}

#[test]
fn faults_on_the_way_change_nothing() {
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts::default());
    let url = |port| format!("rest:http://127.0.0.1:{port}/repo/");
    support::remote::through_faults(td.path(), server.port, &url, &no_secret);
}

#[test]
fn secrets_stay_hidden() {
    // The URL's password, and the basic-auth token made of it, over a full round trip.
    use base64::Engine;
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &with_auth());
    let token = base64::engine::general_purpose::STANDARD.encode(userinfo());
    let url = server.url(Some(&userinfo()), "hidden/");
    support::remote::secrets_stay_hidden(td.path(), &url, &[URL_PW, &token]);
    let rest =
        common::backend::rest::Rest::new(url.strip_prefix("rest:").unwrap(), &Default::default()).unwrap();
    let dbg = format!("{rest:?}");
    assert!(!dbg.contains(URL_PW) && !dbg.contains(&token), "{dbg}");
}

#[test]
fn push_reads_on_while_packs_upload() {
    // Every pack upload is refused (503, retried for minutes), so no pack is ever stored;
    // push must still read on until its bound: 2 packs uploading and 2 queued with
    // `rest.connections=2`, and the one it is receiving. (A push that paused reading while a
    // batch uploads would stop after 2.) The stream is fed from here, counting what push took.
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let td = tempdir();
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts::default());
    let r = remote(&td.path().join("r"), server.url(None, ""));
    init_repo(&r, 2);
    let src = td.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Incompressible, in packs of 1 MiB or more: about one chunk each (1 MiB on average;
    // the chunker's boundaries depend on the repository's polynomial).
    std::fs::write(src.join("bulk.bin"), random_bytes(62, 24 << 20)).unwrap();
    let stages = Backup::of(&[&src]).pack_args(&["--pack-size", "1"]).stages(&r);
    let packed = Pipeline::new()
        .stage(stages[0].clone())
        .stage(stages[1].clone())
        .env("SLUICE_ALLOW_SMALL_PACKS", "1")
        .run();
    packed.assert_ok();
    let stream = packed.stdout.clone();
    // Where each pack's header record ends in the stream: the pack is whole there.
    let ends: Vec<usize> = stream
        .split_inclusive(|&b| b == b'\n')
        .scan(0, |at, line| {
            *at += line.len();
            Some((*at, line.starts_with(b"{\"type\":\"pack_header\"")))
        })
        .filter_map(|(at, header)| header.then_some(at))
        .collect();
    assert!(ends.len() >= 8, "{} packs in the stream:\n{}", ends.len(), packed.report());

    let refusing = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| (m == "POST" && t.starts_with("/data/")).then_some(503),
        false,
    );
    let mut push = Command::new(bin("push"))
        .args(["--repo", &format!("rest:http://127.0.0.1:{}/", refusing.port), "-o", "rest.connections=2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = push.stdin.take().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let t = taken.clone();
    let feeder = std::thread::spawn(move || {
        for piece in stream.chunks(16 << 10) {
            if stdin.write_all(piece).is_err() {
                return;
            }
            t.fetch_add(piece.len(), Ordering::SeqCst);
        }
    });
    // Wait until push stops taking input (nothing new for 3 s).
    let t0 = Instant::now();
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        let now = taken.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let whole = ends.iter().filter(|&&e| e <= taken.load(Ordering::SeqCst)).count();
    push.kill().unwrap();
    push.wait().unwrap();
    feeder.join().unwrap();
    assert!(refusing.count(|c| &c.errors_503) > 0, "no upload was tried");
    assert!(whole >= 4, "push read only {whole} whole packs while none could be stored");
    assert!(whole < ends.len(), "push read all {whole} packs: reading is not bounded");
}

/// A pack cut short on the server (an interrupted upload or copy) answers a ranged read with
/// fewer bytes than asked, in a complete answer. That was taken for a body cut on the way and
/// retried for the whole retry limit (120 s by default) before fetch-pack fell back to what the
/// pack still holds; a short object is now a permanent answer, and the restore goes on at once.
#[test]
fn a_pack_cut_short_on_the_server_is_not_retried() {
    let td = tempdir();
    let src = td.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i, 300_000)).unwrap();
    }
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts::default());
    let r = remote(&td.path().join("r"), server.url(None, "repo/"));
    r.init(2, &[]);
    r.backup_dir_contents(&src, &[]);
    // The largest pack holds the data: cut it in the middle.
    let mut packs: Vec<(u64, std::path::PathBuf)> = walkdir::WalkDir::new(server.root.join("repo/data"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.metadata().unwrap().len(), e.into_path()))
        .collect();
    packs.sort();
    let (size, pack) = packs.pop().expect("a data pack");
    std::fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(size / 2).unwrap();
    // A new server: rclone's directory cache would still promise the old size.
    drop(server);
    let server = Rclone::start(&td.path().join("srv"), &RcloneOpts::default());
    let r = remote(&td.path().join("r2"), server.url(None, "repo/"));

    let out = td.path().join("out");
    let t0 = Instant::now();
    let res = Pipeline::new()
        .stage(tool(&r, "walk", &["latest"]))
        .stage(tool(&r, "fetch-pack", &[]))
        .stage(tool(&r, "unpack", &["--target", out.to_str().unwrap()]))
        .env("SLUICE_RETRY_TIMEOUT", "30")
        .run();
    let took = t0.elapsed();
    assert_eq!(res.codes(), [0, 3, 3], "{}", res.report());
    assert!(
        took < Duration::from_secs(20),
        "the restore took {took:?}: the short pack was retried\n{}",
        res.report()
    );
    let restored = (0..4u64).filter(|i| out.join(format!("f{i}")).exists()).count();
    assert!((1..4).contains(&restored), "{restored} of 4 files restored:\n{}", res.report());
    for i in 0..4u64 {
        let p = out.join(format!("f{i}"));
        if p.exists() {
            assert_eq!(std::fs::read(&p).unwrap(), random_bytes(i, 300_000), "f{i}");
        }
    }
}

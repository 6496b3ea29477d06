//! `s3:` repositories against a real S3 server (`moto_server` on 127.0.0.1, see
//! `support/moto.rs`) and the real restic 0.14, with the round trips every server must pass
//! (`support/remote.rs`): restic writes and sluice restores, sluice writes and restic checks
//! and restores, at each of restic's pack sizes; multipart uploads of large packs; wrong
//! credentials (moto checking signatures) and credentials from the AWS tools' files; a
//! missing bucket; HTTPS with a private CA; faults on the way. The secret key and the
//! session token must never show in any argv, stream, message or `Debug` text.

mod support;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use support::moto::{Moto, MotoOpts};
use support::rclone::Certs;
use support::*;

const ACCESS_KEY: &str = "AKIASLUICETEST";
/// Distinctive, so a leak anywhere is found by a plain search.
const SECRET: &str = "sluice-s3-secret-Zq81wP";
const TOKEN: &str = "sluice-s3-session-token-Hv40kT";

/// The test credentials for every process this test binary starts (moto without
/// authentication takes any). Set once, before any test spawns anything.
fn credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_SESSION_TOKEN", TOKEN);
        std::env::remove_var("AWS_DEFAULT_REGION");
        for k in [
            "RESTIC_REPOSITORY",
            "RESTIC_CACERT",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        ] {
            std::env::remove_var(k);
        }
    });
}

/// A [`Restic`] (password file, cache) whose repository is `url`.
fn remote(dir: &Path, url: String) -> Restic {
    credentials();
    support::remote::remote(dir, url)
}

/// Asserts that no secret appears in any stderr or the stdout of `res`.
fn no_secret(res: &PipelineResult, what: &str, secrets: &[&str]) {
    let mut streams: Vec<&[u8]> = res.stderrs.iter().map(Vec::as_slice).collect();
    streams.push(&res.stdout);
    for s in streams {
        let s = String::from_utf8_lossy(s);
        for secret in [SECRET, TOKEN].iter().chain(secrets) {
            assert!(!s.contains(secret), "{what}: a secret leaked:\n{s}");
        }
    }
}

/// [`no_secret`] with no secret but the usual ones, as [`support::remote::Streams`] wants.
fn no_usual_secret(res: &PipelineResult, what: &str) {
    no_secret(res, what, &[]);
}

#[test]
fn restic_writes_sluice_restores() {
    let td = tempdir();
    let src = support::remote::edge_tree(td.path(), 21);
    let server = Moto::start(&MotoOpts::default());
    let r = remote(&td.path().join("r"), server.url("bucket/some/prefix"));
    support::remote::restic_writes_sluice_restores(&r, &src, &td.path().join("out"), None, &no_usual_secret);
}

#[test]
fn sluice_backs_up_restic_checks() {
    let td = tempdir();
    let src = support::remote::edge_tree(td.path(), 22);
    let server = Moto::start(&MotoOpts::default());
    // The bucket does not exist yet: init-repo makes it.
    let r = remote(&td.path().join("r"), server.url("fresh/repo"));
    support::remote::sluice_writes_restic_restores(
        &r,
        &src,
        &td.path().join("out"),
        Some(4),
        &no_usual_secret,
    );
}

#[test]
fn every_pack_size() {
    // restic's 4, 16, 64 and 128 MiB packs, written by restic and by sluice, over S3 (64 and
    // 128 MiB packs go as multipart uploads from sluice; restic 0.14 uses its own).
    credentials();
    let td = tempdir();
    let server = Moto::start(&MotoOpts::default());
    support::remote::at_every_pack_size(td.path(), &|name| server.url(name), &no_usual_secret);
}

#[test]
fn wrong_credentials_are_one_line() {
    let td = tempdir();
    let server = Moto::start(&MotoOpts { auth: true, ..MotoOpts::default() });
    let (id, secret) = server.key.clone().unwrap();
    let r = remote(&td.path().join("r"), server.url("auth/repo"));
    let mut c = r.command();
    c.env("AWS_ACCESS_KEY_ID", &id).env("AWS_SECRET_ACCESS_KEY", &secret).env_remove("AWS_SESSION_TOKEN");
    let out = c.arg("init").output().unwrap();
    assert!(out.status.success(), "restic init: {}", String::from_utf8_lossy(&out.stderr));

    let with = |key: &str, sec: &str, name: &str, args: &[&str]| {
        Pipeline::new()
            .stage(tool(&r, name, args))
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", sec)
            .env("AWS_SESSION_TOKEN", "")
            .run()
    };
    // The right key signs correctly: moto checks every signature.
    let ok = with(&id, &secret, "snapshots", &[]);
    ok.assert_ok();
    assert!(framed_records(&ok).is_empty());

    let wrong = "wrong-secret-Pp55";
    for (name, args) in [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..])] {
        let t0 = Instant::now();
        let res = with(&id, wrong, name, args);
        assert_eq!(res.codes(), [1], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.contains("403"), "{name}: {line}");
        assert!(line.contains("SignatureDoesNotMatch"), "{name}: {line}");
        assert!(line.contains("AWS_SECRET_ACCESS_KEY"), "{name}: the line should say what to check: {line}");
        no_secret(&res, name, &[wrong, &secret]);
        assert!(t0.elapsed() < Duration::from_secs(20), "{name}: a 403 was retried");
    }
    // An unknown key id is named as such.
    let res = with("AKIANOSUCHKEY", &secret, "walk", &["latest"]);
    assert_eq!(res.codes(), [1], "{}", res.report());
    let line = one_line(&res.stderrs[0], "walk");
    assert!(line.contains("403 InvalidAccessKeyId"), "{line}");
    no_secret(&res, "unknown key", &[&secret]);

    // Temporary credentials: the session token is sent and signed.
    let (tid, tsecret, token) = server.session.clone().unwrap();
    let with_token = |tok: &str, name: &str, args: &[&str]| {
        Pipeline::new()
            .stage(tool(&r, name, args))
            .env("AWS_ACCESS_KEY_ID", &tid)
            .env("AWS_SECRET_ACCESS_KEY", &tsecret)
            .env("AWS_SESSION_TOKEN", tok)
            .run()
    };
    let ok = with_token(&token, "snapshots", &[]);
    ok.assert_ok();
    no_secret(&ok, "with a session token", &[&tsecret, &token]);
    let bad_token = "not-the-token-Yy19";
    let res = with_token(bad_token, "walk", &["latest"]);
    assert_eq!(res.codes(), [1], "{}", res.report());
    let line = one_line(&res.stderrs[0], "walk");
    assert!(line.contains("InvalidToken") && line.contains("AWS_SESSION_TOKEN"), "{line}");
    no_secret(&res, "wrong session token", &[&tsecret, &token, bad_token]);
}

#[test]
fn missing_bucket_exits_10() {
    let td = tempdir();
    let server = Moto::start(&MotoOpts::default());
    let r = remote(&td.path().join("r"), server.url("no-such-bucket/x"));
    for (name, args) in
        [("snapshots", &[][..]), ("walk", &["latest"][..]), ("fetch-pack", &[][..]), ("push", &[][..])]
    {
        let res = Pipeline::new().stage(tool(&r, name, args)).run();
        assert_eq!(res.codes(), [10], "{name}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], name);
        assert!(line.contains("does not exist"), "{name}: {line}");
        no_secret(&res, name, &[]);
    }
}

#[test]
fn usage_errors() {
    credentials();
    // The repository (and flags), extra environment, and what the one line must say.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        ("s3:http://127.0.0.1:9/", &[], "no bucket"),
        ("s3:http://AKIA:pw-in-url-Kk2@127.0.0.1:9/b", &[], "credentials do not belong"),
        (
            "s3:http://127.0.0.1:9/b",
            &[("AWS_SECRET_ACCESS_KEY", ""), ("HOME", "/nonexistent")],
            "no credentials",
        ),
        ("s3:http://127.0.0.1:9/b -o s3.nope=1", &[], "no such option"),
    ];
    for (repo, env, want) in cases {
        let mut parts = repo.split(' ');
        let mut argv: Vec<OsString> = vec!["snapshots".into()];
        argv.extend(["-r".into(), parts.next().unwrap().into()]);
        argv.extend(parts.map(OsString::from));
        argv.extend(["--password-file".into(), "/dev/null".into()]);
        let mut p = Pipeline::new().stage(argv);
        for (k, v) in env {
            p = p.env(k, v);
        }
        let res = p.run();
        assert_eq!(res.codes(), [2], "{repo}:\n{}", res.report());
        let line = one_line(&res.stderrs[0], repo);
        assert!(line.contains(want), "{repo}: {line}");
        assert!(!line.contains("pw-in-url-Kk2"), "{line}");
    }
}

/// `s3:host:port/bucket` means HTTPS, as in restic; against a server on plain HTTP (a MinIO
/// on a test machine) the handshake fails, and the line said to use --cacert for a private
/// CA, which cannot help. Now it says the server does not speak TLS.
#[test]
fn https_to_a_plain_http_server_says_so() {
    let td = tempdir();
    let server = Moto::start(&MotoOpts::default());
    let r = remote(&td.path().join("r"), format!("s3:127.0.0.1:{}/plain/repo", server.port));
    let res = Pipeline::new().stage(tool(&r, "snapshots", &[])).run();
    assert_eq!(res.codes(), [1], "{}", res.report());
    let line = one_line(&res.stderrs[0], "snapshots");
    assert!(line.contains("does not speak TLS") && line.contains("http://"), "{line}");
    assert!(!line.contains("--cacert"), "{line}");
}

/// A moto server and a repository made by restic at `bucket_and_prefix` on it.
fn initialised(dir: &Path, bucket_and_prefix: &str) -> (Moto, Restic) {
    let server = Moto::start(&MotoOpts::default());
    let r = remote(&dir.join("r"), server.url(bucket_and_prefix));
    support::backup::init_repo(&r, 2);
    (server, r)
}

/// `-o s3.region=` (a script's `-o s3.region=$REGION` with REGION unset) was refused as "no
/// such option of the s3 backend"; empty, it is now a region not given, as for restic.
#[test]
fn an_empty_region_is_no_region() {
    let td = tempdir();
    let (_server, r) = initialised(td.path(), "region/repo");
    let res = Pipeline::new().stage(tool(&r, "snapshots", &["-o", "s3.region="])).run();
    assert_eq!(res.codes(), [0], "{}", res.report());
}

#[test]
fn https_with_a_private_ca() {
    let td = tempdir();
    let certs = Certs::make(&td.path().join("certs"));
    let ca = certs.ca.to_str().unwrap().to_string();
    let server = Moto::start(&MotoOpts { tls: Some(certs), auth: false });
    let r = remote(&td.path().join("r"), server.url("tls/repo"));
    support::remote::private_ca(&r, td.path(), &ca, "s3:https://127.0.0.1:", &no_usual_secret);
}

#[test]
fn the_backend_on_its_own() {
    // The S3 backend through the retry wrapper, as every tool uses it, against moto: restic's
    // layout, listings over several pages, ranges, a missing object that looks like a missing
    // local file.
    use common::backend::retry::{Policy, Retrying};
    use common::backend::s3::S3;
    use common::backend::{Backend, FileType, Options};
    credentials();
    let server = Moto::start(&MotoOpts::default());
    let repo = server.url("pages/pre/fix").strip_prefix("s3:").unwrap().to_string();
    let s3 = S3::new(&repo, &Options::default()).unwrap().with_list_page(3);
    let dbg = format!("{s3:?}");
    assert!(!dbg.contains(SECRET) && !dbg.contains(TOKEN) && dbg.contains(ACCESS_KEY), "{dbg}");
    let b = Retrying::new(s3, Policy::default());
    b.create().unwrap();
    assert!(!b.exists(FileType::Config, "").unwrap());
    b.write(FileType::Config, "", b"config bytes").unwrap();
    assert!(b.exists(FileType::Config, "").unwrap());
    assert_eq!(b.create().unwrap_err().exit_code(), 2, "create over a config");

    let ids: Vec<String> = (0..8u8).map(|i| hex::encode([i * 17; 32])).collect();
    for (i, id) in ids.iter().enumerate() {
        b.write(FileType::Pack, id, &vec![i as u8; 100 + i]).unwrap();
    }
    b.write(FileType::Key, &ids[0], b"key").unwrap();
    b.write(FileType::Key, "not-an-id", b"ignored").unwrap();
    let mut listed = b.list(FileType::Pack).unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let want: Vec<(String, u64)> =
        ids.iter().enumerate().map(|(i, id)| (id.clone(), 100 + i as u64)).collect();
    assert_eq!(listed.into_iter().map(|e| (e.name, e.size)).collect::<Vec<_>>(), want);
    assert_eq!(b.list(FileType::Key).unwrap().len(), 1);
    assert!(b.list(FileType::Snapshot).unwrap().is_empty());

    // (That packs are under data/XX/ as restic keeps them, restic check proves elsewhere.)
    assert_eq!(b.size(FileType::Pack, &ids[5]).unwrap(), 105);
    let mut buf = Vec::new();
    b.read_range(FileType::Pack, &ids[5], 100, 5, &mut buf).unwrap();
    assert_eq!(buf, [5u8; 5]);
    let missing = hex::encode([0xeeu8; 32]);
    let e = b.read(FileType::Pack, &missing).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(b.size(FileType::Pack, &missing).unwrap_err().is_not_found());
    b.remove(FileType::Pack, &ids[0]).unwrap();
    b.remove(FileType::Pack, &ids[0]).unwrap();
    assert_eq!(b.list(FileType::Pack).unwrap().len(), 7);
    assert!(!b.location().contains(SECRET));
}

#[test]
fn dead_server_gives_up_within_the_limit() {
    let td = tempdir();
    let port = support::rclone::free_port();
    let r = remote(&td.path().join("r"), format!("s3:http://127.0.0.1:{port}/bucket"));
    let t0 = Instant::now();
    let res = Pipeline::new().stage(tool(&r, "snapshots", &[])).env("SLUICE_RETRY_TIMEOUT", "2").run();
    assert_eq!(res.codes(), [1], "{}", res.report());
    let line = one_line(&res.stderrs[0], "snapshots");
    assert!(line.contains("connection refused") && line.contains("gave up after"), "{line}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    no_secret(&res, "dead server", &[]);
}

#[test]
fn faults_on_the_way_change_nothing() {
    // moto without authentication, so the Host the proxy passes on does not matter.
    credentials();
    let td = tempdir();
    let server = Moto::start(&MotoOpts::default());
    let url = |port| format!("s3:http://127.0.0.1:{port}/faults/repo");
    support::remote::through_faults(td.path(), server.port, &url, &no_usual_secret);
}

#[test]
fn large_packs_go_in_parts() {
    // A pack above 16 MiB goes as a multipart upload of 8 MiB parts, each retried on its own
    // (through the fault proxy), and a failed one is aborted so that no part stays behind
    // (ListMultipartUploads, asked with boto3, is empty).
    use common::backend::retry::{Policy, Retrying};
    use common::backend::s3::S3;
    use common::backend::{Backend, FileType, Options};
    use std::io::Write;
    credentials();
    let server = Moto::start(&MotoOpts::default());
    let open = |port: u16, limit: Duration| {
        let s3 = S3::new(&format!("http://127.0.0.1:{port}/big/repo"), &Options::default()).unwrap();
        Retrying::new(s3, Policy { limit, ..Policy::default() })
    };
    let direct = open(server.port, Duration::from_secs(30));
    direct.create().unwrap();
    let data: Vec<u8> =
        (0..(20u32 << 20) + 12345).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let upload = |b: &dyn Backend, name: &str| {
        let mut up = b.upload(FileType::Pack).unwrap();
        up.write_all(&data).unwrap();
        up.commit(name)
    };

    let proxy = support::faulty::Faulty::start(server.port);
    let id = hex::encode([0x5au8; 32]);
    upload(&open(proxy.port, Duration::from_secs(30)), &id).unwrap();
    assert!(proxy.count(|c| &c.errors_500) + proxy.count(|c| &c.errors_503) > 0, "no fault was injected");
    assert_eq!(direct.read(FileType::Pack, &id).unwrap(), data, "the object is not what was sent");
    let etag = server.etag("big", &format!("repo/data/5a/{id}"));
    assert!(etag.ends_with("-3\""), "stored in 3 parts, not {etag}");
    assert_eq!(server.multipart_uploads("big"), Vec::<String>::new(), "uploads left after success");

    // Part 2 is refused until the retries give up: the upload fails, with the part named, and
    // leaves neither an object nor parts.
    let refusing = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| (m == "PUT" && t.contains("partNumber=2")).then_some(500),
        false,
    );
    let id2 = hex::encode([0x6bu8; 32]);
    let e = upload(&open(refusing.port, Duration::from_secs(2)), &id2).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("part 2") && msg.contains("500") && msg.contains("gave up"), "{msg}");
    assert!(!direct.exists(FileType::Pack, &id2).unwrap());
    assert_eq!(server.multipart_uploads("big"), Vec::<String>::new(), "parts left after a failure");

    // The answer to the first start of an upload is lost: the upload it made is found and
    // aborted; so is the answer to the completion, which did complete.
    static LOST_ONCE: [std::sync::atomic::AtomicBool; 2] =
        [std::sync::atomic::AtomicBool::new(false), std::sync::atomic::AtomicBool::new(false)];
    let losing = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| {
            let which = match (m, t) {
                ("POST", t) if t.ends_with("?uploads=") => 0,
                ("POST", t) if t.contains("?uploadId=") => 1,
                _ => return None,
            };
            (!LOST_ONCE[which].swap(true, std::sync::atomic::Ordering::SeqCst))
                .then_some(support::faulty::LOST)
        },
        false,
    );
    let id4 = hex::encode([0x8eu8; 32]);
    upload(&open(losing.port, Duration::from_secs(30)), &id4).unwrap();
    assert_eq!(losing.count(|c| &c.cut_bodies), 2, "both answers were to be lost");
    assert_eq!(direct.read(FileType::Pack, &id4).unwrap(), data);
    assert_eq!(server.multipart_uploads("big"), Vec::<String>::new(), "a lost start left an upload");

    // A small pack is still one PUT (its ETag has no part count).
    let small = hex::encode([0x7du8; 32]);
    let mut up = direct.upload(FileType::Pack).unwrap();
    up.write_all(&data[..1 << 20]).unwrap();
    up.commit(&small).unwrap();
    assert!(!server.etag("big", &format!("repo/data/7d/{small}")).contains('-'));
}

#[test]
fn credentials_from_the_aws_files() {
    // Without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as restic does: the profile
    // AWS_PROFILE (or default) of ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE; the
    // environment wins when it has both. moto checks every signature against its IAM.
    let td = tempdir();
    let server = Moto::start(&MotoOpts { auth: true, ..MotoOpts::default() });
    let (id, secret) = server.key.clone().unwrap();
    let r = remote(&td.path().join("r"), server.url("files/repo"));
    let mut c = r.command();
    c.env("AWS_ACCESS_KEY_ID", &id).env("AWS_SECRET_ACCESS_KEY", &secret).env_remove("AWS_SESSION_TOKEN");
    let out = c.arg("init").output().unwrap();
    assert!(out.status.success(), "restic init: {}", String::from_utf8_lossy(&out.stderr));

    let home = td.path().join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    let wrong = "wrong-file-secret-Ux71";
    fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [wrong]\naws_access_key_id = {id}\naws_secret_access_key = {wrong}\n"
        ),
    )
    .unwrap();
    fs::write(home.join(".aws/config"), "[default]\nregion = us-east-1\n").unwrap();
    let elsewhere = td.path().join("elsewhere");
    fs::write(&elsewhere, format!("[wrong]\naws_access_key_id={id}\naws_secret_access_key={secret}\n"))
        .unwrap();
    let with = |env: &[(&str, &str)]| {
        let mut p = Pipeline::new()
            .stage(tool(&r, "snapshots", &[]))
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "")
            .env("AWS_SECRET_ACCESS_KEY", "")
            .env("AWS_SESSION_TOKEN", "");
        for (k, v) in env {
            p = p.env(k, v);
        }
        let res = p.run();
        no_secret(&res, "credentials from files", &[&secret, wrong]);
        res
    };

    with(&[]).assert_ok();
    let res = with(&[("AWS_PROFILE", "wrong")]);
    assert_eq!(res.codes(), [1], "{}", res.report());
    assert!(one_line(&res.stderrs[0], "profile wrong").contains("SignatureDoesNotMatch"));
    with(&[("AWS_PROFILE", "wrong"), ("AWS_ACCESS_KEY_ID", &id), ("AWS_SECRET_ACCESS_KEY", &secret)])
        .assert_ok();
    with(&[("AWS_PROFILE", "wrong"), ("AWS_SHARED_CREDENTIALS_FILE", elsewhere.to_str().unwrap())])
        .assert_ok();

    let res = with(&[("AWS_PROFILE", "nobody")]);
    assert_eq!(res.codes(), [2], "{}", res.report());
    let line = one_line(&res.stderrs[0], "no such profile");
    assert!(line.contains("no credentials") && line.contains("profile nobody"), "{line}");
}

#[test]
fn secrets_stay_hidden() {
    // The secret key and the session token, over a full round trip (the access key id is
    // no secret: it is in every request).
    credentials();
    let td = tempdir();
    let server = Moto::start(&MotoOpts::default());
    support::remote::secrets_stay_hidden(td.path(), &server.url("hidden/repo"), &[SECRET, TOKEN]);
}

/// The packed stream (`chunk | pack`, 32 MiB packs) of one file of `bytes` random bytes,
/// for `r`, in `dir/stream`.
fn packed_stream(dir: &Path, r: &Restic, bytes: usize) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("bulk.bin"), random_bytes(61, bytes)).unwrap();
    let stages = support::backup::Backup::of(&[&src]).pack_args(&["--pack-size", "32"]).stages(r);
    let packed = Pipeline::new().stage(stages[0].clone()).stage(stages[1].clone()).run();
    packed.assert_ok();
    let stream = dir.join("stream");
    fs::write(&stream, &packed.stdout).unwrap();
    stream
}

/// `push` of `stream` into `bucket/repo` through 127.0.0.1:`port` (a proxy), its stderr in
/// `dir/push.err`.
fn spawn_push(
    dir: &Path,
    port: u16,
    bucket: &str,
    stream: &Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(bin("push"))
        .arg("--repo")
        .arg(format!("s3:http://127.0.0.1:{port}/{bucket}/repo"))
        .envs(env.iter().copied())
        .stdin(fs::File::open(stream).unwrap())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("push.err")).unwrap())
        .spawn()
        .unwrap()
}

/// A `push` held in the middle of a pack's multipart upload: part 1 is stored, part 2
/// refused by a proxy (with 503) again and again. Returns the running push (its stderr in
/// `push.err` under `dir`), the proxy, the server and the repository at `bucket/repo`.
fn push_held_at_part_two(
    dir: &Path,
    bucket: &str,
) -> (std::process::Child, support::faulty::Faulty, Moto, Restic) {
    let server = Moto::start(&MotoOpts::default());
    let refusing = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| (m == "PUT" && t.contains("partNumber=2")).then_some(503),
        false,
    );
    let r = remote(&dir.join("r"), server.url(&format!("{bucket}/repo")));
    support::backup::init_repo(&r, 2);
    // A 20 MiB file in one pack, above the multipart threshold.
    let stream = packed_stream(dir, &r, 20 << 20);
    let mut push = spawn_push(dir, refusing.port, bucket, &stream, &[]);
    let t0 = Instant::now();
    while refusing.count(|c| &c.errors_503) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "push never reached part 2");
        if push.try_wait().unwrap().is_some() {
            panic!("push ended before part 2: {}", fs::read_to_string(dir.join("push.err")).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (push, refusing, server, r)
}

/// A server gone in the middle of a backup (here: refusing every pack and the lock's
/// removal) gave two lines, in the wrong order: first that the lock could not be removed,
/// then the failure that caused it. Now it is one line, the cause first; no snapshot.
#[test]
fn a_server_gone_mid_backup_is_one_line() {
    let td = tempdir();
    let (server, r) = initialised(td.path(), "gone/repo");
    let gone = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| {
            ((m == "PUT" && t.contains("/data/")) || (m == "DELETE" && t.contains("/locks/"))).then_some(503)
        },
        false,
    );
    let stream = packed_stream(td.path(), &r, 1 << 20);
    let status =
        spawn_push(td.path(), gone.port, "gone", &stream, &[("SLUICE_RETRY_TIMEOUT", "1")]).wait().unwrap();
    let err = fs::read_to_string(td.path().join("push.err")).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (cause, lock) = (err.find("/data/"), err.find("restic unlock"));
    assert!(cause.is_some() && lock.is_some() && cause < lock, "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(server.objects("gone", "repo/snapshots/"), Vec::<String>::new());
}

/// check-repo's lock that the server would not let go of was warned about as `lock: could not
/// remove lock ...`: a line no tool signs, without the way out. Now check-repo signs it and
/// names `restic unlock`.
#[test]
fn check_repo_names_itself_for_a_lock_left() {
    let td = tempdir();
    let (server, _r) = initialised(td.path(), "held/repo");
    let keeping = support::faulty::Faulty::with_rule(
        server.port,
        |_, m, t| (m == "DELETE" && t.contains("/locks/")).then_some(503),
        false,
    );
    let via = remote(&td.path().join("via"), format!("s3:http://127.0.0.1:{}/held/repo", keeping.port));
    let res = Pipeline::new().stage(tool(&via, "check-repo", &[])).env("SLUICE_RETRY_TIMEOUT", "1").run();
    assert_eq!(res.codes(), [0], "{}", res.report());
    let err = String::from_utf8_lossy(&res.stderrs[0]);
    let line = err.lines().find(|l| l.contains("could not remove lock")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.starts_with("check-repo: ") && line.contains("restic unlock"), "{line}");
}

#[test]
fn a_killed_upload_is_aborted_by_the_next_run() {
    // push is killed outright (SIGKILL) in the middle of a pack's multipart upload. The parts
    // stay in the bucket; the next backup's push finds the dead run's upload and aborts it.
    // (moto reports every upload as started in 2010, so it is old enough for the age rule;
    // that rule on its own is the unit test of `s3::multipart`.)
    use support::backup::Backup;
    let td = tempdir();
    let (mut push, _proxy, server, r) = push_held_at_part_two(td.path(), "killed");
    push.kill().unwrap();
    push.wait().unwrap();
    let left = server.multipart_uploads("killed");
    assert_eq!(left.len(), 1, "the killed upload: {left:?}");

    let small = td.path().join("small");
    support::remote::small_tree(&small);
    Backup::of(&[&small]).run(&r);
    assert_eq!(
        server.multipart_uploads("killed"),
        Vec::<String>::new(),
        "the dead run's parts are still there"
    );
}

/// Ctrl-C (or SIGTERM) in the middle of a pack's multipart upload aborted nothing: push said
/// it had removed its temporary files, yet the parts sent stayed stored (and paid for) until
/// a later backup found the upload a day old. Now the signal aborts the upload, and the lock
/// goes too.
#[test]
fn an_interrupted_upload_is_aborted_at_once() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let td = tempdir();
        let (mut push, _proxy, server, _r) = push_held_at_part_two(td.path(), "interrupted");
        unsafe { libc::kill(push.id() as i32, sig) };
        let status = push.wait().unwrap();
        let err = fs::read_to_string(td.path().join("push.err")).unwrap();
        assert_eq!(status.code(), Some(code), "signal {sig}: {err}");
        assert_eq!(err.lines().count(), 1, "signal {sig}: {err}");
        assert_eq!(server.multipart_uploads("interrupted"), Vec::<String>::new(), "signal {sig}: parts left");
        let locks = server.objects("interrupted", "repo/locks/");
        assert!(locks.is_empty(), "signal {sig}: a lock left: {locks:?}");
    }
}

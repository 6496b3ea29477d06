//! The restore pipeline on bad input: each failure exits with the right code, says on ONE
//! stderr line what failed and where, and leaves nothing under a final name that looks
//! complete but is not (an unfinished file has no name at all, or where the file system
//! cannot make unnamed files stays `.NAME.XXXXXXXX.sluice-part`). A malformed
//! stream stops the restore; a damaged or missing blob fails only the files needing it.

mod support;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use serde_json::Value;
use support::*;

/// The file whose blobs the tests damage: random, so several unique blobs, and sorted in the
/// middle of `data/` so that files before it are complete and files after it never start.
const MULTI: &str = "data/multi.bin";

/// Whether `rel` is a partial name of [`MULTI`]: `data/.multi.bin.XXXXXXXX.sluice-part`.
fn is_multi_part(rel: &[u8]) -> bool {
    let s = String::from_utf8_lossy(rel);
    let Some(tag) = s.strip_prefix("data/.multi.bin.").and_then(|r| r.strip_suffix(".sluice-part")) else {
        return false;
    };
    tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The small tree plus [`MULTI`], backed up into a v2 repository with 4 MiB packs.
fn fixture(seed: u64) -> Fixture {
    let fill = |src: &Path| {
        make_tree(src, seed, &TreeOpts::default());
        fs::write(src.join(MULTI), random_bytes(seed, 9 << 20)).unwrap();
    };
    Fixture::new(fill, &["--pack-size", "4"])
}

/// What these tests do with a fixture.
trait Fx {
    fn multi_record(&self) -> Value;
    fn unpack(&self, input: Vec<u8>, target: &Path) -> PipelineResult;
}

impl Fx for Fixture {
    /// The walk record of [`MULTI`], checked to have at least two blobs.
    fn multi_record(&self) -> Value {
        let records = walk_records(&self.r, "latest", &[]);
        let rec = record_for(&records, MULTI).clone();
        assert!(
            rec["blobs"].as_array().unwrap().len() >= 2,
            "{MULTI} should be several blobs: {}",
            rec["blobs"]
        );
        rec
    }

    /// `unpack --target DIR` fed `input`.
    fn unpack(&self, input: Vec<u8>, target: &Path) -> PipelineResult {
        let t = target.to_str().unwrap();
        Pipeline::new().stage(tool(&self.r, "unpack", &["--target", t])).stdin(input).run()
    }
}

fn lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    assert_eq!(v.pop(), Some(&b""[..]), "stream ends with a newline");
    v
}

fn join(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Index (0-based) of the line holding the node record of `path`.
fn node_line(lines: &[&[u8]], path: &str) -> usize {
    let needle = format!("{{\"type\":\"node\",\"path\":{}", serde_json::to_string(path).unwrap());
    lines
        .iter()
        .position(|l| l.starts_with(needle.as_bytes()))
        .unwrap_or_else(|| panic!("no node line for {path}"))
}

/// The stream with `extra` inserted as line number `no` (1-based).
fn with_line_at(stream: &[u8], no: usize, extra: &str) -> Vec<u8> {
    let mut l = lines(stream);
    l.insert(no - 1, extra.as_bytes());
    join(&l)
}

/// Asserts that the restore into `target` stopped inside [`MULTI`]: it is not there under its
/// name, nothing is left of it (it was unnamed) or its partial is (where files cannot be
/// unnamed), and nothing else looks complete without being so.
fn assert_stopped_inside_multi(fx: &Fixture, target: &Path) {
    assert!(!target.join(MULTI).exists(), "{MULTI} exists under its final name");
    let parts = assert_nothing_incomplete(target, &fx.src);
    if unnamed_files_work(&target.join("data")) {
        assert!(parts.is_empty(), "partial files: {parts:?}");
    } else {
        assert!(parts.len() == 1 && is_multi_part(&parts[0]), "partial files: {parts:?}");
    }
    // Files before it in the stream are complete; files after it were never started.
    assert!(target.join("data/mid.txt").is_file());
    assert!(!target.join("data/one").exists());
}

#[test]
fn wrong_password_exits_12() {
    let fx = fixture(201);
    let bad = fx.path("bad-password");
    fs::write(&bad, "not the password\n").unwrap();
    let target = fx.path("never");
    let flags = |name: &str, args: &[&str]| {
        let mut v: Vec<OsString> = vec![name.into()];
        v.extend(args.iter().map(OsString::from));
        v.extend([
            "--repo".into(),
            fx.r.repo.clone().into_os_string(),
            "--password-file".into(),
            bad.clone().into(),
        ]);
        v
    };
    let stream = fx.fetch_stream();
    for (cmd, input) in [
        (flags("walk", &["latest"]), None),
        (flags("snapshots", &[]), None),
        (flags("unpack", &["--target", target.to_str().unwrap()]), Some(stream.clone())),
        (flags("unpack", &["--list"]), Some(stream.clone())),
    ] {
        let name = cmd[0].to_string_lossy().into_owned();
        let mut p = Pipeline::new().stage(cmd);
        if let Some(i) = input {
            p = p.stdin(i);
        }
        let res = p.run();
        assert_eq!(res.codes(), vec![12], "{}", res.report());
        let msg = one_line(&res.stderrs[0], &name);
        assert_eq!(msg, format!("{name}: wrong password or no key found"));
        assert!(res.stdout.is_empty(), "{name} wrote records: {}", res.report());
    }
    assert!(!target.exists(), "unpack created its target before checking the password");

    // fetch-pack moves ciphertext only: it needs no password at all.
    let walked = fx.walk_stream();
    let mut cmd = flags("fetch-pack", &[]);
    cmd.truncate(3);
    let res = Pipeline::new().stage(cmd).stdin(walked).env("RESTIC_PASSWORD", "").run();
    res.assert_ok();
    assert_eq!(res.stdout, stream, "fetch-pack's output differs between runs");
}

#[test]
fn missing_repository_exits_10() {
    let fx = fixture(202);
    let stream = fx.fetch_stream();
    let walked = fx.walk_stream();
    let gone = fx.path("no-such-repo");
    let pw = fx.r.password_file.to_str().unwrap();
    let target = fx.path("never");
    let t = target.to_str().unwrap();
    let pack = fx.r.pack_files()[0].file_name().unwrap().to_str().unwrap().to_string();
    for (args, input) in [
        (vec!["walk", "latest"], None),
        (vec!["snapshots"], None),
        (vec!["fetch-pack"], Some(walked.clone())),
        (vec!["fetch-pack", "--pack", &pack], None),
        (vec!["unpack", "--target", t], Some(stream.clone())),
        (vec!["unpack", "--list"], Some(stream.clone())),
    ] {
        let mut cmd = argv(&args);
        cmd.extend(argv(["--repo", gone.to_str().unwrap()]));
        if args[0] != "fetch-pack" {
            cmd.extend(argv(["--password-file", pw]));
        }
        let mut p = Pipeline::new().stage(cmd);
        if let Some(i) = input {
            p = p.stdin(i);
        }
        let res = p.run();
        assert_eq!(res.codes(), vec![10], "{}", res.report());
        let msg = one_line(&res.stderrs[0], args[0]);
        assert_eq!(
            msg,
            format!("{}: repository {} does not exist (no config file)", args[0], gone.display())
        );
    }
    assert!(!target.exists());
    assert!(!gone.exists(), "a tool created the missing repository");
}

#[test]
fn stream_cut_before_its_end_record() {
    let fx = fixture(203);
    let stream = fx.fetch_stream();
    let l = lines(&stream);
    let at = node_line(&l, MULTI);

    // Cut at a line boundary, after the first of the file's blobs.
    let target = fx.path("cut-at-line");
    let res = fx.unpack(join(&l[..at + 2]), &target);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "unpack");
    assert!(msg.starts_with("unpack: ") && msg.contains("end record"), "{msg}");
    assert!(msg.contains(&format!("line {}", at + 2)), "{msg}");
    assert_stopped_inside_multi(&fx, &target);

    // Cut in the middle of the second blob's line.
    let target = fx.path("cut-in-line");
    let mut cut = join(&l[..at + 2]);
    cut.extend_from_slice(&l[at + 2][..l[at + 2].len() / 2]);
    let res = fx.unpack(cut, &target);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "unpack");
    assert!(msg.contains("end record") && msg.contains(&format!("line {}", at + 3)), "{msg}");
    assert_stopped_inside_multi(&fx, &target);

    // Only the end record missing: every file is complete, yet it is a failure.
    let target = fx.path("no-end");
    let res = fx.unpack(join(&l[..l.len() - 1]), &target);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "unpack");
    assert!(msg.contains("end record") && msg.contains(&format!("line {}", l.len() - 1)), "{msg}");
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty());

    // verify, fetch-pack and unpack --list also refuse a stream without its end.
    let walked = fx.walk_stream();
    let wl = lines(&walked);
    for (cmd, input) in [
        (argv(["verify", "--target", target.to_str().unwrap()]), join(&l[..at])),
        (tool(&fx.r, "fetch-pack", &[]), join(&wl[..wl.len() - 1])),
        (tool(&fx.r, "unpack", &["--list"]), join(&l[..at + 2])),
    ] {
        let name = cmd[0].to_string_lossy().into_owned();
        let res = Pipeline::new().stage(cmd).stdin(input).run();
        assert_eq!(res.codes(), vec![1], "{}", res.report());
        let msg = one_line(&res.stderrs[0], &name);
        assert!(msg.contains("end record"), "{msg}");
    }
}

#[test]
fn malformed_line_and_unknown_record_type() {
    let fx = fixture(204);
    let stream = fx.fetch_stream();
    let walked = fx.walk_stream();
    let at = node_line(&lines(&stream), MULTI);
    let no = at + 3; // after the node line and the first blob line (1-based numbering)
    for (n, (bad, what)) in [
        ("{\"type\":\"blob\",\"id\":", "malformed"),
        ("not json at all", "malformed"),
        ("{\"id\":1}", "no type"),
        ("{\"type\":\"mystery\",\"x\":1}", "unknown record type \"mystery\""),
    ]
    .into_iter()
    .enumerate()
    {
        let target = fx.path(&format!("t{n}"));
        let res = fx.unpack(with_line_at(&stream, no, bad), &target);
        assert_eq!(res.codes(), vec![1], "{bad}: {}", res.report());
        let msg = one_line(&res.stderrs[0], "unpack");
        assert!(msg.starts_with(&format!("unpack: line {no}: ")), "{bad}: {msg}");
        if what == "unknown record type \"mystery\"" {
            assert!(msg.contains(what), "{msg}");
        }
        assert_stopped_inside_multi(&fx, &target);

        // fetch-pack checks its input the same way (a node record at line 3 there), except
        // that it forwards records it does not own, such as blob records, unparsed.
        if bad.starts_with("{\"type\":\"blob\"") {
            continue;
        }
        let res =
            Pipeline::new().stage(tool(&fx.r, "fetch-pack", &[])).stdin(with_line_at(&walked, 3, bad)).run();
        assert_eq!(res.codes(), vec![1], "{bad}: {}", res.report());
        let msg = one_line(&res.stderrs[0], "fetch-pack");
        assert!(msg.starts_with("fetch-pack: line 3: "), "{bad}: {msg}");
    }
}

#[test]
fn damaged_blob_names_blob_and_pack() {
    let fx = fixture(205);
    let rec = fx.multi_record();
    let blob = &rec["blobs"][1];
    let (id, pack) = (blob["id"].as_str().unwrap(), blob["pack"].as_str().unwrap());
    let p = fx.pack_path(pack);
    let mut bytes = fs::read(&p).unwrap();
    let at = blob["offset"].as_u64().unwrap() + blob["length"].as_u64().unwrap() / 2;
    bytes[at as usize] ^= 0x20;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&p, bytes).unwrap();

    let target = fx.path("out");
    let t = target.to_str().unwrap();
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["--target", t]))
        .run();
    // The damage fails the one file needing the blob; everything else is restored, and
    // unpack says "some items failed".
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    assert!(res.stderrs[1].is_empty(), "{}", res.report());
    let err = res.stderr_str(2);
    let named: Vec<&str> = err.lines().filter(|l| l.contains(MULTI)).collect();
    assert_eq!(named.len(), 1, "{err}");
    for needle in [&id[..8], &pack[..8]] {
        assert!(named[0].contains(needle), "{needle} not named: {err}");
    }
    assert_eq!(err.lines().count(), 2, "one line for the file and the summary: {err}");
    assert!(!target.join(MULTI).exists(), "{MULTI} exists under its final name");
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty(), "a partial was left");
    // The source without the failed file, its directory's times kept.
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(fx.src.join("data")).unwrap();
    fs::remove_file(fx.src.join(MULTI)).unwrap();
    set_times(&fx.src.join("data"), (md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()));
    compare_trees(&fx.src, &target, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A blob record that carries another blob's data (sealed with the repository's key, so
/// it decrypts) fails its file at the id check, before a byte of it is written: for large
/// blobs that check is made on unpack's writing thread, not where the blob is decrypted.
#[test]
fn a_blob_carrying_another_blobs_data_fails_its_file() {
    let fx = fixture(207);
    let fetched = fx.fetch_stream();
    let mut l: Vec<Vec<u8>> = lines(&fetched).into_iter().map(<[u8]>::to_vec).collect();
    let at = node_line(&lines(&fetched), MULTI);
    let (a, b) = (at + 1, at + 2);
    let mut first: Value = serde_json::from_slice(&l[a]).unwrap();
    let second: Value = serde_json::from_slice(&l[b]).unwrap();
    assert_eq!((first["type"].as_str(), second["type"].as_str()), (Some("blob"), Some("blob")));
    assert!(second["data"].as_str().unwrap().len() > 256 << 10, "a large blob");
    for k in ["data", "length", "uncompressed_length"] {
        first[k] = second[k].clone();
    }
    l[a] = serde_json::to_vec(&first).unwrap();
    let input = join(&l.iter().map(Vec::as_slice).collect::<Vec<_>>());

    let target = fx.path("out");
    let res = fx.unpack(input, &target);
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let err = res.stderr_str(0);
    let named: Vec<&str> = err.lines().filter(|l| l.contains(MULTI)).collect();
    assert_eq!(named.len(), 1, "{err}");
    let id = first["id"].as_str().unwrap();
    assert!(named[0].contains(&id[..8]) && named[0].contains("does not match blob id"), "{err}");
    assert!(!target.join(MULTI).exists(), "{MULTI} exists under its final name");
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty(), "a partial was left");
    assert!(target.join("data/one").is_file(), "files after it are restored");
}

#[test]
fn missing_pack_is_named_by_fetch_pack() {
    let fx = fixture(206);
    let rec = fx.multi_record();
    let pack = rec["blobs"][0]["pack"].as_str().unwrap().to_string();
    fs::remove_file(fx.pack_path(&pack)).unwrap();

    let target = fx.path("out");
    let t = target.to_str().unwrap();
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["--target", t]))
        .run();
    // fetch-pack passes the missing blobs on as blob_failed records, names the pack once
    // and exits 3 after a complete stream; unpack fails the files needing them.
    assert_eq!(res.codes(), vec![0, 3, 3], "{}", res.report());
    let err = res.stderr_str(1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one line for the pack and the summary: {err}");
    assert!(lines[0].contains(&pack) && lines[0].contains("No such file"), "{err}");
    let err = res.stderr_str(2);
    let multi: Vec<&str> = err.lines().filter(|l| l.contains(MULTI)).collect();
    assert!(multi.len() == 1 && multi[0].contains(&pack[..8]), "{err}");
    assert!(!target.join(MULTI).exists());
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty(), "a partial was left");
    // Files whose blobs are all elsewhere are restored.
    let restored = count_files(&target);
    assert!(restored > 0, "nothing was restored: {}", res.report());
    let failed = err.lines().count() - 1;
    assert_eq!(restored + failed, count_files(&fx.src), "{err}");

    // Asked for the pack itself, fetch-pack says it is not there.
    let res = Pipeline::new().stage(tool(&fx.r, "fetch-pack", &["--pack", &pack])).run();
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "fetch-pack");
    assert_eq!(msg, format!("fetch-pack: pack {pack} is not in the repository"));
}

/// Makes the test's temporary directory traversable by anyone, and checks that its
/// ancestors already are (they are not ours to change).
fn open_up(td: &Path) {
    let mode = fs::metadata(td).unwrap().permissions().mode();
    fs::set_permissions(td, fs::Permissions::from_mode(mode | 0o005)).unwrap();
    for p in td.ancestors().skip(1) {
        let mode = fs::metadata(p).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{p:?} is not traversable by others; point TMPDIR elsewhere for this test"
        );
    }
}

#[test]
fn target_that_is_not_writable() {
    let fx = fixture(207);
    let stream = fx.fetch_stream();

    // A directory the restoring user may not write to. Root may write anywhere, so as root
    // unpack runs as nobody (with a copy of the key files it can read) into a directory
    // owned by root; otherwise into a directory without write permission.
    let target = fx.path("locked");
    fs::create_dir(&target).unwrap();
    let mut cmd: Vec<OsString> = Vec::new();
    let (repo, pw) = if is_root() {
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let pubdir = fx.path("public");
        let repo = pubdir.join("repo");
        fs::create_dir_all(repo.join("keys")).unwrap();
        fs::copy(fx.r.repo.join("config"), repo.join("config")).unwrap();
        for k in fs::read_dir(fx.r.repo.join("keys")).unwrap() {
            let k = k.unwrap().path();
            fs::copy(&k, repo.join("keys").join(k.file_name().unwrap())).unwrap();
        }
        let pw = pubdir.join("password");
        fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        for e in walkdir::WalkDir::new(&pubdir) {
            let e = e.unwrap();
            let mode = if e.file_type().is_dir() { 0o755 } else { 0o644 };
            fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
        }
        // The build directory may not be reachable by nobody: run a copy of the binary.
        let unpack = pubdir.join("unpack");
        fs::copy(bin("unpack"), &unpack).unwrap();
        fs::set_permissions(&unpack, fs::Permissions::from_mode(0o755)).unwrap();
        open_up(fx.td.path());
        cmd.extend(argv(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]));
        cmd.push(unpack.into_os_string());
        (repo, pw)
    } else {
        fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).unwrap();
        cmd.push("unpack".into());
        (fx.r.repo.clone(), fx.r.password_file.clone())
    };
    cmd.extend([
        "--repo".into(),
        repo.into_os_string(),
        "--password-file".into(),
        pw.into_os_string(),
        "--target".into(),
        target.clone().into_os_string(),
    ]);
    let res = Pipeline::new().stage(cmd).stdin(stream.clone()).run();
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "unpack");
    let want = format!("unpack: target {}: Permission denied", target.display());
    assert!(msg.starts_with(&want), "{msg}");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "something was written into the locked target");

    // A target below a regular file cannot be created by anyone.
    let file = fx.path("a-file");
    fs::write(&file, b"x").unwrap();
    let target = file.join("sub");
    let res = fx.unpack(stream, &target);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "unpack");
    assert_eq!(msg, format!("unpack: target {} is not a directory", target.display()));
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn early_exit_of_the_reader_is_quiet() {
    // Enough nodes that walk's output is far larger than the pipe and its own buffer.
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    // 5000 nodes with 200-byte names make about 3.5 MB of records, more than the pipe and
    // walk's own buffer hold together.
    for i in 0..5000 {
        fs::write(src.join(format!("{i:05}-{}", "n".repeat(194))), b"").unwrap();
    }
    let mut data = vec![0u8; 6 << 20];
    rand::rngs::StdRng::seed_from_u64(208).fill_bytes(&mut data);
    fs::write(src.join("random.bin"), data).unwrap();
    let r = Restic::new(&td.path().join("r"));
    r.init(2, &[]);
    r.backup_dir_contents(&src, &["--pack-size", "4"]);

    let head = argv(["head", "-n", "1"]);
    let res = Pipeline::new().stage(tool(&r, "walk", &["latest"])).stage(head.clone()).run();
    assert_eq!(res.codes(), vec![141, 0], "{}", res.report());
    assert!(res.stderrs[0].is_empty(), "{}", res.report());
    assert!(res.stdout.starts_with(b"{\"type\":\"header\""), "{}", res.report());
    let full = Pipeline::new().stage(tool(&r, "walk", &["latest"])).run();
    full.assert_ok();
    assert!(full.stdout.len() > 3 << 20, "walk wrote only {} bytes", full.stdout.len());

    let res = Pipeline::new()
        .stage(tool(&r, "walk", &["latest"]))
        .stage(tool(&r, "fetch-pack", &[]))
        .stage(head.clone())
        .run();
    let codes = res.codes();
    assert!(codes[0] == 0 || codes[0] == 141, "{}", res.report());
    assert_eq!(&codes[1..], &[141, 0], "{}", res.report());
    assert!(res.stderrs.iter().all(Vec::is_empty), "{}", res.report());

    let pack = r.pack_files().into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    assert!(fs::metadata(&pack).unwrap().len() > 3 << 20);
    let res = Pipeline::new()
        .stage(tool(&r, "fetch-pack", &["--pack", pack.to_str().unwrap()]))
        .stage(argv(["head", "-c", "100"]))
        .run();
    assert_eq!(res.codes(), vec![141, 0], "{}", res.report());
    assert!(res.stderrs[0].is_empty(), "{}", res.report());
}

#[test]
fn verify_names_a_file_altered_after_restore() {
    let fx = fixture(209);
    let target = fx.path("out");
    let t = target.to_str().unwrap();
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["--target", t]))
        .run();
    res.assert_ok();
    let restored = res.stdout.clone();
    let verify = || Pipeline::new().stage(argv(["verify", "--target", t])).stdin(restored.clone()).run();
    let before = verify();
    before.assert_ok();
    let n = framed_records(&before).len();
    assert_eq!(n, count_files(&fx.src));

    let victim = target.join("data/mid.bin");
    let mut bytes = fs::read(&victim).unwrap();
    let off = bytes.len() / 3;
    bytes[off] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let res = verify();
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "verify");
    assert!(
        msg.starts_with(&format!("verify: 1 of {n} files differ")) && msg.contains("data/mid.bin"),
        "{msg}"
    );
    let verdicts = framed_records(&res);
    assert_eq!(verdicts.len(), n);
    let bad: Vec<&Value> = verdicts.iter().filter(|v| v["ok"] != true).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["path"], "data/mid.bin");
    assert!(bad[0]["error"].as_str().unwrap().contains("unexpected content"), "{}", bad[0]);

    // A file cut short is named too, and with -q only the differing files are listed.
    let short = target.join("hard/two-a");
    let len = fs::metadata(&short).unwrap().len();
    fs::OpenOptions::new().write(true).open(&short).unwrap().set_len(len - 1).unwrap();
    let res = Pipeline::new().stage(argv(["verify", "-q", "--target", t])).stdin(restored.clone()).run();
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "verify");
    // hard/two-a has a second name, data/hard-two-b, and both now differ.
    assert!(msg.starts_with(&format!("verify: 3 of {n} files differ")), "{msg}");
    let paths: Vec<String> =
        framed_records(&res).iter().map(|v| v["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, ["data/hard-two-b", "data/mid.bin", "hard/two-a"]);
}

#[test]
fn interrupted_restore_resumes_keeping_finished_files() {
    use std::os::unix::fs::MetadataExt;
    let fx = fixture(207);
    let stream = fx.fetch_stream();
    let l = lines(&stream);
    let at = node_line(&l, MULTI);
    let target = fx.path("out");
    let t = target.to_str().unwrap();

    // The first run dies inside MULTI: what came before is complete, MULTI is not there.
    let res = fx.unpack(join(&l[..at + 2]), &target);
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    assert_stopped_inside_multi(&fx, &target);
    let done: Vec<(PathBuf, u64)> = walkdir::WalkDir::new(&target)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.metadata().unwrap().len() > 0)
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".sluice-part"))
        .map(|e| (e.path().to_path_buf(), e.metadata().unwrap().ino()))
        .collect();
    assert!(done.len() >= 3, "the first run should have finished some files: {done:?}");
    // One finished file is damaged meanwhile (same size): it must be restored again.
    let (damaged, damaged_ino) = done[0].clone();
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[0] ^= 1;
    fs::set_permissions(&damaged, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&damaged, &bytes).unwrap();

    let res = Pipeline::new().stage(tool(&fx.r, "unpack", &["--target", t, "--resume"])).stdin(stream).run();
    res.assert_ok();
    compare_trees(&fx.src, &target, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty(), "the partial file should be gone");
    for (p, ino) in &done[1..] {
        assert_eq!(fs::metadata(p).unwrap().ino(), *ino, "{} was written again", p.display());
    }
    assert_ne!(fs::metadata(&damaged).unwrap().ino(), damaged_ino, "the damaged file was kept");
}

/// Ctrl-C in the middle of a file: unpack exits 130 and its one line says how to finish (a
/// plain second run wrote a file anew beside the partial one the first left, which stayed);
/// the restore it names finishes the job and leaves no partial file.
#[test]
fn ctrl_c_says_how_to_finish_the_restore() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let fx = fixture(208);
    let stream = fx.fetch_stream();
    let l = lines(&stream);
    let at = node_line(&l, MULTI);
    let target = fx.path("out");
    let t = target.to_str().unwrap();
    let unpack = tool(&fx.r, "unpack", &["--target", t]);
    let mut child = Command::new(bin("unpack"))
        .args(&unpack[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Everything up to inside MULTI, and then the input stays open, as from a slow fetch.
    let mut input = child.stdin.take().unwrap();
    input.write_all(&join(&l[..at + 2])).unwrap();
    input.flush().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let partial = || {
        walkdir::WalkDir::new(&target)
            .into_iter()
            .filter_map(Result::ok)
            .any(|e| is_multi_part(e.path().strip_prefix(&target).unwrap().as_os_str().as_encoded_bytes()))
    };
    // MULTI's first blob written: to its partial, or to the unnamed file unpack holds for it,
    // as long as that blob (the other files unpack holds unnamed are whole, and differ).
    let first = &fx.multi_record()["blobs"][0];
    let first_len =
        first["uncompressed_length"].as_u64().unwrap_or_else(|| first["length"].as_u64().unwrap() - 32);
    let data = target.join("data");
    let started = || match data.exists() && unnamed_files_work(&data) {
        true => unnamed_files_held(child.id(), &fs::canonicalize(&data).unwrap()).contains(&first_len),
        false => partial(),
    };
    while !started() {
        assert!(std::time::Instant::now() < end, "unpack did not start {MULTI}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    drop(input);
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let line = one_line(&out.stderr, "unpack");
    assert!(line.starts_with("unpack: interrupted by SIGINT") && line.contains("--resume"), "{line}");

    let res = Pipeline::new().stage(tool(&fx.r, "unpack", &["--target", t, "--resume"])).stdin(stream).run();
    res.assert_ok();
    assert!(!partial(), "a partial file stayed after the restore with --resume");
    compare_trees(&fx.src, &target, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() })
        .unwrap_or_else(|e| panic!("{e}"));
}

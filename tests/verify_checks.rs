//! verify checks what the records describe, not what they say about themselves: a file's
//! blob list against its node, and every entry's type, mode, link target, size and content
//! (with `--metadata`, times and owners) against the restored tree. Each difference is one
//! verdict with `ok` false, one summary line on stderr, and exit 3.

mod support;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// A small tree with one entry of each kind, backed up by restic (`cd src && restic backup .`).
fn fixture(seed: u64) -> Fixture {
    Fixture::new(|src| fill(src, seed), &[])
}

fn fill(src: &Path, seed: u64) {
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::set_permissions(src.join("dir/sub"), fs::Permissions::from_mode(0o755)).unwrap();
    // Several blobs whatever the polynomial (see `random_bytes`).
    fs::write(src.join("multi.bin"), random_bytes(seed, 9 << 20)).unwrap();
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    fs::write(src.join("dir/sub/leaf.txt"), b"leaf\n").unwrap();
    fs::write(src.join("dir/mode.txt"), b"mode\n").unwrap();
    fs::set_permissions(src.join("dir/mode.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(src.join("hard-a"), b"two names\n").unwrap();
    fs::hard_link(src.join("hard-a"), src.join("hard-b")).unwrap();
    symlink("small.txt", src.join("link")).unwrap();
    symlink("dir/sub", src.join("dirlink")).unwrap();
    let fifo = std::ffi::CString::new(src.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    if is_root() {
        let dev = std::ffi::CString::new(src.join("null").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; 1:3 is /dev/null's device number.
        assert_eq!(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) }, 0);
    }
}

/// What these tests do with a fixture.
trait Fx {
    fn restore(&self, name: &str) -> (PathBuf, Vec<u8>);
}

impl Fx for Fixture {
    /// Restores with our pipeline into `name` and returns unpack's `restored` stream.
    fn restore(&self, name: &str) -> (PathBuf, Vec<u8>) {
        let target = self.path(name);
        let t = target.to_str().unwrap();
        let res = Pipeline::new()
            .stage(tool(&self.r, "walk", &["latest"]))
            .stage(tool(&self.r, "fetch-pack", &[]))
            .stage(tool(&self.r, "unpack", &["--target", t]))
            .run();
        res.assert_ok();
        (target, res.stdout)
    }
}

fn verify(target: &Path, stream: &[u8], flags: &[&str]) -> PipelineResult {
    let mut a: Vec<OsString> = argv(["verify", "--target"]);
    a.push(target.into());
    a.extend(flags.iter().map(OsString::from));
    Pipeline::new().stage(a).stdin(stream.to_vec()).run()
}

/// Rewrites the records of a stream with `f` (header and end kept; the count stays right).
fn edit(stream: &[u8], mut f: impl FnMut(&mut Value)) -> Vec<u8> {
    let mut out = Vec::new();
    for line in String::from_utf8(stream.to_vec()).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["type"] != "header" && v["type"] != "end" {
            f(&mut v);
        }
        out.extend(serde_json::to_vec(&v).unwrap());
        out.push(b'\n');
    }
    out
}

/// Exit 3, one stderr line, and the verdicts that failed: path → error.
fn failures(res: &PipelineResult) -> Vec<(String, String)> {
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let msg = one_line(&res.stderrs[0], "verify");
    assert!(msg.starts_with("verify: ") && msg.contains("differ from the snapshot, first"), "{msg}");
    framed_records(res)
        .iter()
        .filter(|v| v["ok"] != true)
        .map(|v| (v["path"].as_str().unwrap().to_string(), v["error"].as_str().unwrap().to_string()))
        .collect()
}

/// A blob location's plaintext length.
fn plain_len(b: &Value) -> u64 {
    b["uncompressed_length"].as_u64().unwrap_or_else(|| b["length"].as_u64().unwrap() - 32)
}

fn error_of<'a>(bad: &'a [(String, String)], path: &str) -> &'a str {
    &bad.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no failed verdict for {path}: {bad:?}")).1
}

/// The file cut short on disk and its record short of a blob agree with each other, but not
/// with the node: verify must believe the node.
#[test]
fn a_record_that_drops_a_blob_fails_the_file() {
    let fx = fixture(1);
    let (target, restored) = fx.restore("out");
    let walk = fx.walk_stream();
    let mut kept = 0u64;
    let drop_last = |v: &mut Value| {
        if v["path"] == "multi.bin" {
            let blobs = v["blobs"].as_array_mut().unwrap();
            assert!(blobs.len() >= 2, "multi.bin has {} blobs", blobs.len());
            blobs.pop();
        }
    };
    let walk_short = edit(&walk, drop_last);
    let restored_short = edit(&restored, drop_last);
    for line in String::from_utf8_lossy(&walk_short).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["path"] == "multi.bin" {
            kept = v["blobs"].as_array().unwrap().iter().map(plain_len).sum();
        }
    }
    let victim = target.join("multi.bin");
    fs::OpenOptions::new().write(true).open(&victim).unwrap().set_len(kept).unwrap();
    for (what, stream) in [("walk", &walk_short), ("restored", &restored_short)] {
        let res = verify(&target, stream, &[]);
        let bad = failures(&res);
        assert_eq!(bad.len(), 1, "{what}: {bad:?}");
        let e = error_of(&bad, "multi.bin");
        assert!(e.contains("blobs") && e.contains("content ids"), "{what}: {e}");
    }
    // The same with a blob's length changed instead (the ids still match the node).
    let mut first = true;
    let longer = edit(&walk, |v| {
        if v["path"] == "small.txt" && first {
            first = false;
            let b = &mut v["blobs"][0];
            let key = if b["uncompressed_length"].is_u64() { "uncompressed_length" } else { "length" };
            b[key] = (b[key].as_u64().unwrap() + 1).into();
        }
    });
    let bad = failures(&verify(&target, &longer, &["-q"]));
    assert!(error_of(&bad, "small.txt").contains("size"), "{bad:?}");
}

/// A restore checked right after it ran, and the same tree damaged in every way a record
/// can describe: each entry that differs gets a failed verdict saying how.
#[test]
fn every_kind_of_entry_is_checked() {
    let fx = fixture(2);
    let (target, restored) = fx.restore("out");
    let walk = fx.walk_stream();
    for flags in [&[][..], &["--metadata"]] {
        let res = verify(&target, &restored, flags);
        res.assert_ok();
        assert!(res.stderrs[0].is_empty(), "{}", res.report());
        // One verdict per regular file name, as before: other entries only when they differ.
        assert_eq!(framed_records(&res).len(), count_files(&fx.src), "{}", res.report());
        verify(&target, &walk, flags).assert_ok();
    }

    let t = |p: &str| target.join(p);
    fs::remove_file(t("link")).unwrap();
    fs::remove_file(t("fifo")).unwrap();
    fs::set_permissions(t("dir/mode.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(t("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(t("dirlink")).unwrap();
    symlink("dir", t("dirlink")).unwrap();
    fs::remove_file(t("small.txt")).unwrap();
    symlink("multi.bin", t("small.txt")).unwrap();
    // Same content, but no longer the same file as hard-a.
    fs::remove_file(t("hard-b")).unwrap();
    fs::copy(t("hard-a"), t("hard-b")).unwrap();
    fs::write(t("dir/sub/leaf.txt"), b"leaf, longer\n").unwrap();
    fs::write(t("hard-a"), b"TWO names\n").unwrap();
    if is_root() {
        fs::remove_file(t("null")).unwrap();
        let dev = std::ffi::CString::new(t("null").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; 1:5 is /dev/zero's device number.
        assert_eq!(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) }, 0);
    }
    let expect = [
        ("link", "missing"),
        ("fifo", "missing"),
        ("dir/mode.txt", "mode 0644 but the snapshot says 0640"),
        ("dir/sub", "mode 0700 but the snapshot says 0755"),
        ("dirlink", "link target \"dir\" but the snapshot says \"dir/sub\""),
        ("small.txt", "a symlink, but the snapshot has a file"),
        ("hard-b", "not a hard link of \"hard-a\""),
        ("dir/sub/leaf.txt", "size 13 but the snapshot says 5"),
        ("hard-a", "unexpected content at offset 0"),
    ];
    for stream in [&walk, &restored] {
        let bad = failures(&verify(&target, stream, &["--quiet"]));
        for (path, want) in expect {
            let e = error_of(&bad, path);
            assert!(e.contains(want), "{path}: {e:?}, expected {want:?}");
        }
        if is_root() {
            assert!(error_of(&bad, "null").contains("device number"), "{bad:?}");
        }
        assert_eq!(bad.len(), expect.len() + usize::from(is_root()), "{bad:?}");
    }

    // A whole directory gone: it and everything below it fail.
    fs::remove_dir_all(t("dir")).unwrap();
    let bad = failures(&verify(&target, &walk, &["-q"]));
    for path in ["dir", "dir/sub", "dir/sub/leaf.txt", "dir/mode.txt"] {
        assert!(error_of(&bad, path).starts_with("missing"), "{path}: {bad:?}");
    }
    // A directory replaced by a file.
    fs::write(t("dir"), b"not a dir").unwrap();
    let bad = failures(&verify(&target, &walk, &["-q"]));
    assert!(error_of(&bad, "dir").contains("a file, but the snapshot has a dir"), "{bad:?}");
}

/// Times and owners only with --metadata; a restore by restic passes it too (no check that
/// fails on a correct restore, such as a directory's mtime).
#[test]
fn metadata_is_checked_when_asked() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, 3, &TreeOpts::default());
    let r = Restic::new(&td.path().join("r"));
    r.init(2, &[]);
    r.backup_dir_contents(&src, &[]);
    let walk = Pipeline::new().stage(tool(&r, "walk", &["latest"])).run();
    walk.assert_ok();

    let theirs = td.path().join("theirs");
    r.restore("latest", &theirs, &[]);
    let res = verify(&theirs, &walk.stdout, &["--metadata"]);
    res.assert_ok();
    let ours = td.path().join("ours");
    let res = restore_pipeline(&r, "latest", &ours, &[], &[]);
    assert_restore_ok(&res, &src);
    verify(&ours, &walk.stdout, &["-m", "-q"]).assert_ok();

    let file = ours.join("data/mid.txt");
    set_times(&file, (1, 0), (1_000_000_000, 5));
    verify(&ours, &walk.stdout, &["-q"]).assert_ok();
    let bad = failures(&verify(&ours, &walk.stdout, &["-m", "-q"]));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(error_of(&bad, "data/mid.txt").starts_with("modification time 1000000000.000000005"), "{bad:?}");
    if is_root() {
        set_times(&file, (1, 0), (1_000_000_000, 5));
        let link = ours.join("links/rel");
        std::os::unix::fs::lchown(&link, Some(4242), Some(4343)).unwrap();
        let bad = failures(&verify(&ours, &walk.stdout, &["-m", "-q"]));
        assert!(
            error_of(&bad, "links/rel").starts_with("owner 4242:4343 but the snapshot says 0:0"),
            "{bad:?}"
        );
    }
}

/// A record may not steer verify outside the target: not with `..`, and not through a
/// directory that is a symlink on disk.
#[test]
fn paths_outside_the_target_fail() {
    let fx = fixture(4);
    let (target, _) = fx.restore("out");
    let walk = fx.walk_stream();
    let dotdot = edit(&walk, |v| {
        if v["path"] == "small.txt" {
            v["path"] = "../src/small.txt".into();
        }
    });
    let bad = failures(&verify(&target, &dotdot, &["-q"]));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(error_of(&bad, "../src/small.txt").contains("outside the target"), "{bad:?}");

    // dir/ replaced by a link to the source's copy, which holds the same files.
    fs::remove_dir_all(target.join("dir")).unwrap();
    symlink(fx.src.join("dir"), target.join("dir")).unwrap();
    let bad = failures(&verify(&target, &walk, &["-q"]));
    assert!(error_of(&bad, "dir").contains("a symlink, but the snapshot has a dir"), "{bad:?}");
    assert!(error_of(&bad, "dir/mode.txt").contains("is a symlink, not a directory"), "{bad:?}");
    assert!(error_of(&bad, "dir/sub/leaf.txt").contains("is a symlink, not a directory"), "{bad:?}");
}

/// A restored file that verify may not read (mode 000, verify not root) has not been shown to
/// differ: verify says it cannot read it, in one line naming the file and the cause, checks
/// the rest, and exits 1 (could not check), not 3 (differs). Root reads anything, so as root
/// verify runs as nobody, from a copy of the binary nobody can reach.
#[test]
fn a_file_verify_cannot_read_is_not_a_difference() {
    let fx = Fixture::new(
        |src| {
            fs::write(src.join("open.txt"), b"anyone\n").unwrap();
            fs::write(src.join("locked.txt"), b"no one\n").unwrap();
            fs::set_permissions(src.join("locked.txt"), fs::Permissions::from_mode(0o000)).unwrap();
        },
        &[],
    );
    let (target, restored) = fx.restore("out");
    assert_eq!(fs::metadata(target.join("locked.txt")).unwrap().permissions().mode() & 0o777, 0);
    let mut cmd: Vec<OsString> = Vec::new();
    if is_root() {
        let public = fx.path("public");
        fs::create_dir(&public).unwrap();
        let copy = public.join("verify");
        fs::copy(bin("verify"), &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        let mode = fs::metadata(fx.td.path()).unwrap().permissions().mode();
        fs::set_permissions(fx.td.path(), fs::Permissions::from_mode(mode | 0o005)).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        cmd.extend(argv(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]));
        cmd.push(copy.into_os_string());
    } else {
        cmd.push("verify".into());
    }
    cmd.extend([OsString::from("--target"), target.into_os_string()]);
    let res = Pipeline::new().stage(cmd).stdin(restored).run();
    assert_eq!(res.codes(), vec![1], "{}", res.report());
    let err = String::from_utf8_lossy(&res.stderrs[0]).into_owned();
    assert!(!err.contains("differ"), "a file that was not read is said to differ: {err}");
    let line = err.lines().find(|l| l.contains("locked.txt")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with("verify: ") && line.contains("cannot read") && line.contains("Permission denied"),
        "{line}"
    );
    let verdicts = framed_records(&res);
    let of =
        |p: &str| verdicts.iter().find(|v| v["path"] == p).unwrap_or_else(|| panic!("{verdicts:?}")).clone();
    assert_eq!(of("open.txt")["ok"], true, "{verdicts:?}");
    let locked = of("locked.txt");
    assert_eq!(locked["ok"], false);
    assert!(locked["error"].as_str().unwrap().starts_with("cannot read"), "{locked}");
}

/// While its input is silent, verify holds back no verdict it has reached: each goes out
/// then, not when a buffer fills (a slow restore upstream, a reader of the verdicts).
#[test]
fn verdicts_go_out_while_the_input_is_silent() {
    let fx = fixture(9);
    let (target, stream) = fx.restore("out");
    let text = String::from_utf8(stream).unwrap();
    // Everything but the end record: the input then stays open.
    let lines: Vec<&str> = text.lines().collect();
    let head = fx.path("head.ndjson");
    fs::write(&head, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let files = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"restored\"") && l.contains("\"type\":\"file\""))
        .count();
    assert!(files >= 4, "{files} files in {text}");
    let got = fx.path("verdicts.ndjson");
    let script = format!(
        "{{ cat '{}'; sleep 30; }} | '{}' --target '{}' > '{}'",
        head.display(),
        bin("verify").display(),
        target.display(),
        got.display()
    );
    let mut c = std::process::Command::new("bash");
    c.arg("-c").arg(&script);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c.spawn().unwrap();
    let verdicts = || fs::read_to_string(&got).unwrap_or_default().matches("\"type\":\"verdict\"").count();
    let start = std::time::Instant::now();
    while verdicts() < files && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals the process group made above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    assert_eq!(verdicts(), files, "verdicts out while the input was silent");
}

//! The backup pipeline under bad input and faults: unreadable files, files that change while
//! read, stages killed mid-stream, a full disk, wrong passwords, missing repositories, streams
//! cut short and a reader that stops early. Each failure must be loud, exact in its exit code,
//! and leave the repository clean (restic 0.14 checks it; restic must be installed).

mod support;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use support::backup::{
    count, files_in, init_repo, repo_files_not_named_by_hash, restore, summary_of, tool, Backup, TEST_SCRYPT,
};
use support::{
    argv, bin, compare_trees, is_root, make_tree, set_times, snapshot_subpath, tempdir, CompareOpts,
    Pipeline, Restic, TreeOpts,
};

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn code(s: &ExitStatus) -> i32 {
    s.code().or_else(|| s.signal().map(|g| 128 + g)).unwrap_or(-1)
}

/// Asserts the repository holds no snapshot, no lock, and nothing under a final name that is
/// not complete (every file's SHA-256 is its name; no temporaries left behind).
fn assert_no_snapshot_and_clean(r: &Restic, what: &str) {
    assert_eq!(files_in(&r.repo, "snapshots"), 0, "{what}: a snapshot was written");
    assert_eq!(files_in(&r.repo, "locks"), 0, "{what}: a lock was left behind");
    let bad = repo_files_not_named_by_hash(&r.repo);
    assert!(
        bad.is_empty(),
        "{what}: files in the repository that are not what their names say:\n{}",
        bad.join("\n")
    );
}

/// Reads a child's pipe to the end on a thread.
fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn spawn(args: Vec<OsString>, stdin: Stdio) -> Child {
    let program = bin(args[0].to_str().unwrap());
    Command::new(program)
        .args(&args[1..])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {args:?}: {e}"))
}

/// Waits until `cond` holds, polling; panics with `what` after `secs` seconds.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Whether a stage's stderr says its input stream was cut short (at a line end or inside one).
fn cut_reported(err: &str) -> bool {
    err.contains("without its end record") || err.contains("cut off")
}

/// The packs in the repository: files under `data/` named by an id (not temporaries).
fn stored_packs(r: &Restic) -> Vec<PathBuf> {
    let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
    r.pack_files().into_iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_id)).collect()
}

fn pack_bytes(r: &Restic) -> u64 {
    stored_packs(r).iter().map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

/// A file chunk cannot read (mode 000; as root, chunk runs without capabilities so the mode
/// binds) and a directory it cannot list: both warned about by name and left out, the
/// snapshot still written, chunk exits 3, pack and push 0.
#[test]
fn unreadable_file_is_warned_skipped_and_exits_3() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(src.join("locked-dir")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("sub/b.txt"), random_bytes(1, 300_000)).unwrap();
    fs::write(src.join("locked-dir/inside"), b"x").unwrap();
    fs::write(src.join("secret-file"), b"nobody may read this\n").unwrap();
    fs::write(src.join("z-after.txt"), b"omega\n").unwrap();
    fs::set_permissions(src.join("secret-file"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o000)).unwrap();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);

    // Root reads anything; without capabilities (setpriv) it is bound by the modes like anyone.
    let wrap: Vec<OsString> =
        if is_root() { vec!["setpriv".into(), "--bounding-set=-all".into()] } else { vec![] };
    let probe = Command::new(if wrap.is_empty() { "cat" } else { "setpriv" })
        .args(if wrap.is_empty() {
            vec![]
        } else {
            vec![OsString::from("--bounding-set=-all"), "cat".into()]
        })
        .arg(src.join("secret-file"))
        .output()
        .expect("run the read probe");
    let why = String::from_utf8_lossy(&probe.stderr);
    assert!(
        !probe.status.success() && why.contains("Permission denied"),
        "reading the mode-000 file did not fail with EACCES here ({}: {why}); this test cannot make a read fail",
        probe.status
    );

    let b = Backup::of(&[&src]);
    let mut stages = b.stages(&r);
    let mut chunk = wrap.clone();
    chunk.push(bin("chunk").into_os_string());
    chunk.extend(stages[0][1..].iter().cloned());
    stages[0] = chunk;
    let mut p = Pipeline::new();
    for s in stages {
        p = p.stage(s);
    }
    let res = p.run();
    assert_eq!(res.codes(), vec![3, 0, 0], "{}", res.report());
    let err = res.stderr_str(0);
    assert!(
        err.contains("secret-file") && err.contains("ermission denied"),
        "the unreadable file is not named:\n{err}"
    );
    assert!(err.contains("locked-dir"), "the unlistable directory is not named:\n{err}");
    assert!(!err.contains("panick"), "{err}");
    let s = summary_of(&res);
    assert_eq!(count(&s, "files_new"), 3, "{s}");

    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 1, "the snapshot must still be written");
    let ls = String::from_utf8(r.run(&["ls", "latest"]).stdout).unwrap();
    let sub = format!("/{}", snapshot_subpath(&src));
    for present in ["a.txt", "sub/b.txt", "z-after.txt", "locked-dir"] {
        assert!(
            ls.lines().any(|l| l == format!("{sub}/{present}")),
            "{present} missing from the snapshot:\n{ls}"
        );
    }
    assert!(!ls.contains("secret-file"), "{ls}");
    assert!(!ls.contains("inside"), "{ls}");
    r.check_read_data();
}

/// Runs chunk over `src` until it is inside `victim` (it blocks writing, as nobody reads its
/// output yet), lets `change` modify the file, then lets chunk finish and stores its output
/// with pack | push. Returns chunk's exit code and stderr, and push's summary.
fn backup_changing(
    r: &Restic,
    src: &Path,
    victim: &Path,
    change: impl FnOnce(&Path),
) -> (i32, String, serde_json::Value) {
    let mut chunk = spawn(tool("chunk", r, &[src.as_os_str()]), Stdio::null());
    let err = drain(chunk.stderr.take().unwrap());
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", chunk.id()));
    wait_for(30, "chunk to open the big file", || {
        fs::read_dir(&fd_dir)
            .map(|rd| rd.filter_map(Result::ok).any(|e| fs::read_link(e.path()).is_ok_and(|t| t == victim)))
            .unwrap_or(false)
    });
    // chunk holds the file open and cannot write on: the file changes mid-read.
    change(victim);
    let out = drain(chunk.stdout.take().unwrap()).join().unwrap();
    let status = chunk.wait().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let mut p = Pipeline::new().stdin(out);
    for s in Backup::default().stages(r).into_iter().skip(1) {
        p = p.stage(s);
    }
    let res = p.run();
    res.assert_ok();
    (code(&status), err, summary_of(&res))
}

/// A file modified while chunk reads it (in place, same size; or truncated) is reported on
/// stderr by name; the backup still completes and restic finds the repository sound.
#[test]
fn file_changed_while_read_is_reported() {
    type Change = fn(&Path);
    let changes: [(&str, Change); 2] = [
        ("overwritten in place", |p| {
            let f = fs::OpenOptions::new().write(true).open(p).unwrap();
            f.write_all_at(b"changed!", 0).unwrap();
        }),
        ("truncated", |p| {
            let f = fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(5 << 20).unwrap();
        }),
    ];
    for (i, (what, change)) in changes.into_iter().enumerate() {
        let td = tempdir();
        let src = td.path().join("src");
        fs::create_dir(&src).unwrap();
        let victim = src.join("a-big.bin");
        fs::write(&victim, random_bytes(10 + i as u64, 24 << 20)).unwrap();
        fs::write(src.join("b-small.txt"), b"small\n").unwrap();
        // An old mtime, so that any write moves it even with a coarse clock.
        set_times(&victim, (1_500_000_000, 0), (1_500_000_000, 0));
        let r = Restic::new(&td.path().join("r"));
        init_repo(&r, 2);

        let (code, err, s) = backup_changing(&r, &src, &victim, change);
        assert_eq!(code, 3, "{what}: chunk should finish with 'some items failed'; stderr:\n{err}");
        assert!(
            err.contains("a-big.bin") && err.contains("changed"),
            "{what}: the change is not reported by name:\n{err}"
        );
        assert!(!err.contains("b-small"), "{what}: {err}");
        assert_eq!(count(&s, "files_new"), 2, "{what}: {s}");
        assert_eq!(r.snapshots_json().len(), 1, "{what}");
        r.run(&["check"]);
    }
}

/// pack killed (SIGKILL) after most of the stream went through and its packs were pushed:
/// push fails, no snapshot, nothing half-written, restic check is clean, and a re-run
/// succeeds reusing the packs already stored (it adds a small fraction of them again).
#[test]
fn killed_pack_leaves_no_snapshot_and_rerun_reuses_packs() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, 51, &TreeOpts { big: true, ..TreeOpts::default() });
    for i in 0..3u64 {
        fs::write(src.join(format!("unique-{i}.bin")), random_bytes(500 + i, 6 << 20)).unwrap();
    }
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let pack_args = ["--pack-size", "4", "--compression", "off"];
    let stages = Backup::of(&[&src]).pack_args(&pack_args).stages(&r);

    let mut chunk = spawn(stages[0].clone(), Stdio::null());
    let mut pack = spawn(stages[1].clone(), Stdio::piped());
    let mut push = spawn(stages[2].clone(), Stdio::from(pack.stdout.take().unwrap()));
    let errs = [
        drain(chunk.stderr.take().unwrap()),
        drain(pack.stderr.take().unwrap()),
        drain(push.stderr.take().unwrap()),
    ];
    let push_out = drain(push.stdout.take().unwrap());

    // Relay chunk's records to pack until nearly all of the stream (base64 makes it 4/3 of
    // the file bytes, plus record overhead) went through.
    let total: u64 = walkdir::WalkDir::new(&src)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let limit = total * 4 / 3 * 96 / 100;
    let mut from_chunk = BufReader::new(chunk.stdout.take().unwrap());
    let mut to_pack = pack.stdin.take().unwrap();
    let mut relayed = 0u64;
    let mut line = Vec::new();
    while relayed < limit {
        line.clear();
        let n = from_chunk.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "chunk's stream ended after {relayed} bytes, before {limit}");
        to_pack.write_all(&line).unwrap();
        relayed += n as u64;
    }
    to_pack.flush().unwrap();
    // pack has stored what it got; wait until push has written those packs, then kill pack.
    let mut last = (0, Instant::now());
    wait_for(60, "push to store the packs pack made", || {
        let n = r.pack_files().len();
        if n != last.0 {
            last = (n, Instant::now());
        }
        n >= 3 && last.1.elapsed() > Duration::from_millis(700)
    });
    pack.kill().unwrap();
    drop(to_pack);
    drop(from_chunk);
    let codes = [code(&chunk.wait().unwrap()), code(&pack.wait().unwrap()), code(&push.wait().unwrap())];
    // Counted once push is gone: what it committed stays, its unfinished upload does not.
    let orphans = stored_packs(&r).len();
    let orphan_bytes = pack_bytes(&r);
    let errs: Vec<String> =
        errs.into_iter().map(|h| String::from_utf8_lossy(&h.join().unwrap()).into_owned()).collect();
    let _ = push_out.join();
    assert_eq!(codes[1], 137, "pack should have died of SIGKILL; stderrs: {errs:#?}");
    // chunk either finished writing into the pipe before it closed, or met the closed pipe.
    assert!(codes[0] == 0 || codes[0] == 141, "chunk: exit {}; stderrs: {errs:#?}", codes[0]);
    assert_ne!(codes[2], 0, "push must fail on a stream without its end; stderrs: {errs:#?}");
    assert!(cut_reported(&errs[2]), "push should say the stream was cut: {}", errs[2]);
    assert!(errs[0].is_empty(), "chunk should exit quietly on EPIPE: {}", errs[0]);
    assert_no_snapshot_and_clean(&r, "after killing pack");
    assert!(
        orphan_bytes > 12 << 20,
        "only {orphans} packs ({orphan_bytes} bytes) were stored before the kill"
    );
    r.run(&["check"]);

    // The re-run completes and stores only what the killed run had not: together with the
    // packs the killed run left, it stores no more than one whole backup of the same tree
    // does. Storing again anything those packs hold would exceed that.
    let s = Backup::of(&[&src]).pack_args(&pack_args).run(&r);
    let added = count(&s, "data_added_packed");
    // Same chunker polynomial, hence the same blobs: how well the repeated data deduplicates
    // depends on where the chunker cuts.
    let fresh = Restic::new(&td.path().join("fresh"));
    let res = Pipeline::new()
        .stage(argv([
            OsStr::new("init-repo"),
            OsStr::new("-r"),
            fresh.repo.as_os_str(),
            OsStr::new("--password-file"),
            fresh.password_file.as_os_str(),
            OsStr::new("--copy-chunker-params"),
            OsStr::new("--from-repo"),
            r.repo.as_os_str(),
            OsStr::new("--from-password-file"),
            r.password_file.as_os_str(),
        ]))
        .env(TEST_SCRYPT.0, TEST_SCRYPT.1)
        .run();
    res.assert_ok();
    let whole = count(&Backup::of(&[&src]).pack_args(&pack_args).run(&fresh), "data_added_packed");
    eprintln!(
        "killed run left {orphan_bytes} bytes in {orphans} packs; the re-run stored {added} bytes; \
         a whole backup stores {whole}"
    );
    // Pack files carry headers (41 bytes a blob, 36 a pack) that data_added_packed leaves out.
    let headers = 64 << 10;
    assert!(
        added + orphan_bytes <= whole + headers,
        "the re-run stored {added} bytes although {orphan_bytes} bytes in {orphans} packs of the killed run \
         were in the repository and a whole backup is {whole}: packs left by a killed run are not reused"
    );
    r.check_read_data();
    let out = td.path().join("out");
    restore(&r, s["snapshot_id"].as_str().unwrap(), &out);
    compare_trees(&src, &out.join(snapshot_subpath(&src)), &CompareOpts::strict()).unwrap();
}

/// chunk killed (SIGKILL) mid-stream: pack and push fail, no snapshot, restic check clean.
#[test]
fn killed_chunk_leaves_no_snapshot() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..6u64 {
        fs::write(src.join(format!("f{i}.bin")), random_bytes(600 + i, 5 << 20)).unwrap();
    }
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 1);
    let stages = Backup::of(&[&src]).pack_args(&["--pack-size", "4"]).stages(&r);
    let mut chunk = spawn(stages[0].clone(), Stdio::null());
    let mut pack = spawn(stages[1].clone(), Stdio::from(chunk.stdout.take().unwrap()));
    let mut push = spawn(stages[2].clone(), Stdio::from(pack.stdout.take().unwrap()));
    let errs = [
        drain(chunk.stderr.take().unwrap()),
        drain(pack.stderr.take().unwrap()),
        drain(push.stderr.take().unwrap()),
    ];
    let _out = drain(push.stdout.take().unwrap());
    wait_for(60, "the first pack in the repository", || !r.pack_files().is_empty());
    chunk.kill().unwrap();
    let codes = [code(&chunk.wait().unwrap()), code(&pack.wait().unwrap()), code(&push.wait().unwrap())];
    let errs: Vec<String> =
        errs.into_iter().map(|h| String::from_utf8_lossy(&h.join().unwrap()).into_owned()).collect();
    assert_eq!(codes[0], 137, "chunk should have died of SIGKILL (it finished first?); {errs:#?}");
    assert_ne!(codes[1], 0, "pack must fail on a cut stream: {errs:#?}");
    assert_ne!(codes[2], 0, "push must fail on a cut stream: {errs:#?}");
    assert!(cut_reported(&errs[1]), "pack should say its input was cut: {}", errs[1]);
    assert_no_snapshot_and_clean(&r, "after killing chunk");
    r.run(&["check"]);
    Backup::of(&[&src]).run(&r);
    r.check_read_data();
}

/// A small tmpfs mounted for the test's lifetime (unmounted when dropped).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB on `dir`, or `None` where mounting is not allowed.
    fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, mib: u64) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {:?}", self.0);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The repository's file system fills up during push: one clear error naming what could not
/// be written and where, a non-zero exit, no snapshot and nothing incomplete under a final
/// name. Two ways: a small tmpfs holding the repository (where mounting works: root), after
/// which a re-run with space again succeeds; and, everywhere, a file size limit on push
/// (`ulimit -f`, with SIGXFSZ ignored so the write fails with EFBIG as it would with ENOSPC).
#[test]
fn full_disk_gives_one_clear_error_and_nothing_half_visible() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..5u64 {
        fs::write(src.join(format!("f{i}.bin")), random_bytes(700 + i, 4 << 20)).unwrap();
    }
    for use_tmpfs in [true, false] {
        let r = Restic::new(&td.path().join(if use_tmpfs { "tmpfs" } else { "ulimit" }));
        let guard = if use_tmpfs {
            // Containers often deny mounting even to root; the size limit below still runs.
            match Tmpfs::mount(&r.repo, 9) {
                Some(g) => Some(g),
                None => {
                    eprintln!("cannot mount a tmpfs here: only the file size limit is tried");
                    continue;
                }
            }
        } else {
            None
        };
        let what = if use_tmpfs { "full tmpfs" } else { "file size limit" };
        init_repo(&r, 2);
        let b = Backup::of(&[&src]).pack_args(&["--pack-size", "4", "--compression", "off"]);
        let mut stages = b.stages(&r);
        if !use_tmpfs {
            // 2048 blocks: 1 MiB in dash, 2 MiB in bash; a pack is 4 MiB.
            let mut sh: Vec<OsString> =
                vec!["sh".into(), "-c".into(), "trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"".into()];
            sh.push(bin("push").into_os_string());
            sh.extend(stages[2][1..].iter().cloned());
            stages[2] = sh;
        }
        let mut p = Pipeline::new();
        for s in stages {
            p = p.stage(s);
        }
        let res = p.run();
        let codes = res.codes();
        assert!(
            codes[2] != 0 && codes[2] < 128,
            "{what}: push must fail with an error, not a signal or success:\n{}",
            res.report()
        );
        let err = res.stderr_str(2);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: push should print one error line:\n{err}");
        // push --json ends with restic's exit_error message, whose text is the plain line's.
        let exit: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {err}"));
        assert_eq!(
            (&exit["message_type"], &exit["code"]),
            (&"exit_error".into(), &codes[2].into()),
            "{exit}"
        );
        let msg = exit["message"].as_str().unwrap();
        assert!(msg.starts_with("push: "), "{msg}");
        let cause = if use_tmpfs { "No space left on device" } else { "File too large" };
        assert!(msg.contains(cause), "{what}: the cause is not named: {msg}");
        assert!(
            msg.contains("pack") && msg.contains(r.repo.to_str().unwrap()),
            "{what}: what was being written, and where, is not named: {msg}"
        );
        for i in 0..2 {
            assert!(!res.stderr_str(i).contains("panick"), "{}", res.report());
        }
        assert_no_snapshot_and_clean(&r, what);

        if let Some(m) = &guard {
            m.resize(64);
            let s = b.run(&r);
            assert!(count(&s, "data_blobs") > 0);
            r.check_read_data();
        }
    }
}

/// A wrong password is exit 12 for the stages that open the repository with it.
#[test]
fn wrong_password_exits_12() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let wrong = Restic { password_file: td.path().join("wrong"), ..r.clone() };
    fs::write(&wrong.password_file, "not the password\n").unwrap();
    for stage in [tool("chunk", &wrong, &[src.as_os_str()]), tool("pack", &wrong, &[])] {
        let res = Pipeline::new().stage(stage).stdin("").run();
        assert_eq!(res.codes(), vec![12], "{}", res.report());
        let err = res.stderr_str(0);
        assert!(err.to_lowercase().contains("password"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(files_in(&r.repo, "locks"), 0);
}

/// A repository that does not exist (no directory, or a directory without config) is exit 10
/// for chunk, pack and push, and nothing is created.
#[test]
fn missing_repository_exits_10() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let empty = td.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for repo in [td.path().join("nowhere"), empty.clone()] {
        let r = Restic { repo: repo.clone(), ..Restic::new(&td.path().join("pw")) };
        for stage in [tool("chunk", &r, &[src.as_os_str()]), tool("pack", &r, &[]), tool("push", &r, &[])] {
            let res = Pipeline::new().stage(stage).stdin("").run();
            assert_eq!(res.codes(), vec![10], "{}", res.report());
            let err = res.stderr_str(0);
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
    assert!(!td.path().join("nowhere").exists(), "a stage created the missing repository");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "a stage wrote into the empty directory");
}

/// push fed pack's stream cut short, at any point (mid-record, before the index, before
/// the snapshot, after the snapshot but before the end): non-zero exit, no snapshot.
#[test]
fn push_rejects_a_cut_stream() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, 61, &TreeOpts::default());
    fs::write(src.join("extra.bin"), random_bytes(61, 9 << 20)).unwrap();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let stages = Backup::of(&[&src]).pack_args(&["--pack-size", "4"]).stages(&r);
    let res = Pipeline::new().stage(stages[0].clone()).stage(stages[1].clone()).run();
    res.assert_ok();
    let stream = res.stdout;
    let line_ends: Vec<usize> =
        stream.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    let lines: Vec<&[u8]> = {
        let mut v = Vec::new();
        let mut start = 0;
        for &e in &line_ends {
            v.push(&stream[start..e]);
            start = e;
        }
        v
    };
    let find = |needle: &str| -> usize {
        let i = lines
            .iter()
            .rposition(|l| l.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .unwrap_or_else(|| panic!("no {needle} in pack's output"));
        line_ends[i]
    };
    let last_header = find("\"type\":\"pack_header\"");
    let index = find("\"kind\":\"index\"");
    let snapshot = find("\"kind\":\"snapshot\"");
    let summary = find("\"type\":\"summary\"");
    assert_eq!(summary, line_ends[line_ends.len() - 2], "the summary should come just before the end record");
    let cuts = [
        ("mid-record in the middle", stream.len() / 2),
        ("after the last pack", last_header),
        ("after the index", index),
        ("after the snapshot", snapshot),
        ("after the summary", summary),
        ("inside the end record", stream.len() - 3),
    ];
    for (what, at) in cuts {
        let res = Pipeline::new().stage(tool("push", &r, &[])).stdin(stream[..at].to_vec()).run();
        assert_ne!(res.codes()[0], 0, "push accepted a stream cut {what}:\n{}", res.report());
        assert!(res.codes()[0] < 128, "{}", res.report());
        assert_no_snapshot_and_clean(&r, &format!("stream cut {what}"));
    }
    r.run(&["check"]);
    // The whole stream is still good afterwards, and re-sending it is harmless.
    for _ in 0..2 {
        Pipeline::new().stage(tool("push", &r, &[])).stdin(stream.clone()).run().assert_ok();
    }
    assert_eq!(r.snapshots_json().len(), 1);
    r.check_read_data();
}

/// `chunk … | head -c 1000`: chunk stops on the closed pipe with 141 and says nothing.
#[test]
fn chunk_into_closed_pipe_exits_141_quietly() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big.bin"), random_bytes(71, 6 << 20)).unwrap();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let head: Vec<OsString> = ["head", "-c", "1000"].iter().map(OsString::from).collect();
    let res = Pipeline::new().stage(tool("chunk", &r, &[src.as_os_str()])).stage(head).run();
    assert_eq!(res.codes(), vec![141, 0], "{}", res.report());
    assert_eq!(res.stdout.len(), 1000);
    assert!(res.stderrs[0].is_empty(), "chunk should be quiet: {}", res.stderr_str(0));
}

//! A backup must never save a snapshot whose data is not in the repository. These tests run
//! the backup pipeline from a shell (as a user would, with `set -o pipefail`) next to the
//! real restic: a prune during a backup is refused, a replayed stream whose data was pruned
//! is refused, a stream for another repository stores nothing, a lock removed mid-run stops
//! the backup, the lock is renewed while the input is silent, and an interrupted or killed
//! backup leaves no lock and no temporary file behind.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use support::backup::{files_in, init_repo, repo_files_not_named_by_hash};
use support::{bin_dir, tempdir, Restic};

/// A shell with our binaries first on PATH and `r` as the repository.
fn sh(r: &Restic, script: &str) -> Command {
    let mut c = Command::new("bash");
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    c.arg("-c")
        .arg(format!("set -o pipefail\n{script}"))
        .env("PATH", path)
        .env("RESTIC_REPOSITORY", &r.repo)
        .env("RESTIC_PASSWORD_FILE", &r.password_file)
        .env("RESTIC_CACHE_DIR", &r.cache_dir)
        .env_remove("RESTIC_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(r: &Restic, script: &str) -> Output {
    sh(r, script).output().expect("run bash")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn random_file(p: &Path, seed: u64, n: usize) {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    fs::write(p, v).unwrap();
}

fn lock_names(r: &Restic) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(r.repo.join("locks"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    // Lock files only: not a lock being written under its temporary name.
    v.retain(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
    v.sort();
    v
}

/// Temporary files anywhere in the repository (ours start with a dot).
fn temporaries(repo: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.into_path())
        .collect()
}

fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("wait for the backup")
}

fn setup(td: &Path) -> (Restic, PathBuf) {
    let r = Restic::new(&td.join("r"));
    init_repo(&r, 2);
    let x = td.join("x.bin");
    // Several chunks and more than the pipe and stdout buffers hold, so a pack upload is
    // under way well before the input ends.
    random_file(&x, 7, 12_000_000);
    (r, x)
}

const BACKUP_STDIN: &str = "chunk --stdin --stdin-filename x.bin | pack | push";

/// The backup's lock is in the repository within a second of pack starting, even when the
/// input is silent and everything deduplicates, so a concurrent `restic prune` is refused
/// and the snapshot saved afterwards is whole.
#[test]
fn lock_is_stored_at_once_and_prune_is_refused() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let first = run(&r, &format!("cat '{}' | {BACKUP_STDIN}", x.display()));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let snap_a = r.snapshots_json()[0]["id"].as_str().unwrap().to_string();

    // The same data again, behind four seconds of silence.
    let child = sh(&r, &format!("{{ sleep 4; cat '{}'; }} | {BACKUP_STDIN}", x.display())).spawn().unwrap();
    let took = wait_until(10, "the lock in the repository", || !lock_names(&r).is_empty());
    assert!(took < Duration::from_secs(1), "the lock took {took:?} to appear");
    let prune = r.cmd(&["forget", &snap_a, "--prune"]);
    assert!(!prune.status.success(), "restic prune ran during the backup:\n{}", text(&prune.stdout));
    assert!(text(&prune.stderr).contains("locked"), "{}", text(&prune.stderr));
    let out = finish(child);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(lock_names(&r).is_empty(), "lock left: {:?}", lock_names(&r));
    // The summary's duration is the backup's, silence included (it once said "in 0:00").
    assert!(err.contains(" in 0:04") || err.contains(" in 0:05") || err.contains(" in 0:06"), "{err}");
    r.run(&["check"]);
}

/// A stream saved from pack and pushed after a prune removed the data it deduplicated
/// against is refused: no snapshot, one line naming the missing pack, exit non-zero.
#[test]
fn replay_after_prune_is_refused() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    assert!(run(&r, &format!("cat '{}' | {BACKUP_STDIN}", x.display())).status.success());
    let saved = td.path().join("stream.ndjson");
    let made = run(
        &r,
        &format!("chunk --stdin --stdin-filename x.bin < '{}' | pack > '{}'", x.display(), saved.display()),
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let snap_a = r.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    r.run(&["forget", &snap_a, "--prune"]);
    let snaps_before = files_in(&r.repo, "snapshots");

    let out = run(&r, &format!("push < '{}'", saved.display()));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "push saved a snapshot whose data was pruned:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no longer in the repository"), "{err}");
    assert_eq!(files_in(&r.repo, "snapshots"), snaps_before, "a snapshot was written");
    assert!(lock_names(&r).is_empty());
    r.run(&["check"]);

    // Without the prune in between the same replay is fine.
    let made = run(
        &r,
        &format!("chunk --stdin --stdin-filename x.bin < '{}' | pack > '{}'", x.display(), saved.display()),
    );
    assert!(made.status.success());
    let out = run(&r, &format!("push < '{}'", saved.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    r.run(&["check", "--read-data"]);
}

/// `chunk -r A | pack -r A | push -r B` stores nothing in B.
#[test]
fn push_refuses_a_stream_for_another_repository() {
    let td = tempdir();
    let (a, x) = setup(td.path());
    let b = Restic::new(&td.path().join("b"));
    init_repo(&b, 2);
    let before = walkdir::WalkDir::new(&b.repo).into_iter().count();
    let out = run(&a, &format!("cat '{}' | {BACKUP_STDIN} -r '{}'", x.display(), b.repo.display()));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("another repository"), "{err}");
    assert_eq!(walkdir::WalkDir::new(&b.repo).into_iter().count(), before, "push stored something in B");
    b.run(&["check"]);
    assert!(b.snapshots_json().is_empty());
}

/// `restic unlock --remove-all` during a backup: the backup stops non-zero and saves no
/// snapshot, however long its input stays silent.
#[test]
fn removed_lock_stops_the_backup() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let child = sh(&r, &format!("{{ cat '{}'; sleep 8; }} | {BACKUP_STDIN}", x.display()))
        .env("SLUICE_LOCK_POLL_SECS", "1")
        .spawn()
        .unwrap();
    wait_until(10, "the lock", || !lock_names(&r).is_empty());
    thread::sleep(Duration::from_millis(500));
    r.run(&["unlock", "--remove-all"]);
    let out = finish(child);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // pack's watcher stops it while its input is still silent, not push at the very end.
    assert!(err.contains("pack: this backup's lock") && err.contains("was removed"), "{err}");
    assert_eq!(files_in(&r.repo, "snapshots"), 0, "a snapshot was saved:\n{err}");
    assert!(lock_names(&r).is_empty());
    assert!(repo_files_not_named_by_hash(&r.repo).is_empty());
}

/// With silent input the lock is renewed on its timer: a new lock file replaces the old one
/// while nothing arrives, and none is left at the end.
#[test]
fn lock_is_renewed_while_input_is_silent() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let child = sh(&r, &format!("{{ sleep 5; cat '{}'; }} | {BACKUP_STDIN}", x.display()))
        .env("SLUICE_LOCK_REFRESH_SECS", "1")
        .env("SLUICE_LOCK_POLL_SECS", "1")
        .spawn()
        .unwrap();
    wait_until(10, "the lock", || !lock_names(&r).is_empty());
    let first = lock_names(&r);
    wait_until(4, "a renewed lock", || {
        let now = lock_names(&r);
        !now.is_empty() && now != first
    });
    let out = finish(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(lock_names(&r).is_empty(), "lock left: {:?}", lock_names(&r));
    r.run(&["check"]);
}

/// Ctrl-C (SIGINT to the whole pipeline) while a pack is being uploaded: no lock and no
/// temporary file stays, push exits 130, and restic check is happy.
#[test]
fn interrupted_backup_leaves_nothing_behind() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let td = tempdir();
        let (r, x) = setup(td.path());
        let mut c = sh(&r, &format!("{{ cat '{}'; sleep 30; }} | {BACKUP_STDIN}", x.display()));
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().unwrap();
        wait_until(10, "the lock and an upload", || {
            !lock_names(&r).is_empty() && !temporaries(&r.repo.join("data")).is_empty()
        });
        unsafe { libc::kill(-(child.id() as i32), sig) };
        let out = finish(child);
        let err = text(&out.stderr);
        // bash reports a child's 128+N, or dies of the signal itself.
        let shell =
            out.status.code().or(std::os::unix::process::ExitStatusExt::signal(&out.status).map(|s| 128 + s));
        assert_eq!(shell, Some(128 + sig), "{err}");
        let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        let line = push_line(&err);
        assert!(line.starts_with(&format!("push: interrupted by {name}; removed its lock")), "{err}");
        assert!(!err.contains("panick"), "{err}");
        assert!(lock_names(&r).is_empty(), "signal {sig}: lock left: {:?}", lock_names(&r));
        assert!(temporaries(&r.repo).is_empty(), "signal {sig}: left {:?}", temporaries(&r.repo));
        assert_eq!(files_in(&r.repo, "snapshots"), 0);
        r.run(&["check"]);
    }
}

/// push's one line on stderr.
fn push_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("push:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0]
}

/// Ctrl-C before push holds anything, once it holds the lock, and once packs are stored: the
/// same shape of line each time, saying what was removed and what stays. Before push held
/// anything it said `push: interrupted by SIGINT` and no more, and when the end of its input
/// (the stages before it died of the same Ctrl-C) came first, `push: interrupted`.
#[test]
fn interrupted_push_says_what_stays_early_and_late() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    // Packs under their final names (a temporary upload starts with a dot).
    let packs = || files_in(&r.repo, "data") - temporaries(&r.repo.join("data")).len();
    let small = "chunk --stdin --stdin-filename x.bin | pack --pack-size 1 | push";
    let silent = format!("{{ sleep 30; }} | {BACKUP_STDIN}");
    let data = format!("{{ cat '{}'; sleep 30; }} | {small}", x.display());
    let removed = "push: interrupted by SIGINT; removed its lock and temporary files; ";
    // The pipeline, when to send the signal, and push's line (`None`: with the packs' count).
    type Case<'a> = (&'a str, &'a dyn Fn() -> bool, Option<&'a str>);
    // Before the pause only the chunks up to chunk's last cut are whole: with the repository's
    // random polynomial that may leave one pack of 1 MiB, not two.
    let cases: [Case; 3] = [
        ("sleep 30 | push", &|| true, Some("push: interrupted by SIGINT; no pack was stored")),
        (&silent, &|| !lock_names(&r).is_empty(), Some(&format!("{removed}no pack was stored"))),
        (&data, &|| packs() >= 1, None),
    ];
    for (script, ready, want) in cases {
        let mut c = sh(&r, script);
        c.env("SLUICE_ALLOW_SMALL_PACKS", "1");
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().unwrap();
        // push is running, its signal handler installed.
        thread::sleep(Duration::from_millis(500));
        wait_until(20, script, ready);
        // Until the packs that are complete are stored.
        let mut seen = (packs(), Instant::now());
        while seen.1.elapsed() < Duration::from_millis(700) {
            thread::sleep(Duration::from_millis(50));
            if packs() != seen.0 {
                seen = (packs(), Instant::now());
            }
        }
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
        let out = finish(child);
        let err = text(&out.stderr);
        let line = push_line(&err);
        match want {
            Some(want) => assert_eq!(line, want, "{script}\n{err}"),
            None => {
                let want = match packs() {
                    1 => format!("{removed}the pack it stored stays (restic prune removes it)"),
                    n => format!("{removed}the {n} packs it stored stay (restic prune removes them)"),
                };
                assert_eq!(line, want, "{script}\n{err}");
            }
        }
        assert!(lock_names(&r).is_empty(), "{script}: lock left: {:?}", lock_names(&r));
        assert!(temporaries(&r.repo).is_empty(), "{script}: left {:?}", temporaries(&r.repo));
    }
}

/// Whole records of `path`, the line being written left out.
fn whole_lines(path: &Path) -> Vec<String> {
    let text = text(&fs::read(path).unwrap_or_default());
    let mut v: Vec<String> = text.split('\n').map(String::from).collect();
    v.pop();
    v
}

fn of_type<'a>(lines: &'a [String], t: &str) -> impl Iterator<Item = &'a String> {
    let prefix = format!("{{\"type\":\"{t}\"");
    lines.iter().filter(move |l| l.starts_with(&prefix))
}

/// While its input is silent, a stage holds back nothing it has finished, whatever its
/// buffers hold: chunk's records up to the last cut it found, pack's blobs (the one being
/// sealed too) reach the next stage, so push stores what is whole and hears the progress.
/// Before, up to a megabyte of each stage's output waited in its buffer for more input.
#[test]
fn a_silent_input_holds_back_nothing_finished() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let whole = td.path().join("whole.ndjson");
    let made =
        run(&r, &format!("chunk --stdin --stdin-filename x.bin < '{}' > '{}'", x.display(), whole.display()));
    assert!(made.status.success(), "{}", text(&made.stderr));
    let all = whole_lines(&whole);
    let chunks = of_type(&all, "chunk").count();
    assert!(chunks >= 3, "{chunks} chunks");
    // Everything up to the last chunk record, then silence.
    let upto = all.iter().rposition(|l| l.starts_with("{\"type\":\"chunk\"")).unwrap() + 1;
    let head = td.path().join("head.ndjson");
    fs::write(&head, all[..upto].join("\n") + "\n").unwrap();

    let stages = [
        // The last chunk is cut only where the input ends.
        (
            format!("{{ cat '{}'; sleep 30; }} | chunk --stdin --stdin-filename x.bin", x.display()),
            "chunk",
            chunks - 1,
        ),
        (format!("{{ cat '{}'; sleep 30; }} | pack", head.display()), "pack_data", chunks),
    ];
    for (script, t, want) in stages {
        let got = td.path().join("got.ndjson");
        let mut c = sh(&r, &format!("{script} > '{}'", got.display()));
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().unwrap();
        let waited = std::panic::catch_unwind(|| {
            wait_until(20, script.as_str(), || of_type(&whole_lines(&got), t).count() >= want)
        });
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = finish(child);
        let n = of_type(&whole_lines(&got), t).count();
        assert!(waited.is_ok(), "{script}: {n} {t} records of {want} came out while the input was silent");
        assert_eq!(n, want, "{script}");
    }
    r.run(&["unlock", "--remove-all"]);
}

/// A push killed outright (SIGKILL) leaves its temporary upload; the next push removes it.
#[test]
fn killed_push_upload_is_removed_by_the_next_run() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let mut c = sh(&r, &format!("{{ cat '{}'; sleep 30; }} | {BACKUP_STDIN}", x.display()));
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let child = c.spawn().unwrap();
    wait_until(10, "an upload", || !temporaries(&r.repo.join("data")).is_empty());
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = finish(child);
    assert!(!temporaries(&r.repo).is_empty(), "SIGKILL should leave the upload (nothing can remove it)");
    // The killed pack's lock stays too, as restic's own would; restic cannot tell it is
    // stale while the killed processes are unreaped zombies, hence --remove-all.
    r.run(&["unlock", "--remove-all"]);
    let out = run(&r, &format!("cat '{}' | {BACKUP_STDIN}", x.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(temporaries(&r.repo).is_empty(), "left: {:?}", temporaries(&r.repo));
    r.run(&["check", "--read-data"]);
}

/// One corrupt file in `locks/` does not stop every backup: a warning names it.
#[test]
fn corrupt_lock_file_is_warned_about_and_ignored() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let bogus = r.repo.join("locks").join("ab".repeat(32));
    fs::write(&bogus, b"not a lock").unwrap();
    let out = run(&r, &format!("cat '{}' | {BACKUP_STDIN}", x.display()));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("abababab") && err.contains("unreadable"), "{err}");
    assert_eq!(r.snapshots_json().len(), 1);
}

/// A stream without a snapshot (cut by hand before it, then closed properly) saves nothing
/// and says so, rather than printing "snapshot saved".
#[test]
fn stream_without_snapshot_is_not_reported_saved() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let saved = td.path().join("stream.ndjson");
    let made = run(
        &r,
        &format!("chunk --stdin --stdin-filename x.bin < '{}' | pack > '{}'", x.display(), saved.display()),
    );
    assert!(made.status.success());
    let all = fs::read_to_string(&saved).unwrap();
    let lines: Vec<&str> = all.lines().filter(|l| !l.contains("\"kind\":\"snapshot\"")).collect();
    let n = lines.len() - 2;
    let mut edited: Vec<String> = lines[..lines.len() - 1].iter().map(|s| s.to_string()).collect();
    edited.push(format!("{{\"type\":\"end\",\"records\":{n}}}"));
    fs::write(&saved, edited.join("\n") + "\n").unwrap();
    let out = run(&r, &format!("push < '{}'", saved.display()));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("saved") || err.contains("none saved"), "{err}");
    assert!(r.snapshots_json().is_empty());
    assert!(lock_names(&r).is_empty());
}

/// A lock push cannot remove (the locks directory made immutable under it) is named in a
/// warning with the way out, rather than left silently for the next prune to trip over.
#[test]
fn lock_that_cannot_be_removed_is_warned_about() {
    let td = tempdir();
    let (r, x) = setup(td.path());
    let locks = r.repo.join("locks");
    let child = sh(&r, &format!("{{ cat '{}'; sleep 2; }} | {BACKUP_STDIN}", x.display())).spawn().unwrap();
    wait_until(10, "the lock", || !lock_names(&r).is_empty());
    let frozen = Command::new("chattr").arg("+i").arg(&locks).status().expect("run chattr");
    assert!(frozen.success(), "chattr +i failed: this test needs an ext2/3/4 file system for its temp dir");
    let out = finish(child);
    let _ = Command::new("chattr").arg("-i").arg(&locks).status();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("push: could not remove lock") && err.contains("restic unlock"), "{err}");
    assert_eq!(r.snapshots_json().len(), 1);
}

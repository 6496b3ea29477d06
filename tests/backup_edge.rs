//! Backups as a new user tries them, on cases the other suites leave out, each checked
//! against what the real restic 0.14 does with the same input: a symbolic link given as the
//! thing to back up, a backup of nothing, a pseudo-file whose size is not its length, a
//! path too long for the system, passwords typed on the terminal, and the exclude options
//! of restic scripts (negated patterns, `--iexclude`, `--exclude-if-present`).

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::Value;
use support::backup::{init_repo, restore, Backup, TEST_SCRYPT};
use support::{tempdir, Restic};

/// The last node `restic ls --json` lists in the snapshot.
fn last_node(r: &Restic, snapshot: &Value) -> Value {
    let ls = r.run(&["ls", "--json", snapshot["id"].as_str().unwrap()]);
    serde_json::from_slice(ls.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap()
}

/// The snapshot whose id begins with `id`.
fn snapshot(r: &Restic, id: &str) -> Value {
    r.snapshots_json()
        .into_iter()
        .find(|s| s["id"].as_str().unwrap().starts_with(id))
        .unwrap_or_else(|| panic!("no snapshot {id}"))
}

/// `chunk LINK`, where LINK is a symbolic link to a directory, backs up the link itself, as
/// `restic backup LINK` does; chunk used to follow it and then panic (index out of bounds)
/// on the first entry below it.
#[test]
fn symlink_given_as_path_is_stored_as_the_link() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let dir = td.path().join("real");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/f"), b"below the link").unwrap();
    symlink("real", td.path().join("link")).unwrap();

    let ours = Backup::of(&["link"]).in_dir(td.path()).run(&r);
    let ours = snapshot(&r, ours["snapshot_id"].as_str().unwrap());
    let out = r.command().args(["backup", "--json", "link"]).current_dir(td.path()).output().unwrap();
    assert!(out.status.success(), "restic backup: {}", String::from_utf8_lossy(&out.stderr));
    let summary = out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap();
    let theirs: Value = serde_json::from_slice(summary).unwrap();
    let theirs = snapshot(&r, theirs["snapshot_id"].as_str().unwrap());
    assert_eq!(ours["paths"], theirs["paths"]);
    // The leading directories (/tmp's times change all the time) aside, the same node.
    let (a, b) = (last_node(&r, &ours), last_node(&r, &theirs));
    assert_eq!(a, b);
    assert_eq!(a["type"], "symlink", "{a}");
    assert_eq!(a["name"], "link", "{a}");
}

/// A backup whose every PATH is excluded would hold nothing: restic refuses it ("snapshot
/// is empty", exit 1), and chunk used to let pack save an empty snapshot and exit 0.
#[test]
fn a_backup_of_nothing_saves_no_snapshot() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"data").unwrap();
    let pattern = fs::canonicalize(&src).unwrap();
    let pattern = pattern.to_str().unwrap();

    let out =
        r.command().args(["backup", "--exclude", pattern, "src"]).current_dir(td.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "restic: {}", String::from_utf8_lossy(&out.stderr));

    let res = Backup::of(&["src"]).in_dir(td.path()).chunk_args(&["--exclude", pattern]).run_raw(&r);
    assert_eq!(res.codes()[0], 1, "{}", res.report());
    assert!(res.codes().iter().all(|&c| c != 0), "{}", res.report());
    let err = res.stderr_str(0);
    assert!(err.starts_with("chunk: nothing to back up"), "{err}");
    assert!(r.snapshots_json().is_empty(), "a snapshot was saved");
}

/// A file whose size in its metadata is not what reading it gives, without changing (procfs
/// says 0, sysfs 4096), is backed up with the bytes read and no warning, as restic backs it
/// up; chunk used to call it "changed while it was read" and exit 3.
#[test]
fn a_pseudo_file_is_not_a_file_that_changed() {
    let file = Path::new("/proc/sys/kernel/ostype");
    let want = fs::read(file).unwrap();
    assert_eq!(fs::metadata(file).unwrap().len(), 0, "procfs gives this file no size");
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let res = Backup::of(&[file]).run_raw(&r);
    assert_eq!(res.codes(), vec![0, 0, 0], "{}", res.report());
    let target = td.path().join("out");
    restore(&r, "latest", &target);
    assert_eq!(fs::read(target.join("proc/sys/kernel/ostype")).unwrap(), want);
}

/// Runs `line` with bash on a fresh pseudo-terminal (util-linux `script`), without a password
/// in the environment, and types each answer once the next password prompt is there.
/// Returns the exit status and everything the terminal showed.
fn on_terminal(line: &str, answers: &[&str]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let mut script = Command::new("script")
        .args(["-qfec", &format!("bash -c {}", shell_quote(line)), "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env(TEST_SCRYPT.0, TEST_SCRYPT.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut out = script.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let prompts = || String::from_utf8_lossy(&seen.lock().unwrap()).matches("enter password").count();
    let mut stdin = script.stdin.take().unwrap();
    for (n, answer) in answers.iter().enumerate() {
        let end = Instant::now() + Duration::from_secs(30);
        while prompts() <= n && Instant::now() < end && script.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Time for any other stage to start asking too, as a person takes to type.
        std::thread::sleep(Duration::from_millis(500));
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
    }
    let status = script.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    (status.code(), text)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Without a password in the environment, chunk and pack both ask on the terminal, as the
/// README's `chunk ~/docs | pack | push` does for a new user. They used to ask at the same
/// moment and read the one line typed together: each got part of it and refused the right
/// password. Now they ask one after the other, each prompt named, and the backup is made.
#[test]
fn the_password_is_asked_once_per_stage_on_the_terminal() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let password = fs::read_to_string(&r.password_file).unwrap();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"typed").unwrap();
    // No --password-file: the stages must ask.
    let stages = vec![
        vec!["chunk".into(), "-r".into(), r.repo.clone().into_os_string(), src.into_os_string()],
        vec!["pack".into(), "-r".into(), r.repo.clone().into_os_string()],
        vec!["push".into(), "-q".into(), "-r".into(), r.repo.clone().into_os_string()],
    ];
    let line = format!("set -o pipefail; {}", support::progress::sh_line(&stages, ""));
    let (code, text) = on_terminal(&line, &[password.trim(), password.trim()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("chunk: enter password") && text.contains("pack: enter password"), "{text}");
    assert_eq!(r.snapshots_json().len(), 1, "{text}");
}

/// init-repo asks for a typed password twice, as `restic init` does, and creates nothing
/// when the two differ: it used to ask once, so a typing error made a repository that the
/// intended password does not open.
#[test]
fn init_repo_asks_twice_for_a_typed_password() {
    let td = tempdir();
    let repo = td.path().join("repo");
    let line = support::progress::sh_line(
        &[vec!["init-repo".into(), "-r".into(), repo.clone().into_os_string()]],
        "",
    );
    let (code, text) = on_terminal(&line, &["correct horse", "correct hose"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("init-repo: passwords do not match"), "{text}");
    assert!(!repo.exists(), "{text}");

    let (code, text) = on_terminal(&line, &["correct horse", "correct horse"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("init-repo: enter password for new repository: "), "{text}");
    assert!(text.contains("init-repo: enter password again: "), "{text}");
    let out = std::process::Command::new(support::restic_bin())
        .args(["-r".as_ref(), repo.as_os_str(), "--no-cache".as_ref(), "cat".as_ref(), "config".as_ref()])
        .env("RESTIC_PASSWORD", "correct horse")
        .output()
        .unwrap();
    assert!(out.status.success(), "restic: {}", String::from_utf8_lossy(&out.stderr));
}

/// An entry whose path is longer than the system allows (PATH_MAX) is reported once, as
/// restic reports it, and counted once: chunk used to name it twice in one message, then
/// again when the walk tried to descend into it, and count two items.
#[test]
fn a_path_too_long_is_reported_once() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let name = "d".repeat(200);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    // One level at a time, each relative to the one above: the whole path is too long for
    // the system calls themselves.
    let made = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("for i in $(seq 25); do mkdir {name} && cd {name} || exit 1; done; echo deep > f"),
        ])
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(made.success());

    let res = Backup::of(&["src"]).in_dir(td.path()).run_raw(&r);
    assert_eq!(res.codes(), vec![3, 0, 0], "{}", res.report());
    let err = res.stderr_str(0);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one line for the entry, one summary:\n{err}");
    assert_eq!(lines[0].matches("src/").count(), 1, "the path once:\n{err}");
    assert!(lines[0].ends_with("File name too long (os error 36)"), "{err}");
    assert_eq!(lines[1], "chunk: 1 item could not be read and is not in the backup");
}

/// One damaged snapshot file: restic's `snapshots` names it and lists the others, which is
/// how a user finds the one to forget. `snapshots` used to list none; now it lists the
/// others too, names the damaged one, and still exits 1.
#[test]
fn snapshots_lists_the_others_beside_a_damaged_one() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    Backup::of(&[&src]).run(&r);
    fs::write(src.join("f"), b"two").unwrap();
    Backup::of(&[&src]).run(&r);
    let mut ids: Vec<String> =
        r.snapshots_json().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let (bad, good) = (&ids[0], &ids[1]);
    fs::write(r.repo.join("snapshots").join(bad), b"damaged").unwrap();
    let theirs = r.cmd(&["--no-cache", "snapshots", "--json"]);
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    assert_eq!(theirs.as_array().unwrap().len(), 1, "restic lists the other one");

    for json in [false, true] {
        let mut args = vec!["snapshots".into(), "-r".into(), r.repo.clone().into_os_string()];
        args.extend(["--password-file".into(), r.password_file.clone().into_os_string()]);
        if json {
            args.push("--json".into());
        }
        let res = support::Pipeline::new().stage(args).run();
        assert_eq!(res.codes(), vec![1], "{}", res.report());
        let out = String::from_utf8_lossy(&res.stdout).into_owned();
        // By id: the good snapshot names the damaged one as its parent.
        let listed = |id: &str| out.contains(&format!("\"id\":\"{id}\""));
        assert!(listed(good) && !listed(bad), "{out}");
        let err = res.stderr_str(0);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(lines[0].starts_with("snapshots: ") && lines[0].contains(bad.as_str()), "{err}");
        assert!(lines[1].contains("1 snapshot file could not be read"), "{err}");
    }
}

/// Every path `restic ls --json` lists in the snapshot whose id begins with `id`, sorted.
fn paths_in(r: &Restic, id: &str) -> Vec<String> {
    let ls = r.run(&["ls", "--json", id]);
    let mut paths: Vec<String> = ls
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap())
        .filter(|v| v["struct_type"] == "node")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

/// The paths in restic's and in sluice's backup of `src` (below `dir`) with the same `args`.
fn both_backups(r: &Restic, dir: &Path, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = r.command().args(["backup", "--json"]).args(args).arg("src").current_dir(dir).output().unwrap();
    assert!(out.status.success(), "restic backup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let summary = out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap();
    let theirs: Value = serde_json::from_slice(summary).unwrap();
    let theirs = paths_in(r, theirs["snapshot_id"].as_str().unwrap());
    let ours = Backup::of(&["src"]).in_dir(dir).chunk_args(args).run(r);
    (paths_in(r, ours["snapshot_id"].as_str().unwrap()), theirs)
}

/// restic's negated exclude patterns (`!PATTERN`, the last pattern that matches decides):
/// chunk took `!keep.txt` for a name to exclude, so `--exclude '*.txt' --exclude '!keep.txt'`
/// left keep.txt out where restic keeps it. The same patterns in an exclude file too.
#[test]
fn negated_excludes_select_what_restic_selects() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir_all(src.join("keep")).unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    for f in ["a.txt", "keep.txt", "keep/k.txt", "keep/z.dat", "sub/b.txt", "sub/keep.txt"] {
        fs::write(src.join(f), f.as_bytes()).unwrap();
    }
    let cases: &[&[&str]] = &[
        &["*.txt", "!keep.txt"],
        &["!keep.txt", "*.txt"],
        &["*.txt", "!keep"],
        &["keep", "!keep/k.txt"],
        &["*.txt", "!/**/sub/*.txt"],
    ];
    for (n, patterns) in cases.iter().enumerate() {
        let mut args = Vec::new();
        for p in *patterns {
            args.extend(["--exclude", p]);
        }
        let (ours, theirs) = both_backups(&r, td.path(), &args);
        assert_eq!(ours, theirs, "--exclude {patterns:?}");

        let file = td.path().join(format!("excludes-{n}"));
        fs::write(&file, patterns.join("\n")).unwrap();
        let from_file = Backup::of(&["src"])
            .in_dir(td.path())
            .chunk_args(&["--exclude-file", file.to_str().unwrap()])
            .run(&r);
        let from_file = paths_in(&r, from_file["snapshot_id"].as_str().unwrap());
        assert_eq!(from_file, theirs, "--exclude-file with {patterns:?}");
    }
}

/// `restic backup --iexclude '*.TMP' --iexclude-file FILE`, as a restic script has it: chunk
/// had neither flag (the script stopped at "unexpected argument"). The same files are left
/// out as restic leaves out.
#[test]
fn iexclude_leaves_out_what_restic_leaves_out() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir_all(src.join("Cache")).unwrap();
    for f in ["a.tmp", "B.TMP", "c.Tmp", "keep.txt", "Cache/x", "notes.OLD"] {
        fs::write(src.join(f), f.as_bytes()).unwrap();
    }
    let file = td.path().join("iexcludes");
    fs::write(&file, "# comment\n*.old\n").unwrap();
    let file = file.to_str().unwrap();
    let args = ["--iexclude", "*.TMP", "--iexclude", "cache", "--iexclude-file", file, "--exclude", "keep.*"];

    let (ours, theirs) = both_backups(&r, td.path(), &args);
    assert_eq!(theirs, ["/src"], "restic left something in");
    assert_eq!(ours, theirs);
}

/// `restic backup --exclude-if-present .nobackup` (and `NAME:HEADER`), common in restic
/// scripts: chunk had no such flag. The same entries are left out as restic leaves out, with
/// `--exclude-caches` beside it (two tags in one directory leave each other out).
#[test]
fn exclude_if_present_leaves_out_what_restic_leaves_out() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    for d in ["empty-tag/sub", "headed", "wrong-head", "both", "plain"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in ["empty-tag/.nobackup", "empty-tag/f", "empty-tag/sub/g", "wrong-head/f", "both/f", "plain/f"] {
        fs::write(src.join(f), f.as_bytes()).unwrap();
    }
    fs::write(src.join("headed/.nobackup"), "NOBACKUP please\n").unwrap();
    fs::write(src.join("headed/f"), "f").unwrap();
    fs::write(src.join("wrong-head/.nobackup"), "NO").unwrap();
    fs::write(src.join("both/.nobackup"), "").unwrap();
    fs::write(src.join("both/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    let cases: &[&[&str]] = &[
        &["--exclude-if-present", ".nobackup"],
        &["--exclude-if-present", ".nobackup:NOBACKUP"],
        &["--exclude-if-present", ".nobackup", "--exclude-caches"],
        &["--exclude-if-present", "f", "--exclude-if-present", "g"],
    ];
    for args in cases {
        let (ours, theirs) = both_backups(&r, td.path(), args);
        assert_eq!(ours, theirs, "{args:?}");
    }
    // restic takes a name before the ':'; here the refusal is a usage error.
    let res = Backup::of(&["src"]).in_dir(td.path()).chunk_args(&["--exclude-if-present", ":x"]).run_raw(&r);
    assert_eq!(res.codes()[0], 2, "{}", res.report());
    assert!(support::one_line(&res.stderrs[0], "chunk").contains("no file name"), "{}", res.report());
}

//! Defects of the restore side found by using it as a restic user would, each pinned by a
//! test against the real restic where restic is the reference.

mod support;

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use support::{bin, Fixture, Pipeline};

/// `walk | fetch-pack | unpack -t TARGET | verify -t TARGET` with the repository and password
/// left to the environment, as a restic user's shell has them.
fn env_restore(target: &Path, env: &[(&str, &OsString)]) -> support::PipelineResult {
    let t = target.as_os_str().to_os_string();
    let mut p = Pipeline::new()
        .stage(vec!["walk".into(), "latest".into()])
        .stage(vec!["fetch-pack".into()])
        .stage(vec!["unpack".into(), "-t".into(), t.clone()])
        .stage(vec!["verify".into(), "-q".into(), "-t".into(), t]);
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run()
}

/// restic takes an empty `RESTIC_PASSWORD_FILE`, `RESTIC_PASSWORD_COMMAND`, `RESTIC_CACERT`
/// or `RESTIC_KEY_HINT` for one that is not set (scripts and unit files export them empty):
/// the password then comes from the next source in restic's order. sluice refused the empty
/// file name as a missing option value and ran the empty command for an empty password.
#[test]
fn empty_restic_variables_count_as_unset() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let empty = OsString::new();
    let repo = f.r.repo.clone().into_os_string();
    let password = OsString::from(support::PASSWORD);
    let file = f.r.password_file.clone().into_os_string();
    let empties = ["RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_CACERT", "RESTIC_KEY_HINT"];

    // The reference: restic falls through to RESTIC_PASSWORD.
    let mut c = f.r.command();
    c.env_remove("RESTIC_PASSWORD_FILE").env("RESTIC_PASSWORD", &password);
    for k in empties {
        c.env(k, &empty);
    }
    let out = c.args(["snapshots", "--json"]).output().unwrap();
    assert!(out.status.success(), "restic: {}", String::from_utf8_lossy(&out.stderr));

    let mut env: Vec<(&str, &OsString)> = vec![("RESTIC_REPOSITORY", &repo), ("RESTIC_PASSWORD", &password)];
    env.extend(empties.iter().map(|k| (*k, &empty)));
    let target = f.path("t1");
    env_restore(&target, &env).assert_ok();
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello\n");

    // An empty command before a password file: the file is used, as restic uses it.
    let env =
        [("RESTIC_REPOSITORY", &repo), ("RESTIC_PASSWORD_COMMAND", &empty), ("RESTIC_PASSWORD_FILE", &file)];
    env_restore(&f.path("t2"), &env).assert_ok();
    let res = Pipeline::new()
        .stage(vec![bin("snapshots").into()])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD_FILE", &empty)
        .env("RESTIC_PASSWORD", &password)
        .run();
    res.assert_ok();
}

/// A stream walked in one repository and fetched or unpacked with another (a wrong `-r` on
/// one stage, a second `RESTIC_REPOSITORY` in one shell) failed file by file, blaming the
/// data: "No such file" for each pack, or "ciphertext verification failed" for each blob.
/// Now both stages refuse it before doing anything, with one line; a copy of the
/// repository (the same config) still serves the stream.
#[test]
fn a_stream_from_another_repository_is_refused_at_once() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let other = support::Restic::new(&f.path("other"));
    other.init(2, &[]);
    let copy = f.path("copy");
    let cp = std::process::Command::new("cp").arg("-a").arg(&f.r.repo).arg(&copy).status().unwrap();
    assert!(cp.success());
    let walk = || support::tool(&f.r, "walk", &["latest"]);
    let with = |name: &str, repo: &Path, extra: &[&str]| -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![name.into()];
        v.extend(extra.iter().map(OsString::from));
        v.extend(["-r".into(), repo.as_os_str().to_os_string()]);
        if name != "fetch-pack" {
            v.extend(["-p".into(), f.r.password_file.clone().into_os_string()]);
        }
        v
    };

    let res = Pipeline::new().stage(walk()).stage(with("fetch-pack", &other.repo, &[])).run();
    assert!(matches!(res.codes()[..], [0 | 141, 2]), "{}", res.report());
    let line = support::one_line(&res.stderrs[1], "fetch-pack");
    assert!(line.contains("another repository"), "{line}");
    assert!(!res.stdout_str().contains("\"blob"), "{}", res.report());

    let target = f.path("t");
    for mode in [&["-t", target.to_str().unwrap()][..], &["--tar"][..]] {
        let res = Pipeline::new()
            .stage(walk())
            .stage(support::tool(&f.r, "fetch-pack", &[]))
            .stage(with("unpack", &other.repo, mode))
            .run();
        assert_eq!(res.codes()[2], 2, "{}", res.report());
        let line = support::one_line(&res.stderrs[2], "unpack");
        assert!(line.contains("another repository"), "{line}");
        assert!(res.stdout.is_empty(), "{}", res.report());
        assert!(!target.join("a.txt").exists());
    }

    let res = Pipeline::new()
        .stage(walk())
        .stage(with("fetch-pack", &copy, &[]))
        .stage(with("unpack", &copy, &["-t", target.to_str().unwrap()]))
        .run();
    res.assert_ok();
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello\n");
}

/// `--include ''` (a script's unset variable) selected the whole snapshot: the empty
/// pattern was dropped and walk went on as if no include had been given, while restic
/// 0.14 restores nothing for it. Restoring everything where the user asked for a part can
/// fill a disk or, with `--target --delete`, remove what the selection was meant to spare;
/// restoring nothing and exiting 0 helps nobody either. walk refuses it.
#[test]
fn an_empty_include_pattern_is_refused() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    // The reference: restic selects nothing.
    let t = f.path("restic");
    f.r.run(&[
        OsString::from("restore"),
        "latest".into(),
        "--include".into(),
        "".into(),
        "-t".into(),
        t.clone().into(),
    ]);
    assert!(!t.join("a.txt").exists());

    for flag in ["--include", "--iinclude"] {
        let res = Pipeline::new().stage(support::tool(&f.r, "walk", &["latest", flag, ""])).run();
        assert_eq!(res.codes(), vec![2], "{}", res.report());
        let line = support::one_line(&res.stderrs[0], "walk");
        assert!(line.contains("empty"), "{line}");
        assert!(res.stdout.is_empty());
    }
    // An empty exclude excludes nothing, in restic and here.
    let res = Pipeline::new().stage(support::tool(&f.r, "walk", &["latest", "--exclude", ""])).run();
    res.assert_ok();
    assert!(res.stdout_str().contains("a.txt"));
}

/// A pack cut short (an interrupted copy of the repository, a full disk) lost every file
/// with a blob in it: fetch-pack reads neighbouring blobs of a pack as one range, and a
/// range that came up short failed all of its blobs, even those that lie before the cut.
/// restic 0.14 restores those files. Now fetch-pack passes on what the pack still holds;
/// only the files that need bytes beyond the cut fail, each with its line.
#[test]
fn a_cut_pack_loses_only_the_blobs_beyond_the_cut() {
    let f = Fixture::new(
        |d| {
            for i in 0..6u64 {
                fs::write(d.join(format!("f{i}")), support::random_bytes(i, 200_000)).unwrap();
            }
        },
        &[],
    );
    let records = f.records();
    let mut files: Vec<(u64, u64, String, String)> = records
        .iter()
        .filter(|r| r["node"]["type"] == "file")
        .map(|r| {
            let b = &r["blobs"][0];
            let (off, len) = (b["offset"].as_u64().unwrap(), b["length"].as_u64().unwrap());
            (off, off + len, b["pack"].as_str().unwrap().to_string(), r["path"].as_str().unwrap().to_string())
        })
        .collect();
    files.sort();
    assert!(files.iter().all(|x| x.2 == files[0].2), "the files are in one pack: {files:?}");
    // Cut inside the fourth file's blob.
    let cut = (files[3].0 + files[3].1) / 2;
    let pack = f.pack_path(&files[0].2);
    fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(cut).unwrap();

    let target = f.path("t");
    let res = support::restore_pipeline(&f.r, "latest", &target, &[], &[]);
    assert_eq!(res.codes(), vec![0, 3, 3, 0], "{}", res.report());
    let unpack_err = res.stderr_str(2);
    for (start, end, _, path) in &files {
        let restored = target.join(path);
        if *end <= cut {
            let i: u64 = path[1..].parse().unwrap();
            assert_eq!(fs::read(&restored).unwrap(), support::random_bytes(i, 200_000), "{path}");
            assert!(!unpack_err.contains(&format!("/{path}:")), "{path}: {unpack_err}");
        } else {
            assert!(!restored.exists(), "{path} ({start}..{end}, cut at {cut}) exists");
            assert!(unpack_err.contains(&format!("/{path}:")), "{path}: {unpack_err}");
        }
    }
    assert!(res.stderr_str(1).contains(&format!("ends at byte {cut}")), "{}", res.report());
}

/// restic users keep the repository in a file (`RESTIC_REPOSITORY_FILE`,
/// `--repository-file`, as they keep the password); sluice knew neither and said no
/// repository was given.
#[test]
fn the_repository_can_come_from_a_file() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let file = f.path("repository");
    fs::write(&file, format!("{}\n", f.r.repo.display())).unwrap();
    let file_os = file.clone().into_os_string();
    let password = f.r.password_file.clone().into_os_string();

    // The reference: restic reads it.
    let mut c = std::process::Command::new(support::restic_bin());
    c.env("RESTIC_PASSWORD_FILE", &password).env("RESTIC_CACHE_DIR", &f.r.cache_dir);
    let out = c.env("RESTIC_REPOSITORY_FILE", &file).args(["snapshots", "--json"]).output().unwrap();
    assert!(out.status.success(), "restic: {}", String::from_utf8_lossy(&out.stderr));

    let target = f.path("t");
    let env = [("RESTIC_REPOSITORY_FILE", &file_os), ("RESTIC_PASSWORD_FILE", &password)];
    env_restore(&target, &env).assert_ok();
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello\n");

    let snapshots = |args: &[&std::ffi::OsStr]| {
        let mut argv: Vec<OsString> = vec!["snapshots".into(), "-p".into(), password.clone()];
        argv.extend(args.iter().map(OsString::from));
        Pipeline::new().stage(argv).run()
    };
    let res = snapshots(&["--repository-file".as_ref(), file.as_os_str()]);
    res.assert_ok();
    assert!(res.stdout_str().contains("\"snapshot\""));
    let res =
        snapshots(&["--repository-file".as_ref(), file.as_os_str(), "-r".as_ref(), f.r.repo.as_os_str()]);
    assert_eq!(res.codes(), vec![2], "{}", res.report());
    support::one_line(&res.stderrs[0], "snapshots");
}

/// `walk | unpack` (fetch-pack left out, the first thing a new user gets wrong): a restore
/// stopped at the first file's missing blobs with a message about record order, and
/// `unpack --list` checked nothing and exited 0. Each mode that needs blob data now says
/// what is missing before it starts; `--dry-run` needs none and still takes walk's stream.
#[test]
fn a_stream_straight_from_walk_is_refused_where_blobs_are_needed() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let target = f.path("t");
    let t = target.to_str().unwrap();
    for mode in [&["-t", t][..], &["--list"][..], &["--stdout"][..], &["--tar"][..], &["--zip"][..]] {
        let res = Pipeline::new()
            .stage(support::tool(&f.r, "walk", &["latest"]))
            .stage(support::tool(&f.r, "unpack", mode))
            .run();
        // walk may find its reader gone (141) before it has written all.
        assert!(matches!(res.codes()[..], [0 | 141, 2]), "{mode:?}: {}", res.report());
        let line = support::one_line(&res.stderrs[1], "unpack");
        assert!(line.contains("fetch-pack"), "{line}");
        assert!(res.stdout.is_empty(), "{mode:?}: {}", res.report());
        assert!(!target.exists(), "{mode:?}");
    }
    let res = Pipeline::new()
        .stage(support::tool(&f.r, "walk", &["latest"]))
        .stage(support::tool(&f.r, "unpack", &["--dry-run", "-t", t]))
        .run();
    res.assert_ok();
    assert!(res.stdout_str().contains("\"restored\""), "{}", res.report());
}

/// `fetch-pack | fetch-pack` (a stage doubled by hand, or a saved stream fetched again)
/// passed the blob records through beside the ones it fetched again, and unpack stopped at
/// the first file's second copy of a blob, as if the stream were damaged.
#[test]
fn a_fetched_stream_is_not_fetched_again() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let res = Pipeline::new().stage(support::tool(&f.r, "fetch-pack", &[])).stdin(f.fetch_stream()).run();
    assert_eq!(res.codes(), vec![2], "{}", res.report());
    let line = support::one_line(&res.stderrs[0], "fetch-pack");
    assert!(line.contains("already"), "{line}");
    assert!(res.stdout.is_empty(), "{}", res.report());
}

/// `snapshots --latest 0` listed nothing; restic takes 0 (its default) for no limit and
/// lists every snapshot, as scripts passing a default of 0 expect.
#[test]
fn snapshots_latest_zero_is_no_limit() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    f.r.backup_dir_contents(&f.src, &[]);
    let restic = f.r.run(&["snapshots", "--json", "--latest", "0"]);
    let restic: serde_json::Value = serde_json::from_slice(&restic.stdout).unwrap();
    assert_eq!(restic.as_array().unwrap().len(), 2);
    let res = Pipeline::new().stage(support::tool(&f.r, "snapshots", &["--json", "--latest", "0"])).run();
    res.assert_ok();
    let ours: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(ours.as_array().unwrap().len(), 2, "{}", res.report());
}

/// A fifo where the snapshot has a file (the user's, or one made since a restore) hung a
/// restore into that target for good: unpack opened the name to see whether its content
/// already matched, and a blocking open of a fifo waits for a writer. The fifo is now
/// replaced like any other entry of the wrong kind, with or without `walk --target`.
#[test]
fn a_fifo_in_a_files_place_does_not_hang_the_restore() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let target = f.path("t");
    support::restore_pipeline(&f.r, "latest", &target, &[], &[]).assert_ok();
    let t = target.to_str().unwrap();
    for walk_args in [&[][..], &["--target", t][..]] {
        fs::remove_file(target.join("a.txt")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(target.join("a.txt")).status().unwrap();
        assert!(made.success());
        let mut walk = support::tool(&f.r, "walk", &["latest"]);
        walk.extend(walk_args.iter().map(OsString::from));
        let res = Pipeline::new()
            .stage(walk)
            .stage(support::tool(&f.r, "fetch-pack", &[]))
            .stage(support::tool(&f.r, "unpack", &["-t", t]))
            .stage(vec!["verify".into(), "-t".into(), t.into()])
            .timeout(std::time::Duration::from_secs(60))
            .run();
        assert!(!res.timed_out, "{walk_args:?}: the restore hung: {}", res.report());
        res.assert_ok();
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello\n");
    }
}

/// A selection that keeps nothing (`walk --exclude '*'`): restic 0.14 restores nothing,
/// creates no target and exits 0. unpack created the target (and its missing parents) and
/// said nothing, so the user could not tell an empty selection from a restore that worked.
#[test]
fn an_empty_selection_creates_no_target_and_says_so() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);

    // The reference.
    let theirs = f.path("restic-target");
    let t = theirs.to_str().unwrap();
    f.r.run(&["restore", "latest", "--exclude", "*", "--target", t]);
    assert!(!theirs.exists(), "restic made its target");

    let nothing_into = |target: &Path| {
        let res = Pipeline::new()
            .stage(support::tool(&f.r, "walk", &["latest", "--exclude", "*"]))
            .stage(support::tool(&f.r, "fetch-pack", &[]))
            .stage(support::tool(&f.r, "unpack", &["--target", target.to_str().unwrap()]))
            .run();
        res.assert_ok();
        res
    };
    let res = nothing_into(&f.path("missing/parent/t"));
    assert!(!f.path("missing").exists(), "unpack made a target for nothing:\n{}", res.report());
    let msg = support::one_line(&res.stderrs[2], "unpack");
    assert!(msg.contains("nothing to restore"), "{msg}");

    // A target that exists stays as it was, and the same line says so.
    let existing = f.path("existing");
    fs::create_dir(&existing).unwrap();
    let res = nothing_into(&existing);
    assert!(existing.is_dir());
    assert!(support::one_line(&res.stderrs[2], "unpack").contains("nothing to restore"), "{}", res.report());
}

/// `--repository-file <(pass show backup-repo)`: a repository file that can be read only
/// once, as a pipe. fetch-pack, push and init-repo read it a second time (for the number of
/// connections, for the directory to clean up) and found it empty.
#[test]
fn the_repository_file_is_read_once() {
    let f = Fixture::new(|d| fs::write(d.join("a.txt"), b"hello\n").unwrap(), &[]);
    let script = r#"set -eu -o pipefail
        repo=$1 pw=$2 t=$3 src=$4 new=$5
        rf() { printf '%s\n' "$repo"; }
        walk --repository-file <(rf) -p "$pw" latest | fetch-pack --repository-file <(rf) \
            | unpack --repository-file <(rf) -p "$pw" --target "$t" >/dev/null
        chunk --repository-file <(rf) -p "$pw" "$src" | pack --repository-file <(rf) -p "$pw" \
            | push --repository-file <(rf) 2>/dev/null
        init-repo --repository-file <(printf '%s\n' "$new") -p "$pw" 2>/dev/null
    "#;
    let path = format!("{}:{}", support::bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let target = f.path("t");
    let out = std::process::Command::new("bash")
        .args(["-c", script, "bash"])
        .args([f.r.repo.as_os_str(), f.r.password_file.as_os_str(), target.as_os_str(), f.src.as_os_str()])
        .arg(f.path("new-repo"))
        .env("PATH", path)
        .env("SLUICE_TEST_SCRYPT", "1024,8,1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello\n");
    assert_eq!(f.r.snapshots_json().len(), 2);
    assert!(f.path("new-repo/config").is_file());
}

/// Every path below `dir`, relative to it, sorted.
fn tree_of(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// restic's negated patterns on restore (`--exclude '*.txt' --exclude '!keep.txt'`, or an
/// include taken back by `!DIR`): walk took the `!` for part of the name, so it restored
/// neither keep.txt nor, for the include, left out the directory restic leaves out.
#[test]
fn negated_patterns_restore_what_restic_restores() {
    let f = Fixture::new(
        |d| {
            fs::create_dir(d.join("d")).unwrap();
            for name in ["a.txt", "keep.txt", "d/keep.txt", "d/b.txt", "d/c.dat"] {
                fs::write(d.join(name), name.as_bytes()).unwrap();
            }
        },
        &[],
    );
    let cases: &[&[&str]] = &[
        &["--exclude", "*.txt", "--exclude", "!keep.txt"],
        &["--exclude", "!keep.txt", "--exclude", "*.txt"],
        &["--include", "*.txt", "--include", "!d"],
        &["--include", "*.txt", "--include", "!keep.txt"],
        &["--iexclude", "*.TXT", "--iexclude", "!KEEP.txt"],
    ];
    for (n, flags) in cases.iter().enumerate() {
        let theirs = f.path(&format!("restic-{n}"));
        let mut args = vec!["restore", "latest", "--target", theirs.to_str().unwrap()];
        args.extend(*flags);
        f.r.run(&args);

        let ours = f.path(&format!("ours-{n}"));
        let mut walk_args = vec!["latest"];
        walk_args.extend(*flags);
        let res = Pipeline::new()
            .stage(support::tool(&f.r, "walk", &walk_args))
            .stage(support::tool(&f.r, "fetch-pack", &[]))
            .stage(support::tool(&f.r, "unpack", &["--target", ours.to_str().unwrap()]))
            .run();
        res.assert_ok();
        assert_eq!(tree_of(&ours), tree_of(&theirs), "{flags:?}");
    }
}

/// `walk latest:./d/../d/sub/`: the path after the colon is cleaned as restic cleans a
/// subfolder, so it names what `latest:/d/sub` names; walk looked for an entry named '.'.
#[test]
fn a_snapshot_subpath_is_cleaned() {
    let f = Fixture::new(
        |d| {
            fs::create_dir_all(d.join("d/sub")).unwrap();
            fs::write(d.join("d/sub/f"), b"f\n").unwrap();
        },
        &[],
    );
    let plain = support::walk_records(&f.r, "latest:/d/sub", &[]);
    assert_eq!(plain.iter().filter(|r| r["type"] == "node").count(), 1, "{plain:?}");
    for spec in ["latest:./d/sub", "latest:/d/./sub/", "latest:d/../d/sub", "latest:/../d//sub"] {
        assert_eq!(support::walk_records(&f.r, spec, &[]), plain, "{spec}");
    }
}

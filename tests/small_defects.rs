//! Small defects of chunk, walk, snapshots and init-repo, each pinned by a test against the
//! real restic where restic is the reference: the `--stdin` snapshot path, the message for a
//! file that grew while read, walk's message when a filter leaves no snapshot, restic's JSON
//! from `snapshots --json`, extended attributes that cannot be read, size overflow, init-repo
//! cleaning up after a failed write, chunk's first records arriving at once, absolute
//! excludes under a relative target, every tool's output into a closed stdout, and the
//! stages that read records started with a terminal on stdin; snapshot selection as restic
//! does it (`--tag ''`, a relative `--path`, a snapshot named twice, local times in the table).

mod support;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use serde_json::Value;
use support::backup::{init_repo, restore, tool, Backup, TEST_SCRYPT};
use support::{argv, bin, is_root, one_line, tempdir, Pipeline, PipelineResult, Restic};

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Starts one of our tools (argv as from [`tool`]) with stdout and stderr piped.
fn spawn(args: Vec<OsString>, dir: Option<&Path>, stdin: Stdio) -> Child {
    let mut c = Command::new(bin(args[0].to_str().unwrap()));
    c.args(&args[1..]).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.env(TEST_SCRYPT.0, TEST_SCRYPT.1);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.spawn().expect("start tool")
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The tree blob's nodes, as restic prints them, without the times (which differ per run).
fn root_nodes(r: &Restic, snapshot: &Value) -> Vec<Value> {
    let tree = snapshot["tree"].as_str().unwrap();
    let out = r.run(&["cat", "blob", tree]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut nodes = v["nodes"].as_array().unwrap().clone();
    for n in &mut nodes {
        let o = n.as_object_mut().unwrap();
        for k in ["mtime", "atime", "ctime"] {
            assert!(o.remove(k).is_some(), "node without {k}: {o:?}");
        }
    }
    nodes
}

/// restic 0.14 records `/NAME` for `--stdin --stdin-filename NAME` wherever it runs, with the
/// file at the root of the tree and no parent snapshot; so must chunk, or parent selection and
/// `--path` filters see a different path in every directory.
#[test]
fn stdin_snapshot_is_what_restic_makes() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let data = b"CREATE TABLE t (x int);\n".repeat(100);
    let (a, b, c) = (td.path().join("a"), td.path().join("b/deeper"), td.path().join("c"));
    for d in [&a, &b, &c] {
        fs::create_dir_all(d).unwrap();
    }
    let out = r
        .command()
        .args(["backup", "--stdin", "--stdin-filename", "db.sql"])
        .current_dir(&a)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(&data)?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "restic backup --stdin: {}", String::from_utf8_lossy(&out.stderr));
    for dir in [&b, &c] {
        let stages = Backup::default().chunk_args(&["--stdin", "--stdin-filename", "db.sql"]).stages(&r);
        let mut chunk = stages[0].clone();
        // Backup::stages ends chunk's argv with "--" and no paths.
        assert_eq!(chunk.pop().as_deref(), Some(OsStr::new("--")));
        let res = Pipeline::new()
            .stage(chunk)
            .stage(stages[1].clone())
            .stage(stages[2].clone())
            .stdin(data.clone())
            .current_dir(dir)
            .run();
        res.assert_ok();
    }
    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 3);
    let theirs = &snaps[0];
    for ours in &snaps[1..] {
        assert_eq!(ours["paths"], theirs["paths"], "{ours}\n{theirs}");
        assert!(ours.get("parent").is_none(), "restic gives a stdin backup no parent: {ours}");
        assert_eq!(root_nodes(&r, ours), root_nodes(&r, theirs));
    }
    assert_eq!(theirs["paths"], serde_json::json!(["/db.sql"]));
    let out = r.run(&["snapshots", "--json", "--path", "/db.sql"]);
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap().len(), 3);
}

/// A file that grows while chunk reads it is in the backup, with every byte chunk read; the
/// warning names it and the summary says so, instead of "not in the backup".
#[test]
fn file_grown_while_read_is_reported_as_what_it_is() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let victim = src.join("growing.log");
    fs::write(&victim, random_bytes(7, 8 << 20)).unwrap();
    fs::write(src.join("other.txt"), b"other\n").unwrap();
    support::set_times(&victim, (1_500_000_000, 0), (1_500_000_000, 0));
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);

    // Nobody reads chunk's output yet: it blocks inside the file, holding it open.
    let mut chunk = spawn(tool("chunk", &r, &[OsStr::new(".")]), Some(&src), Stdio::null());
    let err = drain(chunk.stderr.take().unwrap());
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", chunk.id()));
    wait_for(30, "chunk to open the file", || {
        fs::read_dir(&fd_dir)
            .map(|rd| rd.filter_map(Result::ok).any(|e| fs::read_link(e.path()).is_ok_and(|t| t == victim)))
            .unwrap_or(false)
    });
    let more = random_bytes(8, 1 << 20);
    {
        use std::io::Write;
        fs::OpenOptions::new().append(true).open(&victim).unwrap().write_all(&more).unwrap();
    }
    let stream = drain(chunk.stdout.take().unwrap()).join().unwrap();
    let status = chunk.wait().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert_eq!(status.code(), Some(3), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one warning and one summary:\n{err}");
    assert!(lines[0].contains("growing.log") && lines[0].contains("changed while it was read"), "{err}");
    assert!(lines[0].contains(&format!("holds the {} bytes read", (9 << 20))), "{err}");
    assert_eq!(lines[1], "chunk: 1 file changed while read and is in the backup as read", "{err}");

    let mut p = Pipeline::new().stdin(stream);
    for s in Backup::default().stages(&r).into_iter().skip(1) {
        p = p.stage(s);
    }
    p.run().assert_ok();
    let target = td.path().join("out");
    restore(&r, "latest", &target);
    assert!(fs::read(target.join("growing.log")).unwrap() == fs::read(&victim).unwrap());
}

fn restic_backup(r: &Restic, dir: &Path, extra: &[&str]) {
    let mut args = vec!["backup", "-q"];
    args.extend(extra);
    args.push(dir.to_str().unwrap());
    r.run(&args);
}

/// `walk --host nosuch latest` on a repository with snapshots names the filter, and an empty
/// repository is called empty.
#[test]
fn walk_says_which_filter_left_no_snapshot() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let res = Pipeline::new().stage(tool("walk", &r, &[OsStr::new("latest")])).run();
    assert_eq!(res.codes(), vec![2], "{}", res.report());
    assert_eq!(one_line(&res.stderrs[0], "walk"), "walk: the repository has no snapshots");

    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    restic_backup(&r, &src, &["--host", "box"]);
    for args in [&["--host", "nosuch", "latest"][..], &["--host", "nosuch", "--tag", "x", "latest"]] {
        let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let res = Pipeline::new().stage(tool("walk", &r, &a)).run();
        assert_eq!(res.codes(), vec![2], "{}", res.report());
        let msg = one_line(&res.stderrs[0], "walk");
        assert!(msg.starts_with("walk: no snapshot matches --host nosuch"), "{msg}");
        assert!(msg.ends_with("(the repository has 1 snapshot)"), "{msg}");
    }
    let res = Pipeline::new()
        .stage(tool("snapshots", &r, &[OsStr::new("--tag"), OsStr::new("nosuch"), OsStr::new("latest")]))
        .run();
    assert_eq!(res.codes(), vec![2], "{}", res.report());
    assert!(one_line(&res.stderrs[0], "snapshots").contains("no snapshot matches --tag nosuch"));
}

/// `snapshots --json` prints what `restic snapshots --json` prints, byte for byte, for
/// snapshots restic wrote (tags, excludes, characters Go escapes) and ones sluice wrote.
#[test]
fn snapshots_json_is_restics_array() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let ours = |args: &[&str]| {
        let mut a: Vec<&OsStr> = vec![OsStr::new("--json")];
        a.extend(args.iter().map(OsStr::new));
        let res = Pipeline::new().stage(tool("snapshots", &r, &a)).run();
        res.assert_ok();
        res.stdout
    };
    let theirs = |args: &[&str]| {
        let mut a = vec!["snapshots", "--json"];
        a.extend(args);
        r.run(&a).stdout
    };
    assert_eq!(ours(&[]), b"[]\n");
    assert_eq!(ours(&[]), theirs(&[]));

    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"f\n").unwrap();
    restic_backup(&r, &src, &["--tag", "a,b", "--tag", "x<y>&z", "--exclude", "*.tmp"]);
    restic_backup(&r, &src, &["--host", "other"]);
    Backup::of(&[&src]).pack_args(&["--tag", "sluice"]).run(&r);
    for filter in [&[][..], &["--host", "other"], &["--tag", "sluice"], &["--host", "nosuch"]] {
        let (o, t) = (ours(filter), theirs(filter));
        assert!(
            o == t,
            "{filter:?}:\nours   {}\ntheirs {}",
            String::from_utf8_lossy(&o),
            String::from_utf8_lossy(&t)
        );
    }
    // The records stay the default for pipelines.
    let res = Pipeline::new().stage(tool("snapshots", &r, &[])).run();
    res.assert_ok();
    assert_eq!(support::framed_records(&res).len(), 3);
}

/// restic's `--tag ''` selects the snapshots without tags (`restic forget --tag ''` is how
/// restic's manual has them picked); sluice dropped the empty tag and selected every
/// snapshot, so `walk --tag '' latest` restored the newest tagged one. The odd cases follow
/// restic's rule too.
#[test]
fn an_empty_tag_selects_untagged_snapshots_as_restic() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"untagged\n").unwrap();
    restic_backup(&r, &src, &[]);
    fs::write(src.join("f"), b"tagged\n").unwrap();
    restic_backup(&r, &src, &["--tag", "x,y"]);
    let ids = |json: &[u8]| -> Vec<String> {
        let v: Vec<Value> = serde_json::from_slice(json).unwrap();
        v.iter().map(|s| s["short_id"].as_str().unwrap().to_string()).collect()
    };
    for filter in [
        &["--tag", ""][..],
        &["--tag", ",x"],
        &["--tag", "x,"],
        &["--tag", " x"],
        &["--tag", "y", "--tag", ""],
    ] {
        let mut a: Vec<&OsStr> = vec![OsStr::new("--json")];
        a.extend(filter.iter().map(OsStr::new));
        let res = Pipeline::new().stage(tool("snapshots", &r, &a)).run();
        res.assert_ok();
        let mut theirs = vec!["snapshots", "--json"];
        theirs.extend(filter);
        assert_eq!(ids(&res.stdout), ids(&r.run(&theirs).stdout), "{filter:?}");
    }
    // `latest` among the untagged ones is the first backup.
    let target = td.path().join("t");
    let res = Pipeline::new()
        .stage(tool("walk", &r, &[OsStr::new("--tag"), OsStr::new(""), OsStr::new("latest")]))
        .stage(tool("fetch-pack", &r, &[]))
        .stage(tool("unpack", &r, &[OsStr::new("-t"), target.as_os_str()]))
        .run();
    res.assert_ok();
    assert_eq!(fs::read(support::restic::restored_path(&target, &src).join("f")).unwrap(), b"untagged\n");
}

/// `cd /srv && restic restore latest --path www`: restic 0.14 takes a relative (or unclean)
/// `--path` from the current directory when it looks for `latest`; walk compared it as
/// given with the snapshots' absolute paths, found none and exited 2.
#[test]
fn a_relative_path_filter_finds_latest_as_restic() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    for (dir, data) in [("www", "site\n"), ("db", "rows\n")] {
        let src = td.path().join(dir);
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), data).unwrap();
        restic_backup(&r, &src, &[]);
    }
    for path in ["www", "./www/", "db/../www"] {
        let theirs = td.path().join(format!("restic-{}", path.replace('/', "_")));
        let out = r
            .command()
            .args(["restore", "latest", "--path", path, "--target"])
            .arg(&theirs)
            .current_dir(td.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic restore --path {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = td.path().join(format!("ours-{}", path.replace('/', "_")));
        let res = Pipeline::new()
            .current_dir(td.path())
            .stage(tool("walk", &r, &[OsStr::new("latest"), OsStr::new("--path"), OsStr::new(path)]))
            .stage(tool("fetch-pack", &r, &[]))
            .stage(tool("unpack", &r, &[OsStr::new("-t"), ours.as_os_str()]))
            .run();
        res.assert_ok();
        let www = td.path().join("www");
        let got = fs::read(support::restic::restored_path(&ours, &www).join("f")).unwrap();
        assert_eq!(got, fs::read(support::restic::restored_path(&theirs, &www).join("f")).unwrap(), "{path}");
        assert_eq!(got, b"site\n", "{path}");
    }
}

/// `snapshots --json "$id" latest` when the newest snapshot is `$id` (a script asking about
/// one it just made): restic lists it once; snapshots listed it twice, so `jq length` said 2.
#[test]
fn a_snapshot_named_twice_is_listed_once() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    restic_backup(&r, &src, &[]);
    let id = r.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    let args = ["--json", &id, "latest", &id[..6]];
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let res = Pipeline::new().stage(tool("snapshots", &r, &a)).run();
    res.assert_ok();
    let mut theirs = vec!["snapshots"];
    theirs.extend(args);
    let theirs = r.run(&theirs).stdout;
    assert_eq!(res.stdout_str(), String::from_utf8_lossy(&theirs));
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&res.stdout).unwrap().len(), 1);
}

/// The table `snapshots` prints on a terminal shows each time in the local zone (`TZ`), as
/// `restic snapshots` does; it showed the zone the snapshot was taken in (UTC here), hours
/// off from restic's table for anyone with TZ set.
#[test]
fn the_snapshot_table_shows_local_time_as_restic() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    r.command().env("TZ", "UTC").args(["backup", "-q"]).arg(&src).output().unwrap();
    let id = r.snapshots_json()[0]["short_id"].as_str().unwrap().to_string();
    let row = |out: &str| -> String {
        let line =
            out.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("no row for {id}:\n{out}"));
        line.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    for tz in ["Asia/Kolkata", "America/New_York"] {
        let out = r.command().env("TZ", tz).arg("snapshots").output().unwrap();
        let theirs = row(&String::from_utf8_lossy(&out.stdout));
        let line = support::progress::sh_line(&[tool("snapshots", &r, &[])], "");
        let res = support::progress::under_terminal(&line, &[("TZ", tz)]);
        res.assert_ok();
        assert_eq!(row(res.stdout_str()), theirs, "TZ={tz}");
    }
}

/// `restic restore $ID --host box` restores $ID whatever its host (restic ignores the
/// filters for an id, and says so); walk and snapshots looked for the id among the filtered
/// snapshots only and said `no snapshot "$ID" found` for one that is there.
#[test]
fn a_snapshot_id_is_taken_whatever_the_filters_as_restic() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"from box\n").unwrap();
    restic_backup(&r, &src, &["--host", "box"]);
    let id = r.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    let id = &id[..8];

    let args = ["--json", id, "--host", "other"];
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let res = Pipeline::new().stage(tool("snapshots", &r, &a)).run();
    res.assert_ok();
    let mut theirs = vec!["snapshots"];
    theirs.extend(args);
    assert_eq!(res.stdout_str(), String::from_utf8_lossy(&r.run(&theirs).stdout));
    assert!(one_line(&res.stderrs[0], "snapshots").contains("ignored"), "{}", res.report());

    let target = td.path().join("t");
    let walk_args = [id, "--host", "other", "--tag", "x"].map(OsStr::new);
    let res = Pipeline::new()
        .stage(tool("walk", &r, &walk_args))
        .stage(tool("fetch-pack", &r, &[]))
        .stage(tool("unpack", &r, &[OsStr::new("-t"), target.as_os_str()]))
        .run();
    res.assert_ok();
    assert!(one_line(&res.stderrs[0], "walk").contains("ignored"), "{}", res.report());
    assert_eq!(fs::read(support::restic::restored_path(&target, &src).join("f")).unwrap(), b"from box\n");
    // latest still keeps to them.
    let res = Pipeline::new().stage(tool("walk", &r, &["latest", "--host", "other"].map(OsStr::new))).run();
    assert_eq!(res.codes(), vec![2], "{}", res.report());
}

/// Runs `cmd` without root's power to bypass file permissions (as root), so a permission
/// error can be provoked; unchanged when not root.
fn without_privileges(mut args: Vec<OsString>) -> Vec<OsString> {
    if is_root() {
        let mut v = argv(["setpriv", "--inh-caps=-all", "--bounding-set=-all"]);
        v.push(bin(args[0].to_str().unwrap()).into());
        v.extend(args.drain(1..));
        return v;
    }
    args
}

/// Extended attributes that exist but cannot be read (here: EACCES on a directory without
/// read permission; an EIO is handled the same way) are one warning naming the entry, a
/// failed item, and exit 3 after a complete stream, not silently dropped.
#[test]
fn unreadable_extended_attributes_are_a_failed_item() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    let d = src.join("locked");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("file"), b"content\n").unwrap();
    if let Err(e) = xattr::set(&d, "user.note", b"kept") {
        panic!("the test directory's file system must support user xattrs: {e}");
    }
    use std::os::unix::fs::PermissionsExt;
    // Search but no read permission: the file inside can be backed up, the directory's
    // user.* attributes cannot be read.
    fs::set_permissions(&d, fs::Permissions::from_mode(0o311)).unwrap();
    let chunk = without_privileges(tool("chunk", &r, &[OsStr::new("locked/file")]));
    let res = Pipeline::new().stage(chunk).current_dir(&src).env(TEST_SCRYPT.0, TEST_SCRYPT.1).run();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let err = res.stderr_str(0);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("chunk: locked: cannot read extended attributes")
            && lines[0].contains("Permission denied"),
        "{err}"
    );
    assert!(lines[1].contains("1 item is in the backup without extended attributes"), "{err}");
    // The stream is complete and holds both entries.
    let paths: Vec<String> = support::framed_records(&res)
        .iter()
        .filter(|v| v["type"] == "node")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["locked", "locked/file"]);
}

/// A size that overflows 64 bits is a usage error, not a limit of 0 that excludes every file.
#[test]
fn exclude_larger_than_overflow_is_a_usage_error() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("small"), b"1234").unwrap();
    fs::write(src.join("big"), vec![7u8; 4096]).unwrap();
    let run = |size: &str| {
        let a = [OsStr::new("--exclude-larger-than"), OsStr::new(size), OsStr::new(".")];
        Pipeline::new().stage(tool("chunk", &r, &a)).current_dir(&src).run()
    };
    for size in ["16777216t", "18446744073709551616", "17179869184g", "x"] {
        let res = run(size);
        assert_eq!(res.codes(), vec![2], "{size}: {}", res.report());
        let err = one_line(&res.stderrs[0], size);
        assert!(err.starts_with("chunk: invalid value") && err.contains(size), "{err}");
        assert!(err.contains("--exclude-larger-than") && err.ends_with("(see chunk --help)"), "{err}");
        assert!(res.stdout.is_empty(), "{size}: a stream was written");
    }
    let res = run("2k");
    res.assert_ok();
    let files: Vec<Value> =
        support::framed_records(&res).into_iter().filter(|v| v["type"] == "node").collect();
    assert!(files.iter().any(|v| v["path"] == "small") && !files.iter().any(|v| v["path"] == "big"));
    run("16777215t").assert_ok();
}

/// Runs init-repo for `r` with `limit_bytes` as the largest file it may write (RLIMIT_FSIZE,
/// with SIGXFSZ ignored so the write fails with EFBIG instead of killing it), or under
/// strace with the second rename failing (the key's is the first, the config's the second).
fn init_repo_hobbled(r: &Restic, limit_bytes: Option<u64>, block_config: bool) -> std::process::Output {
    let mut c = if block_config {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2"])
            .args(["-e", "inject=rename,renameat,renameat2:error=EIO:when=2"])
            .arg(bin("init-repo"));
        c
    } else {
        Command::new(bin("init-repo"))
    };
    c.arg("-r").arg(&r.repo).arg("--password-file").arg(&r.password_file);
    c.env(TEST_SCRYPT.0, TEST_SCRYPT.1);
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setrlimit, signal).
    unsafe {
        c.pre_exec(move || {
            if let Some(n) = limit_bytes {
                let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    c.output().expect("run init-repo (and strace)")
}

/// A key that cannot be written leaves nothing behind: no config that would make the
/// repository impossible to create again (and answer "wrong password" forever), no
/// directories; a second init-repo works and restic opens the repository.
#[test]
fn init_repo_cleans_up_after_a_failed_write() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    // The config (about 150 bytes) would fit; the key file (about 450) does not.
    let out = init_repo_hobbled(&r, Some(300), false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let msg = one_line(&out.stderr, "init-repo");
    assert!(msg.starts_with("init-repo: writing the key: ") && msg.contains("too large"), "{msg}");
    assert!(!r.repo.exists(), "init-repo left {:?} behind", r.repo);
    init_repo(&r, 2);
    r.run(&["cat", "config"]);

    // The key written, then the config fails: the key goes again; what this run did not
    // make stays (a layout begun by someone else).
    let r = Restic::new(&td.path().join("r2"));
    fs::create_dir_all(r.repo.join("keys")).unwrap();
    let out = init_repo_hobbled(&r, None, true);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let msg = one_line(&out.stderr, "init-repo");
    assert!(msg.starts_with("init-repo: writing the config: "), "{msg}");
    let mut left: Vec<_> = walkdir::WalkDir::new(&r.repo)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(&r.repo).unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["keys".to_string()], "{left:?}");
    init_repo(&r, 1);
    r.run(&["cat", "config"]);
}

/// chunk's header and source records reach pack at once, not after a megabyte of output:
/// here stdin stays open and nothing more comes, and both records must still arrive.
#[test]
fn chunk_flushes_its_first_records_at_once() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let mut chunk = spawn(tool("chunk", &r, &[OsStr::new("--stdin")]), None, Stdio::piped());
    let stdin = chunk.stdin.take().unwrap();
    let err = drain(chunk.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let out = chunk.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        for _ in 0..2 {
            match lines.next() {
                Some(Ok(l)) => tx.send(l).unwrap(),
                _ => return,
            }
        }
        for _ in lines {}
    });
    let mut got = Vec::new();
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => got.push(l),
            Err(_) => {
                let _ = chunk.kill();
                let _ = chunk.wait();
                panic!("chunk's first records did not arrive while stdin stayed open; got {got:?}");
            }
        }
    }
    assert!(got[0].starts_with("{\"type\":\"header\""), "{got:?}");
    assert!(got[1].starts_with("{\"type\":\"source\""), "{got:?}");
    drop(stdin);
    let status = chunk.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&err.join().unwrap()));
}

/// `chunk .` walks `./x`; an absolute exclude pattern must match it as restic matches
/// `/cwd/x` (the demo relies on it to leave out its own repository).
#[test]
fn absolute_excludes_match_under_a_relative_target() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir_all(src.join("skip/deep")).unwrap();
    fs::create_dir_all(src.join("keep")).unwrap();
    fs::write(src.join("skip/deep/f"), b"x").unwrap();
    fs::write(src.join("keep/f"), b"y").unwrap();
    let src = fs::canonicalize(&src).unwrap();
    let pattern = src.join("skip");
    let a = [OsStr::new("--exclude"), pattern.as_os_str(), OsStr::new(".")];
    let res: PipelineResult = Pipeline::new().stage(tool("chunk", &r, &a)).current_dir(&src).run();
    res.assert_ok();
    let paths: Vec<String> = support::framed_records(&res)
        .iter()
        .filter(|v| v["type"] == "node")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["keep", "keep/f"]);
}

/// `chunk --exclude-file` reads a file as restic does (comments, blank lines, white space
/// around patterns, `$VAR` and `${VAR}`), and leaves out what `restic backup` leaves out.
#[test]
fn exclude_files_leave_out_what_restic_leaves_out() {
    let td = tempdir();
    let src = td.path().join("src");
    for d in ["keep", "cache/deep", "logs"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in ["keep/a.txt", "keep/b.log", "cache/deep/c.txt", "logs/d.txt", "e.tmp", "f.txt"] {
        fs::write(src.join(f), f).unwrap();
    }
    let list = td.path().join("excludes");
    fs::write(&list, "# build output\n\n  *.log  \n$SLUICE_T_DIR\n${SLUICE_T_EXT}\n").unwrap();
    let env = [("SLUICE_T_DIR", "cache"), ("SLUICE_T_EXT", "*.tmp")];
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let mut c = r.command();
    c.args(["backup", "-q", "--exclude-file"]).arg(&list).arg(".").current_dir(&src);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "restic backup: {}", String::from_utf8_lossy(&out.stderr));
    let stages = Backup::of(&["."]).chunk_args(&["--exclude-file", list.to_str().unwrap()]).stages(&r);
    let mut p = Pipeline::new().current_dir(&src);
    for s in stages {
        p = p.stage(s);
    }
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run().assert_ok();
    let files = |snap: &str| {
        let out = r.run(&["ls", "--json", snap]);
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|n| n["struct_type"] == "node")
            .map(|n| n["path"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 2);
    let (theirs, ours) = (files(snaps[0]["id"].as_str().unwrap()), files(snaps[1]["id"].as_str().unwrap()));
    assert_eq!(ours, theirs);
    assert!(ours.iter().any(|p| p.ends_with("/keep/a.txt")), "{ours:?}");
    assert!(
        !ours.iter().any(|p| p.ends_with(".log") || p.contains("/cache") || p.ends_with(".tmp")),
        "{ours:?}"
    );
}

/// The stages of a pipeline share one stderr. A message written in pieces (`writeln!` makes
/// a `write` per piece) could be cut by another stage's: Ctrl-C of a backup once printed
/// `pushpack: interrupted by SIGINT` and then `: interrupted by SIGINT; removed its lock`.
/// Every line, a warning or the last error, is one `write`.
#[test]
fn each_message_is_one_write() {
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is needed for this test");
    }
    let td = tempdir();
    let log = td.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=write", "-e", "signal=none", "-s", "512", "-o"])
        .arg(&log)
        .arg(bin("snapshots"))
        .arg("--repo")
        .arg(td.path().join("no-such-repository"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    let log = fs::read_to_string(&log).unwrap();
    let writes: Vec<&str> = log.lines().filter(|l| l.contains("write(2,")).collect();
    assert_eq!(writes.len(), 1, "the message took {} writes:\n{log}", writes.len());
    assert!(writes[0].contains("snapshots: ") && writes[0].contains("\\n\","), "{}", writes[0]);
}

/// Every tool, as Cargo.toml builds them.
const TOOLS: [&str; 10] = [
    "init-repo",
    "chunk",
    "pack",
    "push",
    "snapshots",
    "walk",
    "fetch-pack",
    "unpack",
    "verify",
    "check-repo",
];

/// A pipe whose reading end is already closed: the first write into it fails with EPIPE.
fn pipe_without_reader() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just made and are owned here alone.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    Stdio::from(w)
}

/// `tool --help >&-`, `tool --version | (reader gone)` and `snapshots >&-`: clap printed help
/// into the void and exited 0, and a closed stdout took records as /dev/null would (Rust
/// opens /dev/null on a closed standard descriptor before main). Output that reached no one
/// is not success: a closed stdout is one line and status 1, as coreutils say it; a pipe
/// whose reader left is a quiet 141, as everywhere else.
#[test]
fn output_into_a_closed_stdout_is_not_success() {
    for t in TOOLS {
        for flag in ["--help", "--version"] {
            let out = Command::new("sh")
                .args(["-c", &format!("exec \"$0\" {flag} >&-")])
                .arg(bin(t))
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{t} {flag} >&-: {out:?}");
            let msg = one_line(&out.stderr, t);
            assert!(msg.starts_with(&format!("{t}: stdout: ")), "{msg}");

            let out = Command::new(bin(t)).arg(flag).stdout(pipe_without_reader()).output().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.code(), Some(141), "{t} {flag} into a pipe without reader: {out:?}");
            assert!(out.stderr.is_empty(), "{t} {flag}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(out.status.signal().is_none());
        }
    }
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let mut argv = vec![bin("snapshots").into_os_string()];
    argv.extend(tool("snapshots", &r, &[]).into_iter().skip(1));
    let out = Command::new("sh").arg("-c").arg("exec \"$@\" >&-").arg("sh").args(&argv).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "snapshots >&-: {out:?}");
    assert!(one_line(&out.stderr, "snapshots").starts_with("snapshots: stdout: "), "{out:?}");
}

/// A new user runs `pack` or `unpack -t DIR` alone, stdin a terminal: it waited for records
/// nobody would type, with no word, until Ctrl-C. Now it says what it reads, status 2.
#[test]
fn a_record_reader_on_a_terminal_says_what_it_expects() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let target = td.path().join("t");
    let t = target.as_os_str();
    let stages: Vec<Vec<OsString>> = vec![
        tool("pack", &r, &[]),
        tool("push", &r, &[]),
        tool("fetch-pack", &r, &[]),
        tool("unpack", &r, &[OsStr::new("-t"), t]),
        tool("unpack", &r, &[OsStr::new("--list")]),
        argv([OsStr::new("verify"), OsStr::new("-t"), t]),
    ];
    for s in stages {
        let mut line =
            support::progress::sh_line(std::slice::from_ref(&s), "> /dev/null; echo \"status $?\"");
        line.insert_str(0, "timeout 20 ");
        let res = support::progress::under_terminal(&line, &[(TEST_SCRYPT.0, TEST_SCRYPT.1)]);
        let out = res.stdout_str();
        assert!(out.contains("status 2"), "{s:?}: {out}");
        assert!(out.contains("stdin is a terminal: this stage reads the records"), "{s:?}: {out}");
    }
    assert!(!target.exists(), "unpack made its target for a stream it never read");
}

/// `chunk ~/docs` typed alone: every file's bytes went to the screen as base64 (pack's and
/// fetch-pack's records are ciphertext). The three refuse a terminal on stdout, status 2,
/// one line naming the stage the records are for.
#[test]
fn data_records_are_not_written_to_a_terminal() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("secret.txt"), b"plain text that must not scroll by\n").unwrap();
    for (stage, next) in [
        (argv([OsStr::new("chunk"), src.as_os_str()]), "pack"),
        (argv(["pack"]), "push"),
        (argv(["fetch-pack"]), "unpack"),
    ] {
        let line =
            support::progress::sh_line(std::slice::from_ref(&stage), "< /dev/null; echo \"status $?\"");
        let res = support::progress::under_terminal(&line, &[]);
        let out = res.stdout_str();
        assert!(out.contains("status 2"), "{stage:?}: {out}");
        assert!(
            out.contains(&format!("stdout is a terminal: these records carry data in base64 for {next}")),
            "{out}"
        );
        assert!(!out.contains("\"type\""), "{stage:?} wrote records: {out}");
    }
}

//! restic's `--json` messages from `unpack` (restore) and `push` (backup): status lines whose
//! `percent_done` rises to 1, a summary last whose counts are the snapshot's, `error`
//! messages for failed items and `exit_error` on fatal errors, each where restic puts it.

mod support;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::Path;

use serde_json::Value;
use support::progress::{counter, json_lines, BackupSource};
use support::{random_bytes, tool, Fixture, Pipeline, PipelineResult, Restic};

const SUMMARY: &str = r#"{"message_type":"summary","#;

/// Enough data for several status lines at 60 per second on a slow machine.
fn fill(src: &Path) {
    for i in 0..3 {
        fs::write(src.join(format!("big{i}")), random_bytes(i, 6 << 20)).unwrap();
    }
    fs::create_dir_all(src.join("d/e")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("d/e/f{i}")), format!("small {i}\n").repeat(i as usize)).unwrap();
    }
    std::os::unix::fs::symlink("big0", src.join("link")).unwrap();
}

fn restore(
    fx: &Fixture,
    target: &Path,
    unpack_args: &[&str],
    extra: Option<Vec<OsString>>,
) -> PipelineResult {
    let mut unpack = tool(&fx.r, "unpack", unpack_args);
    unpack.extend(["--target".into(), target.as_os_str().to_os_string()]);
    let mut p = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(unpack)
        .env("RESTIC_PROGRESS_FPS", "60");
    if let Some(s) = extra {
        p = p.stage(s);
    }
    p.run()
}

/// The snapshot as restic 0.14 lists it: its nodes, and the bytes of its regular files.
fn snapshot_counts(r: &Restic) -> (u64, u64, u64) {
    let out = r.run(&["ls", "--json", "latest"]);
    let nodes: Vec<Value> =
        json_lines(&out.stdout).into_iter().filter(|v| v["struct_type"] == "node").collect();
    let files: Vec<&Value> = nodes.iter().filter(|v| v["type"] == "file").collect();
    let bytes = files.iter().map(|v| v["size"].as_u64().unwrap()).sum();
    (nodes.len() as u64, files.len() as u64, bytes)
}

/// Checks the status lines: each parses, `percent_done` never falls and ends at 1.
fn check_status(lines: &[Value], report: &str) {
    let status: Vec<f64> = lines
        .iter()
        .filter(|v| v["message_type"] == "status")
        .map(|v| v["percent_done"].as_f64().unwrap_or_else(|| panic!("status without percent_done: {v}")))
        .collect();
    assert!(!status.is_empty(), "no status lines\n{report}");
    assert!(status.windows(2).all(|w| w[0] <= w[1]), "percent_done fell: {status:?}");
    assert_eq!(status.last(), Some(&1.0), "percent_done ends at {status:?}");
}

/// The members of a flat JSON object in the order they were written, each value as its raw
/// text (the status and summary messages nest nothing; a nested value stays whole).
fn members(line: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(v.is_object(), "{line}");
    let inner = &line.trim()[1..line.trim().len() - 1];
    let (mut parts, mut cur, mut in_str, mut esc, mut depth) = (Vec::new(), String::new(), false, false, 0);
    for c in inner.chars() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            '{' | '[' if !in_str => depth += 1,
            '}' | ']' if !in_str => depth -= 1,
            ',' if !in_str && depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|m| {
            let (k, raw) = m.split_once("\":").unwrap_or_else(|| panic!("{m}: {line}"));
            (k.trim_start_matches('"').to_string(), raw.to_string())
        })
        .collect()
}

/// The members of restic 0.17–0.19's messages in the order its structs declare them
/// (internal/ui/restore/json.go, internal/ui/backup/json.go), then sluice's own additions
/// (backup summary: files_read, bytes_read). Which of them are floats (Go's float64).
fn restic_shape(kind: &str, message_type: &str) -> (Vec<&'static str>, &'static [&'static str]) {
    if (kind, message_type) == ("restore", "summary") {
        // The status without percent_done.
        let status = restic_shape(kind, "status").0;
        return (status.into_iter().filter(|m| *m != "percent_done").collect(), &[]);
    }
    let (order, floats): (&[&str], &[&str]) = match (kind, message_type) {
        ("restore", "status") => (
            &[
                "message_type",
                "seconds_elapsed",
                "percent_done",
                "total_files",
                "files_restored",
                "files_skipped",
                "files_deleted",
                "total_bytes",
                "bytes_restored",
                "bytes_skipped",
            ],
            &["percent_done"],
        ),
        ("backup", "status") => (
            &[
                "message_type",
                "seconds_elapsed",
                "seconds_remaining",
                "percent_done",
                "total_files",
                "files_done",
                "total_bytes",
                "bytes_done",
                "error_count",
                "current_files",
            ],
            &["percent_done"],
        ),
        ("backup", "summary") => (
            &[
                "message_type",
                "files_new",
                "files_changed",
                "files_unmodified",
                "dirs_new",
                "dirs_changed",
                "dirs_unmodified",
                "data_blobs",
                "tree_blobs",
                "data_added",
                "data_added_packed",
                "total_files_processed",
                "total_bytes_processed",
                "total_duration",
                "backup_start",
                "backup_end",
                "snapshot_id",
                "dry_run",
                "files_read",
                "bytes_read",
            ],
            &["total_duration"],
        ),
        other => panic!("no restic message {other:?}"),
    };
    (order.to_vec(), floats)
}

/// Checks each line of `text` against restic's shape: members restic has, in its order,
/// `percent_done` always present in a status; integers written as integers and floats as Go
/// writes them (`0` and `1`, never `0.0` or `1.0`; an exponent only below 1e-6).
fn check_shape(kind: &str, text: &str) {
    for line in text.lines() {
        let members = members(line);
        let message_type = members[0].1.trim_matches('"').to_string();
        assert_eq!(members[0].0, "message_type", "{line}");
        if !["status", "summary"].contains(&message_type.as_str()) {
            continue;
        }
        let (order, floats) = restic_shape(kind, &message_type);
        let pos: Vec<usize> = members
            .iter()
            .map(|(k, _)| {
                order.iter().position(|o| o == k).unwrap_or_else(|| panic!("{k} is not restic's: {line}"))
            })
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "not in restic's order: {line}");
        if message_type == "status" {
            assert!(members.iter().any(|(k, _)| k == "percent_done"), "{line}");
        }
        for (k, raw) in &members {
            if !raw.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                continue;
            }
            if floats.contains(&k.as_str()) {
                let f: f64 = raw.parse().unwrap();
                assert!(
                    !raw.ends_with(".0") && !raw.contains(".0e"),
                    "{k} as {raw}, Go writes no .0: {line}"
                );
                assert_eq!(raw.contains('e'), f != 0.0 && f.abs() < 1e-6, "{k} as {raw}: {line}");
                if f.fract() == 0.0 && f < 1e21 {
                    assert!(raw.bytes().all(|b| b.is_ascii_digit()), "{k} as {raw}: {line}");
                }
            } else {
                assert!(raw.bytes().all(|b| b.is_ascii_digit()), "{k} is not an integer: {raw}: {line}");
            }
        }
    }
}

#[test]
fn restore_json_ends_with_the_snapshots_counts() {
    let fx = Fixture::new(fill, &[]);
    let (nodes, _, bytes) = snapshot_counts(&fx.r);
    let res = restore(&fx, &fx.path("out"), &["--json"], Some(vec!["tail".into(), "-1".into()]));
    res.assert_ok();
    let out = res.stdout_str();
    assert!(out.starts_with(SUMMARY) && out.lines().count() == 1, "{}", res.report());
    let s: Value = serde_json::from_str(out).unwrap();
    assert_eq!(counter(&s, "total_files"), nodes, "{s}");
    assert_eq!(counter(&s, "files_restored"), nodes, "{s}");
    assert_eq!(counter(&s, "total_bytes"), bytes, "{s}");
    assert_eq!(counter(&s, "bytes_restored"), bytes, "{s}");
    assert_eq!(counter(&s, "files_skipped") + counter(&s, "bytes_skipped"), 0, "{s}");

    // All of it: status lines first, nothing else on stdout (no records), nothing on stderr.
    let res = restore(&fx, &fx.path("out2"), &["--json"], None);
    res.assert_ok();
    let lines = json_lines(&res.stdout);
    assert_eq!(lines.len(), res.stdout_str().lines().count(), "a line that is not JSON:\n{}", res.report());
    assert!(lines.iter().all(|v| v.get("type").is_none()), "a record on stdout:\n{}", res.report());
    check_status(&lines, &res.report());
    assert_eq!(lines.last().unwrap()["message_type"], "summary");
    assert_eq!(res.stderr_str(2), "", "{}", res.report());
    check_shape("restore", res.stdout_str());
    // The last status, as Go writes a finished restore's: `1`, not `1.0`.
    let last_status = res.stdout_str().lines().rev().find(|l| l.contains(r#""status""#)).unwrap();
    assert!(last_status.contains(r#","percent_done":1,"#), "{last_status}");
    // Every stage of the pipeline is silent on stderr: only JSON comes out of it.
    for i in 0..3 {
        assert_eq!(res.stderr_str(i), "", "stage {i}:\n{}", res.report());
    }
}

/// A large file's bytes are counted as its blobs are written, as restic counts them: a
/// status line comes while the one file is still being restored.
#[test]
fn restore_bytes_move_while_a_large_file_is_written() {
    let fx = Fixture::new(|src| fs::write(src.join("large"), random_bytes(7, 64 << 20)).unwrap(), &[]);
    let res = restore(&fx, &fx.path("out"), &["--json"], None);
    res.assert_ok();
    let lines = json_lines(&res.stdout);
    let total = 64u64 << 20;
    let during: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message_type"] == "status" && counter(v, "files_restored") == 0)
        .filter(|v| (1..total).contains(&counter(v, "bytes_restored")))
        .collect();
    assert!(!during.is_empty(), "no status line while the file was written:\n{}", res.report());
    let s = lines.last().unwrap();
    assert_eq!((counter(s, "files_restored"), counter(s, "bytes_restored")), (1, total), "{s}");
}

#[test]
fn json_file_keeps_the_records_for_verify() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let file = fx.path("messages.json");
    let verify = vec!["verify".into(), "--target".into(), target.as_os_str().to_os_string()];
    let res = restore(&fx, &target, &["--json-file", file.to_str().unwrap()], Some(verify));
    res.assert_ok();
    let verdicts = support::framed_records(&res).into_iter().filter(|v| v["type"] == "verdict").count();
    assert_eq!(verdicts, 23, "{}", res.report());
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.lines().last().unwrap().starts_with(SUMMARY), "{text}");
    check_status(&json_lines(text.as_bytes()), &text);
}

#[test]
fn a_failed_item_is_an_error_message_and_exit_3() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    // A directory where the snapshot has a file: kept, and the file fails.
    fs::create_dir_all(target.join("big1/inside")).unwrap();
    let res = restore(&fx, &target, &["--json"], None);
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    let err = json_lines(&res.stderrs[2]);
    assert_eq!(err.len(), res.stderr_str(2).lines().count(), "a plain line on stderr:\n{}", res.report());
    let e = err.iter().find(|v| v["message_type"] == "error").unwrap_or_else(|| panic!("{}", res.report()));
    assert_eq!(e["during"], "restore", "{e}");
    assert!(e["item"].as_str().unwrap().ends_with("big1"), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("directory"), "{e}");
    let last = err.last().unwrap();
    assert_eq!(
        (last["message_type"].as_str(), last["code"].as_i64()),
        (Some("exit_error"), Some(3)),
        "{last}"
    );
    // The summary still comes, last on stdout, and counts what was restored.
    let out = json_lines(&res.stdout);
    let s = out.last().unwrap();
    assert_eq!(s["message_type"], "summary", "{s}");
    let (nodes, _, bytes) = snapshot_counts(&fx.r);
    assert_eq!(counter(s, "files_restored"), nodes - 1, "{s}");
    assert_eq!(counter(s, "bytes_restored"), bytes - (6 << 20), "{s}");
}

/// `--dry-run --json` is JSON only too: restic's messages counting what would be restored
/// (and what would stay, as skipped), a refusal as an `error` message, no action records,
/// no plain lines.
#[test]
fn dry_run_json_counts_what_would_be_restored() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let res = restore(&fx, &target, &[], None);
    res.assert_ok();
    fs::write(target.join("d/e/f3"), "changed\n").unwrap();
    fs::remove_file(target.join("big1")).unwrap();
    fs::create_dir_all(target.join("big1/inside")).unwrap();
    let res = restore(&fx, &target, &["--dry-run", "--json"], None);
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    let out = res.stdout_str();
    let lines = json_lines(&res.stdout);
    assert_eq!(lines.len(), out.lines().count(), "a line that is not JSON:\n{}", res.report());
    assert!(lines.iter().all(|v| v.get("type").is_none()), "a record on stdout:\n{}", res.report());
    check_shape("restore", out);
    let s = lines.last().unwrap();
    assert_eq!(s["message_type"], "summary", "{s}");
    let (nodes, _, bytes) = snapshot_counts(&fx.r);
    // f3 would be written again; big1 is refused; everything else stays.
    let f3 = "small 3\n".repeat(3).len() as u64;
    assert_eq!((counter(s, "files_restored"), counter(s, "bytes_restored")), (1, f3), "{s}");
    assert_eq!(counter(s, "files_skipped"), nodes - 2, "{s}");
    assert_eq!(counter(s, "bytes_skipped"), bytes - f3 - (6 << 20), "{s}");
    let err = json_lines(&res.stderrs[2]);
    assert_eq!(err.len(), res.stderr_str(2).lines().count(), "a plain line on stderr:\n{}", res.report());
    assert!(err
        .iter()
        .any(|e| e["message_type"] == "error" && e["item"].as_str().unwrap().ends_with("big1")));
    assert_eq!(err.last().unwrap()["message_type"], "exit_error", "{}", res.report());

    // --list has no restic messages: --json with it is refused, not ignored.
    let res = Pipeline::new().stage(tool(&fx.r, "unpack", &["--list", "--json"])).stdin(Vec::new()).run();
    assert_eq!(res.codes(), vec![2], "{}", res.report());
    assert!(res.stderr_str(0).contains("--json"), "{}", res.report());
}

#[test]
fn fatal_errors_end_with_exit_error() {
    let fx = Fixture::new(fill, &[]);
    let wrong = fx.path("wrong");
    fs::write(&wrong, "not the password\n").unwrap();
    let walk = fx.walk_stream();
    let unpack = |args: &[&OsStr]| {
        let mut a: Vec<OsString> = vec!["unpack".into(), "--json".into(), "--target".into()];
        a.push(fx.path("out").into_os_string());
        a.extend(args.iter().map(|s| s.to_os_string()));
        Pipeline::new().stage(a).stdin(walk.clone()).run()
    };
    let repo = fx.r.repo.as_os_str();
    for (args, code) in [
        (vec![OsStr::new("-r"), repo, OsStr::new("-p"), wrong.as_os_str()], 12),
        (vec![OsStr::new("-r"), OsStr::new("/nonexistent/repo"), OsStr::new("-p"), wrong.as_os_str()], 10),
    ] {
        let res = unpack(&args);
        assert_eq!(res.codes(), vec![code], "{}", res.report());
        let err = res.stderr_str(0);
        let x: Value = serde_json::from_str(err.trim_end())
            .unwrap_or_else(|e| panic!("stderr is not one JSON message ({e}):\n{err}"));
        assert!(err.starts_with(r#"{"message_type":"exit_error","code":"#), "{err}");
        assert_eq!(x["code"], code, "{x}");
        assert!(x["message"].as_str().unwrap().starts_with("unpack: "), "{x}");
        assert_eq!(res.stdout, b"", "{}", res.report());
    }
}

#[test]
fn backup_json_ends_with_the_snapshots_counts() {
    let b = BackupSource::new(fill);
    let r = &b.r;
    let res = b.run(&["--json"]);
    res.assert_ok();
    let lines = json_lines(&res.stdout);
    assert_eq!(lines.len(), res.stdout_str().lines().count(), "{}", res.report());
    let last = res.stdout_str().lines().last().unwrap();
    assert!(last.starts_with(SUMMARY), "{}", res.report());
    check_status(&lines, &res.report());
    let s = lines.last().unwrap();
    let (nodes, files, bytes) = snapshot_counts(r);
    assert_eq!(counter(s, "total_files_processed"), files, "{s}");
    assert_eq!(counter(s, "total_bytes_processed"), bytes, "{s}");
    assert_eq!(counter(s, "files_new"), files, "{s}");
    // The directories of the snapshot: d, d/e, and those leading to src.
    let dirs = nodes - files - 1;
    assert_eq!(counter(s, "dirs_new"), dirs, "{s}");
    let id = s["snapshot_id"].as_str().unwrap();
    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id, "the summary names the snapshot by its full id");
    for k in ["backup_start", "backup_end", "total_duration"] {
        assert!(s.get(k).is_some(), "{k} missing: {s}");
    }
    let status = lines.iter().rev().find(|v| v["message_type"] == "status").unwrap();
    assert_eq!((counter(status, "total_files"), counter(status, "files_done")), (files, files), "{status}");
    assert_eq!((counter(status, "total_bytes"), counter(status, "bytes_done")), (bytes, bytes), "{status}");
    check_shape("backup", res.stdout_str());
    let last_status = res.stdout_str().lines().rev().find(|l| l.contains(r#""status""#)).unwrap();
    assert!(last_status.contains(r#","percent_done":1,"#), "{last_status}");
    // JSON only: no stage prints its text (push's summary is the summary message).
    for i in 0..3 {
        assert_eq!(res.stderr_str(i), "", "stage {i}:\n{}", res.report());
    }
    // Without --json the summary for the person is on stderr; the same with --json-file.
    let json_file = b.td.path().join("messages.json");
    for args in [vec![], vec!["--json-file", json_file.to_str().unwrap()]] {
        let res = b.run(&args);
        res.assert_ok();
        let err = res.stderr_str(2);
        assert!(err.trim_end().contains(" saved"), "{args:?}: {}", res.report());
        assert!(!err.contains("message_type"), "{}", res.report());
    }
    check_shape("backup", &fs::read_to_string(&json_file).unwrap());
}

#[test]
fn push_json_failure_is_one_exit_error_line() {
    let b = BackupSource::new(fill);
    // A repository push was not given the stream for: refused before anything is stored.
    let other = b.td.path().join("other");
    let o = Restic::new(&other);
    support::backup::init_repo(&o, 2);
    let mut stages = b.stages(&[]);
    stages[2] = support::backup::tool("push", &o, &[OsStr::new("--json")]);
    let (k, v) = support::backup::TEST_SCRYPT;
    let mut p = Pipeline::new().env(k, v);
    for st in stages {
        p = p.stage(st);
    }
    let res = p.run();
    assert_eq!(res.codes()[2], 2, "{}", res.report());
    let err = res.stderr_str(2);
    assert_eq!(err.lines().count(), 1, "{}", res.report());
    let x: Value = serde_json::from_str(err.trim_end()).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!((x["message_type"].as_str(), x["code"].as_i64()), (Some("exit_error"), Some(2)), "{x}");
    assert!(x["message"].as_str().unwrap().starts_with("push: "), "{x}");
    assert_eq!(res.stdout, b"", "{}", res.report());
}

/// `push -q --json | jq -r .snapshot_id`, as push(1) shows it: restic 0.14's `backup -q
/// --json` prints its summary alone, but push printed its status lines too, and the example
/// printed "null" for each. With `--quiet` only the summary is written (unpack alike).
#[test]
fn quiet_json_is_the_summary_alone() {
    let b = BackupSource::new(fill);
    let out = b.r.run(&["backup", "-q", "--json", b.src.to_str().unwrap()]);
    let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(theirs.lines().count(), 1, "restic: {theirs}");
    assert!(theirs.starts_with(SUMMARY), "restic: {theirs}");

    let res = b.run(&["-q", "--json"]);
    res.assert_ok();
    let ours = res.stdout_str();
    assert_eq!(ours.lines().count(), 1, "{}", res.report());
    assert!(ours.starts_with(SUMMARY), "{}", res.report());

    let fx = Fixture::new(fill, &[]);
    let res = restore(&fx, &fx.path("out"), &["-q", "--json"], None);
    res.assert_ok();
    let ours = res.stdout_str();
    assert_eq!(ours.lines().count(), 1, "{}", res.report());
    assert!(ours.starts_with(SUMMARY), "{}", res.report());
}

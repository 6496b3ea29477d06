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
    // The summary for the person stays on stderr (push -q leaves it out), nothing else.
    let err = res.stderr_str(2);
    assert!(err.trim_end().ends_with(&format!("snapshot {} saved", &id[..8])), "{}", res.report());
    assert!(!err.contains("message_type"), "{}", res.report());
}

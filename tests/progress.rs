//! Progress bars: drawn on a real terminal by the last stage (unpack for a restore, push for
//! a backup), never anywhere else; records on stdout are the same with or without them.

mod support;

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use support::backup::TEST_SCRYPT;
use support::progress::{control_chars, sh_line, under_terminal, BackupSource};
use support::{random_bytes, tool, Fixture, Pipeline};

/// Six nodes: a 3 MiB file (several blobs), a directory with three small files, a symlink.
fn fill(src: &Path) {
    fs::write(src.join("big"), random_bytes(1, 3 << 20)).unwrap();
    fs::create_dir(src.join("d")).unwrap();
    for i in 0..3 {
        fs::write(src.join(format!("d/f{i}")), format!("small {i}\n")).unwrap();
    }
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();
}
const NODES: usize = 6;
const FILES: usize = 4;

fn restore_stages(fx: &Fixture, target: &Path, unpack_args: &[&str]) -> Vec<Vec<OsString>> {
    let mut unpack = tool(&fx.r, "unpack", unpack_args);
    unpack.extend(["--target".into(), target.as_os_str().to_os_string()]);
    vec![tool(&fx.r, "walk", &["latest"]), tool(&fx.r, "fetch-pack", &[]), unpack]
}

/// The last screen state of a bar: the text after the last carriage return or line erase.
fn last_frame(out: &str) -> &str {
    let end = out.trim_end();
    let from = end.rfind(['\r', '\u{1b}']).map_or(0, |i| i + 1);
    &end[from..]
}

#[test]
fn restore_on_a_terminal_draws_the_bar_to_its_end() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let cmd = sh_line(&restore_stages(&fx, &target, &[]), "> /dev/null");
    let res = under_terminal(&cmd, &[]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(out.contains('\u{1b}'), "no terminal control sequences: a bar was not drawn\n{out:?}");
    let last = last_frame(&out);
    assert!(last.contains(&format!("files {NODES}/{NODES}")), "final state: {last:?}\nall: {out:?}");
    assert!(last.contains("100%") && last.contains("3.00 MiB/3.00 MiB"), "final state: {last:?}");
    assert_eq!(fs::read(target.join("big")).unwrap(), random_bytes(1, 3 << 20));
}

/// `--quiet` draws nothing even on a terminal, and even when `--progress` asks.
#[test]
fn restore_quiet_on_a_terminal_draws_nothing() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let cmd = sh_line(&restore_stages(&fx, &target, &["--progress", "--quiet"]), "> /dev/null");
    let res = under_terminal(&cmd, &[]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(out.trim().is_empty(), "something drawn under --quiet: {out:?}");
    assert_eq!(fs::read(target.join("big")).unwrap(), random_bytes(1, 3 << 20));
}

#[test]
fn backup_on_a_terminal_draws_the_bar_to_its_end() {
    let b = BackupSource::new(fill);
    let stages = b.stages(&[]);
    let res = under_terminal(&sh_line(&stages, ""), &[TEST_SCRYPT]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(out.contains('\u{1b}'), "no bar drawn\n{out:?}");
    // The bar's last frame comes before push's summary lines.
    let bar_end = out.rfind("backing up").expect("a bar line");
    let frame = last_frame(&out[..out[bar_end..].find('\n').map_or(out.len(), |i| bar_end + i)]);
    assert!(frame.contains(&format!("files {FILES}/{FILES}")), "final state: {frame:?}\nall: {out:?}");
    assert!(frame.contains("100%"), "final state: {frame:?}");
    assert!(out.contains("snapshot ") && out.contains(" saved"), "{out:?}");
}

#[test]
fn without_a_terminal_nothing_is_drawn_and_records_do_not_change() {
    let fx = Fixture::new(fill, &[]);
    let run = |name: &str, args: &[&str]| {
        let target = fx.path(name);
        let mut p = Pipeline::new();
        for s in restore_stages(&fx, &target, args) {
            p = p.stage(s);
        }
        let res = p.env("RESTIC_PROGRESS_FPS", "60").run();
        res.assert_ok();
        res
    };
    let plain = run("a", &["--no-progress"]);
    for args in [&[][..], &["--progress"], &["--json-file", "/dev/null"]] {
        let res = run(&format!("b{}", args.len()), args);
        assert_eq!(res.stdout, plain.stdout, "records differ with {args:?}");
        for (i, err) in res.stderrs.iter().enumerate() {
            assert_eq!(
                control_chars(err),
                b"",
                "stage {i} with {args:?} wrote control characters:\n{}",
                res.report()
            );
        }
        if args == ["--progress"] {
            // Forced on a non-terminal: plain lines, the last one at the end.
            let err = res.stderr_str(2);
            let last = err.lines().last().unwrap_or_default();
            assert!(last.contains(&format!("files {NODES}/{NODES}")) && last.contains("100.0%"), "{err}");
        } else {
            assert_eq!(res.stderr_str(2), "", "unpack {args:?} said something:\n{}", res.report());
        }
    }
    // A restore record stream carries walk's totals on to verify.
    let totals = support::framed_records(&plain).into_iter().find(|v| v["type"] == "totals");
    let totals = totals.unwrap_or_else(|| panic!("no totals record:\n{}", plain.report()));
    assert_eq!(totals["nodes"], NODES as u64, "{totals}");
    assert_eq!(totals["files"], FILES as u64, "{totals}");
}

#[test]
fn backup_without_a_terminal_draws_nothing() {
    let res = BackupSource::new(fill).run(&["--progress"]);
    res.assert_ok();
    assert_eq!(res.stdout, b"", "push wrote to stdout without --json");
    for (i, err) in res.stderrs.iter().enumerate() {
        assert_eq!(control_chars(err), b"", "stage {i} wrote control characters:\n{}", res.report());
    }
    let err = res.stderr_str(2);
    assert!(err.lines().any(|l| l.contains(&format!("files {FILES}/{FILES}"))), "{err}");
}

#[test]
fn a_stream_without_totals_still_restores() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let mut stages = restore_stages(&fx, &target, &["--progress"]);
    stages[0].push("--no-totals".into());
    let mut p = Pipeline::new();
    for s in stages {
        p = p.stage(s);
    }
    let res = p.run();
    res.assert_ok();
    assert!(!support::framed_records(&res).iter().any(|v| v["type"] == "totals"), "{}", res.report());
    let err = res.stderr_str(2);
    assert!(err.lines().last().unwrap_or_default().contains(&format!("files {NODES}")), "{err}");
    assert_eq!(fs::read(target.join("big")).unwrap(), random_bytes(1, 3 << 20));
}

/// The bar's last frame is left on the screen, and what comes after it starts a line of its
/// own: the shell's prompt after a restore, push's summary after a backup, a stage's error.
/// The cursor stayed at the end of the bar, so each was glued to it ("files 6/6verify: …").
#[test]
fn what_follows_the_bar_starts_a_line() {
    let starts_a_line = |out: &str, what: &str| {
        let at = out.rfind(what).unwrap_or_else(|| panic!("no {what:?} in {out:?}"));
        assert!(
            out[..at].ends_with('\n'),
            "{what:?} does not start a line: {:?}",
            &out[at.saturating_sub(80)..]
        );
    };
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let res = under_terminal(&sh_line(&restore_stages(&fx, &target, &[]), "> /dev/null; echo AFTER"), &[]);
    res.assert_ok();
    starts_a_line(&String::from_utf8_lossy(&res.stdout), "AFTER");

    // verify, last on the terminal, finds a difference: its message after its bar.
    fs::write(target.join("big"), b"changed").unwrap();
    let mut verify: Vec<OsString> = vec!["verify".into(), "-q".into(), "-t".into(), target.clone().into()];
    verify.push("--progress".into());
    let res = under_terminal(&sh_line(&[tool(&fx.r, "walk", &["latest"]), verify], "> /dev/null"), &[]);
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(out.contains("verifying"), "no bar drawn: {out:?}");
    starts_a_line(&out, "verify: 1 of");

    let b = BackupSource::new(fill);
    let res = under_terminal(&sh_line(&b.stages(&[]), ""), &[TEST_SCRYPT]);
    res.assert_ok();
    starts_a_line(&String::from_utf8_lossy(&res.stdout), "Files:");
}

/// `walk latest | fetch-pack | unpack -t DIR` typed at a terminal, as most examples end: a
/// JSON record per file scrolled over the bar (and slowed a restore of many small files to
/// the terminal's pace). On a terminal unpack writes no records; the bar is the output.
#[test]
fn restore_records_do_not_go_to_a_terminal() {
    let fx = Fixture::new(fill, &[]);
    let target = fx.path("out");
    let res = under_terminal(&sh_line(&restore_stages(&fx, &target, &[]), ""), &[]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(!out.contains("\"type\":"), "records on the terminal: {out:?}");
    let last = last_frame(&out);
    assert!(last.contains(&format!("files {NODES}/{NODES}")), "final state: {last:?}\nall: {out:?}");
    assert_eq!(fs::read(target.join("big")).unwrap(), random_bytes(1, 3 << 20));
}

/// `walk latest | verify -t DIR` typed at a terminal: verify draws its bar there and writes a
/// verdict per file to the same terminal. A verdict written while the bar was on the screen
/// was glued to the bar's line (a buffer's worth of them at a time, cut anywhere). Each record
/// now starts a line of its own, whole: the bar is cleared before it and drawn again after.
#[test]
fn verify_records_do_not_tear_the_bar() {
    records_stay_off_the_bar(false);
}

/// The same with the input silent for a while after its totals, the bar on the screen: the
/// pause makes verify send on what it holds (its header), and that must not land on the
/// bar's line either (it did, on a loaded machine, while walk derived its key).
#[test]
fn verify_records_do_not_tear_the_bar_when_the_input_pauses() {
    records_stay_off_the_bar(true);
}

/// `walk latest | verify` on a terminal, or with `pause`, walk's stream from a file with
/// 0.3 s of silence after its header and totals: every record verify writes starts a line
/// of its own and is whole.
fn records_stay_off_the_bar(pause: bool) {
    const N: usize = 3000;
    let fill = |src: &Path| {
        for i in 0..N {
            fs::write(src.join(format!("f{i:04}")), format!("file {i}\n")).unwrap();
        }
    };
    let fx = Fixture::new(fill, &[]);
    // restic backed up the contents of the source: it is what a restore would make.
    let verify: Vec<OsString> = vec!["verify".into(), "-t".into(), fx.src.clone().into()];
    let cmd = if pause {
        let stream = fx.path("walked");
        fs::write(&stream, fx.walk_stream()).unwrap();
        let f = stream.to_str().unwrap().replace('\'', r"'\''");
        format!("{{ head -n 2 '{f}'; sleep 0.3; tail -n +3 '{f}'; }} | {}", sh_line(&[verify], ""))
    } else {
        sh_line(&[tool(&fx.r, "walk", &["latest"]), verify], "")
    };
    let res = under_terminal(&cmd, &[("RESTIC_PROGRESS_FPS", "60")]);
    res.assert_ok();
    let out = String::from_utf8_lossy(&res.stdout);
    assert!(out.contains("verifying"), "no bar drawn: {out:?}");
    let mut verdicts = 0;
    for (at, _) in out.match_indices("{\"type\":") {
        // What is on the screen before the record on its line: the text after the last line
        // erase, without control sequences.
        let line = &out[out[..at].rfind('\n').map_or(0, |i| i + 1)..at];
        let shown = without_escapes(line.rsplit("\u{1b}[2K").next().unwrap_or_default());
        assert!(
            shown.is_empty(),
            "a record after {shown:?} on its line:\n{}",
            // (The bar's blocks are several bytes each.)
            &out[(0..=at.saturating_sub(200)).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0)..at]
        );
        let end = out[at..].find('\n').map_or(out.len(), |i| at + i);
        let text = out[at..end].trim_end_matches('\r');
        let rec: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("a record torn ({e}): {text:?}"));
        verdicts += usize::from(rec["type"] == "verdict" && rec["ok"] == true);
    }
    assert_eq!(verdicts, N, "{out:?}");
}

/// `s` without carriage returns and terminal control sequences (`ESC [ … final byte`).
fn without_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

//! Helpers for the progress and JSON-message tests: running a pipeline under a real
//! pseudo-terminal (util-linux `script`), and reading what it printed.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use serde_json::Value;

use super::run::{bin_dir, Pipeline, PipelineResult};

/// A shell command line for `stages` joined by pipes, each word single-quoted, our binaries by
/// their full path; `tail` is appended as it is (a redirection, say).
pub fn sh_line(stages: &[Vec<OsString>], tail: &str) -> String {
    let word = |w: &OsString| {
        let b = w.as_bytes();
        let ours = bin_dir().join(w);
        let b =
            if !b.contains(&b'/') && ours.is_file() { ours.into_os_string().into_vec() } else { b.to_vec() };
        format!("'{}'", String::from_utf8_lossy(&b).replace('\'', r"'\''"))
    };
    let mut line = stages
        .iter()
        .map(|s| s.iter().map(word).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(" | ");
    line.push(' ');
    line.push_str(tail);
    line
}

/// Runs `cmd` with `sh -c` on a fresh pseudo-terminal (`script -qfec CMD /dev/null`): stdin,
/// stdout and stderr of every stage are the terminal, and what they wrote to it is the
/// result's stdout. `script` exits with the command's status.
pub fn under_terminal(cmd: &str, env: &[(&str, &str)]) -> PipelineResult {
    let mut p = Pipeline::new()
        .stage(vec!["script".into(), "-qfec".into(), cmd.into(), "/dev/null".into()])
        .env("TERM", "xterm");
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run()
}

/// The lines of `out` that are JSON objects (others, such as plain messages, are skipped).
pub fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok().filter(Value::is_object))
        .collect()
}

/// Control characters other than newline: what a progress bar leaves in a file.
pub fn control_chars(out: &[u8]) -> Vec<u8> {
    out.iter().copied().filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f).collect()
}

/// A counter of a JSON message, 0 when left out (restic leaves zero counters out).
pub fn counter(v: &Value, field: &str) -> u64 {
    match &v[field] {
        Value::Null => 0,
        n => n.as_u64().unwrap_or_else(|| panic!("{field} is not a count: {v}")),
    }
}

/// A source tree and an empty repository (made by `init-repo`) to back it up into.
pub struct BackupSource {
    pub td: tempfile::TempDir,
    pub src: std::path::PathBuf,
    pub r: super::Restic,
}

impl BackupSource {
    /// `fill` makes the tree in the (existing, empty) source directory.
    pub fn new(fill: impl FnOnce(&std::path::Path)) -> BackupSource {
        let td = super::tempdir();
        let src = td.path().join("src");
        std::fs::create_dir(&src).unwrap();
        fill(&src);
        let r = super::Restic::new(&td.path().join("r"));
        super::backup::init_repo(&r, 2);
        BackupSource { td, src, r }
    }

    /// The stages of `chunk SRC | pack | push PUSH_ARGS…`.
    pub fn stages(&self, push_args: &[&str]) -> Vec<Vec<OsString>> {
        use super::backup::tool;
        let push: Vec<&std::ffi::OsStr> = push_args.iter().map(std::ffi::OsStr::new).collect();
        vec![
            tool("chunk", &self.r, &[self.src.as_os_str()]),
            tool("pack", &self.r, &[]),
            tool("push", &self.r, &push),
        ]
    }

    /// Runs the backup without a terminal, updates at 60 per second.
    pub fn run(&self, push_args: &[&str]) -> PipelineResult {
        let (k, v) = super::backup::TEST_SCRYPT;
        let mut p = Pipeline::new().env(k, v).env("RESTIC_PROGRESS_FPS", "60");
        for s in self.stages(push_args) {
            p = p.stage(s);
        }
        p.run()
    }
}

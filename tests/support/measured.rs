//! A pipeline whose stages are measured: each stage's exit status, stderr and peak RSS, the
//! last stage's stdout going to a file, so that gigabytes need not fit in the test's memory.
//!
//! Each stage runs under a small `python3` parent that reports its child's peak RSS. Spawned
//! straight from the test, a child's `ru_maxrss` would include the test process's own
//! memory: Linux counts the parent's resident pages the child shared before its `exec`.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use super::run::bin_dir;

/// What each stage of a [`measured`] pipeline did.
#[derive(Debug)]
pub struct Measured {
    pub names: Vec<String>,
    pub statuses: Vec<ExitStatus>,
    pub stderrs: Vec<String>,
    /// Peak resident set size per stage, KiB.
    pub rss_kib: Vec<u64>,
}

impl Measured {
    /// Panics, showing every stage, unless every stage exited 0 with nothing on stderr.
    pub fn assert_ok(&self) -> &Self {
        let ok = self.statuses.iter().all(ExitStatus::success) && self.stderrs.iter().all(String::is_empty);
        assert!(ok, "pipeline failed: {self:#?}");
        self
    }

    /// The stage's exit code, 128 + signal for a stage killed by one.
    pub fn code(&self, i: usize) -> i32 {
        let s = &self.statuses[i];
        s.code().or_else(|| s.signal().map(|g| 128 + g)).unwrap_or(-1)
    }
}

/// `python3 -c RSS_OF_CHILD FILE CMD…`: runs CMD with stdin, stdout and stderr passed
/// through, writes its peak RSS in KiB to FILE, exits as CMD did (128 + signal if killed).
const RSS_OF_CHILD: &str = "import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc if rc >= 0 else 128 - rc)";

/// Runs `stages` as `a | b | …> out`; a stage whose program names one of our binaries runs it.
pub fn measured(stages: &[Vec<OsString>], out: &Path) -> Measured {
    let errs = tempfile::tempdir().expect("temp dir");
    let mut children: Vec<std::process::Child> = Vec::new();
    let mut prev: Option<Stdio> = None;
    let n = stages.len();
    for (i, st) in stages.iter().enumerate() {
        let ours = bin_dir().join(&st[0]);
        let prog = if ours.is_file() { ours.into_os_string() } else { st[0].clone() };
        let mut c = Command::new("python3");
        c.args(["-c", RSS_OF_CHILD]).arg(errs.path().join(format!("rss{i}"))).arg(prog).args(&st[1..]);
        c.stdin(prev.take().unwrap_or_else(Stdio::null));
        c.stderr(File::create(errs.path().join(i.to_string())).expect("stderr file"));
        if i + 1 == n {
            c.stdout(File::create(out).expect("output file"));
        } else {
            c.stdout(Stdio::piped());
        }
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot start {st:?}: {e}"));
        if i + 1 < n {
            prev = Some(Stdio::from(child.stdout.take().expect("piped")));
        }
        children.push(child);
    }
    let statuses: Vec<ExitStatus> =
        children.iter_mut().map(|c| c.wait().expect("wait for a stage")).collect();
    let rss_kib = (0..n)
        .map(|i| {
            let s = std::fs::read_to_string(errs.path().join(format!("rss{i}"))).unwrap_or_default();
            s.trim().parse().unwrap_or_else(|_| panic!("stage {i}: no peak RSS reported ({s:?})"))
        })
        .collect();
    let stderrs = (0..n)
        .map(|i| std::fs::read_to_string(errs.path().join(i.to_string())).unwrap_or_default())
        .collect();
    let names = stages.iter().map(|s| s[0].to_string_lossy().into_owned()).collect();
    Measured { names, statuses, stderrs, rss_kib }
}

/// SHA-256 of a file, read in pieces.
pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {p:?}: {e}"));
    std::io::copy(&mut f, &mut h).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
    hex::encode(h.finalize())
}

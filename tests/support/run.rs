//! Running our binaries, alone or as a shell-like pipeline of real processes.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The directory holding this package's binaries (they are built side by side).
pub fn bin_dir() -> PathBuf {
    // CARGO_BIN_EXE_<name> exists per binary; one known binary locates them all.
    let walk = Path::new(env!("CARGO_BIN_EXE_walk"));
    walk.parent().expect("binary has a parent dir").to_path_buf()
}

/// Path of our binary `name` (e.g. `"walk"`, `"fetch-pack"`); panics if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.is_file(), "binary {name} not found at {p:?}");
    p
}

/// Builds an argv from anything string-like: `argv(["walk", "--repo", repo])`.
pub fn argv<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items.into_iter().map(|s| s.as_ref().to_os_string()).collect()
}

/// Runs `stages` connected stdout-to-stdin like `a | b | c`, with `env` added to each
/// stage's environment, stdin of the first stage empty, and a 10-minute timeout.
/// See [`Pipeline`] for stdin, working directory and the program lookup rule.
pub fn pipeline(stages: &[Vec<OsString>], env: &[(&str, &str)]) -> PipelineResult {
    let mut p = Pipeline::new();
    for s in stages {
        p = p.stage(s.clone());
    }
    for (k, v) in env {
        p = p.env(k, v);
    }
    p.run()
}

/// Runs one command like a one-stage [`pipeline`].
pub fn run_cmd(args: Vec<OsString>, env: &[(&str, &str)]) -> PipelineResult {
    pipeline(&[args], env)
}

/// A pipeline under construction.
///
/// A stage's program (its first word) that contains no `/` and names a file in [`bin_dir`]
/// runs our binary; anything else is looked up in `PATH` (`cat`, `head`, `restic`, `sh`).
#[derive(Clone, Debug)]
pub struct Pipeline {
    stages: Vec<Vec<OsString>>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    dir: Option<PathBuf>,
    timeout: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            stages: Vec::new(),
            env: Vec::new(),
            stdin: None,
            dir: None,
            timeout: Duration::from_secs(600),
        }
    }
}

/// What a pipeline did: one status and one stderr per stage, and the last stage's stdout.
#[derive(Debug)]
pub struct PipelineResult {
    /// Each stage's argv, as run (program resolved).
    pub argv: Vec<Vec<OsString>>,
    /// Each stage's exit status.
    pub statuses: Vec<ExitStatus>,
    /// Each stage's complete stderr.
    pub stderrs: Vec<Vec<u8>>,
    /// The last stage's complete stdout.
    pub stdout: Vec<u8>,
    /// True when the timeout expired and the remaining stages were killed.
    pub timed_out: bool,
}

fn resolve(program: &OsStr) -> OsString {
    if !program.as_bytes().contains(&b'/') {
        let ours = bin_dir().join(program);
        if ours.is_file() {
            return ours.into_os_string();
        }
    }
    program.to_os_string()
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        // A read error after the child died just ends the capture.
        let _ = r.read_to_end(&mut v);
        v
    })
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a stage (program and arguments).
    pub fn stage(mut self, argv: Vec<OsString>) -> Self {
        assert!(!argv.is_empty(), "empty pipeline stage");
        self.stages.push(argv);
        self
    }

    /// Sets an environment variable for every stage.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env.push((k.as_ref().into(), v.as_ref().into()));
        self
    }

    /// Feeds `bytes` to the first stage's stdin (default: empty stdin).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Runs every stage in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Kills the stages still running after `t` (default 10 minutes).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Starts all stages, waits for all of them, and collects the results.
    pub fn run(self) -> PipelineResult {
        assert!(!self.stages.is_empty(), "pipeline without stages");
        let n = self.stages.len();
        let mut children: Vec<Child> = Vec::with_capacity(n);
        let mut err_readers = Vec::with_capacity(n);
        let mut argvs = Vec::with_capacity(n);
        let mut prev_stdout: Option<Stdio> = None;
        let mut stdin_writer = None;
        for (i, stage) in self.stages.iter().enumerate() {
            let program = resolve(&stage[0]);
            let mut c = Command::new(&program);
            c.args(&stage[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
            for (k, v) in &self.env {
                c.env(k, v);
            }
            if let Some(d) = &self.dir {
                c.current_dir(d);
            }
            match prev_stdout.take() {
                Some(s) => c.stdin(s),
                None if self.stdin.is_some() => c.stdin(Stdio::piped()),
                None => c.stdin(Stdio::null()),
            };
            let mut child = match c.spawn() {
                Ok(ch) => ch,
                Err(e) => {
                    for mut ch in children {
                        let _ = ch.kill();
                        let _ = ch.wait();
                    }
                    panic!("cannot start stage {i} {:?}: {e}", stage);
                }
            };
            if i == 0 {
                if let (Some(bytes), Some(mut w)) = (self.stdin.clone(), child.stdin.take()) {
                    // EPIPE here just means the stage stopped reading early, as in a shell.
                    stdin_writer = Some(thread::spawn(move || {
                        let _ = w.write_all(&bytes);
                    }));
                }
            }
            err_readers.push(reader(child.stderr.take().expect("stderr piped")));
            if i + 1 < n {
                prev_stdout = Some(Stdio::from(child.stdout.take().expect("stdout piped")));
            }
            let mut full = vec![program];
            full.extend(stage[1..].iter().cloned());
            argvs.push(full);
            children.push(child);
        }
        let out_reader = reader(children[n - 1].stdout.take().expect("stdout piped"));

        let deadline = Instant::now() + self.timeout;
        let mut statuses: Vec<Option<ExitStatus>> = vec![None; n];
        let mut timed_out = false;
        while statuses.iter().any(Option::is_none) {
            for (i, ch) in children.iter_mut().enumerate() {
                if statuses[i].is_none() {
                    statuses[i] = ch.try_wait().unwrap_or_else(|e| panic!("wait for stage {i}: {e}"));
                }
            }
            if statuses.iter().all(Option::is_some) {
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                for (i, ch) in children.iter_mut().enumerate() {
                    if statuses[i].is_none() {
                        let _ = ch.kill();
                        statuses[i] = Some(ch.wait().unwrap_or_else(|e| panic!("wait for stage {i}: {e}")));
                    }
                }
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if let Some(w) = stdin_writer {
            let _ = w.join();
        }
        PipelineResult {
            argv: argvs,
            statuses: statuses.into_iter().map(|s| s.expect("all stages waited for")).collect(),
            stderrs: err_readers.into_iter().map(|r| r.join().expect("stderr reader")).collect(),
            stdout: out_reader.join().expect("stdout reader"),
            timed_out,
        }
    }
}

fn quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.into_owned()
    } else {
        format!("{:?}", a)
    }
}

fn status_text(s: &ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{s}"),
    }
}

impl PipelineResult {
    /// True when every stage exited 0 and nothing timed out.
    pub fn ok(&self) -> bool {
        !self.timed_out && self.statuses.iter().all(ExitStatus::success)
    }

    /// Panics, showing every stage's command, status and stderr, unless [`Self::ok`].
    pub fn assert_ok(&self) -> &Self {
        if !self.ok() {
            panic!("pipeline failed:\n{}", self.report());
        }
        self
    }

    /// Exit codes per stage, `128 + signal` for a stage killed by a signal (as a shell shows
    /// it: a stage killed by SIGPIPE gives 141).
    pub fn codes(&self) -> Vec<i32> {
        self.statuses.iter().map(|s| s.code().or_else(|| s.signal().map(|g| 128 + g)).unwrap_or(-1)).collect()
    }

    /// The last stage's stdout as UTF-8 (panics if it is not).
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not UTF-8: {e}\n{}", self.report()))
    }

    /// Stage `i`'s stderr, lossily decoded.
    pub fn stderr_str(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.stderrs[i]).into_owned()
    }

    /// The last stage's stdout parsed as JSON lines (empty lines skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
            .collect()
    }

    /// Every stage's command line, status and stderr, then the start of stdout.
    pub fn report(&self) -> String {
        let mut s = String::new();
        if self.timed_out {
            s.push_str("TIMED OUT (remaining stages killed)\n");
        }
        for (i, a) in self.argv.iter().enumerate() {
            let cmd: Vec<String> = a.iter().map(|x| quote(x)).collect();
            s.push_str(&format!(
                "stage {i}: {}\n  status: {}\n",
                cmd.join(" "),
                status_text(&self.statuses[i])
            ));
            let err = String::from_utf8_lossy(&self.stderrs[i]);
            if err.is_empty() {
                s.push_str("  stderr: (empty)\n");
            } else {
                s.push_str("  stderr:\n");
                for line in err.lines() {
                    s.push_str(&format!("    {line}\n"));
                }
            }
        }
        let head = &self.stdout[..self.stdout.len().min(2000)];
        s.push_str(&format!("stdout ({} bytes): {}\n", self.stdout.len(), String::from_utf8_lossy(head)));
        s
    }
}

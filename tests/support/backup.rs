//! Driving our own tools on a repository: `init-repo`, the backup pipeline
//! `chunk | pack | push --json` and the restore pipeline `walk | fetch-pack | unpack | verify`.
//!
//! Every helper takes a [`Restic`] for its repository path and password file, so the same
//! repository can be handed to the real restic in between.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;

use super::{argv, Pipeline, PipelineResult, Restic};

/// Cheap scrypt parameters for `init-repo` in tests (restic opens such keys all the same).
pub const TEST_SCRYPT: (&str, &str) = ("SLUICE_TEST_SCRYPT", "1024,8,1");

/// `-r REPO --password-file FILE` for `r`.
pub fn repo_flags(r: &Restic) -> Vec<OsString> {
    super::sluice::repo_args(r)
}

/// `tool -r REPO --password-file FILE extra…` as an argv.
pub fn tool(name: &str, r: &Restic, extra: &[&OsStr]) -> Vec<OsString> {
    let mut a = argv([name]);
    if super::sluice::keyless(name) {
        a.extend(argv([OsStr::new("-r"), r.repo.as_os_str()]));
    } else {
        a.extend(repo_flags(r));
    }
    a.extend(extra.iter().map(|s| s.to_os_string()));
    a
}

/// Runs `init-repo --repository-version V` for `r` with cheap key derivation; panics unless
/// it succeeds.
pub fn init_repo(r: &Restic, version: u32) {
    let v = version.to_string();
    let res = Pipeline::new()
        .stage(tool("init-repo", r, &[OsStr::new("--repository-version"), OsStr::new(&v)]))
        .env(TEST_SCRYPT.0, TEST_SCRYPT.1)
        .run();
    res.assert_ok();
}

/// One run of `chunk [chunk_args] PATHS | pack [pack_args] | push --json`.
#[derive(Clone, Debug, Default)]
pub struct Backup {
    /// The paths given to chunk, as typed (relative ones resolve against `dir`).
    pub paths: Vec<OsString>,
    /// The working directory of every stage (default: the test's).
    pub dir: Option<std::path::PathBuf>,
    /// Extra chunk flags.
    pub chunk: Vec<OsString>,
    /// Extra pack flags.
    pub pack: Vec<OsString>,
}

impl Backup {
    /// A backup of `paths` with default flags.
    pub fn of<P: AsRef<OsStr>>(paths: &[P]) -> Backup {
        Backup { paths: paths.iter().map(|p| p.as_ref().to_os_string()).collect(), ..Backup::default() }
    }

    /// Runs every stage in `dir`.
    pub fn in_dir(mut self, dir: &Path) -> Backup {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Adds chunk flags.
    pub fn chunk_args(mut self, a: &[&str]) -> Backup {
        self.chunk.extend(a.iter().map(OsString::from));
        self
    }

    /// Adds pack flags.
    pub fn pack_args(mut self, a: &[&str]) -> Backup {
        self.pack.extend(a.iter().map(OsString::from));
        self
    }

    /// The three stages' argvs.
    pub fn stages(&self, r: &Restic) -> Vec<Vec<OsString>> {
        let mut chunk = tool("chunk", r, &[]);
        chunk.extend(self.chunk.iter().cloned());
        chunk.push("--".into());
        chunk.extend(self.paths.iter().cloned());
        let mut pack = tool("pack", r, &[]);
        pack.extend(self.pack.iter().cloned());
        let push = tool("push", r, &[OsStr::new("--json")]);
        vec![chunk, pack, push]
    }

    /// Runs the pipeline and returns what happened, whatever the exit statuses.
    pub fn run_raw(&self, r: &Restic) -> PipelineResult {
        let mut p = Pipeline::new();
        for s in self.stages(r) {
            p = p.stage(s);
        }
        if let Some(d) = &self.dir {
            p = p.current_dir(d);
        }
        p.run()
    }

    /// Runs the pipeline, asserts every stage exited 0, and returns push's JSON summary.
    pub fn run(&self, r: &Restic) -> Value {
        let res = self.run_raw(r);
        res.assert_ok();
        summary_of(&res)
    }
}

/// The `summary` message push printed with `--json` (panics, with the report, if none).
pub fn summary_of(res: &PipelineResult) -> Value {
    let lines = res.json_lines();
    let s = lines
        .into_iter()
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary message on push's stdout:\n{}", res.report()));
    assert!(s["snapshot_id"].as_str().is_some_and(|id| id.len() >= 8), "summary without snapshot_id: {s}");
    s
}

/// A counter of a summary, as u64 (panics if missing).
pub fn count(summary: &Value, field: &str) -> u64 {
    summary[field].as_u64().unwrap_or_else(|| panic!("summary has no counter {field:?}: {summary}"))
}

/// `walk SNAPSHOT | fetch-pack | unpack --target DIR | verify --target DIR`, asserting that
/// every stage exits 0. `snapshot` may carry a `:SUBPATH`.
pub fn restore(r: &Restic, snapshot: &str, target: &Path) -> PipelineResult {
    let res = pipeline_restore(r, snapshot, target);
    res.assert_ok();
    res
}

/// The restore pipeline, whatever its outcome.
pub fn pipeline_restore(r: &Restic, snapshot: &str, target: &Path) -> PipelineResult {
    Pipeline::new()
        .stage(tool("walk", r, &[OsStr::new(snapshot)]))
        .stage(argv([OsStr::new("fetch-pack"), OsStr::new("-r"), r.repo.as_os_str()]))
        .stage(tool("unpack", r, &[OsStr::new("--target"), target.as_os_str()]))
        .stage(argv([OsStr::new("verify"), OsStr::new("--target"), target.as_os_str()]))
        .run()
}

/// Every file under `repo/{data,index,snapshots,keys}` whose SHA-256 is not its name, and
/// every file there whose name is not an id (a temporary left behind). Empty when clean.
pub fn repo_files_not_named_by_hash(repo: &Path) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut bad = Vec::new();
    for sub in ["data", "index", "snapshots", "keys"] {
        let d = repo.join(sub);
        if !d.exists() {
            continue;
        }
        for e in walkdir::WalkDir::new(&d) {
            let e = e.unwrap_or_else(|e| panic!("walking {d:?}: {e}"));
            if !e.file_type().is_file() {
                continue;
            }
            let name = e.file_name().as_bytes();
            let is_id =
                name.len() == 64 && name.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !is_id {
                bad.push(format!("{}: not an id name (left-over temporary?)", e.path().display()));
                continue;
            }
            let content = std::fs::read(e.path()).unwrap_or_else(|err| panic!("read {:?}: {err}", e.path()));
            let h = hex::encode(Sha256::digest(&content));
            if h.as_bytes() != name {
                bad.push(format!("{}: {} bytes hash to {h}", e.path().display(), content.len()));
            }
        }
    }
    bad
}

/// Number of files (any name) in `repo/sub`, recursively.
pub fn files_in(repo: &Path, sub: &str) -> usize {
    let d = repo.join(sub);
    if !d.exists() {
        return 0;
    }
    walkdir::WalkDir::new(&d).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

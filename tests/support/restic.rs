//! Driving the real `restic` binary (Debian's 0.14.0 in CI) as the reference implementation.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The password of every test repository (also written to [`Restic::password_file`]).
pub const PASSWORD: &str = "sluice test password";

/// The restic executable: `$SLUICE_TEST_RESTIC` if set, otherwise `restic` from `PATH`.
pub fn restic_bin() -> PathBuf {
    std::env::var_os("SLUICE_TEST_RESTIC").map(PathBuf::from).unwrap_or_else(|| "restic".into())
}

/// A restic repository on the local disk, plus the password file and cache dir to use it.
#[derive(Clone, Debug)]
pub struct Restic {
    /// The repository directory (`<dir>/repo`); pass it to our tools as `--repo`.
    pub repo: PathBuf,
    /// A file holding [`PASSWORD`]; pass it to our tools as `--password-file`.
    pub password_file: PathBuf,
    /// restic's cache directory, private to this repository.
    pub cache_dir: PathBuf,
}

/// The path, inside a snapshot made by [`Restic::backup`], of the backed-up directory `src`:
/// restic roots the snapshot tree at `/`, so this is `src`'s absolute path without its leading
/// slash. Restoring that snapshot to `T` recreates `src` at `T.join(snapshot_subpath(src))`.
pub fn snapshot_subpath(src: &Path) -> String {
    let abs = absolute(src);
    let s = abs.to_str().unwrap_or_else(|| panic!("test source path {abs:?} is not UTF-8"));
    s.trim_start_matches('/').to_string()
}

/// Where [`Restic::restore`] of a [`Restic::backup`] snapshot to `target` puts `src`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(snapshot_subpath(src))
}

fn absolute(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {p:?}: {e}"))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&format!("{:?}", a));
    }
    s
}

fn check(cmd: &Command, out: Output) -> Output {
    if !out.status.success() {
        panic!(
            "`{}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

impl Restic {
    /// Sets up (without `init`) a repository in `dir/repo`, writing `dir/password` and
    /// using `dir/cache`. `dir` is created if missing; the caller keeps it alive (inside a
    /// `TempDir`). All three paths are absolute, so commands may run in any directory.
    pub fn new(dir: &Path) -> Restic {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
        let dir = absolute(dir);
        let password_file = dir.join("password");
        fs::write(&password_file, format!("{PASSWORD}\n"))
            .unwrap_or_else(|e| panic!("write {password_file:?}: {e}"));
        let cache_dir = dir.join("cache");
        fs::create_dir_all(&cache_dir).unwrap_or_else(|e| panic!("mkdir {cache_dir:?}: {e}"));
        Restic { repo: dir.join("repo"), password_file, cache_dir }
    }

    /// A `restic -r <repo>` command with only this repository's password file and cache in
    /// its environment (any `RESTIC_*` variables of the caller are removed).
    pub fn command(&self) -> Command {
        let mut c = Command::new(restic_bin());
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"RESTIC_") {
                c.env_remove(k);
            }
        }
        c.env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env("RESTIC_CACHE_DIR", &self.cache_dir)
            .arg("-r")
            .arg(&self.repo);
        c
    }

    /// Runs restic with `args` and returns its output whatever the exit status.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut c = self.command();
        c.args(args);
        c.output().unwrap_or_else(|e| panic!("cannot run `{}` (is restic installed?): {e}", describe(&c)))
    }

    /// Runs restic with `args`, panicking with its stdout and stderr unless it exits 0.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut c = self.command();
        c.args(args);
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{}` (is restic installed?): {e}", describe(&c)));
        check(&c, out)
    }

    /// `restic init --repository-version <version> <extra…>`; `version` is 1 or 2.
    pub fn init(&self, version: u32, extra: &[&str]) {
        let mut args: Vec<OsString> =
            vec!["init".into(), "--repository-version".into(), version.to_string().into()];
        args.extend(extra.iter().map(OsString::from));
        self.run(&args);
    }

    /// `restic backup --json <extra…> <paths…>` with each path made absolute (so the snapshot
    /// holds it under its full path, see [`snapshot_subpath`]). Returns the full snapshot ID.
    pub fn backup<P: AsRef<Path>>(&self, paths: &[P], extra: &[&str]) -> String {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        args.extend(extra.iter().map(OsString::from));
        args.extend(paths.iter().map(|p| absolute(p.as_ref()).into_os_string()));
        self.backup_with(&args, None)
    }

    /// `cd src && restic backup --json <extra…> .`: the snapshot's root tree holds the entries
    /// of `src` directly (restoring it to `T` makes `T` a copy of `src`, except that `T`'s own
    /// metadata is not restored). Returns the full snapshot ID.
    pub fn backup_dir_contents(&self, src: &Path, extra: &[&str]) -> String {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        args.extend(extra.iter().map(OsString::from));
        args.push(".".into());
        self.backup_with(&args, Some(src))
    }

    fn backup_with(&self, args: &[OsString], dir: Option<&Path>) -> String {
        let mut c = self.command();
        c.args(args);
        if let Some(d) = dir {
            c.current_dir(d);
        }
        let out = c.output().unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(&c)));
        let out = check(&c, out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .and_then(|v| v["snapshot_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                panic!("`{}`: no summary with snapshot_id in output:\n{stdout}", describe(&c))
            });
        self.full_id(&id)
    }

    /// Expands a (possibly short) snapshot ID, as restic 0.14 prints in its backup summary,
    /// to the full 64-hex-digit ID.
    pub fn full_id(&self, id: &str) -> String {
        if id.len() == 64 {
            return id.to_string();
        }
        let ids: Vec<String> = self
            .snapshots_json()
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .filter(|s| s.starts_with(id))
            .collect();
        assert_eq!(ids.len(), 1, "snapshot id prefix {id} matches {ids:?}");
        ids[0].clone()
    }

    /// `restic restore <snapshot> --target <target> <extra…>`.
    ///
    /// `snapshot` is an ID or `latest`, optionally followed by `:<subpath>` (a path inside the
    /// snapshot without leading slash and without glob characters). restic 0.14 has no
    /// `ID:subpath` syntax, so that case restores `--include /<subpath>` into a scratch dir
    /// next to `target` and renames the subpath's directory to `target` (which must not
    /// exist or be empty): the result is `target` = that directory, metadata included.
    pub fn restore(&self, snapshot: &str, target: &Path, extra: &[&str]) {
        let Some((snap, sub)) = snapshot.split_once(':') else {
            let mut args: Vec<OsString> =
                vec!["restore".into(), snapshot.into(), "--target".into(), target.into()];
            args.extend(extra.iter().map(OsString::from));
            self.run(&args);
            return;
        };
        let sub = sub.trim_matches('/');
        let parent =
            absolute(target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
        let scratch = tempfile::Builder::new()
            .prefix(".restic-restore-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("scratch dir in {parent:?}: {e}"));
        let mut args: Vec<OsString> = vec![
            "restore".into(),
            snap.into(),
            "--target".into(),
            scratch.path().into(),
            "--include".into(),
            format!("/{sub}").into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        self.run(&args);
        let from = scratch.path().join(sub);
        fs::rename(&from, target).unwrap_or_else(|e| panic!("rename {from:?} to {target:?}: {e}"));
    }

    /// `restic check --read-data`, panicking unless the repository is fully intact.
    pub fn check_read_data(&self) {
        self.run(&["check", "--read-data"]);
    }

    /// `restic snapshots --json` as parsed JSON (one object per snapshot, with `id`).
    pub fn snapshots_json(&self) -> Vec<Value> {
        let out = self.run(&["snapshots", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("snapshots --json: {e}"))
    }

    /// `restic cat config` as parsed JSON (`version`, `id`, `chunker_polynomial`).
    pub fn config_json(&self) -> Value {
        let out = self.run(&["cat", "config"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("cat config: {e}"))
    }

    /// Paths of all pack files under `repo/data`, sorted.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(self.repo.join("data"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        v.sort();
        v
    }
}

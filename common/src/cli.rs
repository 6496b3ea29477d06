//! What every tool shares on its command line: the repository and password options (restic's
//! flags and environment), and turning a result into a message and an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;

use crate::backend::{self, Backend, FileType};
use crate::error::{Error, IoContext, Result};
use crate::repo::Repo;
use crate::snapshot::Snapshot;
use crate::Id;

/// Repository options, flattened into every tool that reads or writes a repository.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    #[command(flatten)]
    pub location: RepoLocation,

    /// Read the password from FILE (surrounding white space is trimmed)
    #[arg(short = 'p', long, env = "RESTIC_PASSWORD_FILE", value_name = "FILE", value_parser = empty_or_path())]
    pub password_file: Option<PathBuf>,

    /// Run COMMAND (with sh -c) and use its output as the password
    #[arg(long, env = "RESTIC_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub password_command: Option<String>,

    /// Try the key file with this id (or id prefix) first
    #[arg(long, env = "RESTIC_KEY_HINT", value_name = "KEY")]
    pub key_hint: Option<String>,
}

/// Where the repository is and how to reach it, and nothing else: for the stages that move
/// ciphertext only (`fetch-pack`, `push`) and so never take a password.
#[derive(clap::Args, Clone, Default)]
pub struct RepoLocation {
    /// Repository: /path, local:/path, rest:http(s)://[user:pass@]host:port/path/,
    /// s3:http(s)://host[:port]/bucket[/prefix]
    #[arg(short = 'r', long = "repo", env = "RESTIC_REPOSITORY", value_name = "REPOSITORY")]
    pub repo: Option<String>,

    /// Read the repository from FILE (surrounding white space is trimmed)
    #[arg(long, env = "RESTIC_REPOSITORY_FILE", value_name = "FILE", value_parser = empty_or_path())]
    pub repository_file: Option<PathBuf>,

    /// Trust the CA certificates in FILE (PEM) instead of the built-in roots; repeatable
    #[arg(long, env = "RESTIC_CACERT", value_name = "FILE", value_delimiter = ',', value_parser = empty_or_path())]
    pub cacert: Vec<PathBuf>,

    /// Do not verify the server's TLS certificate (only for testing)
    #[arg(long)]
    pub insecure_tls: bool,

    /// Set a backend option (rest.connections=N, s3.region=R, s3.bucket-lookup=path|dns); repeatable
    #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
    pub option: Vec<String>,

    /// The repository string read from `repository_file`, once: the file may be a pipe
    /// (`--repository-file <(pass show repo)`) that has nothing left the second time.
    #[arg(skip)]
    from_file: std::sync::OnceLock<String>,
}

/// The repository string may hold a password (`rest:https://user:pw@host/`): `Debug` shows it
/// redacted, as every message does.
impl std::fmt::Debug for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLocation")
            .field("repo", &self.repo.as_deref().map(backend::http::redact))
            .field("repository_file", &self.repository_file)
            .field("cacert", &self.cacert)
            .field("insecure_tls", &self.insecure_tls)
            .field("option", &self.option)
            .finish()
    }
}

impl RepoLocation {
    /// The repository string, or a usage error naming how to give one. As in restic, it
    /// comes from `-r` or from a file (`--repository-file`, `RESTIC_REPOSITORY_FILE`: its
    /// content with surrounding white space trimmed), never from both.
    pub fn location(&self) -> Result<std::borrow::Cow<'_, str>> {
        if let Some(r) = self.from_file.get() {
            return Ok(r.as_str().into());
        }
        match (self.repo.as_deref().filter(|r| !r.is_empty()), given(&self.repository_file)) {
            (Some(_), Some(_)) => Err(Error::Usage(
                "-r/--repo (RESTIC_REPOSITORY) and --repository-file (RESTIC_REPOSITORY_FILE) cannot be combined"
                    .into(),
            )),
            (Some(r), None) => Ok(r.into()),
            (None, Some(f)) => {
                let raw = std::fs::read(f).ctx(format!("repository file {}", f.display()))?;
                match String::from_utf8(trim(raw)) {
                    Ok(r) if !r.is_empty() => Ok(self.from_file.get_or_init(|| r).as_str().into()),
                    Ok(_) => Err(Error::Usage(format!("repository file {} is empty", f.display()))),
                    Err(_) => Err(Error::Usage(format!("repository file {} is not UTF-8", f.display()))),
                }
            }
            (None, None) => Err(Error::Usage(
                "no repository given: use -r/--repo or --repository-file, or set RESTIC_REPOSITORY or RESTIC_REPOSITORY_FILE"
                    .into(),
            )),
        }
    }

    /// Another repository (`init-repo --from-repo`) reached with the same TLS flags and
    /// options: `repo` in place of this one's `-r` and repository file.
    pub fn elsewhere(&self, repo: Option<String>) -> RepoLocation {
        RepoLocation {
            repo,
            repository_file: None,
            cacert: self.cacert.clone(),
            insecure_tls: self.insecure_tls,
            option: self.option.clone(),
            from_file: Default::default(),
        }
    }

    /// The backend, without opening the repository.
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        backend::open(&self.location()?, &self.options()?)
    }

    /// The backend of an existing repository (see [`crate::repo::require`]), for tools that
    /// move ciphertext and never open the repository.
    pub fn existing(&self) -> Result<Box<dyn Backend>> {
        let backend = self.backend()?;
        crate::repo::require(backend.as_ref())?;
        Ok(backend)
    }

    /// The TLS flags and `-o` options, checked for shape.
    pub fn options(&self) -> Result<backend::Options> {
        let mut extended = Vec::new();
        for o in &self.option {
            match o.split_once('=') {
                Some((k, v)) if !k.is_empty() => extended.push((k.to_string(), v.to_string())),
                _ => return Err(Error::Usage(format!("-o {o}: expected KEY=VALUE"))),
            }
        }
        let cacert = self.cacert.iter().filter(|p| !p.as_os_str().is_empty()).cloned().collect();
        Ok(backend::Options { cacert, insecure_tls: self.insecure_tls, extended })
    }
}

/// A path that may be empty. restic takes an empty `RESTIC_PASSWORD_FILE` or `RESTIC_CACERT`
/// (scripts and unit files export them so) for one that is not set; clap's own path parser
/// would refuse it as a missing value.
fn empty_or_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// `Some` only for a value that is not empty: an empty option or variable is an unset one.
fn given<T: AsRef<std::ffi::OsStr>>(v: &Option<T>) -> Option<&T> {
    v.as_ref().filter(|v| !v.as_ref().is_empty())
}

impl RepoArgs {
    /// The backend, without opening the repository.
    pub fn backend(&self) -> Result<Box<dyn Backend>> {
        self.location.backend()
    }

    /// The password, from (in restic's order) the password command, the password file,
    /// `RESTIC_PASSWORD`, or a prompt on the terminal.
    pub fn password(&self) -> Result<Vec<u8>> {
        self.password_for(false)
    }

    /// The password for a new repository, as [`RepoArgs::password`] finds it; typed on the
    /// terminal it is asked twice, as `restic init` asks, so that a typing error does not
    /// make a repository that no password opens.
    pub fn new_password(&self) -> Result<Vec<u8>> {
        self.password_for(true)
    }

    fn password_for(&self, new: bool) -> Result<Vec<u8>> {
        let pw = if let Some(cmd) = given(&self.password_command) {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .ctx("password command")?;
            if !out.status.success() {
                return Err(Error::Usage(format!("password command failed: {}", out.status)));
            }
            trim(out.stdout)
        } else if let Some(f) = given(&self.password_file) {
            trim(std::fs::read(f).ctx(format!("password file {}", f.display()))?)
        } else if let Some(p) = std::env::var_os("RESTIC_PASSWORD").filter(|p| !p.is_empty()) {
            use std::os::unix::ffi::OsStringExt;
            p.into_vec()
        } else if std::io::stderr().is_terminal() && new {
            let pw = prompt_password("enter password for new repository")?;
            if prompt_password("enter password again")? != pw {
                return Err(Error::Refused("passwords do not match; nothing created".into()));
            }
            pw
        } else if std::io::stderr().is_terminal() {
            prompt_password("enter password for repository")?
        } else {
            return Err(Error::Usage(
                "no password: set RESTIC_PASSWORD_FILE, RESTIC_PASSWORD_COMMAND or RESTIC_PASSWORD".into(),
            ));
        };
        if pw.is_empty() {
            return Err(Error::Usage("an empty password is not allowed".into()));
        }
        Ok(pw)
    }

    /// Opens the repository with the password.
    pub fn open(&self) -> Result<Repo> {
        self.open_early(&[])
    }

    /// Opens the repository, reading the files of the kinds in `early` while the key is
    /// derived (see [`Repo::open_early`]).
    pub fn open_early(&self, early: &[FileType]) -> Result<Repo> {
        Repo::open_early(
            self.backend()?,
            given(&self.key_hint).map(String::as_str),
            || self.password(),
            early,
        )
    }
}

/// When a progress bar is drawn (see [`crate::progress`]): flattened into the stages that
/// draw one (`unpack`, `push`, `verify`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProgressArgs {
    /// Draw progress on stderr even when this stage would not (stderr not a terminal, or
    /// stdout a pipe to another stage); on a non-terminal, one plain line per update
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,

    /// Never draw progress
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
}

/// restic's machine-readable messages (`--json`): flattened into the stages that report on a
/// whole restore or backup (`unpack`, `push`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JsonArgs {
    /// Print restic's JSON messages (status, summary) on stdout, in place of any records;
    /// error and exit_error messages go to stderr, as restic writes them
    #[arg(long)]
    pub json: bool,

    /// Write restic's JSON messages (status, summary, error, exit_error) to FILE and keep
    /// stdout for records
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub json_file: Option<PathBuf>,
}

/// restic's snapshot selection flags, used with `latest` and for listing.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of this host; repeatable
    #[arg(long = "host", short = 'H', value_name = "HOST")]
    pub host: Vec<String>,

    /// Only snapshots with this tag (a,b means both); repeatable, any of them
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tag: Vec<String>,

    /// Only snapshots of exactly this path; repeatable, all of them
    #[arg(long = "path", value_name = "PATH")]
    pub path: Vec<String>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes, with restic's rules: any of the hosts; any of the tag
    /// lists, each list needing all its comma-separated tags; all of the paths.
    pub fn keep(&self, s: &Snapshot) -> bool {
        let host_ok = self.host.is_empty() || self.host.contains(&s.hostname);
        let tag_ok = self.tag.is_empty() || self.tag.iter().any(|list| has_tags(s, list));
        let path_ok = self.path.iter().all(|p| {
            let p = absolute_path(p);
            s.paths.iter().any(|x| x.trim_end_matches('/') == p)
        });
        host_ok && tag_ok && path_ok
    }

    /// The snapshot `spec` names among `all` (sorted as [`Repo::snapshots`] sorts them):
    /// `latest` is the newest that passes the filter; an id or id prefix is looked up among
    /// all of them, as restic 0.14 looks it up (`restore $ID --host box` restores $ID
    /// whatever its host; here the filter made the id "not found" when it did not match).
    pub fn pick<'a>(&self, repo: &Repo, spec: &str, all: &'a [(Id, Snapshot)]) -> Result<&'a (Id, Snapshot)> {
        if all.is_empty() {
            return Err(self.none_left(0));
        }
        if spec != "latest" {
            return repo.resolve_snapshot(spec, all);
        }
        all.iter().rev().find(|(_, s)| self.keep(s)).ok_or_else(|| self.none_left(all.len()))
    }

    /// Says on stderr, as restic does, that the filter is not applied to `specs` that are
    /// snapshot ids, when there is a filter and such a spec.
    pub fn warn_if_ignored<S: AsRef<str>>(&self, tool: &str, specs: &[S]) {
        if !self.is_empty() && specs.iter().any(|s| s.as_ref() != "latest") {
            warn(tool, "--host, --tag and --path are ignored for a snapshot id (they select latest), as restic ignores them");
        }
    }

    /// Whether any filter flag was given.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.tag.is_empty() && self.path.is_empty()
    }

    /// The error for a snapshot to pick when none is left to pick from: says whether the
    /// repository has none or the filter left none out of `total`.
    pub fn none_left(&self, total: usize) -> Error {
        if total == 0 || self.is_empty() {
            return Error::Usage("the repository has no snapshots".into());
        }
        let mut flags = Vec::new();
        flags.extend(self.host.iter().map(|h| format!("--host {h}")));
        flags.extend(self.tag.iter().map(|t| format!("--tag {t}")));
        flags.extend(self.path.iter().map(|p| format!("--path {p}")));
        let s = if total == 1 { "" } else { "s" };
        Error::Usage(format!(
            "no snapshot matches {} (the repository has {total} snapshot{s})",
            flags.join(" ")
        ))
    }
}

/// A `--path` as snapshots hold paths: absolute (a relative one taken from the current
/// directory) and cleaned, as restic 0.14 takes it for `latest` (`cd /srv && restic restore
/// latest --path www` finds the snapshots of /srv/www).
fn absolute_path(p: &str) -> String {
    let joined = match std::env::current_dir() {
        Ok(cwd) if !p.starts_with('/') => format!("{}/{p}", cwd.to_string_lossy()),
        _ => p.to_string(),
    };
    crate::filter::clean(&joined)
}

/// Whether `s` has every tag of the comma-separated `list` (spaces around each trimmed), by
/// restic's rule: an empty tag stands for "no tags at all", so `--tag ''` selects the
/// snapshots without tags. As in restic, the tags are taken in order and an empty one
/// settles it for an untagged snapshot at once (`,x` selects it, `x,` does not).
fn has_tags(s: &Snapshot, list: &str) -> bool {
    for tag in list.split(',').map(str::trim) {
        if tag.is_empty() && s.tags.is_empty() {
            return true;
        }
        if !s.tags.iter().any(|t| t == tag) {
            return false;
        }
    }
    true
}

/// Asks for the password on the terminal. chunk and pack (walk and unpack) both need it and
/// start together: each holds a lock on the terminal while it asks, so that they ask one
/// after the other. Asked at once, both read the same typed line; each got part of it and
/// refused the right password. The prompt names the tool, so the second question is not
/// taken for a repeat of the first.
fn prompt_password(question: &str) -> Result<Vec<u8>> {
    let tty = std::fs::File::open("/dev/tty").ctx("password prompt: /dev/tty")?;
    tty.lock().ctx("password prompt: lock /dev/tty")?;
    let tool = std::env::args_os()
        .next()
        .map(|a| PathBuf::from(a).file_name().unwrap_or_default().to_string_lossy().into_owned())
        .unwrap_or_default();
    let pw = rpassword::prompt_password(format!("{tool}: {question}: ")).ctx("password prompt");
    // The lock goes with the file.
    drop(tty);
    Ok(pw?.into_bytes())
}

/// restic trims surrounding white space from password files and commands.
fn trim(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
        v.pop();
    }
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    v.drain(..start);
    v
}

/// Writes one line to stderr, ignoring failure (there is nowhere left to report it).
pub fn warn(tool: &str, msg: impl std::fmt::Display) {
    stderr_line(&format!("{tool}: {}", one_line(&msg.to_string())));
}

/// Writes `text` and a newline to stderr in one `write`: the stages of a pipeline share one
/// stderr, and a line written in pieces (as `writeln!` writes) could be cut by another
/// stage's line, as Ctrl-C's "interrupted" lines of three stages were.
pub fn stderr_line(text: &str) {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Escapes control characters (a newline in a file name, say) so that every message stays
/// one line, as scripts reading stderr expect.
fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(char::is_control) {
        return msg.into();
    }
    msg.chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect::<String>()
        .into()
}

/// Parses the command line. A usage error is one line, `tool: what is wrong (see tool
/// --help)`, and exit 2, like every other error; clap's own layout spreads it over several
/// lines. `--help` and `--version` print as clap prints them, but a failed write is not
/// success.
pub fn parse<T: clap::Parser>(tool: &str) -> T {
    use clap::error::ErrorKind;
    let e = match T::try_parse() {
        Ok(args) => return args,
        Err(e) => e,
    };
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // Help in place of a usage error: on stderr, status 2, as clap has it.
        e.exit();
    }
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        // clap's own printing ignores a failed write and exits 0: help that reached no one
        // must not pass for success (a closed stdout is 1, a reader gone a quiet 141).
        let text = if std::io::stdout().is_terminal() {
            e.render().ansi().to_string()
        } else {
            e.render().to_string()
        };
        let code = match crate::sys::stdout_file().write_all(text.as_bytes()) {
            Ok(()) => crate::error::exit::OK,
            Err(e) => match Error::io("stdout", e) {
                Error::BrokenPipe => crate::error::exit::BROKEN_PIPE,
                e => {
                    warn(tool, &e);
                    e.exit_code()
                }
            },
        };
        std::process::exit(code);
    }
    let text = e.render().to_string();
    let what: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let what = what.join(" ");
    warn(tool, format!("{} (see {tool} --help)", what.strip_prefix("error: ").unwrap_or(&what)));
    std::process::exit(crate::error::exit::USAGE)
}

/// Runs a tool's body and exits: 0 on success; otherwise one line `tool: message` on stderr
/// and the error's exit code. A closed stdout exits 141 without a message.
pub fn run(tool: &'static str, body: impl FnOnce() -> Result<()>) -> ! {
    crate::signal::install(tool);
    let code = match body() {
        Ok(()) => 0,
        // The same Ctrl-C ended the stage before this one: say what happened, not what it
        // looked like from here, in the line the signal's thread would have written.
        Err(_) if crate::signal::received().is_some() => {
            crate::signal::end(tool, crate::signal::received().unwrap_or(0))
        }
        Err(Error::BrokenPipe) => crate::error::exit::BROKEN_PIPE,
        Err(e) => {
            let code = e.exit_code();
            crate::progress::exit_error(tool, code, &e);
            code
        }
    };
    std::process::exit(code)
}

/// Refuses a terminal on stdout, for output that is noise on a screen: `what` says what it
/// is and where it should go, after "stdout is a terminal: ".
pub fn refuse_terminal_stdout(what: impl std::fmt::Display) -> Result<()> {
    if std::io::stdout().is_terminal() {
        return Err(Error::Usage(format!("stdout is a terminal: {what}")));
    }
    Ok(())
}

/// [`refuse_terminal_stdout`] for the stages whose records carry file data or ciphertext in
/// base64 (chunk, pack, fetch-pack): on a screen they are megabytes of noise nobody reads
/// (gzip refuses the same). `next` names the stage they are for.
pub fn refuse_terminal_records(next: &str) -> Result<()> {
    refuse_terminal_stdout(format_args!(
        "these records carry data in base64 for {next}; pipe them on (| {next} …) or redirect them to a file"
    ))
}

/// restic's compression modes (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Auto,
    Off,
    Fastest,
    Better,
    Max,
}

impl Compression {
    /// The zstd level for a repository of format `version`, `None` for no compression.
    /// Format 1 has no compression: only `auto` and `off` are allowed there.
    pub fn level(self, version: u32) -> Result<Option<i32>> {
        Ok(match (version, self) {
            (_, Compression::Off) | (1, Compression::Auto) => None,
            (1, other) => {
                return Err(Error::Usage(format!(
                    "--compression {} needs a format 2 repository (this one is format 1)",
                    format!("{other:?}").to_lowercase()
                )))
            }
            (_, Compression::Auto) => Some(3),
            (_, Compression::Fastest) => Some(1),
            (_, Compression::Better) => Some(7),
            (_, Compression::Max) => Some(19),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_one_line() {
        assert_eq!(one_line("a/b\nc: Permission denied"), "a/b\\nc: Permission denied");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn repository_passwords_stay_out_of_debug() {
        let l = RepoLocation {
            repo: Some("rest:https://me:hunter2@example.org/r/".into()),
            option: vec!["rest.connections=3".into()],
            ..RepoLocation::default()
        };
        let d = format!("{l:?}");
        assert!(!d.contains("hunter2") && d.contains("me:***@example.org"), "{d}");
        assert_eq!(l.options().unwrap().extended, [("rest.connections".to_string(), "3".to_string())]);
        let bad = RepoLocation { option: vec!["nokey".into()], ..RepoLocation::default() };
        assert_eq!(bad.options().unwrap_err().exit_code(), 2);
        let e = backend::open("rest:ftp://me:hunter2@h/", &Default::default()).err().unwrap().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let e = backend::open("s3:https://me:hunter2@h/b", &Default::default()).err().unwrap().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn trims_like_restic() {
        assert_eq!(trim(b"  secret \n".to_vec()), b"secret");
        assert_eq!(trim(b"\n".to_vec()), b"");
    }
}

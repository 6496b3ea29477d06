//! unpack — decrypt blobs and write the files, directories and links they make up.
//!
//! Reads the stream `fetch-pack` writes: `node` records, each file's followed by its `blob`
//! records in content order. Every blob is MAC-checked, decrypted, decompressed and checked
//! against its id before a byte of it is written. A file is written under a fresh hidden
//! partial name (`.NAME.XXXXXXXX.sluice-part`) and renamed to its name only when all of it is
//! there, its metadata is set and its data is on disk; then one `restored` record says so.
//! Directory metadata is applied when the walk leaves the directory, so later writes do not
//! disturb its times. Nothing is created through a symbolic link. A damaged or missing blob,
//! or a conflict with what is in the target, fails that item only (one line, exit 3).
//!
//!     walk latest | fetch-pack | unpack --target DIR | verify --target DIR
//!     fetch-pack --pack 3f9a1c | unpack --list
//!     walk latest:/etc/hosts | fetch-pack | unpack --stdout > hosts
//!     walk latest:/etc | fetch-pack | unpack --tar | tar -t
//!     walk latest:/etc | fetch-pack | unpack --zip > etc.zip

mod decode;
mod dryrun;
mod dump;
mod list;
mod restore;

use std::path::PathBuf;

use clap::Parser;
use common::cli::{self, RepoArgs};
use common::overwrite::Mode;
use common::record::{Header, Reader};
use common::repo::Repo;

/// Decrypt fetched blobs and restore files, or list and check the blobs of one pack.
#[derive(Parser, Debug)]
#[command(name = "unpack", version)]
pub struct Args {
    /// Directory to restore into (created if missing)
    #[arg(short = 't', long, value_name = "DIR", required_unless_present_any = ["list", "stdout", "tar", "zip"])]
    pub target: Option<PathBuf>,

    /// Do not restore: list every blob of the stream with its verdict
    #[arg(long, conflicts_with_all = ["target", "sparse", "resume", "overwrite", "delete", "dry_run", "json", "json_file"])]
    pub list: bool,

    /// Do not restore: write the content of the stream's one file to stdout, in order
    #[arg(long, conflicts_with_all = ["target", "sparse", "resume", "list", "tar", "zip", "json", "json_file", "progress", "overwrite", "delete", "dry_run"])]
    pub stdout: bool,

    /// Do not restore: write the stream's nodes to stdout as a tar archive, in order
    #[arg(long, conflicts_with_all = ["target", "sparse", "resume", "list", "zip", "json", "json_file", "progress", "overwrite", "delete", "dry_run"])]
    pub tar: bool,

    /// Do not restore: write the stream's nodes to stdout as a zip archive (stored, streamed
    /// with data descriptors), in order
    #[arg(long, conflicts_with_all = ["target", "sparse", "resume", "list", "json", "json_file", "progress", "overwrite", "delete", "dry_run"])]
    pub zip: bool,

    /// Leave holes for all-zero blobs instead of writing zeros
    #[arg(long)]
    pub sparse: bool,

    /// Keep files an earlier, interrupted run already restored: a file whose name holds the
    /// right size and content (checked blob by blob) is not written again
    #[arg(long)]
    pub resume: bool,

    /// What to do with files that exist in the target: always, if-changed, if-newer, never
    /// (a file whose content already matches is kept as it is, only its metadata set)
    #[arg(long, value_enum, default_value_t, value_name = "MODE")]
    pub overwrite: Mode,

    /// Remove what the stream's delete records name (walk --target DIR --delete lists what
    /// the target has and the snapshot selection does not); also replace a file, link or
    /// directory of the wrong kind where a node must go
    #[arg(long)]
    pub delete: bool,

    /// Write nothing: one action record per path saying what would be restored, updated,
    /// kept unchanged or deleted
    #[arg(long, conflicts_with_all = ["sparse", "resume"])]
    pub dry_run: bool,

    /// Draw no progress (restic's --quiet; nothing else is printed when all goes well)
    #[arg(short = 'q', long, conflicts_with_all = ["list", "stdout", "tar", "zip"])]
    pub quiet: bool,

    #[command(flatten)]
    pub progress: cli::ProgressArgs,

    #[command(flatten)]
    pub json: cli::JsonArgs,

    #[command(flatten)]
    pub repo: RepoArgs,
}

/// The repository and the input, its header read and checked: a stream walked in this
/// repository and passed through fetch-pack, as every mode but `--dry-run` needs.
fn open_fetched(args: &Args) -> common::error::Result<(Repo, Reader<common::record::StdinFd>, Header)> {
    let repo = args.repo.open()?;
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    header.check_repository(repo.binding, repo.backend.location())?;
    header.check_fetched()?;
    Ok((repo, input, header))
}

fn main() {
    let args: Args = cli::parse("unpack");
    common::sys::reserve_open_files(restore::OPEN_FILES);
    cli::run("unpack", || {
        if args.list {
            list::run(&args)
        } else if args.stdout || args.tar || args.zip {
            dump::run(&args)
        } else if args.dry_run {
            dryrun::run(&args)
        } else {
            restore::run(&args)
        }
    })
}

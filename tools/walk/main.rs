//! walk — turn a snapshot into the records of its nodes.
//!
//! Reads the repository (needs the password: it decrypts trees and the index) and writes one
//! `node` record per selected node, depth first in name order, a directory before its
//! contents. A file's record lists where each of its blobs lives (pack, offset, length), so
//! the next stage, `fetch-pack`, can fetch ciphertext without the key. Before the nodes, a
//! `totals` record says how many nodes, files and bytes follow (a first pass over the same
//! trees, which `--no-totals` skips), so the stage that draws progress knows the whole.
//!
//!     walk latest | fetch-pack | unpack --target DIR | verify --target DIR
//!
//! Given the restore target (`--target`), it looks at what is there first: a file's blobs
//! that the target's file already holds (or that the restore mode keeps) are listed in the
//! record's `in_target`, so `fetch-pack` does not fetch them; with `--delete` it also lists
//! what the target has and the snapshot selection does not.

mod trees;
mod walker;

use std::path::PathBuf;

use clap::Parser;
use common::cli::{self, RepoArgs};
use common::overwrite::Mode;

/// Write the nodes of a snapshot as NDJSON records, with each file's blob locations.
#[derive(Parser, Debug)]
#[command(name = "walk", version)]
pub struct Args {
    /// Snapshot id, id prefix or "latest", optionally with ":PATH" for a subfolder or a
    /// single file
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: String,

    /// Only nodes matching PATTERN (and directories leading to them); repeatable
    #[arg(short = 'i', long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,

    /// Leave out nodes matching PATTERN and everything below them; repeatable
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// As --include, ignoring case; repeatable
    #[arg(long = "iinclude", value_name = "PATTERN")]
    pub iinclude: Vec<String>,

    /// As --exclude, ignoring case; repeatable
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexclude: Vec<String>,

    /// Read --include patterns from FILE, one per line; repeatable
    #[arg(long = "include-file", value_name = "FILE")]
    pub include_file: Vec<PathBuf>,

    /// Read --exclude patterns from FILE, one per line; repeatable
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,

    /// Read --iinclude patterns from FILE, one per line; repeatable
    #[arg(long = "iinclude-file", value_name = "FILE")]
    pub iinclude_file: Vec<PathBuf>,

    /// Read --iexclude patterns from FILE, one per line; repeatable
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,

    /// The directory the stream will be restored into: mark the blobs its files already
    /// hold, so they are not fetched
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: Option<PathBuf>,

    /// Restore mode unpack will use (always, if-changed, if-newer, never): blobs of files it
    /// keeps are not fetched either
    #[arg(long, value_enum, default_value_t, value_name = "MODE", requires = "target")]
    pub overwrite: Mode,

    /// List what the target has and the snapshot selection does not, for unpack --delete
    #[arg(long, requires = "target")]
    pub delete: bool,
    /// Do not count the selection first (no totals record: progress has no length or ETA)
    #[arg(long)]
    pub no_totals: bool,

    #[command(flatten)]
    pub filter: cli::SnapshotFilter,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("walk");
    cli::run("walk", || walker::run(&args))
}

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

mod trees;
mod walker;

use clap::Parser;
use common::cli::{self, RepoArgs};

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

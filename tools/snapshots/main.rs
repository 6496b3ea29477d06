//! snapshots — list the snapshots of a repository.
//!
//! Writes one `snapshot` record per snapshot, oldest first (the fields of
//! `restic snapshots --json`); on a terminal, a table instead. With `--json`, restic's own
//! output: one JSON array, byte for byte as `restic snapshots --json` prints it.
//!
//!     snapshots --host box | jq -r 'select(.type=="snapshot") | .id'

mod list;

use clap::Parser;
use common::cli::{self, RepoArgs, SnapshotFilter};

/// List snapshots as NDJSON records (a table on a terminal).
#[derive(Parser, Debug)]
#[command(name = "snapshots", version)]
pub struct Args {
    /// Only these snapshots (ids, id prefixes, or "latest")
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub filter: SnapshotFilter,

    /// Only the newest N snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,

    /// Print restic's JSON array (as `restic snapshots --json` does) instead of records
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("snapshots");
    cli::run("snapshots", || list::run(&args))
}

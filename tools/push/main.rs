//! push — store what `pack` wrote in the repository.
//!
//! Reads `pack_data`/`pack_header` records (pieces of packs, then each pack's header) and
//! `repo_file` records (lock, index, snapshot), and writes them to the backend in the order
//! they come: packs, then the index files naming them, then the snapshot, which is stored only
//! once the stream's end record has arrived (a cut stream makes no snapshot). Every file appears
//! under its name only when complete and checked against its SHA-256 name; a file already
//! there is left alone, so re-running a stream is harmless. It holds no key and sees only
//! ciphertext, so it can run on another host: `chunk | pack | ssh host push -r /srv/repo`.
//! The lock `pack` made is stored first and removed at the end. Prints a summary like
//! restic's on stderr, and draws the backup's progress there (files and bytes `pack` has
//! processed, of the totals `chunk` found, and bytes added); `--json` prints restic's JSON
//! status and summary messages on stdout.

mod store;

use clap::Parser;
use common::cli::{self, RepoLocation};

/// Write packs, index files and the snapshot from pack's output into the repository.
#[derive(Parser, Debug)]
#[command(name = "push", version)]
pub struct Args {
    #[command(flatten)]
    pub json: cli::JsonArgs,

    #[command(flatten)]
    pub progress: cli::ProgressArgs,

    /// Print no progress and no summary on stderr
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(flatten)]
    pub repo: RepoLocation,
}

fn main() {
    let args: Args = cli::parse("push");
    cli::run("push", || store::run(&args))
}

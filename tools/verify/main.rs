//! verify — check restored files against the blob ids they were made of.
//!
//! Reads `restored` records (from `unpack`) or `node` records (from `walk`) and checks each
//! entry they describe under the target directory: that it is there, of the node's type and
//! mode; a symlink's target; a device's number; a regular file's size and the SHA-256 of each
//! blob-sized range against the blob's id (what `restic restore --verify` checks), after the
//! record's blob list has been checked against the node's own content ids. With `--metadata`,
//! also modification times and (as root) owners. Writes one `verdict` record per regular file
//! and one per other entry that differs; exits 3 when anything differs. On a terminal, as the
//! last stage, it draws its progress on stderr (files and bytes checked, of the `totals`
//! record `walk` sent through the stream).
//!
//!     walk latest | fetch-pack | unpack --target DIR | verify --target DIR

mod check;

use std::path::PathBuf;

use clap::Parser;
use common::cli;

/// Check restored files byte for byte against their blob ids, and every other entry's type,
/// mode and link target.
#[derive(Parser, Debug)]
#[command(name = "verify", version)]
pub struct Args {
    /// The directory the files were restored into
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: PathBuf,

    /// Write a verdict only for files that differ
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Also check modification times (not of directories) and, when run as root, owners
    #[arg(short = 'm', long)]
    pub metadata: bool,

    #[command(flatten)]
    pub progress: cli::ProgressArgs,
}

fn main() {
    let args: Args = cli::parse("verify");
    cli::run("verify", || check::run(&args))
}

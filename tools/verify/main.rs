//! verify — check restored files against the blob ids they were made of.
//!
//! Reads `restored` records (from `unpack`) or `node` records (from `walk`) and, for every
//! regular file, re-reads it from the target directory and checks its size and the SHA-256 of
//! each blob-sized range against the blob's id, as `restic restore --verify` does. Writes one
//! `verdict` record per file; exits 3 when any file differs.
//!
//!     walk latest | fetch-pack | unpack --target DIR | verify --target DIR

mod check;

use std::path::PathBuf;

use clap::Parser;
use common::cli;

/// Check restored files byte for byte against their blob ids.
#[derive(Parser, Debug)]
#[command(name = "verify", version)]
pub struct Args {
    /// The directory the files were restored into
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: PathBuf,

    /// Write a verdict only for files that differ
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

fn main() {
    let args = Args::parse();
    cli::run("verify", || check::run(&args))
}

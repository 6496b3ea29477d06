//! fetch-pack — fetch the encrypted blobs that node records point at.
//!
//! Reads `node` records (from `walk`) on stdin, passes them through unchanged and after each
//! file's record writes one `blob` record per content blob, carrying the blob's ciphertext.
//! It reads only the byte ranges the records name (neighbouring blobs of consecutive files
//! merged into one read, each read bounded), never a whole pack, several reads in flight
//! with the records still written in input order; it needs no password: ciphertext only.
//!
//!     walk latest | fetch-pack | unpack --target DIR
//!     fetch-pack --pack 3f9a1c | unpack --list          # a whole pack, for debugging

mod fetcher;
mod plan;

use clap::Parser;
use common::cli::{self, RepoLocation};

/// Fetch the ciphertext of the blobs that node records point at, or stream one whole pack.
#[derive(Parser, Debug)]
#[command(name = "fetch-pack", version)]
pub struct Args {
    /// Stream this one pack instead (id, unique id prefix, or path of a pack file)
    #[arg(long, value_name = "ID|PATH")]
    pub pack: Option<String>,

    /// Merge reads of blobs whose gap is at most this many bytes
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_gap: u64,

    /// Largest single read in bytes (a larger blob is read alone)
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    pub max_read: u64,

    /// Reads in flight at once (default: 5 for rest: and s3:, 2 for a local repository)
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,

    #[command(flatten)]
    pub repo: RepoLocation,
}

fn main() {
    let args: Args = cli::parse("fetch-pack");
    cli::run("fetch-pack", || {
        cli::refuse_terminal_records("unpack")?;
        fetcher::run(&args)
    })
}

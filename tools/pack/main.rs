//! pack — turn chunk and node records into encrypted repository files.
//!
//! Reads what `chunk` writes. Each chunk not yet in the repository (or earlier in this run)
//! is compressed (format 2), encrypted and written out at once as a piece of a pack
//! (`pack_data`); when a pack reaches the target size its encrypted header closes it
//! (`pack_header`). Data and tree blobs go to separate packs. Directories become tree blobs,
//! bottom-up, byte-identical to restic's for the same metadata. After the packs come the
//! index files and, last, the snapshot (`repo_file`), then a `summary`. A pack is never held
//! whole: memory is one blob and the header entries.
//!
//!     chunk ~/docs | pack --tag daily | push

mod packer;
mod trees;

use clap::Parser;
use common::cli::{self, RepoArgs};

/// Compress, encrypt and pack chunks; build trees, index and snapshot.
#[derive(Parser, Debug)]
#[command(name = "pack", version)]
pub struct Args {
    /// Add a tag to the snapshot (a,b adds both); repeatable
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tag: Vec<String>,

    /// Record this host name in the snapshot instead of the one chunk reported
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Compression: auto, off, fastest, better or max (format 2 repositories only)
    #[arg(long, env = "RESTIC_COMPRESSION", default_value = "auto", value_name = "MODE", value_enum)]
    pub compression: cli::Compression,

    /// Target pack size in MiB
    #[arg(long, env = "RESTIC_PACK_SIZE", default_value_t = 16, value_name = "MIB")]
    pub pack_size: u64,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("pack");
    cli::run("pack", || {
        cli::refuse_terminal_records("push")?;
        packer::run(&args)
    })
}

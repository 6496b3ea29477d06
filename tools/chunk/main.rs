//! chunk — read files and cut their content into restic's chunks.
//!
//! Walks the given paths (or reads stdin) and writes, in depth-first name order, one `node`
//! record per file, directory, symlink or special file, with every field restic stores; a
//! file's `node` comes after the `chunk` records of its content, which carry the plaintext
//! bytes and their SHA-256. Chunk boundaries come from restic's Rabin chunker with the
//! repository's polynomial, so the blob ids are the ones restic would make. With a parent
//! snapshot, a file whose size, times and inode are unchanged is not read: its node reuses
//! the parent's content ids. The first record, `source`, says what the backup is of.
//!
//!     chunk ~/docs | pack | push
//!     pg_dump db | chunk --stdin --stdin-filename db.sql | pack | push

mod parent;
mod scan;
mod size;

use std::path::PathBuf;

use clap::Parser;
use common::cli::{self, RepoArgs};

/// Cut files into chunks and describe them as restic nodes, as NDJSON records.
#[derive(Parser, Debug)]
#[command(name = "chunk", version)]
pub struct Args {
    /// Files and directories to back up
    #[arg(value_name = "PATH", required_unless_present = "stdin")]
    pub paths: Vec<PathBuf>,

    /// Back up the data read from stdin as one file
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,

    /// The file name to give the data read with --stdin
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,

    /// Leave out paths matching PATTERN (restic's pattern rules); repeatable
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// Read exclude patterns from FILE, one per line; repeatable
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,

    /// As --exclude, ignoring case; repeatable
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexclude: Vec<String>,

    /// Read --iexclude patterns from FILE, one per line; repeatable
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,

    /// Leave out the contents of directories holding a valid CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,

    /// Leave out the contents of directories holding a file NAME (beginning with HEADER, if
    /// given); the file itself is kept; repeatable
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,

    /// Leave out files larger than SIZE (bytes, or with k, m, g, t suffix)
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub exclude_larger_than: Option<size::Size>,

    /// Do not cross file system boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,

    /// Compare with this snapshot instead of the latest one of the same host and paths
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "stdin")]
    pub parent: Option<String>,

    /// Read every file, even those unchanged since the parent snapshot
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Host name to record and to pick the parent by (default: this machine's)
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: Option<String>,

    /// Store access times as they are (restic stores the modification time instead)
    #[arg(long)]
    pub with_atime: bool,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("chunk");
    cli::run("chunk", || {
        cli::refuse_terminal_records("pack")?;
        scan::run(&args)
    })
}

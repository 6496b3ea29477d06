//! init-repo — create a new restic repository.
//!
//! Writes the repository layout, a `config` with a fresh random chunker polynomial (or one
//! copied from another repository, so the two deduplicate), and a first key file that
//! opens with the password. Format version 2 (compression) unless told otherwise. Writes
//! no records; says what it made on stderr.
//!
//!     init-repo -r /srv/repo && chunk ~/docs | pack | push

mod create;

use clap::Parser;
use common::cli::{self, RepoArgs};

/// Create a new repository and its first key.
#[derive(Parser, Debug)]
#[command(name = "init-repo", version)]
pub struct Args {
    /// Repository format: 1, 2, "stable" (2) or "latest" (2)
    #[arg(long, default_value = "stable", value_name = "VERSION", value_parser = parse_version)]
    pub repository_version: u32,

    /// Take the chunker polynomial from the repository given with --from-repo
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,

    /// The repository to copy chunker parameters from
    #[arg(long, value_name = "REPOSITORY", env = "RESTIC_FROM_REPOSITORY")]
    pub from_repo: Option<String>,

    /// Password file of the --from-repo repository
    #[arg(long, value_name = "FILE", env = "RESTIC_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<std::path::PathBuf>,

    /// Password command of the --from-repo repository
    #[arg(long, value_name = "COMMAND", env = "RESTIC_FROM_PASSWORD_COMMAND")]
    pub from_password_command: Option<String>,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("init-repo");
    cli::run("init-repo", || create::run(&args))
}

/// restic's names for the repository format versions.
fn parse_version(v: &str) -> Result<u32, String> {
    match v {
        "1" => Ok(1),
        "2" | "stable" | "latest" => Ok(2),
        _ => Err(format!("unknown repository version {v:?} (1, 2, stable or latest)")),
    }
}

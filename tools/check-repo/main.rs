//! check-repo — is the repository sound? (what `restic check` answers)
//!
//! Reads the repository (needs the password: it decrypts the index, snapshots and trees) and
//! writes one `checked` record per index file, pack and snapshot, and one per tree that has
//! something wrong (none on a terminal). Every problem is also one line on stderr; the last
//! line says how it went.
//! With `--read-data`, every pack is read in full, a range at a time.
//!
//!     check-repo --read-data-subset 1/10 | jq -c 'select(.error)'

use std::io::IsTerminal;

use clap::Parser;
use common::check::{self, Options, Subset};
use common::cli::{self, RepoArgs};
use common::error::{Error, Result};
use common::lock::Held;
use common::record::{Checked, Writer};

/// Check the repository's structure, and with --read-data every byte of its packs.
#[derive(Parser, Debug)]
#[command(name = "check-repo", version)]
pub struct Args {
    /// Read every pack: its hash, its header against the index, every blob's MAC and id
    #[arg(long)]
    pub read_data: bool,

    /// Read only a subset of the packs: group n of t ("1/5"), or a share ("10%")
    #[arg(long, value_name = "n/t|P%", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,

    #[command(flatten)]
    pub repo: RepoArgs,
}

fn main() {
    let args: Args = cli::parse("check-repo");
    cli::run("check-repo", || run(&args))
}

fn run(args: &Args) -> Result<()> {
    let read_data = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => Some(Subset::parse(s)?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let repo = args.repo.open()?;
    let _lock = Held::take(&repo, args.repo.backend()?, false, "check-repo")?;
    // The records are for scripts; on a terminal the lines on stderr say it all, and a
    // record per object buried them (as unpack writes none there either).
    let mut out = Writer::stdout_unless(std::io::stdout().is_terminal());
    out.header("check-repo", None)?;
    let report = check::check(&repo, &Options { read_data }, &mut |v| {
        let (mut error, mut warning) = (None, None);
        if let Some(p) = v.problem {
            cli::warn("check-repo", format!("{} {}: {}", v.object.as_str(), v.id.short(), p.msg));
            match p.harmless {
                true => warning = Some(p.msg),
                false => error = Some(p.msg),
            }
        }
        out.write(&Checked { object: v.object.as_str().into(), id: v.id, error, warning })
    })?;
    out.finish()?;
    if report.unreferenced > 0 {
        cli::warn(
            "check-repo",
            format!(
                "{} packs are not referenced in any index: wasted space, not damage (restic prune removes them)",
                report.unreferenced
            ),
        );
    }
    if report.errors > 0 {
        return Err(Error::Integrity(format!("the repository has {} errors", report.errors)));
    }
    let read = match read_data {
        Some(_) => format!(", {} packs read in full", report.packs_read),
        None => String::new(),
    };
    cli::warn("check-repo", format!("no errors were found{read}"));
    Ok(())
}

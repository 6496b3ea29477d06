//! Selecting and printing snapshots.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use common::backend::FileType;
use common::error::{Error, Result};
use common::go::GoTime;
use common::record::{SnapshotRecord, Writer};
use common::snapshot::Snapshot;
use common::Id;

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let repo = args.repo.open_early(&[FileType::Snapshot])?;
    // As restic lists the others: one damaged snapshot file must not hide them all (the
    // way to find out which to forget); the status still says something is wrong.
    let (all, damaged) = repo.snapshots_readable()?;
    for e in &damaged {
        common::cli::warn("snapshots", e);
    }
    let damaged = match damaged.len() {
        0 => Ok(()),
        n => Err(Error::Integrity(format!(
            "{n} snapshot file{} could not be read (named above); the others were listed",
            if n == 1 { "" } else { "s" }
        ))),
    };
    let mut chosen: Vec<&(Id, Snapshot)> = if args.ids.is_empty() {
        all.iter().filter(|(_, s)| args.filter.keep(s)).collect()
    } else {
        args.filter.warn_if_ignored("snapshots", &args.ids);
        let mut v: Vec<&(Id, Snapshot)> = Vec::new();
        for spec in &args.ids {
            let s = args.filter.pick(&repo, spec, &all)?;
            // `snapshots $id latest` when the two are one: listed once, as restic lists it.
            if !v.iter().any(|x| x.0 == s.0) {
                v.push(s);
            }
        }
        v
    };
    // restic's default is 0, which means no limit: `--latest 0` lists them all.
    if let Some(n) = args.latest.filter(|n| *n > 0) {
        let mut per_group: HashMap<(String, Vec<String>), usize> = HashMap::new();
        let mut keep = Vec::new();
        for s in chosen.iter().rev() {
            let mut paths = s.1.paths.clone();
            paths.sort();
            let c = per_group.entry((s.1.hostname.clone(), paths)).or_insert(0);
            if *c < n {
                keep.push(*s);
            }
            *c += 1;
        }
        keep.reverse();
        chosen = keep;
    }
    if args.json {
        return restic_json(&chosen).and(damaged);
    }
    if std::io::stdout().is_terminal() {
        return table(&chosen).and(damaged);
    }
    let mut out = Writer::stdout();
    out.header("snapshots", None)?;
    for (id, s) in chosen {
        let rec = SnapshotRecord {
            id: *id,
            short_id: id.short(),
            time: s.time.to_string(),
            parent: s.parent,
            tree: s.tree,
            paths: s.paths.clone(),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            tags: s.tags.clone(),
        };
        out.write(&rec)?;
    }
    out.finish()?;
    damaged
}

fn stdout_err(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::BrokenPipe
    } else {
        Error::io("stdout", e)
    }
}

/// What `restic snapshots --json` (0.14) prints: one JSON array on one line, each snapshot as
/// restic writes its file (field order, escaping) followed by `id` and `short_id`.
fn restic_json(chosen: &[&(Id, Snapshot)]) -> Result<()> {
    let mut line = Vec::with_capacity(256 * chosen.len() + 3);
    line.push(b'[');
    for (i, (id, s)) in chosen.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        // restic 0.14 (the reference) does not know the fields newer writers add, and so
        // does not print them.
        let s = Snapshot { program_version: String::new(), summary: None, ..s.clone() };
        let json = s.to_json();
        line.extend_from_slice(json.strip_suffix(b"}").unwrap_or(&json));
        line.extend_from_slice(
            format!(",\"id\":\"{}\",\"short_id\":\"{}\"}}", id.to_hex(), id.short()).as_bytes(),
        );
    }
    line.extend_from_slice(b"]\n");
    io::stdout().lock().write_all(&line).map_err(stdout_err)
}

fn table(chosen: &[&(Id, Snapshot)]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    let e = stdout_err;
    writeln!(o, "{:<8}  {:<19}  {:<12}  {:<12}  Paths", "ID", "Time", "Host", "Tags").map_err(e)?;
    writeln!(o, "{}", "-".repeat(72)).map_err(e)?;
    for (id, s) in chosen {
        // In the local zone, as restic shows it, whatever zone the snapshot was taken in.
        let t = GoTime::local(s.time.secs, s.time.nanos).to_string();
        let t = t.get(..19).unwrap_or(&t).replace('T', " ");
        writeln!(
            o,
            "{:<8}  {:<19}  {:<12}  {:<12}  {}",
            id.short(),
            t,
            s.hostname,
            s.tags.join(","),
            s.paths.join(" ")
        )
        .map_err(e)?;
    }
    writeln!(o, "{}", "-".repeat(72)).map_err(e)?;
    writeln!(o, "{} snapshots", chosen.len()).map_err(e)?;
    Ok(())
}

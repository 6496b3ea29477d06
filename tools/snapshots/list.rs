//! Selecting and printing snapshots.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use common::error::{Error, Result};
use common::record::{SnapshotRecord, Writer};
use common::snapshot::Snapshot;
use common::Id;

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let repo = args.repo.open()?;
    let all: Vec<(Id, Snapshot)> =
        repo.snapshots()?.into_iter().filter(|(_, s)| args.filter.keep(s)).collect();
    let mut chosen: Vec<&(Id, Snapshot)> = if args.ids.is_empty() {
        all.iter().collect()
    } else {
        let mut v = Vec::new();
        for spec in &args.ids {
            v.push(repo.resolve_snapshot(spec, &all)?);
        }
        v
    };
    if let Some(n) = args.latest {
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
    if std::io::stdout().is_terminal() && !args.json {
        return table(&chosen);
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
        out.write("snapshot", &rec)?;
    }
    out.finish()?;
    Ok(())
}

fn table(chosen: &[&(Id, Snapshot)]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    let e = |e| Error::io("stdout", e);
    writeln!(o, "{:<8}  {:<19}  {:<12}  {:<12}  Paths", "ID", "Time", "Host", "Tags").map_err(e)?;
    writeln!(o, "{}", "-".repeat(72)).map_err(e)?;
    for (id, s) in chosen {
        let t = s.time.to_string();
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

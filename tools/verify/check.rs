//! Re-reading restored files blob by blob.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use common::error::{Error, Result};
use common::node::{Node, NodeType};
use common::record::{NodeRecord, Reader, Record, Verdict, Writer};
use common::Id;

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    let mut out = Writer::stdout();
    out.header("verify", header.snapshot)?;
    let (mut bad, mut files) = (0u64, 0u64);
    // The first difference goes into the summary, so stderr alone says which file to look at.
    let mut first_bad: Option<String> = None;
    let mut buf = Vec::new();
    while let Some(rec) = input.next_record()? {
        let rec = match rec {
            Record::Restored(r) | Record::Node(r) => r,
            Record::Blob(_) | Record::Verdict(_) | Record::Snapshot(_) => continue,
            other => {
                return Err(
                    input.err(format!("a {} record does not belong in verify's input", other.type_name()))
                )
            }
        };
        let node = Node::parse(rec.node.get().as_bytes()).map_err(|e| input.err(e))?;
        if node.node_type != NodeType::File {
            continue;
        }
        files += 1;
        let error = check_file(args, &rec, &mut buf).err();
        if let Some(e) = &error {
            bad += 1;
            first_bad.get_or_insert_with(|| format!("{:?}: {e}", rec.path));
        }
        if error.is_some() || !args.quiet {
            let size = rec.blobs.iter().map(|b| b.plain_len()).sum();
            let v = Verdict {
                path: rec.path.clone(),
                path_raw: rec.path_raw.clone(),
                ok: error.is_none(),
                size,
                error,
            };
            out.write("verdict", &v)?;
        }
    }
    out.finish()?;
    if bad > 0 {
        let first = first_bad.unwrap_or_default();
        return Err(Error::SomeFailed(format!(
            "{bad} of {files} files differ from the snapshot, first {first}"
        )));
    }
    Ok(())
}

/// Checks one file; the error says what differs and where.
fn check_file(args: &Args, rec: &NodeRecord, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
    let rel = rec.path_bytes()?;
    let path = args.target.join(OsStr::from_bytes(&rel));
    let md = std::fs::symlink_metadata(&path).map_err(|e| format!("{e}"))?;
    if !md.file_type().is_file() {
        return Err("not a regular file".into());
    }
    let want: u64 = rec.blobs.iter().map(|b| b.plain_len()).sum();
    if md.len() != want {
        return Err(format!("size {} but the snapshot says {want}", md.len()));
    }
    let mut f = io::BufReader::with_capacity(1 << 20, File::open(&path).map_err(|e| format!("{e}"))?);
    let mut offset = 0u64;
    for b in &rec.blobs {
        let n = b.plain_len() as usize;
        buf.resize(n, 0);
        f.read_exact(buf).map_err(|e| format!("at offset {offset}: {e}"))?;
        if Id::hash(buf) != b.id {
            return Err(format!("unexpected content at offset {offset} (blob {})", b.id.short()));
        }
        offset += n as u64;
    }
    Ok(())
}

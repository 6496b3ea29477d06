//! Whether a file on disk holds the content a record gives it: the right size, and every
//! blob-sized range hashing to its blob id. `verify` checks every restored file this way,
//! and `unpack --resume` the files an earlier run left, so both mean the same by "restored".

use std::fs::File;
use std::io::{self, Read, Seek};

use crate::record::BlobLoc;
use crate::Id;

/// How a file differs from its record's content.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("size {have} but the snapshot says {want}")]
    Size { have: u64, want: u64 },
    #[error("at offset {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("unexpected content at offset {offset} (blob {})", .id.short())]
    Content { offset: u64, id: Id },
}

/// Checks the file's size (`size`, from the node), then its content.
pub fn check_file(file: &File, size: u64, blobs: &[BlobLoc], buf: &mut Vec<u8>) -> Result<(), Mismatch> {
    let have = file.metadata().map_err(|source| Mismatch::Read { offset: 0, source })?.len();
    if have != size {
        return Err(Mismatch::Size { have, want: size });
    }
    check_content(file, blobs, buf)
}

/// Reads the file from its start (wherever its position is), blob by blob, and compares each range with its blob id.
/// The caller has checked the blobs against the node (`NodeRecord::check_content`), so
/// their lengths add up to the file's size and `buf` grows to one blob at most.
pub fn check_content(file: &File, blobs: &[BlobLoc], buf: &mut Vec<u8>) -> Result<(), Mismatch> {
    let mut file = file;
    file.rewind().map_err(|source| Mismatch::Read { offset: 0, source })?;
    let mut f = io::BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    for b in blobs {
        let n = b.plain_len();
        buf.resize(n as usize, 0);
        f.read_exact(buf).map_err(|source| Mismatch::Read { offset, source })?;
        if Id::hash(buf) != b.id {
            return Err(Mismatch::Content { offset, id: b.id });
        }
        offset += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn loc(data: &[u8]) -> BlobLoc {
        BlobLoc {
            id: Id::hash(data),
            pack: Id::hash(b"pack"),
            offset: 0,
            length: data.len() as u32 + 32,
            uncompressed_length: None,
        }
    }

    #[test]
    fn tells_size_content_and_short_reads_apart() {
        let (a, b) = (vec![1u8; 3000], vec![2u8; 500]);
        let blobs = [loc(&a), loc(&b)];
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        let mut buf = Vec::new();
        check_file(&f, 3500, &blobs, &mut buf).unwrap();
        assert!(matches!(
            check_file(&f, 3501, &blobs, &mut buf),
            Err(Mismatch::Size { have: 3500, want: 3501 })
        ));
        // One changed byte in the second blob is found, at that blob's offset.
        f.seek(io::SeekFrom::Start(3100)).unwrap();
        f.write_all(&[9]).unwrap();
        let e = check_file(&f, 3500, &blobs, &mut buf).unwrap_err();
        assert!(matches!(e, Mismatch::Content { offset: 3000, id } if id == blobs[1].id), "{e}");
        assert_eq!(
            e.to_string(),
            format!("unexpected content at offset 3000 (blob {})", blobs[1].id.short())
        );
        // Content alone: a file cut short fails as a read at the blob that is missing.
        f.set_len(3000).unwrap();
        let e = check_content(&f, &blobs, &mut buf).unwrap_err();
        assert!(matches!(e, Mismatch::Read { offset: 3000, .. }), "{e}");
    }
}

//! Pack files: encrypted blobs one after another, then an encrypted header listing them, then
//! the header's length (doc/format.md, "Packs"). Reading decodes one blob at a time; nothing here ever
//! holds a whole pack.

use crate::crypto::Key;
use crate::error::{Error, Result};
use crate::id::Id;

/// Bytes the header costs beyond its entries: the 4-byte length and IV + MAC.
pub const HEADER_OVERHEAD: u64 = 36;
/// The largest header restic accepts, length field included.
pub const MAX_HEADER_SIZE: u64 = 16 * 1024 * 1024 + 4;
/// Entry sizes in the header plaintext.
pub const ENTRY_PLAIN: usize = 37;
pub const ENTRY_COMPRESSED: usize = 41;
/// How much of a pack's tail restic reads first, hoping the header fits.
/// The largest blob plaintext a restore accepts. restic's chunker cuts data blobs of at most
/// 8 MiB; 128 MiB leaves room for other writers while an edited length in a record can no
/// longer make a stage allocate gigabytes.
pub const MAX_BLOB: u64 = 128 << 20;
/// The largest encrypted blob a restore accepts: [`MAX_BLOB`] plus room for a zstd frame of
/// incompressible data (slightly longer than its content), the IV and the MAC.
pub const MAX_SEALED_BLOB: u64 = MAX_BLOB + (1 << 20);
pub const EAGER_TAIL: u64 = 15 * ENTRY_COMPRESSED as u64 + HEADER_OVERHEAD;

/// Data or tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    /// The name used in index files and in our records.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// One header entry: a blob and where it sits in the pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub blob_type: BlobType,
    pub id: Id,
    pub offset: u64,
    /// Encrypted length (stored bytes + 32).
    pub length: u32,
    /// The plaintext length, for compressed blobs only.
    pub uncompressed_length: Option<u32>,
}

/// Parses a decrypted header into entries with offsets assigned from 0 (doc/format.md, "Packs").
pub fn parse_header(plain: &[u8]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let mut offset = 0u64;
    while p < plain.len() {
        let t = plain[p];
        let (blob_type, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            other => {
                return Err(Error::format(format!(
                    "pack header entry {} has invalid type {other}",
                    out.len()
                )))
            }
        };
        let size = if compressed { ENTRY_COMPRESSED } else { ENTRY_PLAIN };
        if p + size > plain.len() {
            return Err(Error::format(format!(
                "pack header is cut off in entry {} ({} bytes left)",
                out.len(),
                plain.len() - p
            )));
        }
        let e = &plain[p..p + size];
        let length = u32::from_le_bytes(e[1..5].try_into().expect("4 bytes"));
        let (uncompressed_length, id_at) = if compressed {
            (Some(u32::from_le_bytes(e[5..9].try_into().expect("4 bytes"))), 9)
        } else {
            (None, 5)
        };
        if length as usize <= crate::crypto::OVERHEAD {
            return Err(Error::format(format!(
                "pack header entry {} has impossible length {length}",
                out.len()
            )));
        }
        let id = Id(e[id_at..id_at + 32].try_into().expect("32 bytes"));
        out.push(Entry { blob_type, id, offset, length, uncompressed_length });
        offset += length as u64;
        p += size;
    }
    Ok(out)
}

/// Encodes header entries (in blob order) as the header plaintext.
pub fn encode_header(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_COMPRESSED);
    for e in entries {
        let t = match (e.blob_type, e.uncompressed_length.is_some()) {
            (BlobType::Data, false) => 0u8,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(t);
        out.extend_from_slice(&e.length.to_le_bytes());
        if let Some(u) = e.uncompressed_length {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&e.id.0);
    }
    out
}

/// Checks the trailing length field of a pack of `size` bytes; returns the encrypted
/// header's length.
pub fn header_len(size: u64, trailer: [u8; 4]) -> Result<u64> {
    let hlen = u32::from_le_bytes(trailer) as u64;
    if size < 4 + crate::crypto::OVERHEAD as u64 + ENTRY_PLAIN as u64 {
        return Err(Error::format(format!("pack of {size} bytes is too small to be a pack")));
    }
    if hlen < crate::crypto::OVERHEAD as u64 || hlen + 4 > size || hlen + 4 > MAX_HEADER_SIZE {
        return Err(Error::format(format!(
            "invalid pack file: header length {hlen} does not fit a pack of {size} bytes"
        )));
    }
    Ok(hlen)
}

/// Reads and decodes the header of a pack through `read_tail(offset, len)`, the way restic
/// does: one eager read of the tail, a second one only if the header is larger.
pub fn read_header(
    key: &Key,
    size: u64,
    read_tail: impl FnMut(u64, u64, &mut Vec<u8>) -> Result<()>,
) -> Result<(Vec<Entry>, Vec<u8>)> {
    let enc = read_sealed_header(size, read_tail)?;
    let entries = decode_header(key, &enc, size)?;
    Ok((entries, enc))
}

/// The encrypted header of a pack of `size` bytes, read through `read_tail(offset, len)`
/// without the key: one eager read of the tail, a second one only if the header is larger.
pub fn read_sealed_header(
    size: u64,
    mut read_tail: impl FnMut(u64, u64, &mut Vec<u8>) -> Result<()>,
) -> Result<Vec<u8>> {
    let eager = EAGER_TAIL.min(size);
    let mut buf = Vec::new();
    read_tail(size - eager, eager, &mut buf)?;
    if buf.len() < 4 {
        return Err(Error::format(format!("pack of {size} bytes is too small to be a pack")));
    }
    let trailer: [u8; 4] = buf[buf.len() - 4..].try_into().expect("4 bytes");
    let hlen = header_len(size, trailer)?;
    if hlen + 4 <= eager {
        Ok(buf[buf.len() - 4 - hlen as usize..buf.len() - 4].to_vec())
    } else {
        let mut h = Vec::new();
        read_tail(size - 4 - hlen, hlen, &mut h)?;
        Ok(h)
    }
}

/// Decrypts an encrypted header and checks that it accounts for every byte of the pack.
pub fn decode_header(key: &Key, enc: &[u8], size: u64) -> Result<Vec<Entry>> {
    let plain = key.open(enc).map_err(|e| e.context("pack header"))?;
    let entries = parse_header(&plain)?;
    let blobs: u64 = entries.iter().map(|e| e.length as u64).sum();
    if blobs + enc.len() as u64 + 4 != size {
        return Err(Error::format(format!(
            "pack size {size} does not match its header ({} blobs, {blobs} bytes of blobs, \
             {} bytes of header)",
            entries.len(),
            enc.len() + 4
        )));
    }
    Ok(entries)
}

/// Decrypts, decompresses and hash-checks blobs taken from packs, with one zstd context for
/// all of them: creating a context per blob cost more than decrypting and hashing a small
/// blob (unpack opens one per stream).
pub struct Opener<'k> {
    key: &'k Key,
    zstd: zstd::bulk::Decompressor<'static>,
}

impl<'k> Opener<'k> {
    pub fn new(key: &'k Key) -> Result<Self> {
        let zstd = zstd::bulk::Decompressor::new().map_err(|e| Error::internal(format!("zstd: {e}")))?;
        Ok(Opener { key, zstd })
    }

    /// MAC check and decryption in place (`sealed` is the blob's stored bytes), then the id
    /// check. An uncompressed plaintext is returned as a slice of `sealed`, never copied; a
    /// compressed one is decompressed into `out` and must be exactly `uncompressed_length`
    /// bytes (restic's frames may lack a content size, so the length is ours to check).
    pub fn open<'a>(
        &mut self,
        id: &Id,
        sealed: &'a mut [u8],
        uncompressed_length: Option<u32>,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let plain = self.open_unchecked(sealed, uncompressed_length, out)?;
        check_id(id, plain)?;
        Ok(plain)
    }

    /// [`Opener::open`] without the id check, for a caller that makes it with
    /// [`check_id`] elsewhere (on another thread) before it uses a byte of the plaintext.
    pub fn open_unchecked<'a>(
        &mut self,
        sealed: &'a mut [u8],
        uncompressed_length: Option<u32>,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let plain = self.key.open_in_place(sealed)?;
        Ok(match uncompressed_length {
            None => plain,
            Some(n) => {
                let n = n as usize;
                // One byte of room beyond the length: a frame that decodes to more fails
                // or comes out too long, and is refused either way.
                out.clear();
                out.reserve(n + 1);
                let got = self
                    .zstd
                    .decompress_to_buffer(plain, out)
                    .map_err(|e| Error::integrity(format!("zstd: {e}")))?;
                if got != n {
                    return Err(Error::integrity(format!("decompressed to {got} bytes, the index says {n}")));
                }
                &out[..]
            }
        })
    }
}

/// The last check of a blob's plaintext: its SHA-256 must be its id.
pub fn check_id(id: &Id, plain: &[u8]) -> Result<()> {
    let got = Id::hash(plain);
    if got != *id {
        return Err(Error::integrity(format!("content does not match blob id (got {})", got.short())));
    }
    Ok(())
}

/// Opens one blob with a context of its own; for many blobs, keep an [`Opener`].
pub fn open_blob<'a>(
    key: &Key,
    id: &Id,
    sealed: &'a mut [u8],
    uncompressed_length: Option<u32>,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    Opener::new(key)?.open(id, sealed, uncompressed_length, out)
}

/// Builds a pack one blob at a time without keeping its bytes: each sealed blob goes out as
/// soon as it is added, and only the header entries and a running hash stay.
pub struct Builder {
    entries: Vec<Entry>,
    size: u64,
    hash: sha2::Sha256,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        use sha2::Digest;
        Builder { entries: Vec::new(), size: 0, hash: sha2::Sha256::new() }
    }

    /// Bytes of blobs so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Blobs so far.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Whether another entry still fits restic's header limit.
    pub fn header_full(&self) -> bool {
        (self.entries.len() + 1) * ENTRY_COMPRESSED + HEADER_OVERHEAD as usize > MAX_HEADER_SIZE as usize
    }

    /// Adds a sealed blob (the bytes the caller writes out); returns its offset.
    pub fn add(
        &mut self,
        blob_type: BlobType,
        id: Id,
        sealed: &[u8],
        uncompressed_length: Option<u32>,
    ) -> u64 {
        use sha2::Digest;
        let offset = self.size;
        self.hash.update(sealed);
        self.entries.push(Entry { blob_type, id, offset, length: sealed.len() as u32, uncompressed_length });
        self.size += sealed.len() as u64;
        offset
    }

    /// Seals the header. Returns the pack id, the bytes to append (encrypted header and its
    /// length), the entries, and the pack's total size.
    pub fn finish(mut self, key: &Key) -> (Id, Vec<u8>, Vec<Entry>, u64) {
        use sha2::Digest;
        let mut tail = key.seal(&encode_header(&self.entries));
        let hlen = tail.len() as u32;
        tail.extend_from_slice(&hlen.to_le_bytes());
        self.hash.update(&tail);
        let size = self.size + tail.len() as u64;
        (Id(self.hash.finalize().into()), tail, self.entries, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn v_pack_2_compressed() {
        let key = Key::from_parts(
            h("e51e2efd0c9e9214be84038a214dce0c7591565122c52d8e80075f9142275416").try_into().unwrap(),
            h("0e70422bcdf5132c0e007dde8cb85500").try_into().unwrap(),
            h("f89d650464f77a0b30ae3e0b38c0aa0c").try_into().unwrap(),
        )
        .unwrap();
        let pack = h("66cd4eda3501c4b95add0afb9c0890d74795c5ec8fc5045552c7ff738e4025c6b3b3762bb883818512
            c9c315712ef99e08b67456abb66dec0b80b08c3d46e097437f8a98017e1a95e03aab8a42f7518120f3
            d7d8f8bcfc62bf1a91c4f3afcce96f0a7144511106b6f9351ecebb7581963f40f6ca85cf756e49000000");
        assert_eq!(pack.len(), 124);
        assert_eq!(
            Id::hash(&pack).to_hex(),
            "e722a789d696b672090a56ed3cb4934d1da83e9bb5a0950e5d8cf44bbb39f821"
        );
        let size = pack.len() as u64;
        let (entries, _) = read_header(&key, size, |off, len, buf| {
            buf.clear();
            buf.extend_from_slice(&pack[off as usize..(off + len) as usize]);
            Ok(())
        })
        .unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            (e.blob_type, e.offset, e.length, e.uncompressed_length),
            (BlobType::Data, 0, 47, Some(6))
        );
        let mut sealed = pack[..47].to_vec();
        let mut out = Vec::new();
        let plain = open_blob(&key, &e.id, &mut sealed, e.uncompressed_length, &mut out).unwrap();
        assert_eq!(plain, b"hello\n");

        let mut bad = pack[..47].to_vec();
        bad[20] ^= 1;
        assert!(open_blob(&key, &e.id, &mut bad, e.uncompressed_length, &mut out).is_err());
    }

    #[test]
    fn builder_makes_readable_packs() {
        let key = Key::random();
        let mut b = Builder::new();
        let mut bytes = Vec::new();
        let mut ids = Vec::new();
        for i in 0..3u8 {
            let plain = vec![i; 1000 + i as usize];
            let id = Id::hash(&plain);
            let sealed = key.seal(&plain);
            assert_eq!(b.add(BlobType::Data, id, &sealed, None), bytes.len() as u64);
            bytes.extend_from_slice(&sealed);
            ids.push(id);
        }
        let (pack_id, tail, entries, size) = b.finish(&key);
        bytes.extend_from_slice(&tail);
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(pack_id, Id::hash(&bytes));
        let (read, _) = read_header(&key, size, |o, l, buf| {
            buf.clear();
            buf.extend_from_slice(&bytes[o as usize..(o + l) as usize]);
            Ok(())
        })
        .unwrap();
        assert_eq!(read, entries);
        assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    }

    #[test]
    fn header_round_trip_and_errors() {
        let es = vec![
            Entry {
                blob_type: BlobType::Data,
                id: Id::hash(b"a"),
                offset: 0,
                length: 40,
                uncompressed_length: None,
            },
            Entry {
                blob_type: BlobType::Tree,
                id: Id::hash(b"b"),
                offset: 40,
                length: 50,
                uncompressed_length: Some(99),
            },
        ];
        let enc = encode_header(&es);
        assert_eq!(enc.len(), 37 + 41);
        assert_eq!(parse_header(&enc).unwrap(), es);
        assert!(parse_header(&enc[..50]).is_err());
        let mut bad = enc.clone();
        bad[0] = 9;
        assert!(parse_header(&bad).is_err());
        assert!(header_len(100, 200u32.to_le_bytes()).is_err());
        assert!(header_len(100, 10u32.to_le_bytes()).is_err());
        assert_eq!(header_len(110, 69u32.to_le_bytes()).unwrap(), 69);
    }
}

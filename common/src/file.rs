//! The "unpacked" file encoding of index, snapshot and lock files (doc/format.md, "Unpacked files"): JSON,
//! zstd-compressed behind a version byte in repository v2, sealed with the master key.

use std::io::Read;

use crate::crypto::{Key, IV_LEN, OVERHEAD};
use crate::error::{Error, Result};

/// Version byte of a zstd-compressed payload.
const ZSTD: u8 = 0x02;

/// Upper bound on a decompressed file. Index files are the biggest (a few hundred MB for
/// huge repositories); the cap keeps a buggy writer's frame (the bytes passed the MAC, so
/// they come from a key holder) from exhausting memory.
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// The zstd level restic's "auto" compression uses.
const LEVEL: i32 = 3;

/// Decrypts an unpacked file and returns its JSON bytes.
///
/// `repo_version` comes from the repository's [`Config`](crate::config::Config), so it is
/// 1 or 2. In v1 the plaintext is the JSON. In v2 a leading `{` or `[` marks legacy
/// uncompressed JSON (written before an upgrade), `0x02` a zstd stream, and an empty
/// plaintext passes through as empty, as restic does.
pub fn decode(key: &Key, sealed: &[u8], repo_version: u32) -> Result<Vec<u8>> {
    let plain = key.open(sealed)?;
    if repo_version < 2 {
        return Ok(plain);
    }
    match plain.first() {
        None | Some(b'{') | Some(b'[') => Ok(plain),
        Some(&ZSTD) => decompress(&plain[1..], MAX_DECOMPRESSED),
        Some(&other) => Err(Error::format(format!("unsupported encoding format 0x{other:02x}"))),
    }
}

/// Streams through the decoder because restic's frames often omit the content size; the
/// size, when present, only pre-sizes the buffer (never beyond `limit`).
fn decompress(frame: &[u8], limit: u64) -> Result<Vec<u8>> {
    let hint = zstd::zstd_safe::get_frame_content_size(frame).ok().flatten().unwrap_or(0);
    let mut out = Vec::with_capacity(hint.min(limit) as usize);
    let decoder =
        zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| Error::format(format!("zstd: {e}")))?;
    // One byte past the cap tells "exactly at the cap" from "over it".
    decoder.take(limit + 1).read_to_end(&mut out).map_err(|e| Error::format(format!("zstd: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::format(format!("zstd: decompressed file exceeds {} MiB", limit >> 20)));
    }
    Ok(out)
}

/// Encodes JSON as an unpacked file: v1 seals it as is; v2 (and later) seals
/// `0x02 || zstd(json)`, which restic writes for every unpacked file.
pub fn encode(key: &Key, json: &[u8], repo_version: u32) -> Vec<u8> {
    if repo_version < 2 {
        return key.seal(json);
    }
    // Compress straight into the output buffer after the room for the IV and the version
    // byte, then seal in place: no separate compressed buffer to copy.
    let bound = zstd::zstd_safe::compress_bound(json.len());
    let mut buf = vec![0u8; IV_LEN + 1 + bound];
    buf.reserve_exact(OVERHEAD - IV_LEN);
    buf[IV_LEN] = ZSTD;
    // compress_bound is zstd's own worst case, so the output always fits; a failure here
    // would be a bug in the zstd binding, not a data problem.
    let n = zstd::bulk::compress_to_buffer(json, &mut buf[IV_LEN + 1..], LEVEL)
        .expect("zstd output fits in compress_bound");
    buf.truncate(IV_LEN + 1 + n);
    key.seal_prepared(&mut buf, 0);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// The V-PACK-2 master key (doc/format.md, "Packs"), from a repository restic 0.14 wrote.
    fn v2_master() -> Key {
        Key::from_parts(
            hex!("e51e2efd0c9e9214be84038a214dce0c7591565122c52d8e80075f9142275416"),
            hex!("0e70422bcdf5132c0e007dde8cb85500"),
            hex!("f89d650464f77a0b30ae3e0b38c0aa0c"),
        )
        .unwrap()
    }

    /// `snapshots/d278699a…` of that repository.
    const SNAPSHOT: [u8; 198] = hex!(
        "14bb20bc72cadb0c1c2397632f96393e8aabab099d3e3cf31dc54ed36556d63f6279a73ea9a21a21ad660069dc3749f5"
        "d50ccb2e37adc1e814ee09cfe119b43d3a0f5a9b63a5775591c72a2aaf012b81ed39c04071906df54f6e9b42cbd23f1b"
        "36edd615b24ebd1ef5503c953fa836f46053aab67c20c1fc4b74e99bdb1b801ff56e88f336d8866dfa28296e097cf969"
        "275a55bc30e7528faf9c26af344856b6fbfe00d6e920f02d005e07b87c59006df705982377a1c924f182979d36efa48e"
        "1a6dcafaf8ed"
    );

    #[test]
    fn restic_v2_snapshot() {
        assert_eq!(
            crate::id::Id::hash(&SNAPSHOT).to_hex(),
            "d278699ae7726e624b15ce4645ef4e65f9ca913b843d685ebc811f8382788a2b"
        );
        let json = decode(&v2_master(), &SNAPSHOT, 2).unwrap();
        // serde_json's Map keeps keys sorted unless preserve_order is on; read the order
        // from the raw text instead.
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let obj = v.as_object().expect("a JSON object");
        let text = std::str::from_utf8(&json).unwrap();
        let keys = ["time", "tree", "paths", "hostname", "username"];
        assert_eq!(obj.len(), keys.len(), "{text}");
        let pos: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} in {text}")))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "key order in {text}");
        assert!(obj["tree"].as_str().unwrap().starts_with("80ad1948"));
        assert!(obj["tree"].as_str().unwrap().ends_with("e97d"));
        assert_eq!(obj["hostname"], "h");
        assert_eq!(obj["username"], "root");
        assert_eq!(obj["paths"].as_array().unwrap().len(), 1);
        // Read as v1, the same file is not JSON: the version byte is data there.
        assert_eq!(decode(&v2_master(), &SNAPSHOT, 1).unwrap()[0], ZSTD);
    }

    #[test]
    fn round_trips() {
        let key = Key::random();
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{{\"n\":{i}}},").into_bytes()).collect();
        for json in [&b"{}"[..], b"[1,2,3]\n", b"", &big] {
            let v1 = encode(&key, json, 1);
            assert_eq!(key.open(&v1).unwrap(), json);
            assert_eq!(decode(&key, &v1, 1).unwrap(), json);
            let v2 = encode(&key, json, 2);
            let inner = key.open(&v2).unwrap();
            assert_eq!(inner[0], ZSTD);
            assert_eq!(&inner[1..5], &hex!("28b52ffd"), "zstd magic");
            assert_eq!(decode(&key, &v2, 2).unwrap(), json);
        }
        assert!(encode(&key, &big, 2).len() < big.len() / 4, "v2 compresses");
    }

    #[test]
    fn v2_legacy_and_frames_without_size() {
        let key = Key::random();
        for legacy in [&b"{\"a\":1}"[..], b"[]", b""] {
            assert_eq!(decode(&key, &key.seal(legacy), 2).unwrap(), legacy);
        }
        // restic's small frames carry no content size (doc/format.md, "Unpacked files").
        let mut plain = vec![ZSTD];
        plain.extend(hex!("28b52ffd 00 00 310000 68656c6c6f0a"));
        assert_eq!(decode(&key, &key.seal(&plain), 2).unwrap(), b"hello\n");
    }

    #[test]
    fn errors() {
        let key = Key::random();
        let err = decode(&key, &key.seal(b"\x01{}"), 2).unwrap_err();
        assert_eq!(err.to_string(), "unsupported encoding format 0x01");
        let err = decode(&key, &key.seal(b"\x7f"), 2).unwrap_err();
        assert_eq!(err.to_string(), "unsupported encoding format 0x7f");
        let err = decode(&key, &key.seal(b"\x02not zstd"), 2).unwrap_err();
        assert!(matches!(err, Error::Format(_)), "{err}");
        // Truncated frame.
        let mut good = vec![ZSTD];
        good.extend(zstd::bulk::compress(&[b'x'; 5000], 3).unwrap());
        good.truncate(good.len() - 3);
        assert!(decode(&key, &key.seal(&good), 2).is_err());
        // Tampering and a wrong key surface as integrity errors before any decompression.
        let mut sealed = encode(&key, b"{}", 2);
        sealed[20] ^= 1;
        assert!(matches!(decode(&key, &sealed, 2), Err(Error::Integrity(_))));
        assert!(matches!(decode(&Key::random(), &encode(&key, b"{}", 2), 2), Err(Error::Integrity(_))));
    }

    #[test]
    fn cap_on_decompressed_size() {
        let limit = 3 << 20;
        let frame = zstd::bulk::compress(&vec![0u8; limit as usize + 1], 1).unwrap();
        let err = decompress(&frame, limit).unwrap_err();
        assert_eq!(err.to_string(), "zstd: decompressed file exceeds 3 MiB");
        // Exactly at the limit is fine, with or without a content size in the frame.
        let frame = zstd::bulk::compress(&vec![0u8; limit as usize], 1).unwrap();
        assert_eq!(decompress(&frame, limit).unwrap().len(), limit as usize);
        let mut streamed = Vec::new();
        zstd::stream::copy_encode(&vec![0u8; limit as usize][..], &mut streamed, 1).unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(), None);
        assert_eq!(decompress(&streamed, limit).unwrap().len(), limit as usize);
        assert_eq!(MAX_DECOMPRESSED, 1 << 30);
    }
}

//! The repository `config` file (doc/format.md, "The config file"): version, repository id and chunker
//! polynomial, sealed with the master key and never compressed.

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::Key;
use crate::error::{Error, Result};

/// The decrypted `config`. Field order is restic's, so `encode` writes the same shape.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Repository format version: 1 (no compression) or 2.
    pub version: u32,
    /// 64 hex digits naming the repository (restic uses it e.g. for cache directories).
    pub id: String,
    /// The Rabin polynomial all chunking in this repository uses. Irreducibility is the
    /// chunker's business, not checked here.
    #[serde(with = "hex_poly")]
    pub chunker_polynomial: u64,
}

impl Config {
    /// Decrypts and parses a `config` file. Trailing whitespace is accepted because very
    /// old restic wrote the JSON with a newline. Messages do not say "config": the caller
    /// adds that.
    pub fn decode(key: &Key, sealed: &[u8]) -> Result<Config> {
        let plain = key.open(sealed)?;
        // serde_json accepts trailing whitespace after the value, so old files need no trim.
        let cfg: Config =
            serde_json::from_slice(&plain).map_err(|e| Error::format(format!("invalid config JSON: {e}")))?;
        if !(1..=2).contains(&cfg.version) {
            return Err(Error::format(format!("unsupported repository version {}", cfg.version)));
        }
        Ok(cfg)
    }

    /// Serializes compactly and seals with the master key (no compression, in every
    /// version: restic reads `config` before it knows whether to decompress).
    pub fn encode(&self, key: &Key) -> Vec<u8> {
        // Serializing a struct of a number and strings into a Vec cannot fail.
        let json = serde_json::to_vec(self).expect("config serializes");
        key.seal(&json)
    }

    /// A new configuration with a random 32-byte id.
    pub fn new(version: u32, chunker_polynomial: u64) -> Config {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        Config { version, id: hex::encode(id), chunker_polynomial }
    }
}

/// The polynomial as restic writes it: a JSON string of lower-case hex without `0x`
/// (Go's `strconv.FormatUint(p, 16)`).
mod hex_poly {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{p:x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // from_str_radix alone would also take a leading '+', which Go's ParseUint refuses.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(de::Error::custom(format!("invalid chunker polynomial {s:?}")));
        }
        u64::from_str_radix(&s, 16)
            .map_err(|_| de::Error::custom(format!("chunker polynomial {s:?} exceeds 64 bits")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn master() -> Key {
        Key::from_parts(
            hex!("0534c595cd1d7b1a8f71a21f12f26141906d3ba67cefb962058736c110bcc1cc"),
            hex!("59d560e93786d18988e18dfe4c5de9e6"),
            hex!("4653a80570029f063cb38e0c3cdd9300"),
        )
        .unwrap()
    }

    /// `config` of restic's `repo-duplicates` test repository (doc/format.md, "Key files").
    const CONFIG: [u8; 155] = hex!(
        "41937e180df4b7ff1b85dd4a10ddd72bcd81617ef80761e0a8cd89c32a9ae521"
        "7d1eb222bf62a05196983b33fb634f1ea5ce57dc3e82c1aee784aa6bf2a1ecb0"
        "cfb6630c3e26af19aba8766f524c4a494a7d13624bb48e445eaee854278e51e4"
        "2c4cabab13ad20c3ac3cfdbb98c335db615a5bdb5edc163e9c2fe3c738b8a55e"
        "a2704132fe6c1e47bce1c4c9d31dd7932839065d48dde527500a93"
    );

    #[test]
    fn restic_test_repo_config() {
        assert_eq!(
            master().open(&CONFIG).unwrap(),
            br#"{"version":1,"id":"9b908d2539170f6fcdbbaa9941bfb4a99ee7eb5c0ac02e7e05008d594fc80975","chunker_polynomial":"3245e832598389"}"#
        );
        let cfg = Config::decode(&master(), &CONFIG).unwrap();
        assert_eq!(cfg.version, 1);
        assert_eq!(cfg.id, "9b908d2539170f6fcdbbaa9941bfb4a99ee7eb5c0ac02e7e05008d594fc80975");
        assert_eq!(cfg.chunker_polynomial, 0x3245e832598389);
    }

    #[test]
    fn wrong_key_is_integrity_error() {
        let err = Config::decode(&Key::random(), &CONFIG).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err}");
        assert!(err.to_string().starts_with("ciphertext verification failed"));
    }

    #[test]
    fn round_trip_and_shape() {
        let key = Key::random();
        let cfg = Config::new(2, 0x25b468838dcb75);
        assert_eq!(cfg.id.len(), 64);
        assert_ne!(cfg.id, Config::new(2, 1).id);
        let sealed = cfg.encode(&key);
        let json = String::from_utf8(key.open(&sealed).unwrap()).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"version":2,"id":"{}","chunker_polynomial":"25b468838dcb75"}}"#, cfg.id)
        );
        assert_eq!(Config::decode(&key, &sealed).unwrap(), cfg);
    }

    #[test]
    fn tolerates_trailing_whitespace() {
        let key = Key::random();
        let sealed =
            key.seal(b"{\"version\":2,\"id\":\"ab\",\"chunker_polynomial\":\"3DA3358B4DC173\"}\n \n");
        let cfg = Config::decode(&key, &sealed).unwrap();
        assert_eq!(cfg.chunker_polynomial, 0x3da3358b4dc173);
    }

    #[test]
    fn rejects_versions_and_bad_polynomials() {
        let key = Key::random();
        let decode = |json: &str| Config::decode(&key, &key.seal(json.as_bytes()));
        for v in [0, 3] {
            let err = decode(&format!(r#"{{"version":{v},"id":"x","chunker_polynomial":"1"}}"#)).unwrap_err();
            assert_eq!(err.to_string(), format!("unsupported repository version {v}"));
        }
        for p in [r#""""#, r#""0x3da3""#, r#""+3da3""#, r#""11112222333344445""#, "123"] {
            let json = format!(r#"{{"version":2,"id":"x","chunker_polynomial":{p}}}"#);
            assert!(matches!(decode(&json), Err(Error::Format(_))), "{p}");
        }
        // Compressed config (0x02 prefix) is not a thing: it must not parse.
        let mut z = vec![2u8];
        z.extend(zstd::bulk::compress(br#"{"version":2}"#, 3).unwrap());
        assert!(Config::decode(&key, &key.seal(&z)).is_err());
    }
}

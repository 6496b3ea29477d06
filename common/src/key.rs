//! Key files (doc/format.md, "Key files"): the master key, encrypted under a key derived from a password
//! with scrypt, stored as plain JSON in `keys/<sha256 of the file>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::Key;
use crate::error::{Error, Result};
use crate::go::GoTime;

/// Length of the scrypt salt, which restic enforces on every key file.
const SALT_LEN: usize = 64;

/// One key file as stored. Field order is restic's (Go struct order), which `create` relies
/// on to write the same JSON shape. Missing fields read as empty so that the checks in
/// [`KeyFile::parse`] can name what is wrong instead of serde's generic message.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(default)]
pub struct KeyFile {
    /// Creation time, RFC 3339 with nanoseconds. Informational only.
    pub created: String,
    /// The user who created the key. Informational only.
    pub username: String,
    /// The host the key was created on. Informational only.
    pub hostname: String,
    /// Key derivation function; only `"scrypt"` exists.
    pub kdf: String,
    /// scrypt cost parameter N.
    #[serde(rename = "N")]
    pub n: u64,
    /// scrypt block size r.
    pub r: u32,
    /// scrypt parallelism p.
    pub p: u32,
    /// Standard base64 of the 64-byte salt.
    pub salt: String,
    /// Standard base64 of `IV || CT || MAC` of the master-key JSON.
    pub data: String,
}

/// scrypt cost parameters of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptParams {
    /// CPU/memory cost, a power of two.
    pub n: u64,
    /// Block size.
    pub r: u32,
    /// Parallelism.
    pub p: u32,
}

/// The parameters for new key files: N = 32768, r = 8, p = 1.
///
/// restic keeps N and r fixed (a 32 MiB working set) and raises p until one derivation
/// takes about 500 ms on the creating machine. We take p = 1 instead: the cost is then
/// the same on every machine and every run (no timing-dependent key files, predictable
/// `init` time in tests and scripts), and every restic version reads any p, so nothing is
/// lost in compatibility; what is given up is the extra brute-force cost a fast machine
/// would have bought.
///
/// If `SLUICE_TEST_SCRYPT` is set to `N,r,p` those are used instead, so tests can make
/// cheap keys; a value that does not parse is ignored.
pub fn default_params() -> ScryptParams {
    std::env::var("SLUICE_TEST_SCRYPT").ok().and_then(|v| parse_params(&v)).unwrap_or(ScryptParams {
        n: 32768,
        r: 8,
        p: 1,
    })
}

fn parse_params(v: &str) -> Option<ScryptParams> {
    let mut it = v.split(',').map(str::trim);
    let params = ScryptParams {
        n: it.next()?.parse().ok()?,
        r: it.next()?.parse().ok()?,
        p: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(params)
}

/// The master-key JSON that a key file's `data` encrypts (doc/format.md, "Key files"): compact,
/// `mac.k`, `mac.r`, then `encrypt`, each standard base64.
pub fn master_key_json(k: &Key) -> Vec<u8> {
    format!(
        r#"{{"mac":{{"k":"{}","r":"{}"}},"encrypt":"{}"}}"#,
        B64.encode(k.mac_k()),
        B64.encode(k.mac_r()),
        B64.encode(k.encrypt_part())
    )
    .into_bytes()
}

#[derive(Deserialize)]
struct MasterKeyJson {
    mac: MacJson,
    encrypt: String,
}

#[derive(Deserialize)]
struct MacJson {
    k: String,
    r: String,
}

fn decode_fixed<const N: usize>(what: &str, b64: &str) -> Result<[u8; N]> {
    let bytes = B64.decode(b64).map_err(|e| Error::format(format!("{what} is not valid base64: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| Error::format(format!("{what} is {} bytes, want {N}", b.len())))
}

fn parse_master_key(json: &[u8]) -> Result<Key> {
    let m: MasterKeyJson =
        serde_json::from_slice(json).map_err(|e| Error::format(format!("master key JSON: {e}")))?;
    Key::from_parts(
        decode_fixed("master key encrypt", &m.encrypt)?,
        decode_fixed("master key mac.k", &m.mac.k)?,
        decode_fixed("master key mac.r", &m.mac.r)?,
    )
}

/// Checks parameters as restic does (simple-scrypt's rules, doc/format.md, "Key files") and turns them
/// into the scrypt crate's form. N must be a power of two because scrypt indexes its table
/// with `N - 1` as a mask; Go's scrypt refuses other values too.
fn scrypt_params(p: &ScryptParams) -> Result<scrypt::Params> {
    let bad = || Error::format(format!("invalid scrypt parameters N={} r={} p={}", p.n, p.r, p.p));
    let max_int = (1u64 << 31) - 1;
    if p.n <= 1 || !p.n.is_power_of_two() || p.r == 0 || p.p == 0 {
        return Err(bad());
    }
    if u64::from(p.r) * u64::from(p.p) >= 1 << 30 || p.n > max_int / 128 / u64::from(p.r) {
        return Err(bad());
    }
    let log_n = p.n.trailing_zeros() as u8;
    scrypt::Params::new(log_n, p.r, p.p).map_err(|_| bad())
}

impl KeyFile {
    /// Parses a key file and checks what can be checked without the password: the KDF, the
    /// salt length and the scrypt parameters. Messages do not name the file; the caller,
    /// who knows its id, adds that.
    pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
        let kf: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::format(format!("invalid key file JSON: {e}")))?;
        kf.check()?;
        Ok(kf)
    }

    fn params(&self) -> ScryptParams {
        ScryptParams { n: self.n, r: self.r, p: self.p }
    }

    /// Everything `parse` promises, returning what derivation needs. Re-run by `open`
    /// because the fields are public and may have been changed since.
    fn check(&self) -> Result<(scrypt::Params, [u8; SALT_LEN])> {
        if self.kdf != "scrypt" {
            return Err(Error::format(format!(
                "unsupported key derivation function {:?} (only scrypt)",
                self.kdf
            )));
        }
        let salt = decode_fixed::<SALT_LEN>("salt", &self.salt)?;
        let params = scrypt_params(&self.params())?;
        Ok((params, salt))
    }

    /// The 64-byte scrypt output for `password`: the user key before it is split.
    fn derive(&self, password: &[u8]) -> Result<[u8; 64]> {
        let (params, salt) = self.check()?;
        let mut dk = [0u8; 64];
        scrypt::scrypt(password, &salt, &params, &mut dk)
            .map_err(|_| Error::format("scrypt refused the output length"))?;
        Ok(dk)
    }

    /// Derives the user key from `password` and decrypts the master key.
    ///
    /// `Ok(None)` means the MAC did not verify, i.e. this password does not open this key
    /// file and the caller should try the next one (restic's rule). Anything else wrong —
    /// bad base64, a truncated payload, master-key JSON that does not parse — is an error,
    /// because it means a damaged key file rather than a wrong password.
    pub fn open(&self, password: &[u8]) -> Result<Option<Key>> {
        let user = Key::from_scrypt_output(&self.derive(password)?);
        let mut data =
            B64.decode(&self.data).map_err(|e| Error::format(format!("data is not valid base64: {e}")))?;
        match user.try_open_in_place(&mut data).map_err(|e| e.context("data"))? {
            Some(json) => parse_master_key(json).map(Some),
            None => Ok(None),
        }
    }

    /// Makes a new key file that opens `master` with `password`. Returns the exact bytes to
    /// store under `keys/<sha256 of the bytes>` (compact JSON in restic's field order, no
    /// trailing newline) and the parsed form.
    pub fn create(
        master: &Key,
        password: &[u8],
        params: ScryptParams,
        username: &str,
        hostname: &str,
    ) -> Result<(Vec<u8>, KeyFile)> {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let mut kf = KeyFile {
            created: GoTime::now_utc().to_string(),
            username: username.to_owned(),
            hostname: hostname.to_owned(),
            kdf: "scrypt".to_owned(),
            n: params.n,
            r: params.r,
            p: params.p,
            salt: B64.encode(salt),
            data: String::new(),
        };
        let user = Key::from_scrypt_output(&kf.derive(password)?);
        kf.data = B64.encode(user.seal(&master_key_json(master)));
        let bytes = serde_json::to_vec(&kf).map_err(|e| Error::format(format!("encoding key file: {e}")))?;
        Ok((bytes, kf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use hex_literal::hex;

    /// `keys/c8f7fb2c…` of restic's `repo-duplicates` test repository (doc/format.md, "Key files").
    const KEY_FILE: &str = r#"{"created":"2020-07-09T14:05:50.767321194+02:00","username":"alex","hostname":"thinkpad","kdf":"scrypt","N":128,"r":1,"p":1,"salt":"7iys1GDH2ZDwUrki1HX/Zga8PChxwOFlUjOQ9PBPp4kM1IhUyEl1g5Wq9z4ljx/TWu+Y3Sw31UucSOMcQANaMw==","data":"iPnpO9YaNJnkBezVFdhJdNzEbmKceEpg6MrjLmJcGkGwMQ9TgFELYy546My4nB8/3VR4CtcisoH5S0+AuyHpdIPAU/lkCzrEYyee7gLCvTwyducRfheO5i1aNV067XDeJsVsKRbe9F3ulG0eUuTYqKvxX/yX7IBoxuSqOgjWPf73Vupz+PTfx09CU5O5TEx+Y7xah4hMKskD+AmoiHk32A=="}"#;

    const MASTER_JSON: &str = r#"{"mac":{"k":"WdVg6TeG0YmI4Y3+TF3p5g==","r":"RlOoBXACnwY8s44MPN2TAA=="},"encrypt":"BTTFlc0dexqPcaIfEvJhQZBtO6Z877liBYc2wRC8wcw="}"#;

    fn small() -> ScryptParams {
        ScryptParams { n: 1024, r: 8, p: 1 }
    }

    #[test]
    fn end_to_end_vector() {
        assert_eq!(
            Id::hash(KEY_FILE.as_bytes()).to_hex(),
            "c8f7fb2cb38babad37eb62ff10c58c4f64f04fa406dbda814e1474303876b71c"
        );
        let kf = KeyFile::parse(KEY_FILE.as_bytes()).unwrap();
        assert_eq!((kf.n, kf.r, kf.p), (128, 1, 1));
        assert_eq!(kf.username, "alex");
        let dk = kf.derive(b"geheim").unwrap();
        assert_eq!(
            dk,
            hex!(
                "22e78f128d2d55ceed44daced83009fee5321550877c3ffde73961cdf445524d"
                "35bcab5862367b5acccaabb22f47d95633d16f0ca3d0d6f53dc63105cb9c1bc5"
            )
        );
        let user = Key::from_scrypt_output(&dk);
        assert_eq!(user.mac_k(), &hex!("35bcab5862367b5acccaabb22f47d956"));
        // Stored unclamped: the MAC must clamp at use for this to open at all.
        assert_eq!(user.mac_r(), &hex!("33d16f0ca3d0d6f53dc63105cb9c1bc5"));
        let mut data = B64.decode(&kf.data).unwrap();
        assert_eq!(user.open_in_place(&mut data).unwrap(), MASTER_JSON.as_bytes());

        let master = kf.open(b"geheim").unwrap().expect("password opens the key");
        assert_eq!(
            master.encrypt_part(),
            &hex!("0534c595cd1d7b1a8f71a21f12f26141906d3ba67cefb962058736c110bcc1cc")
        );
        assert_eq!(master.mac_k(), &hex!("59d560e93786d18988e18dfe4c5de9e6"));
        assert_eq!(master.mac_r(), &hex!("4653a80570029f063cb38e0c3cdd9300"));
        assert_eq!(master_key_json(&master), MASTER_JSON.as_bytes());
    }

    /// RFC 7914's third vector (r = 8, p = 16), through the same path as key files: several
    /// lanes of the block mix our vendored scrypt picks by CPU (vendor/README.md).
    #[test]
    fn scrypt_matches_rfc_7914() {
        let params = scrypt_params(&ScryptParams { n: 1024, r: 8, p: 16 }).unwrap();
        let mut dk = [0u8; 64];
        scrypt::scrypt(b"password", b"NaCl", &params, &mut dk).unwrap();
        assert_eq!(
            dk,
            hex!(
                "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
                "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
            )
        );
    }

    /// Lanes are derived two at a time where the CPU allows (vendor/README.md): an odd
    /// number of them, and an even one with another r, against OpenSSL's scrypt (Python's
    /// `hashlib.scrypt`).
    #[test]
    fn scrypt_matches_openssl_for_odd_and_even_lanes() {
        for (n, r, p, want) in [
            (1024, 8, 3, hex!("db1c96b8ba55c5d9a0e54908ab824e2c886f481c8d864be9bc19185e839080a70be232458dffc7c25d820c521890af0b628a7c097fb43b119f948d61afac41d7")),
            (2048, 4, 6, hex!("d286181cf32c88a059b0713a4dd9276ce87958ff9dfb3b8e96f7f0e3e5d49347688c97f50653418be3727fc2aa826933e29e6e271951c2864c8ee8b9eb60251c")),
        ] {
            let params = scrypt_params(&ScryptParams { n, r, p }).unwrap();
            let mut dk = [0u8; 64];
            scrypt::scrypt(b"sluice", b"two lanes at a time", &params, &mut dk).unwrap();
            assert_eq!(dk, want, "N={n} r={r} p={p}");
        }
    }

    #[test]
    fn wrong_password_is_none() {
        let kf = KeyFile::parse(KEY_FILE.as_bytes()).unwrap();
        assert!(kf.open(b"Geheim").unwrap().is_none());
        assert!(kf.open(b"").unwrap().is_none());
    }

    #[test]
    fn damaged_data_is_an_error_not_none() {
        let mut kf = KeyFile::parse(KEY_FILE.as_bytes()).unwrap();
        kf.data = B64.encode([1u8; 20]);
        assert!(kf.open(b"geheim").unwrap_err().to_string().contains("too short"));
        kf.data = "not base64!".into();
        assert!(kf.open(b"geheim").is_err());
        // Right password, but the payload is not master-key JSON.
        let user = Key::from_scrypt_output(&kf.derive(b"geheim").unwrap());
        kf.data = B64.encode(user.seal(b"{\"mac\":1}"));
        let err = kf.open(b"geheim").unwrap_err().to_string();
        assert!(err.starts_with("master key JSON"), "{err}");
        kf.data = B64.encode(user.seal(
            br#"{"mac":{"k":"AAAAAAAAAAAAAAAAAAAAAA==","r":"RlOoBXACnwY8s44MPN2TAA=="},"encrypt":"BTTFlc0dexqPcaIfEvJhQZBtO6Z877liBYc2wRC8wcw="}"#,
        ));
        assert!(kf.open(b"geheim").unwrap_err().to_string().contains("all zeros"));
    }

    #[test]
    fn parse_rejects() {
        let with = |from: &str, to: &str| {
            assert!(KEY_FILE.contains(from));
            KeyFile::parse(KEY_FILE.replace(from, to).as_bytes()).map(|_| ())
        };
        let err = with(r#""kdf":"scrypt""#, r#""kdf":"pbkdf2""#).unwrap_err();
        assert!(err.to_string().contains("pbkdf2"), "{err}");
        // 63-byte salt.
        let short_salt = B64.encode([7u8; 63]);
        let err = with(
            "7iys1GDH2ZDwUrki1HX/Zga8PChxwOFlUjOQ9PBPp4kM1IhUyEl1g5Wq9z4ljx/TWu+Y3Sw31UucSOMcQANaMw==",
            &short_salt,
        )
        .unwrap_err();
        assert!(err.to_string().contains("63 bytes"), "{err}");
        for bad in [r#""N":0"#, r#""N":1"#, r#""N":96"#, r#""N":4294967296"#] {
            assert!(with(r#""N":128"#, bad).is_err(), "{bad}");
        }
        assert!(with(r#""r":1"#, r#""r":0"#).is_err());
        assert!(with(r#""p":1"#, r#""p":0"#).is_err());
        assert!(with(r#""p":1"#, r#""p":1073741824"#).is_err());
        assert!(with(r#""N":128"#, r#""N":"128""#).is_err());
        assert!(KeyFile::parse(b"{").is_err());
        assert!(KeyFile::parse(br#"{"kdf":"scrypt"}"#).is_err());
        // Unknown fields are ignored, as Go's decoder does.
        assert!(with(r#""kdf""#, r#""extra":1,"kdf""#).is_ok());
    }

    #[test]
    fn create_parse_open_round_trip() {
        let master = Key::random();
        let (bytes, kf) = KeyFile::create(&master, b"pw", small(), "me", "box").unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"created":""#), "{text}");
        assert!(
            text.contains(
                r#","username":"me","hostname":"box","kdf":"scrypt","N":1024,"r":8,"p":1,"salt":""#
            ),
            "{text}"
        );
        assert!(text.ends_with(r#""}"#));
        assert_eq!(kf.created.len(), text.split('"').nth(3).unwrap().len());
        let parsed = KeyFile::parse(&bytes).unwrap();
        assert_eq!(parsed.data, kf.data);
        assert_eq!(B64.decode(&parsed.salt).unwrap().len(), 64);
        let opened = parsed.open(b"pw").unwrap().unwrap();
        assert_eq!(opened.encrypt_part(), master.encrypt_part());
        assert_eq!(opened.mac_k(), master.mac_k());
        assert_eq!(opened.mac_r(), master.mac_r());
        assert!(parsed.open(b"pW").unwrap().is_none());
        // Fresh salt each time.
        let (again, _) = KeyFile::create(&master, b"pw", small(), "me", "box").unwrap();
        assert_ne!(again, bytes);
    }

    #[test]
    fn create_rejects_bad_params() {
        let bad = ScryptParams { n: 1000, r: 8, p: 1 };
        assert!(KeyFile::create(&Key::random(), b"pw", bad, "", "").is_err());
    }

    #[test]
    fn params_from_env_value() {
        assert_eq!(parse_params("1024,8,1"), Some(small()));
        assert_eq!(parse_params(" 16 , 1 , 2 "), Some(ScryptParams { n: 16, r: 1, p: 2 }));
        assert_eq!(parse_params("1024,8"), None);
        assert_eq!(parse_params("1024,8,1,1"), None);
        assert_eq!(parse_params("x,8,1"), None);
    }

    #[test]
    fn default_is_restic_n_and_r() {
        if std::env::var_os("SLUICE_TEST_SCRYPT").is_none() {
            assert_eq!(default_params(), ScryptParams { n: 32768, r: 8, p: 1 });
        }
        assert!(scrypt_params(&default_params()).is_ok());
    }
}

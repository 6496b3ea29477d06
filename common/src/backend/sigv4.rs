//! AWS Signature Version 4 for request headers: the canonical request, the string to sign, the
//! signing key derived from the secret, and the `Authorization` header made of them. Only
//! what S3 needs: header signing (no presigned URLs), the payload hash given by the caller.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name that starts the string to sign and the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The SHA-256 of an empty payload, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A secret string (an AWS secret access key or a session token). Its `Debug` shows nothing
/// of it and it has no `Display`, so it cannot slip into a message by accident.
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(s: impl Into<String>) -> SecretKey {
        SecretKey(s.into())
    }

    /// The secret itself, for signing or for a header that must carry it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Who signs: the access key id (not secret: it is in every `Authorization` header), the secret
/// key, and the session token of temporary credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: SecretKey,
    pub session_token: Option<SecretKey>,
}

/// The time of a signature: `YYYYMMDDTHHMMSSZ`, as `x-amz-date` carries it.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719468;
    let era = z / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Lower-case hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// URI-encodes `s` as SigV4 wants it: every byte but `A-Za-z0-9-._~` as `%XX` (upper-case),
/// and `/` too unless `keep_slash` (paths keep theirs, query values do not).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string of a request, in the canonical form (encoded, sorted by name then value);
/// the same string is what goes on the wire.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut q: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    q.sort();
    q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// One request to sign. `path` is already URI-encoded (as sent); `headers` are all the
/// headers to sign, `host` and `x-amz-date` included, in any order and case.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (what `x-amz-content-sha256` carries for S3).
    pub payload_hash: &'a str,
}

impl Request<'_> {
    /// The canonical request and the signed-headers list.
    pub fn canonical(&self) -> (String, String) {
        let mut h: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        h.sort_by(|a, b| a.0.cmp(&b.0));
        // Repeated headers join their values with commas, in order.
        let mut merged: Vec<(String, String)> = Vec::with_capacity(h.len());
        for (k, v) in h {
            match merged.last_mut() {
                Some((lk, lv)) if *lk == k => {
                    lv.push(',');
                    lv.push_str(&v);
                }
                _ => merged.push((k, v)),
            }
        }
        let signed = merged.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
        let mut c = format!("{}\n{}\n{}\n", self.method, self.path, canonical_query(self.query));
        for (k, v) in &merged {
            c.push_str(&format!("{k}:{v}\n"));
        }
        c.push_str(&format!("\n{signed}\n{}", self.payload_hash));
        (c, signed)
    }
}

/// `DATE/REGION/SERVICE/aws4_request`.
pub fn scope(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", &amz_date[..8.min(amz_date.len())])
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()))
}

/// The key of one day, region and service, derived from the secret.
pub fn signing_key(secret: &SecretKey, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{}", secret.expose()).as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// The `Authorization` header of `req`, signed at `amz_date` (which `req.headers` must carry
/// as `x-amz-date`). The value holds the access key id and a signature, never the secret.
pub fn authorization(
    creds: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    req: &Request,
) -> String {
    let (canonical, signed) = req.canonical();
    let scope = scope(amz_date, region, service);
    let sts = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(&creds.secret, &amz_date[..8.min(amz_date.len())], region, service);
    let sig = hex::encode(hmac(&key, sts.as_bytes()));
    format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}", creds.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's SigV4 test suite.
    fn suite() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret: SecretKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        }
    }

    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_SCOPE: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    fn sign_suite(method: &str, query: &[(&str, &str)], extra: &[(&str, &str)], body: &[u8]) -> String {
        let mut headers = vec![("Host", "example.amazonaws.com"), ("X-Amz-Date", SUITE_DATE)];
        headers.extend_from_slice(extra);
        let hash = sha256_hex(body);
        let req = Request { method, path: "/", query, headers: &headers, payload_hash: &hash };
        authorization(&suite(), "us-east-1", "service", SUITE_DATE, &req)
    }

    #[test]
    fn get_vanilla() {
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[("Host", "example.amazonaws.com"), ("X-Amz-Date", SUITE_DATE)],
            payload_hash: EMPTY_SHA256,
        };
        let (c, signed) = req.canonical();
        assert_eq!(
            c,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;x-amz-date");
        let sts = string_to_sign(SUITE_DATE, &scope(SUITE_DATE, "us-east-1", "service"), &c);
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            sign_suite("GET", &[], &[], b""),
            format!(
                "AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let query = [("Param2", "value2"), ("Param1", "value1")];
        assert_eq!(canonical_query(&query), "Param1=value1&Param2=value2");
        assert_eq!(
            sign_suite("GET", &query, &[], b""),
            format!(
                "AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders=host;x-amz-date, \
                 Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        assert_eq!(
            sign_suite(
                "POST",
                &[],
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"Param1=value1"
            ),
            format!(
                "AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders=content-type;host;x-amz-date, \
                 Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn s3_get_object_with_a_range() {
        // The GET Object example of the S3 API reference ("Authenticating Requests: Using the
        // Authorization Header").
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: SecretKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: None,
        };
        let date = "20130524T000000Z";
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &[
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", date),
            ],
            payload_hash: EMPTY_SHA256,
        };
        assert_eq!(
            authorization(&creds, "us-east-1", "s3", date, &req),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1440938160);
        assert_eq!(amz_date(t), SUITE_DATE);
        assert_eq!(amz_date(UNIX_EPOCH + std::time::Duration::from_secs(951825600)), "20000229T120000Z");
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut c = suite();
        c.session_token = Some(SecretKey::new("session-token-xyz"));
        let d = format!("{c:?}");
        assert!(d.contains("AKIDEXAMPLE"), "{d}");
        assert!(!d.contains("EXAMPLEKEY") && !d.contains("session-token-xyz"), "{d}");
    }
}

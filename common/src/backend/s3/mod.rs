//! Amazon S3 and servers that speak its API (`s3:https://host[:port]/bucket[/prefix]`,
//! `s3:s3.amazonaws.com/bucket[/prefix]`): objects named as restic names them under the
//! prefix (`config`, `keys/ID`, `data/XX/ID`, ...), requests signed with SigV4 (see
//! [`super::sigv4`]), path-style or virtual-hosted buckets, `HEAD`/`GET` (ranged)/`PUT`/
//! `DELETE` on objects, ListObjectsV2 with continuation tokens, the bucket created by
//! `init-repo` when missing. Each method is one attempt; [`super::retry::Retrying`] adds the
//! retries.

use std::io::Read;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::http;
use super::retry::{Body, Multipart, Remote};
use super::sigv4::{self, Credentials};
use super::{is_id_name, Entry, FileType, Options};
use crate::error::{Class, Error, Result};
use xml::{tag, tags, unescape};

mod multipart;
mod xml;

pub use super::aws_files::{ACCESS_KEY_ENV, REGION_ENV, SECRET_KEY_ENV, SESSION_TOKEN_ENV};
const DEFAULT_REGION: &str = "us-east-1";

/// Uploads larger than this go as a multipart upload: restic's packs reach 128 MiB, and one
/// PUT of that over a flaky link starts again from zero after every failure.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The size of each part (S3 wants at least 5 MiB for all but the last). Parts are read from
/// the spool file as they are sent, so memory does not depend on it.
const PART_SIZE: u64 = 8 << 20;

/// How the bucket is named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// `https://host/bucket/key`.
    Path,
    /// `https://bucket.host/key`.
    Dns,
}

/// A repository in an S3 bucket.
pub struct S3 {
    agent: ureq::Agent,
    creds: Credentials,
    region: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// `host[:port]` of the endpoint (without the bucket, for either lookup).
    endpoint: String,
    bucket: String,
    /// The prefix of every object name, without slashes at either end; may be empty.
    prefix: String,
    lookup: Lookup,
    /// `s3:` and the repository string as given (it has no credentials in it).
    location: String,
    /// `max-keys` of one ListObjectsV2 page; `None` leaves it to the server (1000 on AWS).
    list_page: Option<usize>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("location", &self.location)
            .field("region", &self.region)
            .field("lookup", &self.lookup)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

/// The parts of an `s3:` repository string.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    scheme: &'static str,
    endpoint: String,
    bucket: String,
    prefix: String,
}

fn parse(s: &str) -> Result<Parsed> {
    let bad = |why: &str| Error::Usage(format!("repository s3:{}: {why}", http::redact(s)));
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = s.strip_prefix("http://") {
        ("http", r)
    } else if s.contains("://") {
        return Err(bad("not an http:// or https:// URL"));
    } else {
        ("https", s)
    };
    let (endpoint, path) = rest.split_once('/').unwrap_or((rest, ""));
    if endpoint.contains('@') {
        return Err(bad(&format!(
            "credentials do not belong in the URL: set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}"
        )));
    }
    if endpoint.is_empty() {
        return Err(bad("no host"));
    }
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket: expected s3:https://host/bucket[/prefix]"));
    }
    format!("{scheme}://{endpoint}/").parse::<ureq::http::Uri>().map_err(|_| bad("not a valid host"))?;
    Ok(Parsed {
        scheme,
        endpoint: endpoint.to_string(),
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

/// The endpoint to send requests to and how to name the bucket: AWS by the bucket's host
/// name (unless a dot in the bucket would break the wildcard certificate) at the region's
/// endpoint, any other server by path, as restic does; `lookup` overrides.
fn addressing(p: &Parsed, region: &str, lookup: Option<Lookup>) -> (String, Lookup) {
    let aws = p.endpoint == "s3.amazonaws.com" || p.endpoint.ends_with(".amazonaws.com");
    let lookup = lookup.unwrap_or(if aws && !p.bucket.contains('.') { Lookup::Dns } else { Lookup::Path });
    let endpoint = if p.endpoint == "s3.amazonaws.com" && region != DEFAULT_REGION {
        format!("s3.{region}.amazonaws.com")
    } else {
        p.endpoint.clone()
    };
    (endpoint, lookup)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3 {
    /// A backend for `repo` (what follows `s3:`), with credentials and region from the
    /// environment or the AWS tools' files (see [`super::aws_files`]) and `-o s3.*` options.
    pub fn new(repo: &str, opts: &Options) -> Result<S3> {
        let p = parse(repo)?;
        let found = super::aws_files::find(&env_nonempty)?;
        let mut region = found.region;
        let mut lookup = None;
        for (k, v) in &opts.extended {
            match k.strip_prefix("s3.") {
                Some("region") if !v.is_empty() => region = Some(v.clone()),
                // Empty, as `-o s3.region=$REGION` with REGION unset gives: not given.
                Some("region") => {}
                // Read by the stages that fetch in parallel (`backend::connections`).
                Some("connections") => {}
                Some("bucket-lookup") => {
                    lookup = match v.as_str() {
                        "auto" => None,
                        "path" => Some(Lookup::Path),
                        "dns" => Some(Lookup::Dns),
                        _ => {
                            return Err(Error::Usage(format!(
                                "-o s3.bucket-lookup={v}: expected auto, path or dns"
                            )))
                        }
                    }
                }
                Some(other) => {
                    return Err(Error::Usage(format!("-o s3.{other}: no such option of the s3 backend")))
                }
                None => {}
            }
        }
        let region = region.unwrap_or_else(|| DEFAULT_REGION.to_string());
        let (endpoint, lookup) = addressing(&p, &region, lookup);
        let Some(creds) = found.creds else {
            return Err(Error::Usage(format!(
                "repository s3:{}: no credentials: {}",
                http::redact(repo),
                found.hint
            )));
        };
        Ok(S3 {
            agent: http::agent(opts)?,
            creds,
            region,
            scheme: p.scheme,
            location: format!("s3:{}://{}/{}", p.scheme, p.endpoint, join(&p.bucket, &p.prefix)),
            endpoint,
            bucket: p.bucket,
            prefix: p.prefix,
            lookup,
            list_page: None,
        })
    }

    /// Lists at most `n` objects per request, so that tests see continuation tokens with a
    /// handful of objects.
    pub fn with_list_page(mut self, n: usize) -> S3 {
        self.list_page = Some(n.max(1));
        self
    }

    /// The object name of a repository file (`PREFIX/data/ab/abcd...`).
    fn key(&self, t: FileType, name: &str) -> String {
        join(&self.prefix, &t.path(name))
    }

    /// `location/path` for messages.
    fn what(&self, path: &str) -> String {
        format!("{}/{path}", self.location)
    }

    /// The host and encoded path of an object, or of the bucket for `key == None`.
    fn target(&self, key: Option<&str>) -> (String, String) {
        let enc = key.map(|k| sigv4::uri_encode(k, true)).unwrap_or_default();
        match self.lookup {
            Lookup::Path => {
                (self.endpoint.clone(), format!("/{}/{enc}", sigv4::uri_encode(&self.bucket, false)))
            }
            Lookup::Dns => (format!("{}.{}", self.bucket, self.endpoint), format!("/{enc}")),
        }
    }

    /// Sends one signed request. `signed` are extra headers to sign (`range`), `unsigned`
    /// extra headers that are not (`content-length`).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        signed: &[(&str, &str)],
        unsigned: &[(&str, &str)],
        body: Option<(Body<'_>, &str)>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let (host, path) = self.target(key);
        let date = sigv4::amz_date(SystemTime::now());
        let hash = body.map_or(sigv4::EMPTY_SHA256, |(_, h)| h);
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &host), ("x-amz-date", &date), ("x-amz-content-sha256", hash)];
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token", t.expose()));
        }
        headers.extend_from_slice(signed);
        let req = sigv4::Request { method, path: &path, query, headers: &headers, payload_hash: hash };
        let auth = sigv4::authorization(&self.creds, &self.region, "s3", &date, &req);
        let q = sigv4::canonical_query(query);
        let url = format!("{}://{host}{path}{}{q}", self.scheme, if q.is_empty() { "" } else { "?" });
        // ureq sets Host from the URL, the same value as signed.
        let extra: Vec<(&str, &str)> =
            headers.iter().chain(unsigned).filter(|(k, _)| *k != "host").copied().collect();
        fn apply<B>(
            mut r: ureq::RequestBuilder<B>,
            h: &[(&str, &str)],
            auth: &str,
        ) -> ureq::RequestBuilder<B> {
            for (k, v) in h {
                r = r.header(*k, *v);
            }
            r.header("authorization", auth)
        }
        let res = match method {
            "GET" => apply(self.agent.get(&url), &extra, &auth).call(),
            "HEAD" => apply(self.agent.head(&url), &extra, &auth).call(),
            "DELETE" => apply(self.agent.delete(&url), &extra, &auth).call(),
            _ => {
                let r = match method {
                    "POST" => apply(self.agent.post(&url), &extra, &auth),
                    _ => apply(self.agent.put(&url), &extra, &auth),
                };
                match body {
                    Some((b, _)) => {
                        let mut reader = b.reader();
                        r.header("content-length", b.len().to_string())
                            .send(ureq::SendBody::from_reader(&mut reader))
                    }
                    None => r.send_empty(),
                }
            }
        };
        let resp = res.map_err(|e| http::transport_error(e, what))?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, what));
        }
        Ok(resp)
    }

    /// The error for a failing answer, from its status and S3's error `Code`; the server's
    /// own words only for codes we do not know, and never anything of the credentials.
    fn status_error(&self, resp: ureq::http::Response<ureq::Body>, what: &str) -> Error {
        let status = resp.status();
        let code = status.as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, SystemTime::now()));
        // AWS names the bucket's region in a header (the only hint in the bodiless 301 that
        // answers a HEAD signed for another region) or in the error.
        let bucket_region =
            resp.headers().get("x-amz-bucket-region").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut xml = String::new();
        let _ = resp.into_body().into_reader().take(64 << 10).read_to_string(&mut xml);
        let bucket_region = bucket_region.or_else(|| tag(&xml, "Region").map(unescape));
        let s3code = tag(&xml, "Code").map(unescape).unwrap_or_default();
        let class = match s3code.as_str() {
            "NoSuchKey" | "NoSuchBucket" => Class::NotFound,
            "RequestTimeout" | "SlowDown" | "InternalError" | "ServiceUnavailable" => Class::Transient,
            _ => http::class_of(code),
        };
        let reason =
            if s3code.is_empty() { status.canonical_reason().unwrap_or("").to_string() } else { s3code };
        let hint = match reason.as_str() {
            "SignatureDoesNotMatch" => format!(" (wrong {SECRET_KEY_ENV}?)"),
            "InvalidAccessKeyId" => format!(" (the server does not know this {ACCESS_KEY_ENV})"),
            "InvalidToken" | "ExpiredToken" => format!(" ({SESSION_TOKEN_ENV} is invalid or expired)"),
            "AccessDenied" => " (the credentials are not allowed to do this)".into(),
            "RequestTimeTooSkewed" => " (this machine's clock is off: signatures carry the time)".into(),
            "NoSuchBucket" => format!(" (bucket {} does not exist)", self.bucket),
            _ if bucket_region.as_deref().is_some_and(|r| !r.is_empty() && r != self.region) => {
                let r = bucket_region.unwrap_or_default();
                format!(
                    " (the bucket is in region {r}, not {}: set -o s3.region={r} or {REGION_ENV}={r})",
                    self.region
                )
            }
            "AuthorizationHeaderMalformed" | "PermanentRedirect" | "Moved Permanently" => {
                format!(" (wrong region {}? set -o s3.region=REGION or {REGION_ENV})", self.region)
            }
            "Forbidden" => format!(" (wrong {ACCESS_KEY_ENV} or {SECRET_KEY_ENV}, or not allowed?)"),
            "NoSuchKey" | "Not Found" | "" => String::new(),
            _ => match tag(&xml, "Message") {
                Some(m) => format!(": {}", unescape(m).chars().take(200).collect::<String>()),
                None => String::new(),
            },
        };
        // A missing object ends in "not found (HTTP 404)" of its own: the status once.
        let msg = match class {
            Class::NotFound if hint.is_empty() => what.to_string(),
            Class::NotFound => format!("{what}{hint}"),
            _ => format!("{what}: HTTP {code} {reason}{hint}"),
        };
        let mut e = Error::remote(class, Some(code), msg);
        if let Error::Backend(r) = &mut e {
            r.retry_after = retry_after;
        }
        e
    }

    fn head(&self, t: FileType, name: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let k = self.key(t, name);
        let what = self.what(&t.path(name));
        match self.send("HEAD", Some(&k), &[], &[], &[], None, &what) {
            // The answer to a HEAD has no body, so no S3 error code: a refusal says only
            // "403". One GET of the first byte asks again to learn why (a wrong secret, an
            // unknown key id, a bad token), and that is the error reported.
            Err(e) if matches!(e.status(), Some(400 | 403)) => {
                match self.send("GET", Some(&k), &[], &[("range", "bytes=0-0")], &[], None, &what) {
                    Err(why) if why.status() == e.status() => Err(why),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }
}

/// `a/b`, or whichever is not empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Hex SHA-256 of a body, read once before it is sent (S3 checks it against what arrives).
fn body_hash(body: Body<'_>, what: &str) -> Result<String> {
    let mut h = Sha256::new();
    let mut r = body.reader();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(format!("{what}: reading the upload"), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Remote for S3 {
    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        match self.head(t, name) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let dir = format!("{}/", t.dir());
        let prefix = join(&self.prefix, &dir);
        let what = self.what(&dir);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page.map(|n| n.to_string());
            let mut query = vec![("list-type", "2"), ("prefix", prefix.as_str())];
            if let Some(n) = &page {
                query.push(("max-keys", n));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let resp = self.send("GET", None, &query, &[], &[], None, &what)?;
            let mut body = Vec::new();
            http::read_all(resp, &what, &mut body)?;
            let xml = String::from_utf8_lossy(&body);
            for c in tags(&xml, "Contents") {
                let (Some(key), Some(size)) = (tag(c, "Key"), tag(c, "Size")) else {
                    return Err(Error::backend(format!("{what}: listing entry without Key or Size")));
                };
                let key = unescape(key);
                let name = key.rsplit('/').next().unwrap_or("");
                if !is_id_name(name) {
                    continue;
                }
                let size = size
                    .trim()
                    .parse()
                    .map_err(|_| Error::backend(format!("{what}: listing has a bad Size for {name}")))?;
                out.push(Entry { name: name.to_string(), size });
            }
            let truncated = tag(&xml, "IsTruncated").is_some_and(|v| v.trim() == "true");
            match tag(&xml, "NextContinuationToken") {
                Some(next) if truncated => token = Some(unescape(next)),
                _ if truncated => {
                    return Err(Error::backend(format!(
                        "{what}: listing is truncated but has no NextContinuationToken"
                    )))
                }
                _ => return Ok(out),
            }
        }
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let what = self.what(&t.path(name));
        let resp = self.send("GET", Some(&self.key(t, name)), &[], &[], &[], None, &what)?;
        let mut buf = Vec::new();
        http::read_all(resp, &what, &mut buf)?;
        Ok(buf)
    }

    fn read_range_append(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let what = self.what(&t.path(name));
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        let resp = self.send("GET", Some(&self.key(t, name)), &[], &[("range", &range)], &[], None, &what)?;
        http::read_range_body(resp, &what, offset, len, buf)
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64> {
        http::content_length(&self.head(t, name)?, &self.what(&t.path(name)))
    }

    fn put(&self, t: FileType, name: &str, body: Body<'_>) -> Result<()> {
        let what = self.what(&t.path(name));
        let hash = body_hash(body, &what)?;
        self.send(
            "PUT",
            Some(&self.key(t, name)),
            &[],
            &[],
            &[("content-type", "application/octet-stream")],
            Some((body, &hash)),
            &what,
        )?;
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let what = self.what(&t.path(name));
        self.send("DELETE", Some(&self.key(t, name)), &[], &[], &[], None, &what)?;
        Ok(())
    }

    fn create(&self) -> Result<()> {
        // S3 has no directories: a repository is its objects. Only the bucket may be missing.
        let what = format!("{}/ (bucket {})", self.location, self.bucket);
        match self.send("HEAD", None, &[], &[], &[], None, &what) {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let config = if self.region == DEFAULT_REGION {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        let body = Body::Bytes(config.as_bytes());
        let hash = sigv4::sha256_hex(config.as_bytes());
        let payload = if config.is_empty() { None } else { Some((body, hash.as_str())) };
        match self.send("PUT", None, &[], &[], &[], payload, &what) {
            Err(Error::Backend(r)) if r.msg.contains("BucketAlreadyOwnedByYou") => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sigv4::SecretKey;

    #[test]
    fn repository_strings() {
        let p = parse("http://127.0.0.1:9000/bucket/some/prefix/").unwrap();
        assert_eq!(
            p,
            Parsed {
                scheme: "http",
                endpoint: "127.0.0.1:9000".into(),
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        let p = parse("s3.amazonaws.com/b").unwrap();
        assert_eq!(
            (p.scheme, p.endpoint.as_str(), p.bucket.as_str(), p.prefix.as_str()),
            ("https", "s3.amazonaws.com", "b", "")
        );
        assert_eq!(parse("http://h:1/").unwrap_err().exit_code(), 2);
        let e = parse("https://AKID:topsecret@h/b").unwrap_err().to_string();
        assert!(!e.contains("topsecret") && e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert_eq!(parse("ftp://h/b").unwrap_err().exit_code(), 2);
    }

    fn backend(repo: &str, region: &str, lookup: Option<Lookup>) -> S3 {
        let p = parse(repo).unwrap();
        let (endpoint, lookup) = addressing(&p, region, lookup);
        S3 {
            agent: http::agent(&Options::default()).unwrap(),
            creds: Credentials {
                access_key_id: "AKID".into(),
                secret: SecretKey::new("top-secret-key"),
                session_token: Some(SecretKey::new("top-secret-token")),
            },
            region: region.into(),
            scheme: p.scheme,
            location: format!("s3:{repo}"),
            endpoint,
            bucket: p.bucket,
            prefix: p.prefix,
            lookup,
            list_page: None,
        }
    }

    /// The line for an answer with `status`, `headers` and `body`, from a backend in us-east-1.
    fn line_for(status: u16, headers: &[(&str, &str)], body: &str) -> String {
        let mut b = ureq::http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = b.body(ureq::Body::builder().data(body.as_bytes().to_vec())).unwrap();
        backend("s3.amazonaws.com/bkt", "us-east-1", None).status_error(resp, "config").to_string()
    }

    #[test]
    fn a_wrong_region_names_the_right_one() {
        // AWS answers a HEAD signed for the wrong region with a bodiless 301: the line said
        // only "HTTP 301 Moved Permanently".
        let head = line_for(301, &[("x-amz-bucket-region", "eu-west-1")], "");
        assert!(head.contains("region eu-west-1") && head.contains("-o s3.region=eu-west-1"), "{head}");
        let get = line_for(
            400,
            &[],
            "<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-central-1</Region></Error>",
        );
        assert!(
            get.contains("AuthorizationHeaderMalformed") && get.contains("s3.region=eu-central-1"),
            "{get}"
        );
        let bare = line_for(301, &[], "");
        assert!(bare.contains("wrong region us-east-1?"), "{bare}");
    }

    #[test]
    fn buckets_by_path_or_host_name() {
        let aws = backend("s3.amazonaws.com/bkt/pre", "us-east-1", None);
        assert_eq!(
            aws.target(Some(&aws.key(FileType::Pack, "abcd"))),
            ("bkt.s3.amazonaws.com".into(), "/pre/data/ab/abcd".into())
        );
        assert_eq!(aws.target(None), ("bkt.s3.amazonaws.com".into(), "/".into()));
        let eu = backend("s3.amazonaws.com/bkt", "eu-west-1", None);
        assert_eq!(
            eu.target(Some(&eu.key(FileType::Config, ""))),
            ("bkt.s3.eu-west-1.amazonaws.com".into(), "/config".into())
        );
        let dotted = backend("s3.amazonaws.com/my.bkt", "us-east-1", None);
        assert_eq!(dotted.target(None), ("s3.amazonaws.com".into(), "/my.bkt/".into()));
        let local = backend("http://127.0.0.1:9000/bkt/a b", "us-east-1", None);
        assert_eq!(
            local.target(Some(&local.key(FileType::Key, "k"))),
            ("127.0.0.1:9000".into(), "/bkt/a%20b/keys/k".into())
        );
        let forced = backend("http://minio.lan:9000/bkt", "us-east-1", Some(Lookup::Dns));
        assert_eq!(forced.target(None), ("bkt.minio.lan:9000".into(), "/".into()));
        let d = format!("{aws:?}");
        assert!(!d.contains("top-secret") && d.contains("AKID"), "{d}");
    }

    #[test]
    fn listings_parse() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated>\
                   <Contents><Key>p/keys/a&amp;b</Key><Size>12</Size></Contents>\
                   <Contents><Key>p/keys/x</Key><Size>3</Size></Contents>\
                   <NextContinuationToken>1/a+b=</NextContinuationToken></ListBucketResult>";
        let keys: Vec<String> = tags(xml, "Contents").filter_map(|c| tag(c, "Key")).map(unescape).collect();
        assert_eq!(keys, ["p/keys/a&b", "p/keys/x"]);
        assert_eq!(tag(xml, "NextContinuationToken"), Some("1/a+b="));
        assert_eq!(unescape("&lt;&#65;&#x42;&bogus;"), "<AB&bogus;");
        assert_eq!(join("", "config"), "config");
        assert_eq!(join("p/q", "data/ab/abc"), "p/q/data/ab/abc");
    }
}

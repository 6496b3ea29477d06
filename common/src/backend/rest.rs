//! restic's REST protocol, version 2 (`rest:http(s)://[user:password@]host:port/path/`), as
//! `rest-server` and `rclone serve restic` speak it: `HEAD`/`GET`/`POST`/`DELETE` on
//! `config` and `TYPE/NAME` (packs unsharded, as `data/NAME`), listings `GET TYPE/` with
//! names and sizes, ranged `GET`s, `POST ?create=true` for a new repository. Each method is
//! one attempt; [`super::retry::Retrying`] adds the retries.

use super::http::{self, Url};
use super::retry::{Body, Remote};
use super::{is_id_name, Entry, FileType, Options};
use crate::error::{Class, Error, Result};

/// The media type that asks for (and announces) listings with sizes.
const V2: &str = "application/vnd.x.restic.rest.v2";

/// A repository on a REST server.
pub struct Rest {
    agent: ureq::Agent,
    url: Url,
    /// `rest:` and the redacted URL.
    location: String,
    /// How many requests may be in flight at once (`-o rest.connections=N`); kept for the
    /// stages that fetch in parallel.
    pub connections: usize,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("location", &self.location).finish_non_exhaustive()
    }
}

/// restic's default for `rest.connections`.
const DEFAULT_CONNECTIONS: usize = 5;

impl Rest {
    /// A backend for `url` (what follows `rest:`).
    pub fn new(url: &str, opts: &Options) -> Result<Rest> {
        let url = Url::parse(url).map_err(|e| match e {
            Error::Usage(m) => Error::Usage(format!("repository rest:{m}")),
            other => other,
        })?;
        let mut connections = DEFAULT_CONNECTIONS;
        for (k, v) in &opts.extended {
            match k.strip_prefix("rest.") {
                Some("connections") => {
                    connections = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::Usage(format!("-o rest.connections={v}: not a positive number"))
                    })?
                }
                Some(other) => {
                    return Err(Error::Usage(format!("-o rest.{other}: no such option of the rest backend")))
                }
                None => {}
            }
        }
        Ok(Rest { agent: http::agent(opts)?, location: format!("rest:{}", url.redacted), url, connections })
    }

    fn path(t: FileType, name: &str) -> String {
        match t {
            FileType::Config => "config".into(),
            _ => format!("{}/{}", t.dir(), name),
        }
    }

    fn what(&self, path: &str) -> String {
        format!("{}{}", self.location, path)
    }

    fn auth<B>(&self, mut r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(a) = &self.url.auth {
            r = r.header("Authorization", a.expose());
        }
        r
    }

    /// Sends a request without a body and fails on any status but success.
    fn call(
        &self,
        r: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let resp = self.auth(r).call().map_err(|e| http::transport_error(e, what))?;
        if !resp.status().is_success() {
            return Err(http::status_error(&resp, what));
        }
        Ok(resp)
    }

    fn head(&self, t: FileType, name: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let p = Rest::path(t, name);
        self.call(self.agent.head(format!("{}{p}", self.url.base)), &self.what(&p))
    }
}

#[derive(serde::Deserialize)]
struct ListEntry {
    name: String,
    size: u64,
}

impl Remote for Rest {
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
        let p = format!("{}/", t.dir());
        let what = self.what(&p);
        let resp =
            match self.call(self.agent.get(format!("{}{p}", self.url.base)).header("Accept", V2), &what) {
                Ok(r) => r,
                // restic's server answers 404 for a type directory that is not there yet.
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
        let v2 = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(V2));
        let mut body = Vec::new();
        http::read_all(resp, &what, &mut body)?;
        let bad = |e: serde_json::Error| {
            Error::remote(Class::Permanent, None, format!("{what}: listing is not JSON: {e}"))
        };
        let mut out: Vec<Entry> = if v2 {
            let v: Vec<ListEntry> = serde_json::from_slice(&body).map_err(bad)?;
            v.into_iter().map(|e| Entry { name: e.name, size: e.size }).collect()
        } else {
            // Version 1 lists names only: the sizes take one HEAD each.
            let names: Vec<String> = serde_json::from_slice(&body).map_err(bad)?;
            let mut v = Vec::with_capacity(names.len());
            for name in names.into_iter().filter(|n| is_id_name(n)) {
                let size = self.size(t, &name)?;
                v.push(Entry { name, size });
            }
            v
        };
        out.retain(|e| is_id_name(&e.name));
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let p = Rest::path(t, name);
        let what = self.what(&p);
        let resp = self.call(self.agent.get(format!("{}{p}", self.url.base)), &what)?;
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
        let p = Rest::path(t, name);
        let what = self.what(&p);
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        let resp =
            self.call(self.agent.get(format!("{}{p}", self.url.base)).header("Range", &range), &what)?;
        http::read_range_body(resp, &what, offset, len, buf)
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64> {
        http::content_length(&self.head(t, name)?, &self.what(&Rest::path(t, name)))
    }

    fn put(&self, t: FileType, name: &str, body: Body<'_>) -> Result<()> {
        let p = Rest::path(t, name);
        let what = self.what(&p);
        let r = self
            .auth(self.agent.post(format!("{}{p}", self.url.base)))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", body.len().to_string());
        let mut reader = body.reader();
        let resp =
            r.send(ureq::SendBody::from_reader(&mut reader)).map_err(|e| http::transport_error(e, &what))?;
        if !resp.status().is_success() {
            return Err(http::status_error(&resp, &what));
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let p = Rest::path(t, name);
        self.call(self.agent.delete(format!("{}{p}", self.url.base)), &self.what(&p))?;
        Ok(())
    }

    fn create(&self) -> Result<()> {
        let what = self.what("?create=true");
        let resp = self
            .auth(self.agent.post(format!("{}?create=true", self.url.base)))
            .send_empty()
            .map_err(|e| http::transport_error(e, &what))?;
        if !resp.status().is_success() {
            return Err(http::status_error(&resp, &what));
        }
        Ok(())
    }
}

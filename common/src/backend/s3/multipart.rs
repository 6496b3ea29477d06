//! S3's multipart upload for large packs; [`super::super::retry`] decides when to use it and
//! retries each step on its own.

use super::xml::{escape, tag, tags, unescape};
use super::*;
use crate::backend::retry::Unfinished;
use crate::go::time::GoTime;

/// S3's multipart upload: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
/// AbortMultipartUpload.
impl Multipart for S3 {
    fn threshold(&self) -> u64 {
        MULTIPART_THRESHOLD
    }

    fn part_size(&self) -> u64 {
        PART_SIZE
    }

    fn start(&self, t: FileType, name: &str) -> Result<String> {
        let what = format!("{} (starting a multipart upload)", self.what(&t.path(name)));
        let resp = self.send(
            "POST",
            Some(&self.key(t, name)),
            &[("uploads", "")],
            &[],
            &[("content-type", "application/octet-stream")],
            None,
            &what,
        )?;
        let mut body = Vec::new();
        http::read_all(resp, &what, &mut body)?;
        let xml = String::from_utf8_lossy(&body);
        match tag(&xml, "UploadId") {
            Some(id) if !id.trim().is_empty() => Ok(unescape(id.trim())),
            _ => Err(Error::backend(format!("{what}: the answer has no UploadId"))),
        }
    }

    fn put_part(&self, t: FileType, name: &str, upload: &str, number: u32, body: Body<'_>) -> Result<String> {
        let what = format!("{} (part {number})", self.what(&t.path(name)));
        let hash = body_hash(body, &what)?;
        let n = number.to_string();
        let resp = self.send(
            "PUT",
            Some(&self.key(t, name)),
            &[("partNumber", &n), ("uploadId", upload)],
            &[],
            &[],
            Some((body, &hash)),
            &what,
        )?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        // Read the (empty) body to the end so that the connection can be used again.
        http::read_all(resp, &what, &mut Vec::new())?;
        etag.filter(|e| !e.is_empty())
            .ok_or_else(|| Error::remote(Class::Transient, None, format!("{what}: the answer has no ETag")))
    }

    fn complete(&self, t: FileType, name: &str, upload: &str, parts: &[String], size: u64) -> Result<()> {
        let what = format!("{} (completing a multipart upload)", self.what(&t.path(name)));
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in parts.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let hash = sigv4::sha256_hex(xml.as_bytes());
        let sent = self
            .send(
                "POST",
                Some(&self.key(t, name)),
                &[("uploadId", upload)],
                &[],
                &[("content-type", "application/xml")],
                Some((Body::Bytes(xml.as_bytes()), &hash)),
                &what,
            )
            .and_then(|resp| {
                // S3 may answer 200 and still fail: the error is then in the body.
                let mut body = Vec::new();
                http::read_all(resp, &what, &mut body)?;
                let answer = String::from_utf8_lossy(&body);
                if answer.contains("<Error>") {
                    let code = tag(&answer, "Code").map(unescape).unwrap_or_default();
                    let class = match code.as_str() {
                        "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout" => {
                            Class::Transient
                        }
                        _ => Class::Permanent,
                    };
                    return Err(Error::remote(class, Some(200), format!("{what}: {code}")));
                }
                Ok(())
            });
        match sent {
            // The answer to an earlier attempt that did complete was lost: the upload is gone
            // now, and the object is there in full.
            Err(e) if e.is_not_found() => match self.head(t, name) {
                Ok(resp) if http::content_length(&resp, &what).ok() == Some(size) => Ok(()),
                _ => Err(e),
            },
            other => other,
        }
    }

    fn abort(&self, t: FileType, name: &str, upload: &str) -> Result<()> {
        let what = format!("{} (aborting a multipart upload)", self.what(&t.path(name)));
        match self.send("DELETE", Some(&self.key(t, name)), &[("uploadId", upload)], &[], &[], None, &what) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn uploads(&self, t: FileType, name: &str) -> Result<Vec<String>> {
        let key = self.key(t, name);
        let what = format!("{} (listing multipart uploads)", self.what(&t.path(name)));
        let resp = self.send("GET", None, &[("uploads", ""), ("prefix", &key)], &[], &[], None, &what)?;
        let mut body = Vec::new();
        http::read_all(resp, &what, &mut body)?;
        let xml = String::from_utf8_lossy(&body);
        // The first page is enough: one object name has at most a few stray uploads.
        Ok(tags(&xml, "Upload")
            .filter(|u| tag(u, "Key").map(unescape).as_deref() == Some(key.as_str()))
            .filter_map(|u| tag(u, "UploadId").map(|id| unescape(id.trim())))
            .collect())
    }

    fn pack_uploads(&self) -> Result<Vec<Unfinished>> {
        let prefix = join(&self.prefix, "data/");
        let what = format!("{} (listing multipart uploads)", self.what("data/"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if let Some((key, id)) = &marker {
                query.extend([("key-marker", key.as_str()), ("upload-id-marker", id.as_str())]);
            }
            let resp = self.send("GET", None, &query, &[], &[], None, &what)?;
            let mut body = Vec::new();
            http::read_all(resp, &what, &mut body)?;
            let xml = String::from_utf8_lossy(&body);
            out.extend(unfinished(&xml, now));
            let truncated = tag(&xml, "IsTruncated").is_some_and(|v| v.trim() == "true");
            let next = (tag(&xml, "NextKeyMarker"), tag(&xml, "NextUploadIdMarker"));
            match next {
                (Some(k), Some(i)) if truncated => {
                    let next = (unescape(k), unescape(i.trim()));
                    if marker.as_ref() == Some(&next) {
                        return Err(Error::backend(format!("{what}: the listing does not advance")));
                    }
                    marker = Some(next);
                }
                _ => return Ok(out),
            }
        }
    }
}

/// The uploads of packs in a ListMultipartUploads answer, with their ages at `now` (since
/// the Unix epoch).
fn unfinished(xml: &str, now: std::time::Duration) -> Vec<Unfinished> {
    tags(xml, "Upload")
        .filter_map(|u| {
            let key = unescape(tag(u, "Key")?);
            let name = key.rsplit('/').next().unwrap_or("");
            if !is_id_name(name) {
                return None;
            }
            let id = unescape(tag(u, "UploadId")?.trim());
            let age = tag(u, "Initiated")
                .and_then(|t| GoTime::parse(t.trim()).ok())
                .and_then(|t| u64::try_from(t.secs).ok())
                .and_then(|t| now.as_secs().checked_sub(t))
                .map(std::time::Duration::from_secs);
            Some(Unfinished { name: name.to_string(), id, age })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unfinished_uploads_parse() {
        let id = "ab".repeat(32);
        let xml = format!(
            "<ListMultipartUploadsResult><Bucket>b</Bucket>\
             <Upload><Key>repo/data/ab/{id}</Key><UploadId>u&amp;1</UploadId>\
             <Initiated>1970-01-02T00:00:00.000Z</Initiated></Upload>\
             <Upload><Key>repo/data/ab/not-a-pack</Key><UploadId>u2</UploadId></Upload>\
             <Upload><Key>repo/data/ab/{id}</Key><UploadId>u3</UploadId>\
             <Initiated>2100-01-01T00:00:00Z</Initiated></Upload>\
             <Upload><Key>repo/data/ab/{id}</Key><UploadId>u4</UploadId></Upload>\
             </ListMultipartUploadsResult>"
        );
        let got = unfinished(&xml, Duration::from_secs(2 * 86400));
        let ages: Vec<_> = got.iter().map(|u| (u.id.as_str(), u.age)).collect();
        assert_eq!(ages, [("u&1", Some(Duration::from_secs(86400))), ("u3", None), ("u4", None)]);
        assert!(got.iter().all(|u| u.name == id));
        // Only an upload known to be a day old is a dead run's.
        let stale: Vec<_> = crate::backend::retry::stale(got).into_iter().map(|u| u.id).collect();
        assert_eq!(stale, ["u&1"]);
    }
}

//! S3's multipart upload for large packs; [`super::super::retry`] decides when to use it and
//! retries each step on its own.

use super::xml::{escape, tag, tags, unescape};
use super::*;

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
}

//! restic's JSON messages, with its field names in its order (`message_type` first: some
//! wrappers match the literal prefix `{"message_type":"summary",`). Counters restic leaves
//! out when zero are left out here too.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::{fraction, Shared};
use crate::record::SummaryRecord;
use crate::Id;

fn zero(n: &u64) -> bool {
    *n == 0
}

/// A float as Go's encoding/json writes it: the shortest digits that read back the same, in
/// plain decimal (`0`, `1`, `0.25`, no `.0`) unless it is below 1e-6 or from 1e21 on, where
/// it takes an exponent (`1e-7`, `1e+21`). Wrappers that compare `percent_done` to the text
/// `1`, or parse it into an integer type at 0 and 1, see what restic gives them.
fn go_float<S: serde::Serializer>(f: &f64, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let raw = serde_json::value::RawValue::from_string(go_float_text(*f)).map_err(S::Error::custom)?;
    raw.serialize(s)
}

fn go_option<S: serde::Serializer>(f: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(f) => go_float(f, s),
        None => s.serialize_none(),
    }
}

fn go_float_text(f: f64) -> String {
    if !f.is_finite() {
        return "0".into(); // Go refuses these; none of ours can be one
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` has Go's shortest digits; Go signs a positive exponent.
        let t = format!("{f:e}");
        return match t.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => t,
        };
    }
    format!("{f}")
}

/// `restic restore --json`'s `status` and `summary` (the summary has no `percent_done`).
#[derive(Debug, Serialize)]
pub struct RestoreStatus {
    message_type: &'static str,
    #[serde(skip_serializing_if = "zero")]
    seconds_elapsed: u64,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "go_option")]
    percent_done: Option<f64>,
    #[serde(skip_serializing_if = "zero")]
    total_files: u64,
    #[serde(skip_serializing_if = "zero")]
    files_restored: u64,
    #[serde(skip_serializing_if = "zero")]
    files_skipped: u64,
    #[serde(skip_serializing_if = "zero")]
    files_deleted: u64,
    #[serde(skip_serializing_if = "zero")]
    total_bytes: u64,
    #[serde(skip_serializing_if = "zero")]
    bytes_restored: u64,
    #[serde(skip_serializing_if = "zero")]
    bytes_skipped: u64,
}

impl RestoreStatus {
    pub(super) fn status(s: &Shared) -> RestoreStatus {
        let mut m = RestoreStatus::summary(s);
        m.message_type = "status";
        // Skipped bytes count as done: a resumed restore still ends at 1.
        let total = if s.totals_known() { m.total_bytes } else { u64::MAX };
        m.percent_done = Some(fraction(m.bytes_restored + m.bytes_skipped, total));
        m
    }

    pub(super) fn summary(s: &Shared) -> RestoreStatus {
        let c = &s.c;
        RestoreStatus {
            message_type: "summary",
            seconds_elapsed: s.start.elapsed().as_secs(),
            percent_done: None,
            total_files: c.total_nodes.load(Relaxed),
            files_restored: c.items.load(Relaxed),
            files_skipped: c.skipped_items.load(Relaxed),
            files_deleted: 0,
            total_bytes: c.total_bytes.load(Relaxed),
            bytes_restored: c.bytes.load(Relaxed),
            bytes_skipped: c.skipped_bytes.load(Relaxed),
        }
    }
}

/// `restic backup --json`'s `status`.
#[derive(Debug, Serialize)]
pub struct BackupStatus {
    message_type: &'static str,
    #[serde(skip_serializing_if = "zero")]
    seconds_elapsed: u64,
    #[serde(skip_serializing_if = "zero")]
    seconds_remaining: u64,
    #[serde(serialize_with = "go_float")]
    percent_done: f64,
    #[serde(skip_serializing_if = "zero")]
    total_files: u64,
    #[serde(skip_serializing_if = "zero")]
    files_done: u64,
    #[serde(skip_serializing_if = "zero")]
    total_bytes: u64,
    #[serde(skip_serializing_if = "zero")]
    bytes_done: u64,
    #[serde(skip_serializing_if = "zero")]
    error_count: u64,
}

impl BackupStatus {
    pub(super) fn new(s: &Shared) -> BackupStatus {
        let c = &s.c;
        let elapsed = s.start.elapsed();
        let (done, total) = (c.bytes.load(Relaxed), c.total_bytes.load(Relaxed));
        let known = s.totals_known();
        let remaining = match known && done > 0 && total > done {
            true => (elapsed.as_secs_f64() * (total - done) as f64 / done as f64) as u64,
            false => 0,
        };
        BackupStatus {
            message_type: "status",
            seconds_elapsed: elapsed.as_secs(),
            seconds_remaining: remaining,
            percent_done: if known { fraction(done, total) } else { 0.0 },
            total_files: c.total_files.load(Relaxed),
            files_done: c.items.load(Relaxed),
            total_bytes: total,
            bytes_done: done,
            error_count: c.errors.load(Relaxed),
        }
    }
}

/// `restic backup --json`'s `summary` (restic 0.17–0.19), then sluice's own two counters.
#[derive(Debug, Serialize)]
pub struct BackupSummary {
    message_type: &'static str,
    #[serde(flatten)]
    counts: crate::snapshot::Counts,
    #[serde(serialize_with = "go_float")]
    total_duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_end: Option<String>,
    snapshot_id: Id,
    /// Files whose content was read (the others were unchanged against the parent).
    files_read: u64,
    bytes_read: u64,
}

impl From<&SummaryRecord> for BackupSummary {
    fn from(s: &SummaryRecord) -> BackupSummary {
        BackupSummary {
            message_type: "summary",
            counts: s.counts.clone(),
            total_duration: s.total_duration,
            backup_start: s.backup_start.clone(),
            backup_end: s.backup_end.clone(),
            snapshot_id: s.snapshot_id,
            files_read: s.files_read,
            bytes_read: s.bytes_read,
        }
    }
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    message: &'a str,
}

/// restic's `error` message for one item that failed.
#[derive(Debug, Serialize)]
pub struct ErrorMessage<'a> {
    message_type: &'static str,
    error: Message<'a>,
    during: &'a str,
    item: &'a str,
}

impl<'a> ErrorMessage<'a> {
    pub fn new(why: &'a str, during: &'a str, item: &'a str) -> ErrorMessage<'a> {
        ErrorMessage { message_type: "error", error: Message { message: why }, during, item }
    }
}

/// restic 0.18's last message on a fatal error.
#[derive(Debug, Serialize)]
pub struct ExitError<'a> {
    message_type: &'static str,
    code: i32,
    message: &'a str,
}

impl<'a> ExitError<'a> {
    pub fn new(code: i32, message: &'a str) -> ExitError<'a> {
        ExitError { message_type: "exit_error", code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        // strconv.FormatFloat(f, 'f' or 'e', -1, 64) as encoding/json picks it.
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.5e-5, "0.000025"),
            (1e-6, "0.000001"),
            (9.5e-7, "9.5e-7"),
            (1e-10, "1e-10"),
            (123456.789, "123456.789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float_text(f), want, "{f:e}");
        }
    }

    #[test]
    fn message_type_comes_first() {
        let s = BackupSummary::from(&SummaryRecord::default());
        let line = serde_json::to_string(&s).unwrap();
        assert!(line.starts_with(r#"{"message_type":"summary","files_new":0,"#), "{line}");
        assert!(line.contains(r#","total_duration":0,"#), "{line}");
        let e = serde_json::to_string(&ErrorMessage::new("denied", "restore", "a/b")).unwrap();
        assert_eq!(
            e,
            r#"{"message_type":"error","error":{"message":"denied"},"during":"restore","item":"a/b"}"#
        );
        let x = serde_json::to_string(&ExitError::new(12, "wrong password")).unwrap();
        assert_eq!(x, r#"{"message_type":"exit_error","code":12,"message":"wrong password"}"#);
    }
}

//! Snapshot files (`snapshots/<id>`): which tree was backed up, when, from where (doc/format.md, "Snapshots").
//! Written as restic writes them (Go field order, `omitempty`, compact, no trailing newline) and
//! read as Go reads them (unknown keys ignored, keys in any case, `null` as empty).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::{Error, Result};
use crate::go::json::{write_id, write_string, write_time, write_uint, FoldedKey};
use crate::go::strconv::lossy_utf8;
use crate::go::{GoJsonFlavor, GoTime};
use crate::id::Id;

/// Backup statistics, written by restic ≥ 0.17. Every field is always written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// When the backup started.
    pub backup_start: GoTime,
    /// When the backup finished.
    pub backup_end: GoTime,
    /// What the backup found and added; restic writes these right after the two times.
    pub counts: Counts,
}

/// The counters of a backup's [`Summary`], in restic's order. `pack` sends them to `push` in
/// its `summary` record too (hence serde, with restic's key names).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose content or metadata changed.
    pub files_changed: u64,
    /// Files taken over from the parent unchanged.
    pub files_unmodified: u64,
    /// Directories not in the parent snapshot.
    pub dirs_new: u64,
    /// Directories that changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unmodified: u64,
    /// Data blobs added to the repository.
    pub data_blobs: u64,
    /// Tree blobs added to the repository.
    pub tree_blobs: u64,
    /// Uncompressed bytes of the added blobs.
    pub data_added: u64,
    /// Bytes the added blobs occupy in the repository.
    pub data_added_packed: u64,
    /// Files read by the backup.
    pub total_files_processed: u64,
    /// Bytes read by the backup.
    pub total_bytes_processed: u64,
}

/// A snapshot: the root tree of one backup and what describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Snapshot time, in the backup host's local offset.
    pub time: GoTime,
    /// The snapshot used as parent for change detection.
    pub parent: Option<Id>,
    /// The root tree blob.
    pub tree: Id,
    /// The backup targets as absolute paths.
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// uid of the user (0 is omitted, like every empty field but `time`, `tree`, `paths`).
    pub uid: u32,
    /// gid of the user.
    pub gid: u32,
    /// Exclude patterns used.
    pub excludes: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// The snapshot this one was rewritten from.
    pub original: Option<Id>,
    /// The writing program, e.g. `restic 0.18.0` (restic ≥ 0.16).
    pub program_version: String,
    /// Backup statistics (restic ≥ 0.17).
    pub summary: Option<Summary>,
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Summary, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Summary;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snapshot summary object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Summary, A::Error> {
                let mut s = Summary::default();
                while let Some(k) = m.next_key::<FoldedKey>()? {
                    let slot = match k.as_str() {
                        "backup_start" => {
                            s.backup_start = m.next_value::<Option<GoTime>>()?.unwrap_or_default();
                            continue;
                        }
                        "backup_end" => {
                            s.backup_end = m.next_value::<Option<GoTime>>()?.unwrap_or_default();
                            continue;
                        }
                        "files_new" => &mut s.counts.files_new,
                        "files_changed" => &mut s.counts.files_changed,
                        "files_unmodified" => &mut s.counts.files_unmodified,
                        "dirs_new" => &mut s.counts.dirs_new,
                        "dirs_changed" => &mut s.counts.dirs_changed,
                        "dirs_unmodified" => &mut s.counts.dirs_unmodified,
                        "data_blobs" => &mut s.counts.data_blobs,
                        "tree_blobs" => &mut s.counts.tree_blobs,
                        "data_added" => &mut s.counts.data_added,
                        "data_added_packed" => &mut s.counts.data_added_packed,
                        "total_files_processed" => &mut s.counts.total_files_processed,
                        "total_bytes_processed" => &mut s.counts.total_bytes_processed,
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = m.next_value::<Option<u64>>()?.unwrap_or_default();
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Snapshot, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Snapshot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a snapshot object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Snapshot, A::Error> {
                let mut tree = None;
                let mut s = Snapshot {
                    time: GoTime::default(),
                    parent: None,
                    tree: Id::default(),
                    paths: Vec::new(),
                    hostname: String::new(),
                    username: String::new(),
                    uid: 0,
                    gid: 0,
                    excludes: Vec::new(),
                    tags: Vec::new(),
                    original: None,
                    program_version: String::new(),
                    summary: None,
                };
                macro_rules! opt {
                    ($t:ty) => {
                        m.next_value::<Option<$t>>()?.unwrap_or_default()
                    };
                }
                while let Some(k) = m.next_key::<FoldedKey>()? {
                    match k.as_str() {
                        "time" => s.time = opt!(GoTime),
                        "parent" => s.parent = m.next_value()?,
                        "tree" => tree = m.next_value::<Option<Id>>()?,
                        "paths" => s.paths = opt!(Vec<String>),
                        "hostname" => s.hostname = opt!(String),
                        "username" => s.username = opt!(String),
                        "uid" => s.uid = opt!(u32),
                        "gid" => s.gid = opt!(u32),
                        "excludes" => s.excludes = opt!(Vec<String>),
                        "tags" => s.tags = opt!(Vec<String>),
                        "original" => s.original = m.next_value()?,
                        "program_version" => s.program_version = opt!(String),
                        "summary" => s.summary = m.next_value()?,
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                // restic cannot do anything with a snapshot without a tree.
                s.tree = tree.ok_or_else(|| de::Error::custom("snapshot has no tree"))?;
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

fn push_strings(out: &mut Vec<u8>, list: &[String], flavor: GoJsonFlavor) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(s.as_bytes(), flavor, out);
    }
    out.push(b']');
}

impl Snapshot {
    /// Parses a snapshot file's plaintext JSON.
    pub fn parse(json: &[u8]) -> Result<Snapshot> {
        serde_json::from_str(&lossy_utf8(json)).map_err(|e| Error::format(format!("snapshot JSON: {e}")))
    }

    /// The JSON restic 0.14 would write for this snapshot; see [`Snapshot::to_json_flavor`].
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_flavor(GoJsonFlavor::default())
    }

    /// The JSON restic writes: Go field order, empty fields omitted except `time`, `tree` and
    /// `paths`, compact, no trailing newline. Empty `paths` is written as `[]`, as restic's
    /// `NewSnapshot` creates it.
    pub fn to_json_flavor(&self, flavor: GoJsonFlavor) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let string = |out: &mut Vec<u8>, key: &[u8], s: &str| {
            if !s.is_empty() {
                out.extend_from_slice(key);
                write_string(s.as_bytes(), flavor, out);
            }
        };
        out.extend_from_slice(b"{\"time\":");
        write_time(&mut out, &self.time);
        if let Some(p) = &self.parent {
            out.extend_from_slice(b",\"parent\":");
            write_id(&mut out, p);
        }
        out.extend_from_slice(b",\"tree\":");
        write_id(&mut out, &self.tree);
        out.extend_from_slice(b",\"paths\":");
        push_strings(&mut out, &self.paths, flavor);
        string(&mut out, b",\"hostname\":", &self.hostname);
        string(&mut out, b",\"username\":", &self.username);
        if self.uid != 0 {
            out.extend_from_slice(b",\"uid\":");
            write_uint(&mut out, self.uid.into());
        }
        if self.gid != 0 {
            out.extend_from_slice(b",\"gid\":");
            write_uint(&mut out, self.gid.into());
        }
        if !self.excludes.is_empty() {
            out.extend_from_slice(b",\"excludes\":");
            push_strings(&mut out, &self.excludes, flavor);
        }
        if !self.tags.is_empty() {
            out.extend_from_slice(b",\"tags\":");
            push_strings(&mut out, &self.tags, flavor);
        }
        if let Some(o) = &self.original {
            out.extend_from_slice(b",\"original\":");
            write_id(&mut out, o);
        }
        string(&mut out, b",\"program_version\":", &self.program_version);
        if let Some(s) = &self.summary {
            out.extend_from_slice(b",\"summary\":{\"backup_start\":");
            write_time(&mut out, &s.backup_start);
            out.extend_from_slice(b",\"backup_end\":");
            write_time(&mut out, &s.backup_end);
            for (key, v) in [
                (&b",\"files_new\":"[..], s.counts.files_new),
                (b",\"files_changed\":", s.counts.files_changed),
                (b",\"files_unmodified\":", s.counts.files_unmodified),
                (b",\"dirs_new\":", s.counts.dirs_new),
                (b",\"dirs_changed\":", s.counts.dirs_changed),
                (b",\"dirs_unmodified\":", s.counts.dirs_unmodified),
                (b",\"data_blobs\":", s.counts.data_blobs),
                (b",\"tree_blobs\":", s.counts.tree_blobs),
                (b",\"data_added\":", s.counts.data_added),
                (b",\"data_added_packed\":", s.counts.data_added_packed),
                (b",\"total_files_processed\":", s.counts.total_files_processed),
                (b",\"total_bytes_processed\":", s.counts.total_bytes_processed),
            ] {
                out.extend_from_slice(key);
                write_uint(&mut out, v);
            }
            out.push(b'}');
        }
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshot files as restic 0.14.0 wrote them (decrypted): a tagged backup (+02:00), its
    /// child with a parent (-03:30), a non-root user (uid/gid written), and a tag rewrite
    /// (`original`, HTML-escaped tag).
    #[rustfmt::skip]
    const RESTIC_0_14_SNAPSHOTS: &[&str] = &[
        r#"{"time":"2026-11-25T02:35:16.32352112+02:00","tree":"298a367784517e4358c1bb466efb7dfd11d144fec24f467093cc60e260cfeadf","paths":["/tmp/tree-fx/data"],"hostname":"box","username":"root","excludes":["*.tmp"],"tags":["daily","x"]}"#,
        r#"{"time":"2026-11-24T21:05:36.87518066-03:30","parent":"548e0cb77314d2a29375a450d9e935d7567bfe7de3d79bef6d9abf78e15da55d","tree":"6ded0697daf162886e16d1d257132f760fd78cc7edc332856a52f9ab74f383dc","paths":["/tmp/tree-fx/data"],"hostname":"box","username":"root"}"#,
        r#"{"time":"2026-11-25T06:05:50.044776643+05:30","tree":"63d8138ee2fd46e46b9c59d499b12f3b3f8e91855d3c51e495f370a982693be2","paths":["/tmp/tree-fx3/d"],"hostname":"vm","username":"nobody","uid":65534,"gid":65534}"#,
        r#"{"time":"2026-11-25T02:35:16.32352112+02:00","tree":"298a367784517e4358c1bb466efb7dfd11d144fec24f467093cc60e260cfeadf","paths":["/tmp/tree-fx/data"],"hostname":"box","username":"root","excludes":["*.tmp"],"tags":["daily","x","\u003ca\u003e\u0026\"é"],"original":"548e0cb77314d2a29375a450d9e935d7567bfe7de3d79bef6d9abf78e15da55d"}"#,
    ];

    fn id(c: char) -> Id {
        Id::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn restic_snapshots_round_trip_byte_exact() {
        for &json in RESTIC_0_14_SNAPSHOTS {
            let s = Snapshot::parse(json.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(s.to_json()).unwrap(), json);
        }
        let tagged = Snapshot::parse(RESTIC_0_14_SNAPSHOTS[3].as_bytes()).unwrap();
        assert_eq!(tagged.tags[2], "<a>&\"é");
        assert_eq!(tagged.original.unwrap().short(), "548e0cb7");
        assert_eq!(tagged.time, GoTime { secs: 1_795_566_916, nanos: 323_521_120, offset_secs: 7200 });
        let child = Snapshot::parse(RESTIC_0_14_SNAPSHOTS[1].as_bytes()).unwrap();
        assert_eq!(child.parent, tagged.original);
        assert_eq!(child.time.offset_secs, -(3 * 3600 + 30 * 60));
        let nobody = Snapshot::parse(RESTIC_0_14_SNAPSHOTS[2].as_bytes()).unwrap();
        assert_eq!((nobody.uid, nobody.gid, nobody.summary), (65534, 65534, None));
    }

    /// restic's field order (doc/format.md, "Snapshots"), with every field present.
    #[test]
    fn every_field_in_go_order() {
        let t = GoTime::parse("2025-05-01T10:00:00.123456789+02:00").unwrap();
        let s = Snapshot {
            time: t,
            parent: Some(id('1')),
            tree: id('2'),
            paths: vec!["/home/u".into()],
            hostname: "box".into(),
            username: "u".into(),
            uid: 1000,
            gid: 1000,
            excludes: vec!["*.tmp".into()],
            tags: vec!["daily".into()],
            original: Some(id('3')),
            program_version: "restic 0.18.0".into(),
            summary: Some(Summary {
                backup_start: t,
                backup_end: GoTime::parse("2025-05-01T10:00:01Z").unwrap(),
                counts: Counts {
                    files_new: 3,
                    files_unmodified: 10,
                    dirs_new: 1,
                    dirs_unmodified: 4,
                    data_blobs: 3,
                    tree_blobs: 2,
                    data_added: 1234,
                    data_added_packed: 987,
                    total_files_processed: 13,
                    total_bytes_processed: 45678,
                    ..Counts::default()
                },
            }),
        };
        let json = String::from_utf8(s.to_json()).unwrap();
        let expected = concat!(
            r#"{"time":"2025-05-01T10:00:00.123456789+02:00","parent":"1111111111111111111111111111111111111111111111111111111111111111","#,
            r#""tree":"2222222222222222222222222222222222222222222222222222222222222222","paths":["/home/u"],"#,
            r#""hostname":"box","username":"u","uid":1000,"gid":1000,"excludes":["*.tmp"],"tags":["daily"],"#,
            r#""original":"3333333333333333333333333333333333333333333333333333333333333333","program_version":"restic 0.18.0","#,
            r#""summary":{"backup_start":"2025-05-01T10:00:00.123456789+02:00","backup_end":"2025-05-01T10:00:01Z","#,
            r#""files_new":3,"files_changed":0,"files_unmodified":10,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":4,"#,
            r#""data_blobs":3,"tree_blobs":2,"data_added":1234,"data_added_packed":987,"total_files_processed":13,"#,
            r#""total_bytes_processed":45678}}"#,
        );
        assert_eq!(json, expected);
        assert_eq!(Snapshot::parse(json.as_bytes()).unwrap(), s);
    }

    #[test]
    fn minimal_snapshot_and_leniency() {
        let s = Snapshot::parse(
            br#"{"Time":"2020-01-02T03:04:05Z","TREE":"2222222222222222222222222222222222222222222222222222222222222222",
                "paths":null,"tags":null,"id":"x","short_id":"y","summary":null,"uid":0}"#,
        )
        .unwrap();
        assert_eq!((s.tree, s.paths.len(), &s.summary), (id('2'), 0, &None));
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"time":"2020-01-02T03:04:05Z","tree":"2222222222222222222222222222222222222222222222222222222222222222","paths":[]}"#
        );
        for bad in [
            &br#"{"time":"2020-01-02T03:04:05Z","paths":[]}"#[..],
            br#"{"tree":null}"#,
            br#"{"tree":"22"}"#,
            br#"{"tree":"2222222222222222222222222222222222222222222222222222222222222222","uid":-1}"#,
        ] {
            assert!(Snapshot::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

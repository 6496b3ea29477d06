//! restic's tree node: one file, directory, symlink or device entry, parsed from and written to
//! exactly the JSON restic uses (doc/format.md, "Trees"). The Go conventions that JSON depends
//! on (`time.Time`, `os.FileMode`, string quoting) are in [`crate::go`].
//!
//! Writing reproduces restic's bytes so that a directory gets the same tree id as restic gives
//! it; reading accepts what Go's decoder accepts (unknown keys, keys in any case, `null`s).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::go::json::{
    decode_bytes, write_bytes, write_id, write_map, write_string, write_time, write_uint, FoldedKey,
};
use crate::go::mode;
use crate::go::strconv::{lossy_utf8, quote, unquote};
// A node's times are Go times and it is written in a JSON flavour: re-exported so that code
// handling nodes needs one import.
pub use crate::go::{GoJsonFlavor, GoTime};
use crate::id::Id;

/// The `type` of a node, as the strings restic writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// `file`: a regular file; its data is in `content`.
    File,
    /// `dir`: a directory; its entries are in the `subtree` tree blob.
    Dir,
    /// `symlink`.
    Symlink,
    /// `dev`: a block device.
    Dev,
    /// `chardev`: a character device.
    Chardev,
    /// `fifo`: a named pipe.
    Fifo,
    /// `socket`: only in old repositories; restic skips sockets.
    Socket,
    /// `irregular`: something restic could not handle (e.g. Windows reparse points).
    Irregular,
    /// Any other string, kept so it can be written back unchanged.
    Other(String),
}

impl NodeType {
    /// The string restic stores.
    pub fn as_str(&self) -> &str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::Chardev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Irregular => "irregular",
            NodeType::Other(s) => s,
        }
    }

    /// Parses restic's string; unknown strings (including `""`) become [`NodeType::Other`].
    pub fn parse(s: &str) -> NodeType {
        match s {
            "file" => NodeType::File,
            "dir" => NodeType::Dir,
            "symlink" => NodeType::Symlink,
            "dev" => NodeType::Dev,
            "chardev" => NodeType::Chardev,
            "fifo" => NodeType::Fifo,
            "socket" => NodeType::Socket,
            "irregular" => NodeType::Irregular,
            other => NodeType::Other(other.to_string()),
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The restic node's JSON `extended_attributes` entry.
struct Xattr(Vec<u8>, Vec<u8>);

impl<'de> Deserialize<'de> for Xattr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Xattr, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Xattr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an extended attribute object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Xattr, A::Error> {
                let mut x = Xattr(Vec::new(), Vec::new());
                while let Some(k) = m.next_key::<FoldedKey>()? {
                    match k.as_str() {
                        "name" => x.0 = m.next_value::<Option<String>>()?.unwrap_or_default().into_bytes(),
                        "value" => {
                            x.1 = match m.next_value::<Option<String>>()? {
                                Some(s) => decode_bytes(&s).map_err(de::Error::custom)?,
                                None => Vec::new(),
                            }
                        }
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(x)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON array that may also be `null` (Go decodes `null` into a nil slice).
fn vec_or_null<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    m: &mut A,
) -> std::result::Result<Vec<T>, A::Error> {
    Ok(m.next_value::<Option<Vec<T>>>()?.unwrap_or_default())
}

/// One entry of a restic tree. Field names and meaning follow restic's `Node` (doc/format.md, "Trees").
#[derive(Clone, Debug)]
pub struct Node {
    /// The entry name as raw bytes (unquoted; may be invalid UTF-8).
    pub name: Vec<u8>,
    /// What kind of entry this is; it, not `mode`, decides how restic restores it.
    pub node_type: NodeType,
    /// Go `os.FileMode` bits (see [`mode::from_unix`]); 0 is omitted from the JSON.
    pub mode: u32,
    /// Modification time.
    pub mtime: GoTime,
    /// Access time (equal to `mtime` unless restic ran with `--with-atime`).
    pub atime: GoTime,
    /// Status change time.
    pub ctime: GoTime,
    /// Owner uid; always written, even 0.
    pub uid: u32,
    /// Owner gid; always written, even 0.
    pub gid: u32,
    /// Owner name as resolved at backup time.
    pub user: String,
    /// Group name as resolved at backup time.
    pub group: String,
    /// Inode number (with `device_id`, identifies hard links).
    pub inode: u64,
    /// `st_dev` of the file system holding the entry.
    pub device_id: u64,
    /// File size in bytes (files only).
    pub size: u64,
    /// `st_nlink`.
    pub links: u64,
    /// Symlink target as raw bytes: from `linktarget_raw` when present, else from the
    /// `linktarget` string. Without `linktarget_raw` (restic < 0.16) a non-UTF-8 target was
    /// stored with each bad byte as `\ufffd`; it decodes to real U+FFFD characters, which
    /// re-encode raw, so such a node does not write back to its original bytes (in restic
    /// neither). Pass nodes on as [`crate::tree::TreeEntry::raw`] to keep their bytes.
    pub linktarget: Vec<u8>,
    /// Extended attributes as (name, value) in the stored order.
    pub extended_attributes: Vec<(Vec<u8>, Vec<u8>)>,
    /// OS-specific attributes (a JSON object), kept as they were read.
    pub generic_attributes: Option<Box<RawValue>>,
    /// `st_rdev` of a device node, in Linux's raw encoding.
    pub device: u64,
    /// Data blob ids in file order; `None` is written as `null` (everything but files).
    pub content: Option<Vec<Id>>,
    /// The directory's tree blob.
    pub subtree: Option<Id>,
    /// Legacy error text from old restic versions.
    pub error: String,
}

impl PartialEq for Node {
    fn eq(&self, o: &Node) -> bool {
        self.name == o.name
            && self.node_type == o.node_type
            && self.mode == o.mode
            && self.mtime == o.mtime
            && self.atime == o.atime
            && self.ctime == o.ctime
            && self.uid == o.uid
            && self.gid == o.gid
            && self.user == o.user
            && self.group == o.group
            && self.inode == o.inode
            && self.device_id == o.device_id
            && self.size == o.size
            && self.links == o.links
            && self.linktarget == o.linktarget
            && self.extended_attributes == o.extended_attributes
            && self.generic_attributes.as_ref().map(|r| r.get())
                == o.generic_attributes.as_ref().map(|r| r.get())
            && self.device == o.device
            && self.content == o.content
            && self.subtree == o.subtree
            && self.error == o.error
    }
}

impl Default for Node {
    /// An empty node as Go's decoder would leave it: zero values, Go's zero times.
    fn default() -> Self {
        Node {
            name: Vec::new(),
            node_type: NodeType::Other(String::new()),
            mode: 0,
            mtime: GoTime::default(),
            atime: GoTime::default(),
            ctime: GoTime::default(),
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            linktarget: Vec::new(),
            extended_attributes: Vec::new(),
            generic_attributes: None,
            device: 0,
            content: None,
            subtree: None,
            error: String::new(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a restic node object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Node, A::Error> {
                let mut n = Node::default();
                let mut raw_target: Option<Vec<u8>> = None;
                // `null` leaves a Go field untouched, i.e. at its zero value.
                macro_rules! opt {
                    ($t:ty) => {
                        m.next_value::<Option<$t>>()?.unwrap_or_default()
                    };
                }
                while let Some(k) = m.next_key::<FoldedKey>()? {
                    match k.as_str() {
                        "name" => {
                            let quoted: String = opt!(String);
                            n.name = unquote(&quoted).map_err(de::Error::custom)?;
                        }
                        "type" => n.node_type = NodeType::parse(&opt!(String)),
                        "mode" => n.mode = opt!(u32),
                        "mtime" => n.mtime = opt!(GoTime),
                        "atime" => n.atime = opt!(GoTime),
                        "ctime" => n.ctime = opt!(GoTime),
                        "uid" => n.uid = opt!(u32),
                        "gid" => n.gid = opt!(u32),
                        "user" => n.user = opt!(String),
                        "group" => n.group = opt!(String),
                        "inode" => n.inode = opt!(u64),
                        "device_id" => n.device_id = opt!(u64),
                        "size" => n.size = opt!(u64),
                        "links" => n.links = opt!(u64),
                        "linktarget" => n.linktarget = opt!(String).into_bytes(),
                        "linktarget_raw" => {
                            raw_target = match m.next_value::<Option<String>>()? {
                                Some(s) => Some(decode_bytes(&s).map_err(de::Error::custom)?),
                                None => None,
                            }
                        }
                        "extended_attributes" => {
                            n.extended_attributes =
                                vec_or_null::<Xattr, A>(&mut m)?.into_iter().map(|x| (x.0, x.1)).collect()
                        }
                        "generic_attributes" => {
                            let raw = m.next_value::<Option<Box<RawValue>>>()?;
                            if let Some(r) = &raw {
                                if !r.get().starts_with('{') {
                                    return Err(de::Error::custom("generic_attributes is not an object"));
                                }
                            }
                            n.generic_attributes = raw;
                        }
                        "device" => n.device = opt!(u64),
                        "content" => n.content = m.next_value::<Option<Vec<Id>>>()?,
                        "subtree" => n.subtree = m.next_value::<Option<Id>>()?,
                        "error" => n.error = opt!(String),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if let Some(raw) = raw_target {
                    n.linktarget = raw;
                }
                Ok(n)
            }
        }
        d.deserialize_map(V)
    }
}

impl Node {
    /// Parses one node object as restic reads it: unknown keys ignored, keys matched in any
    /// case, the name Go-unquoted, `linktarget_raw` preferred over `linktarget`.
    pub fn parse(json: &[u8]) -> Result<Node> {
        Node::parse_str(&lossy_utf8(json))
    }

    /// [`Node::parse`] for JSON already known to be UTF-8 (e.g. a `RawValue` from a tree).
    pub fn parse_str(json: &str) -> Result<Node> {
        serde_json::from_str(json).map_err(|e| Error::format(format!("node JSON: {e}")))
    }

    /// Appends the node's JSON exactly as restic's `json.Marshal` would write it for `flavor`:
    /// restic's field order, its `omitempty` rules, the name Go-quoted, Go's string escaping.
    pub fn write_json(&self, out: &mut Vec<u8>, flavor: GoJsonFlavor) {
        let string = |out: &mut Vec<u8>, key: &[u8], s: &[u8]| {
            out.extend_from_slice(key);
            write_string(s, flavor, out);
        };
        let uint = |out: &mut Vec<u8>, key: &[u8], v: u64, omitempty: bool| {
            if v != 0 || !omitempty {
                out.extend_from_slice(key);
                write_uint(out, v);
            }
        };
        let mut quoted = String::with_capacity(self.name.len() + 2);
        quote(&self.name, &mut quoted);
        string(out, b"{\"name\":", quoted.as_bytes());
        string(out, b",\"type\":", self.node_type.as_str().as_bytes());
        uint(out, b",\"mode\":", self.mode.into(), true);
        out.extend_from_slice(b",\"mtime\":");
        write_time(out, &self.mtime);
        out.extend_from_slice(b",\"atime\":");
        write_time(out, &self.atime);
        out.extend_from_slice(b",\"ctime\":");
        write_time(out, &self.ctime);
        uint(out, b",\"uid\":", self.uid.into(), false);
        uint(out, b",\"gid\":", self.gid.into(), false);
        if !self.user.is_empty() {
            string(out, b",\"user\":", self.user.as_bytes());
        }
        if !self.group.is_empty() {
            string(out, b",\"group\":", self.group.as_bytes());
        }
        uint(out, b",\"inode\":", self.inode, true);
        uint(out, b",\"device_id\":", self.device_id, true);
        uint(out, b",\"size\":", self.size, true);
        uint(out, b",\"links\":", self.links, true);
        if !self.linktarget.is_empty() {
            string(out, b",\"linktarget\":", &self.linktarget);
            if flavor.linktarget_raw && std::str::from_utf8(&self.linktarget).is_err() {
                out.extend_from_slice(b",\"linktarget_raw\":");
                write_bytes(&self.linktarget, out);
            }
        }
        if !self.extended_attributes.is_empty() {
            out.extend_from_slice(b",\"extended_attributes\":[");
            for (i, (name, value)) in self.extended_attributes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, b"{\"name\":", name);
                out.extend_from_slice(b",\"value\":");
                write_bytes(value, out);
                out.push(b'}');
            }
            out.push(b']');
        }
        if let Some(raw) = &self.generic_attributes {
            let mark = out.len();
            out.extend_from_slice(b",\"generic_attributes\":");
            if !write_map(out, raw, flavor) {
                out.truncate(mark);
            }
        }
        uint(out, b",\"device\":", self.device, true);
        out.extend_from_slice(b",\"content\":");
        match &self.content {
            None => out.extend_from_slice(b"null"),
            Some(ids) => {
                out.push(b'[');
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_id(out, id);
                }
                out.push(b']');
            }
        }
        if let Some(id) = &self.subtree {
            out.extend_from_slice(b",\"subtree\":");
            write_id(out, id);
        }
        if !self.error.is_empty() {
            string(out, b",\"error\":", self.error.as_bytes());
        }
        out.push(b'}');
    }

    /// Whether the name is one path component that is safe to join to a directory: not empty,
    /// not `.` or `..`, no `/`. Restore must refuse other names (restic: "invalid child node
    /// name").
    pub fn name_is_clean(&self) -> bool {
        !self.name.is_empty() && self.name != b"." && self.name != b".." && !self.name.contains(&b'/')
    }

    /// The POSIX mode bits for `chmod` (see [`mode::to_unix`]).
    pub fn unix_mode(&self) -> u32 {
        mode::to_unix(self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes exactly as restic 0.14 (Go 1.19) wrote them, TZ=Europe/Helsinki, one per type.
    #[rustfmt::skip]
    const RESTIC_0_14_NODES: &[&str] = &[
        r#"{"name":"blockdev","type":"dev","mode":67109280,"mtime":"2026-11-25T02:34:54.838544405+02:00","atime":"2026-11-25T02:34:54.838544405+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011225,"device_id":65024,"links":1,"device":1792,"content":null}"#,
        r#"{"name":"chardev","type":"chardev","mode":69206400,"mtime":"2026-11-25T02:34:54.838544405+02:00","atime":"2026-11-25T02:34:54.838544405+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011224,"device_id":65024,"links":1,"device":259,"content":null}"#,
        r#"{"name":"empty","type":"file","mode":420,"mtime":"2020-01-02T05:04:05+02:00","atime":"2020-01-02T05:04:05+02:00","ctime":"2026-11-25T02:34:54.837890471+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011214,"device_id":65024,"links":1,"content":[]}"#,
        r#"{"name":"fifo","type":"fifo","mode":33554852,"mtime":"2026-11-25T02:34:54.838544405+02:00","atime":"2026-11-25T02:34:54.838544405+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011223,"device_id":65024,"content":null}"#,
        r#"{"name":"link","type":"symlink","mode":134218239,"mtime":"2026-11-25T02:34:54.838544405+02:00","atime":"2026-11-25T02:34:54.838544405+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011220,"device_id":65024,"links":1,"linktarget":"target/file","content":null}"#,
        r#"{"name":"link_inv","type":"symlink","mode":134218239,"mtime":"2026-11-25T02:34:54.838544405+02:00","atime":"2026-11-25T02:34:54.838544405+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011221,"device_id":65024,"links":1,"linktarget":"bad\ufffdx","content":null}"#,
        r#"{"name":"nanos","type":"file","mode":420,"mtime":"2020-01-02T05:04:05.64030738+02:00","atime":"2020-01-02T05:04:05.64030738+02:00","ctime":"2026-11-25T02:34:54.839209781+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011226,"device_id":65024,"size":1,"links":1,"content":["1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9"]}"#,
        r#"{"name":"plain","type":"file","mode":420,"mtime":"2020-01-02T05:04:05+02:00","atime":"2020-01-02T05:04:05+02:00","ctime":"2026-11-25T02:34:54.838544405+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011209,"device_id":65024,"size":6,"links":1,"extended_attributes":[{"name":"user.foo","value":"YmFyAP8="},{"name":"user.\u003cx\u003e","value":""}],"content":["5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"]}"#,
        r#"{"name":"sgid","type":"file","mode":4194792,"mtime":"2020-01-02T05:04:05+02:00","atime":"2020-01-02T05:04:05+02:00","ctime":"2026-11-25T02:34:54.838137614+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011216,"device_id":65024,"size":1,"links":1,"content":["2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"]}"#,
        r#"{"name":"sticky","type":"dir","mode":2148532735,"mtime":"2020-01-02T05:04:05.1+02:00","atime":"2020-01-02T05:04:05.1+02:00","ctime":"2026-11-25T02:34:54.839209781+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011217,"device_id":65024,"content":null,"subtree":"ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8"}"#,
        r#"{"name":"suid","type":"file","mode":8389101,"mtime":"2020-01-02T05:04:05+02:00","atime":"2020-01-02T05:04:05+02:00","ctime":"2026-11-25T02:34:54.837992342+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011215,"device_id":65024,"size":1,"links":1,"content":["2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"]}"#,
        r#"{"name":"data","type":"dir","mode":2147484141,"mtime":"2020-01-02T05:04:05.1+02:00","atime":"2020-01-02T05:04:05.1+02:00","ctime":"2026-11-25T02:34:54.839209781+02:00","uid":0,"gid":0,"user":"root","group":"root","inode":10011193,"device_id":65024,"content":null,"subtree":"6b35592844c4e644c8879d7bdc96adc643c71ca98dc86bdae2518e98f490e8ac"}"#,
    ];

    fn write(n: &Node, flavor: GoJsonFlavor) -> String {
        let mut out = Vec::new();
        n.write_json(&mut out, flavor);
        String::from_utf8(out).unwrap()
    }

    fn find<'a>(name: &str) -> &'a str {
        RESTIC_0_14_NODES.iter().find(|s| s.starts_with(&format!("{{\"name\":\"{name}\""))).unwrap()
    }

    #[test]
    fn restic_nodes_round_trip_byte_exact() {
        for &json in RESTIC_0_14_NODES {
            let mut n = Node::parse(json.as_bytes()).unwrap();
            if n.name == b"link_inv" {
                // restic wrote the target's invalid byte as the escape \ufffd; decoding yields a
                // real U+FFFD, which Go (and we) would write back raw. Like restic, only the
                // original bytes reproduce the original JSON.
                assert_ne!(write(&n, GoJsonFlavor::RESTIC_0_14), json);
                n.linktarget = b"bad\xfex".to_vec();
            }
            assert_eq!(write(&n, GoJsonFlavor::RESTIC_0_14), json);
            // Nothing in these nodes depends on the flavour but the non-UTF-8 target.
            let latest = write(&n, GoJsonFlavor::RESTIC_LATEST);
            assert_eq!(latest == json, n.name != b"link_inv", "{latest}");
        }
    }

    #[test]
    fn restic_nodes_parse_to_the_right_values() {
        let f = Node::parse(find("plain").as_bytes()).unwrap();
        assert_eq!(f.node_type, NodeType::File);
        assert_eq!((f.mode, f.size, f.links, f.uid, f.user.as_str()), (420, 6, 1, 0, "root"));
        assert_eq!((f.inode, f.device_id), (10011209, 65024));
        assert_eq!(f.mtime, GoTime { secs: 1577934245, nanos: 0, offset_secs: 7200 });
        assert_eq!(
            f.extended_attributes,
            vec![(b"user.foo".to_vec(), b"bar\x00\xff".to_vec()), (b"user.<x>".to_vec(), Vec::new()),]
        );
        assert_eq!(f.content.as_ref().map(Vec::len), Some(1));
        let e = Node::parse(find("empty").as_bytes()).unwrap();
        assert_eq!((e.size, e.content), (0, Some(vec![])));
        let l = Node::parse(find("link_inv").as_bytes()).unwrap();
        assert_eq!((l.node_type, l.linktarget, l.content), (NodeType::Symlink, "bad\u{fffd}x".into(), None));
        let c = Node::parse(find("chardev").as_bytes()).unwrap();
        assert_eq!((c.node_type, c.device, c.mode), (NodeType::Chardev, 259, 69206400));
        let b = Node::parse(find("blockdev").as_bytes()).unwrap();
        assert_eq!((b.node_type, b.device), (NodeType::Dev, 1792));
        let d = Node::parse(find("sticky").as_bytes()).unwrap();
        assert_eq!(d.node_type, NodeType::Dir);
        assert_eq!(d.subtree.unwrap().to_hex(), crate::tree::EMPTY_TREE_ID);
        assert_eq!((d.unix_mode(), d.mtime.nanos), (0o1777, 100_000_000));
        assert_eq!(Node::parse(find("suid").as_bytes()).unwrap().unix_mode(), 0o4755);
        assert_eq!(Node::parse(find("sgid").as_bytes()).unwrap().unix_mode(), 0o2750);
        assert_eq!(Node::parse(find("nanos").as_bytes()).unwrap().mtime.nanos, 640307380);
    }

    #[test]
    fn node_types() {
        for s in ["file", "dir", "symlink", "dev", "chardev", "fifo", "socket", "irregular", "", "door"] {
            let t = NodeType::parse(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(matches!(t, NodeType::Other(_)), s.is_empty() || s == "door");
        }
    }

    #[test]
    fn linktarget_raw_by_flavor() {
        let n = Node {
            name: b"l".to_vec(),
            node_type: NodeType::Symlink,
            linktarget: b"bad\xfex".to_vec(),
            ..Node::default()
        };
        let old = write(&n, GoJsonFlavor::RESTIC_0_14);
        assert!(old.contains(r#""linktarget":"bad\ufffdx","content":null"#), "{old}");
        let new = write(&n, GoJsonFlavor::RESTIC_0_16);
        assert!(new.contains(r#""linktarget":"bad\ufffdx","linktarget_raw":"YmFk/ng=","content""#), "{new}");
        assert_eq!(Node::parse(new.as_bytes()).unwrap(), n);
        assert_eq!(Node::parse(old.as_bytes()).unwrap().linktarget, "bad\u{fffd}x".as_bytes());
        // Valid UTF-8 targets never get the raw copy.
        let ok = Node { linktarget: b"fine".to_vec(), ..n };
        assert!(!write(&ok, GoJsonFlavor::RESTIC_LATEST).contains("linktarget_raw"));
    }

    #[test]
    fn minimal_node_and_omitempty() {
        let n = Node {
            name: b"x".to_vec(),
            node_type: NodeType::Fifo,
            mtime: GoTime::from_unix(0, 0, 0),
            ..Node::default()
        };
        assert_eq!(
            write(&n, GoJsonFlavor::default()),
            r#"{"name":"x","type":"fifo","mtime":"1970-01-01T00:00:00Z","atime":"0001-01-01T00:00:00Z","ctime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"content":null}"#
        );
        let e = Node { error: "boom".into(), size: 1, ..n.clone() };
        assert!(write(&e, GoJsonFlavor::default()).ends_with(r#""size":1,"content":null,"error":"boom"}"#));
    }

    #[test]
    fn parse_is_lenient_like_go() {
        let n = Node::parse(
            br#"{"NAME":"a\\x00b","Type":"file","\u212aey":1,"mode":null,"uid":7,"size":5,
                 "extended_attributes":[{"Name":"user.n","value":null}],"content":null,
                 "future":{"x":[1,2]},"\u017fubtree":null}"#,
        )
        .unwrap();
        assert_eq!((n.name.as_slice(), n.node_type, n.uid, n.size), (&b"a\x00b"[..], NodeType::File, 7, 5));
        assert_eq!(n.extended_attributes, vec![(b"user.n".to_vec(), vec![])]);
        assert_eq!((n.content, n.subtree, n.mtime), (None, None, GoTime::default()));
        // Later duplicates win, as in Go.
        assert_eq!(Node::parse(br#"{"uid":1,"uid":2}"#).unwrap().uid, 2);
    }

    #[test]
    fn parse_rejects_what_restic_rejects() {
        for bad in [
            &br#"{"name":"a\"b"}"#[..], // a bare quote in the Go-quoted name
            br#"{"name":"x\\q"}"#,
            br#"{"uid":-1}"#,
            br#"{"uid":4294967296}"#,
            br#"{"mode":1.5}"#,
            br#"{"mtime":"yesterday"}"#,
            br#"{"content":["00"]}"#,
            br#"{"generic_attributes":[1]}"#,
            br#"{"extended_attributes":[{"name":"a","value":"!!"}]}"#,
            br#"[]"#,
            br#"{"name":"a"} x"#,
        ] {
            assert!(Node::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn generic_attributes_like_go_map() {
        let json = br#"{"name":"w","type":"file","generic_attributes":{ "windows.file_attributes" : "IA==", "windows.creation_time":{"a" : "<"} }}"#;
        let n = Node::parse(json).unwrap();
        let out = write(&n, GoJsonFlavor::default());
        assert!(
            out.contains(r#""generic_attributes":{"windows.creation_time":{"a":"\u003c"},"windows.file_attributes":"IA=="},"content""#),
            "{out}"
        );
        let empty = Node::parse(br#"{"name":"w","generic_attributes":{}}"#).unwrap();
        assert!(!write(&empty, GoJsonFlavor::default()).contains("generic"));
    }

    #[test]
    fn clean_names() {
        for (name, clean) in [
            (&b"a"[..], true),
            (b"..a", true),
            (b"\xfe", true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b"a/b", false),
            (b"/", false),
        ] {
            let n = Node { name: name.to_vec(), ..Node::default() };
            assert_eq!(n.name_is_clean(), clean, "{name:?}");
        }
    }
}

//! restic's tree node: one file, directory, symlink or device entry, parsed from and written to
//! exactly the JSON restic uses (FORMAT.md §10.2–§10.8), plus Go's `time.Time` and
//! `os.FileMode` conventions that node JSON depends on.
//!
//! Writing reproduces restic's bytes so that a directory gets the same tree id as restic gives
//! it; reading accepts what Go's decoder accepts (unknown keys, keys in any case, `null`s).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::gostr::{
    go_base64_decode, go_json_bytes, go_json_compact, go_json_string_flavor, go_lossy_utf8, go_quote,
    go_unquote, GoJsonFlavor,
};
use crate::id::Id;

/// Go `os.ModeDir`: a directory.
pub const MODE_DIR: u32 = 1 << 31;
/// Go `os.ModeAppend` (never stored by restic).
pub const MODE_APPEND: u32 = 1 << 30;
/// Go `os.ModeExclusive` (never stored by restic).
pub const MODE_EXCLUSIVE: u32 = 1 << 29;
/// Go `os.ModeTemporary` (never stored by restic).
pub const MODE_TEMPORARY: u32 = 1 << 28;
/// Go `os.ModeSymlink`.
pub const MODE_SYMLINK: u32 = 1 << 27;
/// Go `os.ModeDevice`: a block device, or with [`MODE_CHAR_DEVICE`] a character device.
pub const MODE_DEVICE: u32 = 1 << 26;
/// Go `os.ModeNamedPipe`: a FIFO.
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
/// Go `os.ModeSocket`.
pub const MODE_SOCKET: u32 = 1 << 24;
/// Go `os.ModeSetuid` (POSIX 0o4000).
pub const MODE_SETUID: u32 = 1 << 23;
/// Go `os.ModeSetgid` (POSIX 0o2000).
pub const MODE_SETGID: u32 = 1 << 22;
/// Go `os.ModeCharDevice`, always together with [`MODE_DEVICE`].
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// Go `os.ModeSticky` (POSIX 0o1000).
pub const MODE_STICKY: u32 = 1 << 20;
/// Go `os.ModeIrregular`: a file Go could not classify.
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// Go `os.ModeType`: all file-type bits.
pub const MODE_TYPE: u32 =
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR;
/// Go `os.ModePerm`: the rwx permission bits, numerically the same as POSIX.
pub const MODE_PERM: u32 = 0o777;

/// What Go's `os.Lstat` reports as `Mode()` for a POSIX `st_mode`: permissions kept, the file
/// type and the setuid/setgid/sticky bits moved to Go's high bits.
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut mode = st_mode & MODE_PERM;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFBLK => MODE_DEVICE,
        libc::S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        libc::S_IFDIR => MODE_DIR,
        libc::S_IFIFO => MODE_NAMED_PIPE,
        libc::S_IFLNK => MODE_SYMLINK,
        libc::S_IFSOCK => MODE_SOCKET,
        _ => 0, // regular files carry no type bit, and Go adds none for unknown types either
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= MODE_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= MODE_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= MODE_STICKY;
    }
    mode
}

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

/// A Go `time.Time` as restic serializes it: an instant plus the UTC offset it was recorded
/// in. The offset is part of the bytes (`+02:00` vs `Z`), so it must survive a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    /// Nanoseconds within the second, below 1e9.
    pub nanos: u32,
    /// Offset east of UTC in seconds; 0 is written as `Z`.
    pub offset_secs: i32,
}

/// Go's zero `time.Time` is 0001-01-01T00:00:00Z, which is what a missing time decodes to.
const GO_ZERO_SECS: i64 = -62_135_596_800;

impl Default for GoTime {
    /// Go's zero time, `0001-01-01T00:00:00Z`.
    fn default() -> Self {
        GoTime { secs: GO_ZERO_SECS, nanos: 0, offset_secs: 0 }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl GoTime {
    /// A time from Unix seconds and nanoseconds, recorded at `offset_secs` east of UTC.
    pub fn from_unix(secs: i64, nanos: u32, offset_secs: i32) -> GoTime {
        let carry = i64::from(nanos / 1_000_000_000);
        GoTime { secs: secs + carry, nanos: nanos % 1_000_000_000, offset_secs }
    }

    /// A time in this machine's local zone (`TZ`, `/etc/localtime`), as Go's `time.Local`
    /// gives it: the offset is the one in effect at that instant.
    pub fn local(secs: i64, nanos: u32) -> GoTime {
        let mut offset = 0i32;
        // time_t is 32 bits on some targets; an instant beyond it keeps offset 0.
        let t = secs as libc::time_t;
        // SAFETY: a zeroed tm is a valid value (integers and a null zone-name pointer).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
        if t as i64 == secs && !unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            offset = i32::try_from(tm.tm_gmtoff).unwrap_or(0);
        }
        GoTime::from_unix(secs, nanos, offset)
    }

    /// Parses RFC 3339 as Go's `time.Time.UnmarshalJSON` does: `YYYY-MM-DDTHH:MM:SS`, an
    /// optional fraction (`.` or `,`, any number of digits, nanoseconds kept), then `Z` or
    /// `±hh:mm`.
    pub fn parse(s: &str) -> Result<GoTime> {
        let bad = |why: &str| Error::format(format!("time {s:?}: {why}"));
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Result<u32> {
            let digits = b.get(from..from + len).ok_or_else(|| bad("too short"))?;
            digits.iter().try_fold(0u32, |acc, &d| {
                if d.is_ascii_digit() {
                    Ok(acc * 10 + u32::from(d - b'0'))
                } else {
                    Err(bad("expected a digit"))
                }
            })
        };
        let lit = |at: usize, c: u8| -> Result<()> {
            if b.get(at) == Some(&c) {
                Ok(())
            } else {
                Err(bad(&format!("expected {:?} at {at}", c as char)))
            }
        };
        let year = i64::from(num(0, 4)?);
        lit(4, b'-')?;
        let month = num(5, 2)?;
        lit(7, b'-')?;
        let day = num(8, 2)?;
        lit(10, b'T')?;
        let hour = num(11, 2)?;
        lit(13, b':')?;
        let min = num(14, 2)?;
        lit(16, b':')?;
        let sec = num(17, 2)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("date out of range"));
        }
        if hour > 23 || min > 59 || sec > 59 {
            return Err(bad("time of day out of range"));
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            let mut scale = 100_000_000u32;
            while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                // Go reads nine digits and ignores the rest.
                nanos += u32::from(d - b'0') * scale;
                scale /= 10;
                i += 1;
            }
        }
        let offset_secs = match b.get(i) {
            Some(b'Z') if b.len() == i + 1 => 0,
            Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 => {
                let hh = num(i + 1, 2)?;
                lit(i + 3, b':')?;
                let mm = num(i + 4, 2)?;
                if hh > 23 || mm > 59 {
                    return Err(bad("offset out of range"));
                }
                let off = (hh * 3600 + mm * 60) as i32;
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(bad("expected Z or ±hh:mm at the end")),
        };
        let local = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
        Ok(GoTime { secs: local - i64::from(offset_secs), nanos, offset_secs })
    }

    /// Appends Go's RFC 3339 form (no quotes). Years outside 0..=9999, which Go refuses to
    /// encode, are clamped into range as restic does before writing a node.
    pub fn write(&self, out: &mut Vec<u8>) {
        let local = self.secs + i64::from(self.offset_secs);
        let (mut y, mut m, mut d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400) as u32;
        if !(0..=9999).contains(&y) {
            // restic shifts the year only (Go's AddDate), which turns 29 February into 1 March
            // in a non-leap target year.
            y = y.clamp(0, 9999);
            if m == 2 && d == 29 && !is_leap(y) {
                m = 3;
                d = 1;
            }
        }
        let two = |out: &mut Vec<u8>, v: u32| {
            out.push(b'0' + (v / 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        };
        let y = y as u32;
        two(out, y / 100);
        two(out, y % 100);
        out.push(b'-');
        two(out, m);
        out.push(b'-');
        two(out, d);
        out.push(b'T');
        two(out, sod / 3600);
        out.push(b':');
        two(out, sod / 60 % 60);
        out.push(b':');
        two(out, sod % 60);
        if self.nanos != 0 {
            let mut digits = [0u8; 9];
            let mut n = self.nanos % 1_000_000_000;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let len = 9 - digits.iter().rev().take_while(|&&c| c == b'0').count();
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
        if self.offset_secs == 0 {
            out.push(b'Z');
        } else {
            // Go prints whole minutes, truncating toward zero (LMT offsets have seconds).
            let minutes = self.offset_secs / 60;
            out.push(if minutes < 0 { b'-' } else { b'+' });
            let minutes = minutes.unsigned_abs();
            two(out, minutes / 60);
            out.push(b':');
            two(out, minutes % 60);
        }
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(35);
        self.write(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<GoTime, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GoTime, E> {
                GoTime::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object key folded the way Go's decoder matches struct fields (case-insensitively,
/// with the Kelvin sign as `k` and long s as `s`), held inline since every known key is short.
pub(crate) struct GoKey {
    buf: [u8; 32],
    len: usize,
}

impl GoKey {
    /// The folded key; longer keys than any field name come out empty (and match nothing).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<'de> Deserialize<'de> for GoKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<GoKey, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<GoKey, E> {
                let mut key = GoKey { buf: [0; 32], len: 0 };
                for c in v.chars() {
                    let folded = match c {
                        '\u{212a}' => 'k',
                        '\u{17f}' => 's',
                        c => c.to_ascii_lowercase(),
                    };
                    if !folded.is_ascii() || key.len == key.buf.len() {
                        // No field name has such a character or length: match nothing.
                        key.len = 0;
                        break;
                    }
                    key.buf[key.len] = folded as u8;
                    key.len += 1;
                }
                Ok(key)
            }
        }
        d.deserialize_identifier(V)
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
                while let Some(k) = m.next_key::<GoKey>()? {
                    match k.as_str() {
                        "name" => x.0 = m.next_value::<Option<String>>()?.unwrap_or_default().into_bytes(),
                        "value" => {
                            x.1 = match m.next_value::<Option<String>>()? {
                                Some(s) => go_base64_decode(&s).map_err(de::Error::custom)?,
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

/// One entry of a restic tree. Field names and meaning follow restic's `Node` (FORMAT.md §10.2).
#[derive(Clone, Debug)]
pub struct Node {
    /// The entry name as raw bytes (unquoted; may be invalid UTF-8).
    pub name: Vec<u8>,
    /// What kind of entry this is; it, not `mode`, decides how restic restores it.
    pub node_type: NodeType,
    /// Go `os.FileMode` bits (see [`go_mode_from_unix`]); 0 is omitted from the JSON.
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
                while let Some(k) = m.next_key::<GoKey>()? {
                    match k.as_str() {
                        "name" => {
                            let quoted: String = opt!(String);
                            n.name = go_unquote(&quoted).map_err(de::Error::custom)?;
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
                                Some(s) => Some(go_base64_decode(&s).map_err(de::Error::custom)?),
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

/// Appends an unsigned decimal without allocating.
pub(crate) fn push_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a quoted Go time.
pub(crate) fn push_time(out: &mut Vec<u8>, t: &GoTime) {
    out.push(b'"');
    t.write(out);
    out.push(b'"');
}

/// Appends a quoted hex id.
pub(crate) fn push_id(out: &mut Vec<u8>, id: &Id) {
    let mut buf = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the id length.
    if hex::encode_to_slice(id.0, &mut buf).is_ok() {
        out.push(b'"');
        out.extend_from_slice(&buf);
        out.push(b'"');
    }
}

/// Appends a Go map of raw JSON: keys sorted bytewise, values compacted and HTML-escaped.
/// Returns false (appending nothing) for an empty or unreadable map, which Go omits.
fn push_raw_map(out: &mut Vec<u8>, raw: &RawValue, flavor: GoJsonFlavor) -> bool {
    let map: std::collections::BTreeMap<String, Box<RawValue>> = match serde_json::from_str(raw.get()) {
        Ok(m) => m,
        Err(_) => return false,
    };
    if map.is_empty() {
        return false;
    }
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        go_json_string_flavor(k.as_bytes(), flavor, out);
        out.push(b':');
        go_json_compact(v.get(), out);
    }
    out.push(b'}');
    true
}

impl Node {
    /// Parses one node object as restic reads it: unknown keys ignored, keys matched in any
    /// case, the name Go-unquoted, `linktarget_raw` preferred over `linktarget`.
    pub fn parse(json: &[u8]) -> Result<Node> {
        Node::parse_str(&go_lossy_utf8(json))
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
            go_json_string_flavor(s, flavor, out);
        };
        let uint = |out: &mut Vec<u8>, key: &[u8], v: u64, omitempty: bool| {
            if v != 0 || !omitempty {
                out.extend_from_slice(key);
                push_uint(out, v);
            }
        };
        let mut quoted = String::with_capacity(self.name.len() + 2);
        go_quote(&self.name, &mut quoted);
        string(out, b"{\"name\":", quoted.as_bytes());
        string(out, b",\"type\":", self.node_type.as_str().as_bytes());
        uint(out, b",\"mode\":", self.mode.into(), true);
        out.extend_from_slice(b",\"mtime\":");
        push_time(out, &self.mtime);
        out.extend_from_slice(b",\"atime\":");
        push_time(out, &self.atime);
        out.extend_from_slice(b",\"ctime\":");
        push_time(out, &self.ctime);
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
                go_json_bytes(&self.linktarget, out);
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
                go_json_bytes(value, out);
                out.push(b'}');
            }
            out.push(b']');
        }
        if let Some(raw) = &self.generic_attributes {
            let mark = out.len();
            out.extend_from_slice(b",\"generic_attributes\":");
            if !push_raw_map(out, raw, flavor) {
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
                    push_id(out, id);
                }
                out.push(b']');
            }
        }
        if let Some(id) = &self.subtree {
            out.extend_from_slice(b",\"subtree\":");
            push_id(out, id);
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

    /// The POSIX mode bits for `chmod`: permissions plus setuid/setgid/sticky moved back from
    /// Go's high bits to 0o4000/0o2000/0o1000.
    pub fn unix_mode(&self) -> u32 {
        let mut m = self.mode & MODE_PERM;
        if self.mode & MODE_SETUID != 0 {
            m |= 0o4000;
        }
        if self.mode & MODE_SETGID != 0 {
            m |= 0o2000;
        }
        if self.mode & MODE_STICKY != 0 {
            m |= 0o1000;
        }
        m
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

    /// FORMAT.md §10.4's verified examples, from POSIX st_mode to Go's FileMode and back.
    #[test]
    fn mode_examples() {
        let cases = [
            (libc::S_IFREG | 0o644, 420, 0o644),
            (libc::S_IFDIR | 0o755, 2147484141, 0o755),
            (libc::S_IFLNK | 0o777, 134218239, 0o777),
            (libc::S_IFIFO | 0o644, 33554852, 0o644),
            (libc::S_IFREG | 0o4755, 8389101, 0o4755),
            (libc::S_IFREG | 0o2750, 4194792, 0o2750),
            (libc::S_IFDIR | 0o1777, 2148532735, 0o1777),
            (libc::S_IFBLK | 0o640, 67109280, 0o640),
            (libc::S_IFCHR | 0o600, 69206400, 0o600),
            (libc::S_IFSOCK | 0o755, MODE_SOCKET | 0o755, 0o755),
        ];
        for (st_mode, go, back) in cases {
            assert_eq!(go_mode_from_unix(st_mode), go, "st_mode {st_mode:o}");
            let n = Node { mode: go, ..Node::default() };
            assert_eq!(n.unix_mode(), back, "mode {go}");
        }
        assert_eq!(
            [
                MODE_DIR,
                MODE_SYMLINK,
                MODE_DEVICE,
                MODE_NAMED_PIPE,
                MODE_SOCKET,
                MODE_SETUID,
                MODE_SETGID,
                MODE_CHAR_DEVICE,
                MODE_STICKY,
                MODE_IRREGULAR
            ],
            [2147483648, 134217728, 67108864, 33554432, 16777216, 8388608, 4194304, 2097152, 1048576, 524288]
        );
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
    fn times_round_trip_byte_exact() {
        for s in [
            "2020-01-02T03:04:05Z",
            "2020-01-02T03:04:05.64030738Z",
            "2020-01-02T05:04:05+02:00",
            "2020-01-02T05:04:05.1+02:00",
            "2020-01-01T23:34:05.1-03:30",
            "2026-11-25T06:05:50.044776643+05:30",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "0000-02-29T12:00:00Z",
            "9999-12-31T23:59:59.000000001-12:00",
        ] {
            let t = GoTime::parse(s).unwrap();
            assert_eq!(t.to_string(), s);
        }
        let z = GoTime::parse("2020-01-02T03:04:05Z").unwrap();
        assert_eq!(z, GoTime::from_unix(1577934245, 0, 0));
        let plus2 = GoTime::parse("2020-01-02T05:04:05+02:00").unwrap();
        assert_eq!((plus2.secs, plus2.offset_secs), (1577934245, 7200));
        let neg = GoTime::parse("2020-01-01T23:34:05-03:30").unwrap();
        assert_eq!((neg.secs, neg.offset_secs), (1577934245, -12600));
        assert_eq!(GoTime::default().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(GoTime::from_unix(0, 1_500_000_000, 0).to_string(), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn time_parsing_is_go_lenient_and_strict() {
        // Go takes a comma too, reads nine fraction digits and drops the rest; +00:00 is Z.
        assert_eq!(GoTime::parse("2020-01-02T03:04:05,5Z").unwrap().nanos, 500_000_000);
        assert_eq!(GoTime::parse("2020-01-02T03:04:05.1234567891Z").unwrap().nanos, 123_456_789);
        assert_eq!(GoTime::parse("2020-01-02T03:04:05+00:00").unwrap().to_string(), "2020-01-02T03:04:05Z");
        for bad in [
            "2020-13-02T03:04:05Z",
            "2021-02-29T03:04:05Z",
            "2020-01-02T24:04:05Z",
            "2020-01-02T03:04:60Z",
            "2020-01-02t03:04:05Z",
            "2020-01-02T03:04:05",
            "2020-01-02T03:04:05.Z",
            "2020-01-02T03:04:05z",
            "2020-01-02T03:04:05+0200",
            "2020-01-02T03:04:05Zx",
            "20-01-02T03:04:05Z",
        ] {
            assert!(GoTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn out_of_range_years_are_clamped_like_restic() {
        let y10000 = days_from_civil(10000, 2, 29) * 86_400;
        assert_eq!(GoTime::from_unix(y10000, 0, 0).to_string(), "9999-03-01T00:00:00Z");
        let y_minus1 = days_from_civil(-1, 6, 1) * 86_400 + 3600;
        assert_eq!(GoTime::from_unix(y_minus1, 0, 0).to_string(), "0000-06-01T01:00:00Z");
        // LMT-style offsets with seconds print whole minutes, truncated toward zero.
        assert_eq!(GoTime::from_unix(0, 0, -(53 * 60 + 28)).to_string(), "1969-12-31T23:06:32-00:53");
    }

    #[test]
    fn local_time_keeps_the_instant() {
        let t = GoTime::local(1577934245, 42);
        assert_eq!((t.secs, t.nanos), (1577934245, 42));
        assert!(t.offset_secs.abs() <= 18 * 3600);
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let secs: libc::time_t = 1577934245;
        assert!(!unsafe { libc::localtime_r(&secs, &mut tm) }.is_null());
        assert_eq!(i64::from(t.offset_secs), tm.tm_gmtoff);
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

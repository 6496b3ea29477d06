//! Go's `os.FileMode`: the file type in high bits and POSIX's setuid, setgid and sticky bits
//! moved up beside it. restic stores a node's `mode` in this form. (Go's append, exclusive and
//! temporary bits, 30 to 28, never occur in what restic stores.)

/// Go `os.ModeDir`: a directory.
pub const DIR: u32 = 1 << 31;
/// Go `os.ModeSymlink`.
pub const SYMLINK: u32 = 1 << 27;
/// Go `os.ModeDevice`: a block device, or with [`CHAR_DEVICE`] a character device.
pub const DEVICE: u32 = 1 << 26;
/// Go `os.ModeNamedPipe`: a FIFO.
pub const NAMED_PIPE: u32 = 1 << 25;
/// Go `os.ModeSocket`.
pub const SOCKET: u32 = 1 << 24;
/// Go `os.ModeSetuid` (POSIX 0o4000).
pub const SETUID: u32 = 1 << 23;
/// Go `os.ModeSetgid` (POSIX 0o2000).
pub const SETGID: u32 = 1 << 22;
/// Go `os.ModeCharDevice`, always together with [`DEVICE`].
pub const CHAR_DEVICE: u32 = 1 << 21;
/// Go `os.ModeSticky` (POSIX 0o1000).
pub const STICKY: u32 = 1 << 20;
/// Go `os.ModeIrregular`: a file Go could not classify.
pub const IRREGULAR: u32 = 1 << 19;
/// Go `os.ModePerm`: the rwx permission bits, numerically the same as POSIX.
pub const PERM: u32 = 0o777;

/// What Go's `os.Lstat` reports as `Mode()` for a POSIX `st_mode`: permissions kept, the file
/// type and the setuid/setgid/sticky bits moved to Go's high bits.
pub fn from_unix(st_mode: u32) -> u32 {
    let mut mode = st_mode & PERM;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFDIR => DIR,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFSOCK => SOCKET,
        _ => 0, // regular files carry no type bit, and Go adds none for unknown types either
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= STICKY;
    }
    mode
}

/// The POSIX mode bits for `chmod` from a Go mode: permissions plus setuid/setgid/sticky moved
/// back from Go's high bits to 0o4000/0o2000/0o1000.
pub fn to_unix(mode: u32) -> u32 {
    let mut m = mode & PERM;
    if mode & SETUID != 0 {
        m |= 0o4000;
    }
    if mode & SETGID != 0 {
        m |= 0o2000;
    }
    if mode & STICKY != 0 {
        m |= 0o1000;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// restic's modes for each kind of entry (doc/format.md, "Nodes"), from POSIX st_mode to
    /// Go's FileMode and back.
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
            (libc::S_IFSOCK | 0o755, SOCKET | 0o755, 0o755),
        ];
        for (st_mode, go, back) in cases {
            assert_eq!(from_unix(st_mode), go, "st_mode {st_mode:o}");
            assert_eq!(to_unix(go), back, "mode {go}");
        }
        assert_eq!(
            [DIR, SYMLINK, DEVICE, NAMED_PIPE, SOCKET, SETUID, SETGID, CHAR_DEVICE, STICKY, IRREGULAR],
            [2147483648, 134217728, 67108864, 33554432, 16777216, 8388608, 4194304, 2097152, 1048576, 524288]
        );
    }
}

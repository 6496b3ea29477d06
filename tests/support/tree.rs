//! A reproducible test tree full of the things backup tools get wrong.
//!
//! Layout (relative to the directory given to [`make_tree`]); sizes are at `size_scale = 1`:
//!
//! ```text
//! data/        empty (0 B), one (1 B), small-NN.bin (1–8 KiB random), text-NN.txt (text up
//!              to 130 KiB), mid.bin (600 KiB random), mid.txt (600 KiB text), hard-two-b
//! big/         only with `big`: repeat.bin (a 1 MiB block ×9: random, 1 KiB zeros), zeros.bin (random
//!              and zero runs, 3.5 MiB of zeros), unique.bin (5 MiB random), log.txt (4 MiB text)
//! deep/l1/…/l6 nested dirs, a file on several levels, deep/l1/l2/empty/
//! empty-dir/   nested-empty/a/b/c/
//! names/       spaces, quotes, newline, tab, backslash, `<a>&`, control bytes, ü, emoji,
//!              a leading dash, a 240-byte name, non-UTF-8 bytes (file and dir)
//! links/       rel, abs (-> /usr), abs-dangling, dangling, to-dir, loop, bad-target (target
//!              with bytes 0xfe 0xff), weird-target
//! hard/        two-a (+ data/hard-two-b), three-a (+ hard/sub/three-b, names/three c),
//!              empty-a (+ hard/empty-b)
//! modes/       0600, 0755, 0444 files, 0700 dir, 01777 dir; as root also a 02755 dir, a
//!              04755 file and a file and dir owned by 4242:4343
//! special/fifo only with `specials`
//! ```
//!
//! Times are set last, children before parents, so directory mtimes survive; every entry
//! (the root too) gets an mtime and atime with nanoseconds drawn from the seed.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// What [`make_tree`] should put in the tree.
#[derive(Clone, Debug)]
pub struct TreeOpts {
    /// Add `big/`: files over 8 MiB with repeated 1 MiB blocks and long zero runs (~28 MiB).
    pub big: bool,
    /// Multiplies every non-trivial file size (0- and 1-byte files stay as they are).
    pub size_scale: f64,
    /// Add a fifo (`special/fifo`).
    pub specials: bool,
    /// Add names and a symlink target that are not valid UTF-8.
    pub non_utf8: bool,
}

impl Default for TreeOpts {
    fn default() -> Self {
        TreeOpts { big: false, size_scale: 1.0, specials: true, non_utf8: true }
    }
}

/// What [`make_tree`] made, with a few relative paths tests like to poke at.
#[derive(Clone, Debug, Default)]
pub struct TreeInfo {
    /// Regular files, counting each hard-linked inode once.
    pub files: u64,
    /// Directories, not counting the root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Content bytes, counting each hard-linked inode once.
    pub bytes: u64,
    /// Every entry created, relative to the root, in creation order.
    pub entries: Vec<PathBuf>,
    /// A 600 KiB random file (`data/mid.bin`, scaled).
    pub sample_file: PathBuf,
    /// A compressible text file (`data/mid.txt`).
    pub text_file: PathBuf,
    /// A relative symlink (`links/rel`).
    pub symlink: PathBuf,
    /// A directory with content several levels deep (`deep/l1`).
    pub dir: PathBuf,
    /// A file with three names (`hard/three-a`).
    pub hard_link: PathBuf,
    /// All three names of that file.
    pub hard_link_group: Vec<PathBuf>,
    /// The big file of repeated blocks (`big/repeat.bin`), when `big`.
    pub big_file: Option<PathBuf>,
}

/// True when the process runs as root (chown and set-id bits on others' files work).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Creates the test tree under `dir` (which must exist and should be empty).
///
/// The same `seed`, `opts` and privileges (root adds owned and set-id entries) give the same
/// names, contents, modes and times, so two calls produce trees that
/// [`super::compare_trees`] finds identical. Note restic 0.14 does not keep atimes (it stores
/// and restores atime = mtime), so compare atimes only between trees made here.
pub fn make_tree(dir: &Path, seed: u64, opts: &TreeOpts) -> TreeInfo {
    let mut g = Gen {
        root: dir.to_path_buf(),
        rng: StdRng::seed_from_u64(seed),
        scale: opts.size_scale,
        info: TreeInfo::default(),
    };
    g.build(opts);
    set_times_bottom_up(dir, &mut g.rng);
    g.info
}

struct Gen {
    root: PathBuf,
    rng: StdRng,
    scale: f64,
    info: TreeInfo,
}

const WORDS: &[&str] = &[
    "restic",
    "sluice",
    "pack",
    "blob",
    "tree",
    "index",
    "snapshot",
    "chunk",
    "the",
    "a",
    "of",
    "backup",
    "restore",
    "repository",
    "key",
    "nonce",
    "mac",
    "zstd",
    "data",
    "file",
    "and",
    "to",
    "is",
    "in",
    "that",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
];

impl Gen {
    fn scaled(&self, n: usize) -> usize {
        ((n as f64) * self.scale).round().max(2.0) as usize
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn note(&mut self, rel: &[u8]) {
        self.info.entries.push(PathBuf::from(OsStr::from_bytes(rel)));
    }

    fn dir(&mut self, rel: &[u8], mode: u32) {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
        chmod(&p, mode);
        self.info.dirs += 1;
        self.note(rel);
    }

    fn file(&mut self, rel: &[u8], content: &[u8], mode: u32) {
        let p = self.path(rel);
        let mut f = fs::File::create(&p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
        f.write_all(content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        drop(f);
        chmod(&p, mode);
        self.info.files += 1;
        self.info.bytes += content.len() as u64;
        self.note(rel);
    }

    fn link(&mut self, rel: &[u8], target: &[u8]) {
        let p = self.path(rel);
        symlink(OsStr::from_bytes(target), &p).unwrap_or_else(|e| panic!("symlink {p:?}: {e}"));
        self.info.symlinks += 1;
        self.note(rel);
    }

    fn hard(&mut self, existing: &[u8], rel: &[u8]) {
        let (a, b) = (self.path(existing), self.path(rel));
        fs::hard_link(&a, &b).unwrap_or_else(|e| panic!("link {a:?} {b:?}: {e}"));
        self.note(rel);
    }

    fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn text(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 64);
        let mut line = 0u64;
        while v.len() < n {
            line += 1;
            write!(v, "{line:08} ").expect("write to Vec");
            for _ in 0..self.rng.gen_range(4..14) {
                v.extend_from_slice(WORDS[self.rng.gen_range(0..WORDS.len())].as_bytes());
                v.push(b' ');
            }
            v.push(b'\n');
        }
        v.truncate(n);
        v
    }

    fn build(&mut self, opts: &TreeOpts) {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * KIB;

        self.dir(b"data", 0o755);
        self.file(b"data/empty", b"", 0o644);
        self.file(b"data/one", b"x", 0o644);
        for i in 0..8 {
            let n = self.rng.gen_range(KIB..8 * KIB);
            let n = self.scaled(n);
            let c = self.random(n);
            self.file(format!("data/small-{i:02}.bin").as_bytes(), &c, 0o644);
        }
        for (i, n) in [2 * KIB, 17 * KIB, 64 * KIB, 130 * KIB].into_iter().enumerate() {
            let c = self.text(self.scaled(n));
            self.file(format!("data/text-{i:02}.txt").as_bytes(), &c, 0o644);
        }
        let c = self.random(self.scaled(600 * KIB));
        self.file(b"data/mid.bin", &c, 0o644);
        let c = self.text(self.scaled(600 * KIB));
        self.file(b"data/mid.txt", &c, 0o644);
        self.info.sample_file = "data/mid.bin".into();
        self.info.text_file = "data/mid.txt".into();

        if opts.big {
            self.dir(b"big", 0o755);
            // A random block alone may hold no chunk boundary, and then the chunker runs to
            // its 8 MiB maximum and nothing repeats; a 1 KiB zero tail always ends a chunk
            // (the rolling hash of a zero window is 0), which keeps the cuts in phase.
            let mut block = self.random(MIB - KIB);
            block.resize(MIB, 0);
            let reps = ((9.0 * self.scale).round() as usize).max(2);
            self.file(b"big/repeat.bin", &block.repeat(reps), 0o644);
            // Runs of zeros longer than restic's 512 KiB minimum chunk come out as identical
            // all-zero blobs, so one file holds the same blob many times.
            let mut z = self.random(self.scaled(MIB));
            z.resize(z.len() + self.scaled(2 * MIB).max(3 * MIB / 2), 0);
            let r = self.random(self.scaled(3 * MIB));
            z.extend_from_slice(&r);
            z.resize(z.len() + self.scaled(3 * MIB / 2).max(3 * MIB / 2), 0);
            let r = self.random(self.scaled(MIB + 12345));
            z.extend_from_slice(&r);
            self.file(b"big/zeros.bin", &z, 0o644);
            let c = self.random(self.scaled(5 * MIB));
            self.file(b"big/unique.bin", &c, 0o644);
            let c = self.text(self.scaled(4 * MIB));
            self.file(b"big/log.txt", &c, 0o644);
            self.info.big_file = Some("big/repeat.bin".into());
        }

        let mut deep = b"deep".to_vec();
        for level in 1..=6 {
            deep.extend_from_slice(format!("/l{level}").as_bytes());
            self.dir(&deep, 0o755);
            if level % 2 == 0 {
                let c = self.text(self.scaled(3 * KIB));
                let mut f = deep.clone();
                f.extend_from_slice(b"/leaf.txt");
                self.file(&f, &c, 0o644);
            }
        }
        self.info.dir = "deep/l1".into();
        self.dir(b"deep/l1/l2/empty", 0o755);
        self.dir(b"empty-dir", 0o755);
        for d in [&b"nested-empty"[..], b"nested-empty/a", b"nested-empty/a/b", b"nested-empty/a/b/c"] {
            self.dir(d, 0o755);
        }

        self.dir(b"names", 0o755);
        let mut names: Vec<Vec<u8>> = [
            "with space",
            "dq\"uote",
            "sq'uote",
            "new\nline",
            "tab\tname",
            "back\\slash",
            "<a>&",
            "ctl-\u{1}\u{8}\u{c}\u{7f}",
            "ü-umlaut",
            "emoji-😀",
            "-dash",
            " lead space",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        names.push([b"long-".as_slice(), &[b'n'; 235]].concat());
        if opts.non_utf8 {
            names.push(b"bad-\xfe\xff".to_vec());
            names.push(b"latin1-\xe9t\xe9".to_vec());
        }
        for name in &names {
            let mut rel = b"names/".to_vec();
            rel.extend_from_slice(name);
            let mut content = name.clone();
            content.push(b'\n');
            self.file(&rel, &content, 0o644);
        }
        self.dir(b"names/dir with space", 0o755);
        self.dir("names/dir with space/ü".as_bytes(), 0o755);
        self.file("names/dir with space/ü/file ü.txt".as_bytes(), b"inside\n", 0o644);
        if opts.non_utf8 {
            self.dir(b"names/dir-\xff", 0o755);
            self.file(b"names/dir-\xff/inner-\xfe", b"inner\n", 0o644);
        }

        self.dir(b"links", 0o755);
        self.link(b"links/rel", b"../data/one");
        self.link(b"links/abs", b"/usr");
        self.link(b"links/abs-dangling", b"/nonexistent/sluice-test/target");
        self.link(b"links/dangling", b"no/such/file");
        self.link(b"links/to-dir", b"../deep/l1");
        self.link(b"links/loop", b"loop");
        self.link(b"links/weird-target", "../names/dq\"uote <a>& ü\n".as_bytes());
        self.link("names/link ü".as_bytes(), "ü-umlaut".as_bytes());
        if opts.non_utf8 {
            self.link(b"links/bad-target", b"bad-\xfe\xff-target");
        }
        self.info.symlink = "links/rel".into();

        self.dir(b"hard", 0o755);
        self.dir(b"hard/sub", 0o755);
        let c = self.random(self.scaled(3 * KIB));
        self.file(b"hard/two-a", &c, 0o640);
        self.hard(b"hard/two-a", b"data/hard-two-b");
        let c = self.text(self.scaled(10 * KIB));
        self.file(b"hard/three-a", &c, 0o644);
        self.hard(b"hard/three-a", b"hard/sub/three-b");
        self.hard(b"hard/three-a", b"names/three c");
        self.info.hard_link = "hard/three-a".into();
        self.info.hard_link_group =
            vec!["hard/three-a".into(), "hard/sub/three-b".into(), "names/three c".into()];
        self.file(b"hard/empty-a", b"", 0o644);
        self.hard(b"hard/empty-a", b"hard/empty-b");

        self.dir(b"modes", 0o755);
        let c = self.random(100);
        self.file(b"modes/rw-------", &c, 0o600);
        self.file(b"modes/rwxr-xr-x", b"#!/bin/sh\nexit 0\n", 0o755);
        self.file(b"modes/r--r--r--", b"read only\n", 0o444);
        self.dir(b"modes/private-dir", 0o700);
        self.file(b"modes/private-dir/secret", b"secret\n", 0o600);
        self.dir(b"modes/sticky-dir", 0o1777);
        self.file(b"modes/sticky-dir/f", b"f\n", 0o666);
        if is_root() {
            // chown clears set-id bits, so owners first, modes after.
            self.dir(b"modes/owned-dir", 0o755);
            self.file(b"modes/owned-dir/owned", b"owned\n", 0o644);
            chown(&self.path(b"modes/owned-dir"), 4242, 4343);
            chown(&self.path(b"modes/owned-dir/owned"), 4242, 4343);
            chmod(&self.path(b"modes/owned-dir/owned"), 0o640);
            self.dir(b"modes/setgid-dir", 0o2755);
            self.file(b"modes/setgid-dir/f", b"f\n", 0o644);
            self.file(b"modes/setuid-file", b"#!/bin/sh\n", 0o4755);
        }

        if opts.specials {
            self.dir(b"special", 0o755);
            let p = self.path(b"special/fifo");
            let c = cstr(&p);
            // SAFETY: c is a valid NUL-terminated path.
            let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            assert_eq!(rc, 0, "mkfifo {p:?}: {}", std::io::Error::last_os_error());
            chmod(&p, 0o644);
            self.note(b"special/fifo");
        }
        chmod(&self.root, 0o755);
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {p:?}: {e}"));
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {p:?}: {e}"));
}

/// Sets (atime, mtime) on `p` without following a symlink; `(seconds, nanoseconds)` each.
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = [
        libc::timespec { tv_sec: atime.0 as libc::time_t, tv_nsec: atime.1 as _ },
        libc::timespec { tv_sec: mtime.0 as libc::time_t, tv_nsec: mtime.1 as _ },
    ];
    let c = cstr(p);
    // SAFETY: c is NUL-terminated and ts holds exactly the two timespecs utimensat reads.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {p:?}: {}", std::io::Error::last_os_error());
}

fn pick_time(rng: &mut StdRng) -> (i64, i64) {
    let ns = rng.gen_range(0..1_000_000_000i64);
    match rng.gen_range(0..7) {
        0 => (1_234_567_890, 123_456_789),
        1 => (rng.gen_range(946_684_800..1_735_689_600), ns),
        2 => (rng.gen_range(946_684_800..1_735_689_600), 0),
        3 => (rng.gen_range(946_684_800..1_735_689_600), ns / 1000 * 1000),
        // Past 2038: 64-bit seconds everywhere.
        4 => (rng.gen_range(4_102_444_800..4_200_000_000), ns),
        5 => (1, 1),
        _ => (rng.gen_range(1_600_000_000..1_700_000_000), 999_999_999),
    }
}

/// Walks `root` children-first and gives every entry (the root last) seeded times, so that
/// no later change inside a directory touches its mtime again.
fn set_times_bottom_up(root: &Path, rng: &mut StdRng) {
    for e in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().contents_first(true) {
        let e = e.unwrap_or_else(|e| panic!("walk {root:?}: {e}"));
        let mtime = pick_time(rng);
        let atime = (mtime.0 + rng.gen_range(0..10_000_000), rng.gen_range(0..1_000_000_000));
        set_times(e.path(), atime, mtime);
    }
}

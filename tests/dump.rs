//! Streaming out, restic's `dump`: `walk SNAP:FILE | fetch-pack | unpack --stdout` and
//! `walk SNAP:DIR | fetch-pack | unpack --tar`, against the source, a sluice restore of the
//! same selection and the real `restic dump` (0.14), with every stage's peak memory measured.

mod support;

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::Value;
use support::measured::{measured, sha256_file};
use support::*;

/// The large file's size for the damage, tar and repeated-blob cases: big enough that a
/// stage holding it would show (every stage must stay under 64 MiB), small enough to run
/// them all quickly. `stdout_of_a_gibibyte_file_in_bounded_memory` streams 1 GiB.
const BIG: usize = 128 << 20;
const RSS_LIMIT_KIB: u64 = 64 << 10;

/// `walk SPEC | fetch-pack | unpack <args>` as stages.
fn dump_stages(r: &Restic, spec: &str, args: &[&str]) -> Vec<Vec<OsString>> {
    vec![tool(r, "walk", &[spec]), tool(r, "fetch-pack", &[]), tool(r, "unpack", args)]
}

/// Runs `restic dump latest PATH > out`.
fn restic_dump(r: &Restic, path: &str, out: &Path) {
    let st = r
        .command()
        .args(["dump", "latest", path])
        .stdout(fs::File::create(out).unwrap())
        .status()
        .expect("run restic dump");
    assert!(st.success(), "restic dump latest {path}: {st}");
}

/// `tar -x` of an archive into a fresh directory, as root keeps owners and modes.
fn untar(archive: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-x")
        .arg("--numeric-owner")
        .args(["--xattrs", "--xattrs-include=*"])
        .arg("-f")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar -x {archive:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Flips a byte in the middle of one stored blob, so its MAC no longer matches.
fn damage(fx: &Fixture, blob: &Value) {
    let pack = fx.pack_path(blob["pack"].as_str().unwrap());
    let at = blob["offset"].as_u64().unwrap() + blob["length"].as_u64().unwrap() / 2;
    let mut perms = fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&pack, perms).unwrap();
    let mut f = fs::OpenOptions::new().read(true).write(true).open(&pack).unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
}

fn assert_bounded(m: &support::measured::Measured, what: &str) {
    for (name, kib) in m.names.iter().zip(&m.rss_kib) {
        assert!(*kib < RSS_LIMIT_KIB, "{what}: {name} peaked at {} MiB", kib >> 10);
    }
}

/// `walk SPEC | fetch-pack | unpack --tar > NAME.tar`, checked to succeed within the memory
/// bound, then extracted into NAME/. Returns the archive and the directory.
fn tar_of(fx: &Fixture, spec: &str, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let archive = fx.path(&format!("{name}.tar"));
    let m = measured(&dump_stages(&fx.r, spec, &["--tar"]), &archive);
    m.assert_ok();
    assert_bounded(&m, &format!("--tar of {spec}"));
    let dir = fx.path(name);
    untar(&archive, &dir);
    (archive, dir)
}

/// One large file and one whose blobs repeat (zeros: the chunker cuts equal 8 MiB blobs, and
/// fetch-pack sends a repeated blob's data only once).
fn large_fixture() -> Fixture {
    Fixture::new(
        |src| {
            fs::write(src.join("big.bin"), random_bytes(7, BIG)).unwrap();
            let mut rep = vec![0u8; 20 << 20];
            rep.extend(random_bytes(8, 1 << 20));
            fs::write(src.join("repeat.bin"), rep).unwrap();
        },
        &["--pack-size", "16"],
    )
}

#[test]
fn stdout_writes_one_file_exactly_in_bounded_memory() {
    let fx = large_fixture();
    let src = fx.src.join("big.bin");
    let out = fx.path("big.out");
    let m = measured(&dump_stages(&fx.r, "latest:/big.bin", &["--stdout"]), &out);
    m.assert_ok();
    assert_eq!(fs::metadata(&out).unwrap().len(), BIG as u64);
    assert_eq!(sha256_file(&out), sha256_file(&src), "--stdout differs from the source");
    assert_bounded(&m, "--stdout of 128 MiB");
    let theirs = fx.path("big.restic");
    restic_dump(&fx.r, "/big.bin", &theirs);
    assert_eq!(sha256_file(&out), sha256_file(&theirs), "--stdout differs from restic dump");
    fs::remove_file(&theirs).unwrap();

    // The same file inside a tar of the whole snapshot, in the same memory.
    let (archive, x) = tar_of(&fx, "latest", "all");
    assert_eq!(sha256_file(&x.join("big.bin")), sha256_file(&src), "--tar's big.bin differs");
    fs::remove_dir_all(&x).unwrap();
    fs::remove_file(&archive).unwrap();

    // A blob the stream carried once is read again from the repository, not made up.
    let stream = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest:/repeat.bin"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .run();
    stream.assert_ok();
    let without_data =
        stream.json_lines().iter().filter(|l| l["type"] == "blob" && l.get("data").is_none()).count();
    assert!(without_data >= 1, "repeat.bin has no repeated blob; the case is not tested");
    let out = fx.path("repeat.out");
    measured(&dump_stages(&fx.r, "latest:/repeat.bin", &["--stdout"]), &out).assert_ok();
    assert_eq!(fs::read(&out).unwrap(), fs::read(fx.src.join("repeat.bin")).unwrap());

    // `| head -c 1000`: unpack stops quietly with 141, as a cut-off stdout must (the zip
    // writer's own clean-up used to print a line of its own into stderr).
    for mode in ["--stdout", "--tar", "--zip"] {
        let spec = if mode == "--stdout" { "latest:/big.bin" } else { "latest" };
        let mut stages = dump_stages(&fx.r, spec, &[mode]);
        stages.push(argv(["head", "-c", "1000"]));
        let res = pipeline(&stages, &[]);
        assert_eq!(res.stdout.len(), 1000, "{mode}: {}", res.report());
        assert_eq!(res.codes()[2], 141, "{mode}: {}", res.report());
        assert!(res.stderrs[2].is_empty(), "{mode}: unpack said something:\n{}", res.report());
    }

    // A damaged blob in the middle: one line naming the file and the blob, a failing exit,
    // and not the whole file on stdout (what was written before it stays written).
    let records = walk_records(&fx.r, "latest:/big.bin", &[]);
    let blobs = record_for(&records, "big.bin")["blobs"].as_array().unwrap();
    assert!(blobs.len() >= 3, "big.bin has {} blobs", blobs.len());
    let bad = &blobs[blobs.len() / 2];
    damage(&fx, bad);
    for mode in ["--stdout", "--tar", "--zip"] {
        let out = fx.path("damaged.out");
        let m = measured(&dump_stages(&fx.r, "latest:/big.bin", &[mode]), &out);
        // Upstream stages see unpack stop: they end normally or with a quiet 141.
        assert!([m.code(0), m.code(1)].iter().all(|c| [0, 141].contains(c)), "{m:#?}");
        assert_eq!(m.code(2), 1, "{mode}: {m:#?}");
        let line = one_line(m.stderrs[2].as_bytes(), "unpack");
        let short = &bad["id"].as_str().unwrap()[..8];
        assert!(line.starts_with("unpack: big.bin: blob "), "{mode}: {line}");
        assert!(line.contains(short), "{mode}: {line} does not name blob {short}");
        assert!(fs::metadata(&out).unwrap().len() < BIG as u64, "{mode}: the whole file came out");
        if mode == "--zip" {
            // No central directory: a cut-off zip must not open as a complete archive.
            let z = fs::read(&out).unwrap();
            assert!(!z.windows(4).any(|w| w == b"PK\x05\x06"), "the cut-off zip was finished as if whole");
        }
    }
}

/// Issue 9's "done means": `--stdout` of a 1 GiB file (random, so every blob is distinct
/// and nothing compresses) is byte-identical to the source and to `restic dump`, no stage's
/// peak RSS reaches 64 MiB, and `| head -c 1000` ends every stage quietly. restic backs it
/// up uncompressed to keep the test quick; each large file is removed once hashed (disk).
#[test]
fn stdout_of_a_gibibyte_file_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let fx = Fixture::new(
        |src| {
            let f = fs::File::create(src.join("huge.bin")).unwrap();
            let st = std::process::Command::new("head")
                .args(["-c", &GIB.to_string(), "/dev/urandom"])
                .stdout(f)
                .status()
                .unwrap();
            assert!(st.success(), "head -c 1G /dev/urandom: {st}");
        },
        &["--compression", "off", "--pack-size", "64"],
    );
    let src = fx.src.join("huge.bin");
    let want = sha256_file(&src);
    fs::remove_file(&src).unwrap();

    let out = fx.path("huge.out");
    let m = measured(&dump_stages(&fx.r, "latest:/huge.bin", &["--stdout"]), &out);
    m.assert_ok();
    assert_bounded(&m, "--stdout of 1 GiB");
    assert_eq!(fs::metadata(&out).unwrap().len(), GIB);
    assert_eq!(sha256_file(&out), want, "--stdout differs from the source");
    fs::remove_file(&out).unwrap();

    let theirs = fx.path("huge.restic");
    restic_dump(&fx.r, "/huge.bin", &theirs);
    assert_eq!(sha256_file(&theirs), want, "restic dump differs from the source");
    fs::remove_file(&theirs).unwrap();

    let mut stages = dump_stages(&fx.r, "latest:/huge.bin", &["--stdout"]);
    stages.push(argv(["head", "-c", "1000"]));
    let res = pipeline(&stages, &[]);
    assert_eq!(res.stdout.len(), 1000, "{}", res.report());
    let codes = res.codes();
    assert_eq!(codes[2], 141, "{}", res.report());
    assert!(codes[..2].iter().all(|c| [0, 141].contains(c)), "{}", res.report());
    assert!(res.stderrs.iter().all(|e| e.is_empty()), "a stage said something:\n{}", res.report());
}

/// The edge-case tree under `tree/`, plus two files of equal content (the second's blobs come
/// without data), one with an extended attribute.
fn tree_fixture() -> (Fixture, TreeInfo) {
    let mut info = TreeInfo::default();
    let fx = Fixture::new(
        |src| {
            let t = src.join("tree");
            fs::create_dir(&t).unwrap();
            let same = random_bytes(9, 3 << 20);
            fs::create_dir(t.join("dup")).unwrap();
            fs::write(t.join("dup/a.bin"), &same).unwrap();
            fs::write(t.join("dup/b.bin"), &same).unwrap();
            info = make_tree(&t, 42, &TreeOpts::default());
            xattr::set(t.join("dup/a.bin"), "user.sluice", b"v\0\xff").unwrap();
        },
        &["--pack-size", "4"],
    );
    (fx, info)
}

#[test]
fn tar_equals_the_source_a_restore_and_restic_dump() {
    let (fx, info) = tree_fixture();
    let (archive, ours) = tar_of(&fx, "latest:/tree", "ours");
    // Named as restic names them: relative, under the selected directory's own name.
    let listed = std::process::Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.lines().all(|l| l.starts_with("tree/")), "{listed}");
    assert!(listed.lines().any(|l| l == "tree/deep/"), "directories end in '/': {listed}");
    let ours = ours.join("tree");

    // The source, as a restore from restic 0.14's repository gives it back.
    let vs_source = CompareOpts { skip_root: true, ..CompareOpts::restic_014() };
    compare_trees(&fx.src.join("tree"), &ours, &vs_source).unwrap_or_else(|e| panic!("vs source: {e}"));
    // Hard links are links again, every name of a group in one inode.
    let group: Vec<_> = info.hard_link_group.iter().map(|p| fs::metadata(ours.join(p)).unwrap()).collect();
    use std::os::unix::fs::MetadataExt;
    assert!(group.iter().all(|m| m.ino() == group[0].ino() && m.nlink() == 3), "{group:?}");
    // Extended attributes, binary values too, as SCHILY.xattr records.
    let x = xattr::get(ours.join("dup/a.bin"), "user.sluice").unwrap();
    assert_eq!(x.as_deref(), Some(&b"v\0\xff"[..]));

    // A sluice restore of the same selection: the same tree, exactly.
    let restored = fx.path("restored");
    let res = restore_pipeline(&fx.r, "latest:/tree", &restored, &[], &[]);
    assert_restore_ok(&res, &fx.src.join("tree"));
    let exact = CompareOpts { skip_root: true, ..CompareOpts::strict() };
    compare_trees(&restored, &ours, &exact).unwrap_or_else(|e| panic!("vs restore: {e}"));

    // restic dump of the same path. restic 0.14 writes whole-second times, every hard link
    // as a full copy and a fifo as an empty regular file; names, contents, modes and owners
    // must agree.
    let theirs_tar = fx.path("theirs.tar");
    restic_dump(&fx.r, "/tree", &theirs_tar);
    let theirs = fx.path("theirs");
    untar(&theirs_tar, &theirs);
    let theirs = theirs.join("tree");
    for t in [&theirs, &ours] {
        fs::remove_dir_all(t.join("special")).unwrap();
    }
    let loose =
        CompareOpts { skip_root: true, mtime_resolution_ns: 0, hard_links: false, ..CompareOpts::strict() };
    compare_trees(&theirs, &ours, &loose).unwrap_or_else(|e| panic!("vs restic dump: {e}"));
}

/// Prints each entry of the zip (argv 1) whose DOS time is not the mtime of the same path
/// below `tree/` in argv 2, in UTC, rounded down to even seconds (1980 to 2107 only).
const DOS_TIMES: &str = "import datetime, os, sys, zipfile
for i in zipfile.ZipFile(sys.argv[1]).infolist():
    t = os.lstat(os.path.join(sys.argv[2], i.filename.removeprefix('tree/'))).st_mtime_ns // 10**9
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    if 1980 <= d.year <= 2107 and i.date_time != (d.year, d.month, d.day, d.hour, d.minute, d.second // 2 * 2):
        print(i.filename, i.date_time, d)";

/// `--zip` of the edge-case tree through a pipe (no seeking): `unzip -t` and Python's
/// zipfile accept it, and `unzip` gives back the source: contents (every name of a hard-linked
/// file a full copy), modes, modification times to the second, symbolic links. What a zip
/// cannot hold (the fifo, names that are not UTF-8) is named on stderr and makes status 3.
#[test]
fn zip_streams_the_tree_in_bounded_memory() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let (fx, _) = tree_fixture();
    let archive = fx.path("ours.zip");
    let mut stages = dump_stages(&fx.r, "latest:/tree", &["--zip"]);
    stages.push(argv(["cat"]));
    let m = measured(&stages, &archive);
    assert_bounded(&m, "--zip");
    assert_eq!((m.code(0), m.code(1), m.code(2), m.code(3)), (0, 0, 3, 0), "{m:#?}");
    let left_out: Vec<&str> = m.stderrs[2].lines().collect();
    assert!(left_out.iter().any(|l| l.starts_with("unpack: special/fifo: a zip holds no fifo")), "{m:#?}");
    assert!(left_out.iter().any(|l| l.contains("not UTF-8")), "{m:#?}");
    assert!(left_out.last().unwrap().contains("nodes left out of the zip"), "{m:#?}");

    let ok = std::process::Command::new("unzip").arg("-tqq").arg(&archive).output().unwrap();
    assert!(ok.status.success(), "unzip -t: {}", String::from_utf8_lossy(&ok.stdout));
    let py =
        std::process::Command::new("python3").args(["-m", "zipfile", "-t"]).arg(&archive).output().unwrap();
    assert!(py.status.success(), "python3 -m zipfile -t: {}", String::from_utf8_lossy(&py.stderr));

    let x = fx.path("unzipped");
    fs::create_dir(&x).unwrap();
    let out = std::process::Command::new("unzip")
        .args(["-qq", "-^"])
        .arg(&archive)
        .arg("-d")
        .arg(&x)
        .output()
        .unwrap();
    assert!(out.status.success(), "unzip: {}", String::from_utf8_lossy(&out.stderr));
    let src = fx.src.join("tree");
    let mut checked = [0u32; 3];
    for e in walkdir::WalkDir::new(&src).min_depth(1).into_iter().map(|e| e.unwrap()) {
        let rel = e.path().strip_prefix(&src).unwrap();
        let ours = x.join("tree").join(rel);
        let want = e.path().symlink_metadata().unwrap();
        // (A name below a directory whose name is not UTF-8 is not UTF-8 either.)
        if rel.to_str().is_none() || want.file_type().is_fifo() {
            assert!(ours.symlink_metadata().is_err(), "{rel:?} should be left out");
            continue;
        }
        let got = ours.symlink_metadata().unwrap_or_else(|e| panic!("{rel:?}: {e}"));
        let ft = want.file_type();
        if ft.is_symlink() {
            // restic 0.14 stores a link target that is not UTF-8 as Go's lossy text.
            let target = |p: &Path| fs::read_link(p).unwrap().into_os_string().into_encoded_bytes();
            assert_eq!(target(&ours), go_lossy_utf8(&target(e.path())), "{rel:?}");
            checked[2] += 1;
            continue;
        }
        assert_eq!(got.permissions().mode() & 0o777, want.permissions().mode() & 0o777, "{rel:?} mode");
        if ft.is_file() {
            assert_eq!(fs::read(&ours).unwrap(), fs::read(e.path()).unwrap(), "{rel:?} content");
            // Past 2038 only the DOS time is there, which unzip reads as local time (and
            // gets wrong after February 2100); the DOS times are checked below.
            if want.mtime() < i64::from(i32::MAX) {
                assert_eq!(got.mtime(), want.mtime(), "{rel:?} mtime");
            }
            checked[0] += 1;
        } else {
            checked[1] += 1;
        }
    }
    assert!(checked.iter().all(|n| *n > 3), "files, dirs, links checked: {checked:?}");
    // Every entry's DOS time is the source's mtime in UTC (even seconds), as Python reads it.
    let dos = std::process::Command::new("python3")
        .args(["-c", DOS_TIMES])
        .arg(&archive)
        .arg(fx.src.join("tree"))
        .output()
        .unwrap();
    assert!(
        dos.status.success() && dos.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&dos.stdout),
        String::from_utf8_lossy(&dos.stderr)
    );

    // `| head -c 1000`: unpack stops quietly with 141.
    let mut stages = dump_stages(&fx.r, "latest:/tree/data", &["--zip"]);
    stages.push(argv(["head", "-c", "1000"]));
    let res = pipeline(&stages, &[]);
    assert_eq!(res.stdout.len(), 1000, "{}", res.report());
    assert_eq!(res.codes()[2], 141, "{}", res.report());
    assert!(res.stderrs[2].is_empty(), "unpack said something:\n{}", res.report());
}

#[test]
fn stdout_refuses_what_is_not_one_file_and_tar_fails_loudly() {
    let (fx, _) = tree_fixture();
    // A directory: refused before a byte is written, one line, usage status.
    for spec in ["latest:/tree", "latest:/tree/links/rel"] {
        let res = pipeline(&dump_stages(&fx.r, spec, &["--stdout"]), &[]);
        let codes = res.codes();
        assert!(codes[..2].iter().all(|c| [0, 141].contains(c)), "{spec}: {}", res.report());
        assert_eq!(codes[2], 2, "{spec}: {}", res.report());
        assert!(res.stdout.is_empty(), "{spec}: wrote {} bytes", res.stdout.len());
        let line = one_line(&res.stderrs[2], "unpack");
        assert!(line.contains("--tar"), "{spec}: {line}");
    }
    // A file further down selects that file alone.
    let res = pipeline(&dump_stages(&fx.r, "latest:/tree/data/mid.bin", &["--stdout"]), &[]);
    res.assert_ok();
    assert_eq!(res.stdout, fs::read(fx.src.join("tree/data/mid.bin")).unwrap());

    // --tar of a damaged tree: the archive stops at the damaged file; one line names it.
    let records = walk_records(&fx.r, "latest:/tree", &[]);
    let rec = record_for(&records, "dup/a.bin");
    let bad = &rec["blobs"][0];
    damage(&fx, bad);
    let archive = fx.path("damaged.tar");
    let m = measured(&dump_stages(&fx.r, "latest:/tree", &["--tar"]), &archive);
    assert!([m.code(0), m.code(1)].iter().all(|c| [0, 141].contains(c)), "{m:#?}");
    assert_eq!(m.code(2), 1, "{m:#?}");
    let line = one_line(m.stderrs[2].as_bytes(), "unpack");
    assert!(line.starts_with("unpack: dup/a.bin: blob "), "{line}");
    let listed = std::process::Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    assert!(!listed.status.success(), "tar accepted a cut-off archive");
}

/// `walk latest | fetch-pack | unpack --tar` typed without a redirection: the archive went to
/// the terminal as binary noise. As GNU tar does, unpack refuses, status 2, one line; one
/// file (`--stdout`) still goes to the terminal, as `restic dump` of a file does.
#[test]
fn an_archive_is_not_written_to_a_terminal() {
    let fx = Fixture::new(|d| fs::write(d.join("a.txt"), b"plain text\n").unwrap(), &[]);
    for mode in ["--tar", "--zip"] {
        let line = support::progress::sh_line(&dump_stages(&fx.r, "latest", &[mode]), "; echo \"status $?\"");
        let res = support::progress::under_terminal(&line, &[]);
        let out = res.stdout_str();
        assert!(out.contains("status 2"), "{mode}: {out:?}");
        assert!(
            out.contains(&format!("unpack: stdout is a terminal: {mode} writes a binary archive")),
            "{out:?}"
        );
        assert!(!out.contains("a.txt"), "{mode}: the archive reached the terminal: {out:?}");
    }
    let line = support::progress::sh_line(&dump_stages(&fx.r, "latest:/a.txt", &["--stdout"]), "");
    let res = support::progress::under_terminal(&line, &[]);
    res.assert_ok();
    assert!(res.stdout_str().contains("plain text"), "{}", res.report());
}

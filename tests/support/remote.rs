//! The round trips every remote server must pass, shared by `remote_rest.rs` and
//! `remote_s3.rs`: restic writes and sluice restores; sluice writes, `restic check
//! --read-data` accepts and `restic restore` reproduces the source; both at each of restic's
//! pack sizes. Each takes `streams`, the caller's check of every pipeline's output (that no
//! secret of its server shows).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::backup::{summary_of, Backup, TEST_SCRYPT};
use super::compare::{compare_trees, CompareOpts};
use super::faulty::Faulty;
use super::restic::{restored_path, Restic};
use super::run::{argv, bin, Pipeline, PipelineResult};
use super::sluice::{assert_restore_ok, framed_records, one_line, restore_pipeline, tool};
use super::tree::{make_tree, TreeOpts};

/// A check of one pipeline's streams; the `&str` names the pipeline.
pub type Streams<'a> = &'a dyn Fn(&PipelineResult, &str);

/// A [`Restic`] (password file, cache in `dir`) whose repository is `url`.
pub fn remote(dir: &Path, url: String) -> Restic {
    let mut r = Restic::new(dir);
    r.repo = url.into();
    r
}

/// What a restore of `cd src && restic backup .` reproduces: all but the root's own metadata.
pub fn vs_source() -> CompareOpts {
    CompareOpts { skip_root: true, ..CompareOpts::restic_014() }
}

fn pack_flag(pack_size: Option<u32>) -> Vec<String> {
    pack_size.map(|n| vec!["--pack-size".to_string(), n.to_string()]).unwrap_or_default()
}

/// restic 0.14 makes the repository `r` and backs up the contents of `src` (with
/// `--pack-size` if given); sluice's restore pipeline reproduces it in `out` and verifies it;
/// `walk | fetch-pack` and `snapshots` work too. Returns the snapshot id.
pub fn restic_writes_sluice_restores(
    r: &Restic,
    src: &Path,
    out: &Path,
    pack_size: Option<u32>,
    streams: Streams,
) -> String {
    r.init(2, &[]);
    let flag = pack_flag(pack_size);
    let flag: Vec<&str> = flag.iter().map(String::as_str).collect();
    let id = r.backup_dir_contents(src, &flag);

    let res = restore_pipeline(r, "latest", out, &[], &[]);
    assert_restore_ok(&res, src);
    streams(&res, "restore pipeline");
    compare_trees(src, out, &vs_source())
        .unwrap_or_else(|e| panic!("sluice's restore of restic's backup at {}:\n{e}", r.repo.display()));

    let fetched = Pipeline::new().stage(tool(r, "walk", &["latest"])).stage(tool(r, "fetch-pack", &[])).run();
    fetched.assert_ok();
    streams(&fetched, "walk | fetch-pack");
    let snaps = Pipeline::new().stage(tool(r, "snapshots", &[])).run();
    snaps.assert_ok();
    streams(&snaps, "snapshots");
    assert_eq!(framed_records(&snaps).len(), 1);
    id
}

/// sluice makes the repository `r` (`init-repo`, which refuses to run a second time) and
/// backs up `src` with `chunk | pack | push` (`pack --pack-size` if given); `restic check
/// --read-data` accepts it, and both `restic restore` and sluice's restore reproduce `src`
/// under `out`. Returns the snapshot id.
pub fn sluice_writes_restic_restores(
    r: &Restic,
    src: &Path,
    out: &Path,
    pack_size: Option<u32>,
    streams: Streams,
) -> String {
    let init = || {
        Pipeline::new()
            .stage(super::backup::tool("init-repo", r, &[]))
            .env(TEST_SCRYPT.0, TEST_SCRYPT.1)
            .run()
    };
    let first = init();
    first.assert_ok();
    streams(&first, "init-repo");
    let again = init();
    assert_eq!(again.codes(), [2], "init-repo over an existing repository:\n{}", again.report());
    assert!(one_line(&again.stderrs[0], "init-repo again").contains("already exists"));
    streams(&again, "init-repo again");

    let flag = pack_flag(pack_size);
    let flag: Vec<&str> = flag.iter().map(String::as_str).collect();
    let res = Backup::of(&[src]).pack_args(&flag).run_raw(r);
    res.assert_ok();
    streams(&res, "chunk | pack | push");
    let id = r.full_id(summary_of(&res)["snapshot_id"].as_str().unwrap());

    r.check_read_data();
    let by_restic = out.join("restic");
    r.restore(&id, &by_restic, &[]);
    compare_trees(src, &restored_path(&by_restic, src), &CompareOpts::restic_014())
        .unwrap_or_else(|e| panic!("restic's restore of sluice's backup at {}:\n{e}", r.repo.display()));

    let by_sluice = out.join("sluice");
    let res = super::backup::restore(r, &id, &by_sluice);
    streams(&res, "sluice's restore of its own backup");
    compare_trees(src, &restored_path(&by_sluice, src), &CompareOpts::restic_014()).unwrap();
    id
}

/// The sizes of the packs in the repository `url`, as the backend lists them.
pub fn pack_sizes_of(url: &str) -> Vec<u64> {
    use common::backend::{open, FileType, Options};
    let b = open(url, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    b.list(FileType::Pack).unwrap_or_else(|e| panic!("{e}")).into_iter().map(|e| e.size).collect()
}

/// Both round trips at each of restic's pack sizes (4, 16, 64 and 128 MiB), on the server
/// whose repository `name` is at `url(name)`, with scratch space in `dir`. The source is the
/// edge-case tree of the local interop tests plus incompressible data: at 4 MiB, 14 MiB of it,
/// so that both writers make several packs and a restore crosses packs; at 16, 64 and 128 MiB
/// one pack's worth and 2 MiB more, so that each writer makes at least one pack of the full
/// size (above S3's multipart threshold for 64 and 128, and ranges read from deep inside it).
pub fn at_every_pack_size(dir: &Path, url: &dyn Fn(&str) -> String, streams: Streams) {
    for (mib, bulk) in [(4u32, 14u64), (16, 18), (64, 66), (128, 130)] {
        let case = tempfile::Builder::new().prefix("packs-").tempdir_in(dir).unwrap();
        let src = case.path().join("src");
        fs::create_dir(&src).unwrap();
        make_tree(&src, 40 + mib as u64, &TreeOpts::default());
        random_file(&src.join("bulk.bin"), bulk << 20, mib as u64);

        let name = format!("sizes/restic-{mib}");
        let r = remote(&case.path().join("restic"), url(&name));
        restic_writes_sluice_restores(&r, &src, &case.path().join("out-1"), Some(mib), streams);
        assert_packs(&url(&name), mib, "restic");

        let name = format!("sizes/sluice-{mib}");
        let r = remote(&case.path().join("sluice"), url(&name));
        sluice_writes_restic_restores(&r, &src, &case.path().join("out-2"), Some(mib), streams);
        assert_packs(&url(&name), mib, "sluice");
    }
}

/// That the writer really made a pack of about the size asked for (and several packs at
/// 4 MiB; restic's concurrent packers may close some early and let one grow past the size).
fn assert_packs(url: &str, mib: u32, writer: &str) {
    let sizes = pack_sizes_of(url);
    // A writer may close a pack a little before the size rather than after it.
    let full = sizes.iter().filter(|s| **s >= (u64::from(mib) << 20) / 10 * 9).count();
    let several = mib != 4 || sizes.len() >= 3;
    assert!(full >= 1 && several, "{writer} --pack-size {mib}: {full} full packs; sizes {sizes:?}");
}

/// `len` bytes that do not compress, from `seed`.
fn random_file(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// The edge-case tree of the local interop tests in `dir/src`, from `seed`; returns its path.
pub fn edge_tree(dir: &Path, seed: u64) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, seed, &TreeOpts::default());
    src
}

/// A small tree: a text file and a 200 kB binary one in a subdirectory.
pub fn small_tree(dir: &Path) {
    fs::create_dir_all(dir.join("d")).unwrap();
    fs::write(dir.join("a.txt"), b"hello over the network\n").unwrap();
    fs::write(dir.join("d/b.bin"), (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>())
        .unwrap();
}

/// A server whose certificate a private CA (the PEM file `ca`) signed: restic writes a small
/// tree through `--cacert`; sluice restores it with the CA from `RESTIC_CACERT`, lists with
/// `--cacert`, and without the CA refuses the certificate at once in one line that starts
/// `snapshots: <scheme>` and says what to do. Returns that line.
pub fn private_ca(r: &Restic, dir: &Path, ca: &str, scheme: &str, streams: Streams) -> String {
    let src = dir.join("src");
    small_tree(&src);
    // restic too trusts the CA only when told (0.14 knows the flag, not RESTIC_CACERT).
    let restic = |args: &[&str]| {
        let out = r.command().arg("--cacert").arg(ca).current_dir(&src).args(args).output().unwrap();
        assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    restic(&["init"]);
    restic(&["backup", "."]);

    let out = dir.join("out");
    let t: OsString = out.clone().into();
    let res = Pipeline::new()
        .stage(tool(r, "walk", &["latest"]))
        .stage(tool(r, "fetch-pack", &[]))
        .stage({
            let mut u = tool(r, "unpack", &[]);
            u.extend(["--target".into(), t.clone()]);
            u
        })
        .stage(argv([OsStr::new("verify"), OsStr::new("--target"), &t]))
        .env("RESTIC_CACERT", ca)
        .run();
    assert_restore_ok(&res, &src);
    streams(&res, "restore with RESTIC_CACERT");
    compare_trees(&src, &out, &vs_source()).unwrap();

    let ok = Pipeline::new().stage(tool(r, "snapshots", &["--cacert", ca])).run();
    ok.assert_ok();
    assert_eq!(framed_records(&ok).len(), 1);

    let t0 = Instant::now();
    let refused = Pipeline::new().stage(tool(r, "snapshots", &[])).run();
    assert_eq!(refused.codes(), [1], "{}", refused.report());
    let line = one_line(&refused.stderrs[0], "snapshots without --cacert");
    assert!(line.starts_with(&format!("snapshots: {scheme}")), "{line}");
    assert!(line.contains("--cacert"), "the message should say what to do: {line}");
    assert!(t0.elapsed() < Duration::from_secs(20), "a TLS failure was retried: {:?}", t0.elapsed());
    assert!(refused.stdout.is_empty());
    streams(&refused, "TLS refused");
    line
}

/// 500s, 503s and bodies cut half-way from the project's fault-injecting proxy between sluice
/// and the server at 127.0.0.1:`port` (`url(p)` names the repository through port `p`):
/// retried and resumed, the restore of what restic wrote is identical, and a backup through
/// the proxy gives a repository `restic check --read-data` accepts.
pub fn through_faults(dir: &Path, port: u16, url: &dyn Fn(u16) -> String, streams: Streams) {
    let src = edge_tree(dir, 13);
    let direct = remote(&dir.join("r"), url(port));
    direct.init(2, &[]);
    direct.backup_dir_contents(&src, &[]);

    let proxy = Faulty::start(port);
    let r = remote(&dir.join("r"), url(proxy.port));
    let out = dir.join("out");
    let res = restore_pipeline(&r, "latest", &out, &[], &[]);
    assert_restore_ok(&res, &src);
    streams(&res, "restore through faults");
    compare_trees(&src, &out, &vs_source()).unwrap_or_else(|e| panic!("restore through faults:\n{e}"));
    let (e500, e503, cut) =
        (proxy.count(|c| &c.errors_500), proxy.count(|c| &c.errors_503), proxy.count(|c| &c.cut_bodies));
    assert!(e500 > 0 && e503 > 0 && cut > 0, "faults injected: {e500} 500s, {e503} 503s, {cut} cut bodies");

    let res = Backup::of(&["."]).in_dir(&src).run_raw(&r);
    res.assert_ok();
    streams(&res, "backup through faults");
    assert!(summary_of(&res)["snapshot_id"].is_string());
    direct.check_read_data();
    assert_eq!(direct.snapshots_json().len(), 2);
}

/// A full round trip (`init-repo`, `chunk | pack | push`, `snapshots`, `walk | fetch-pack |
/// unpack | verify`) on the repository `url`, given only through the environment as a user
/// should (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD_COMMAND`, the caller's own variables), in
/// which none of `secrets` nor the repository password may show: not in the argv of any
/// process started (every stage runs under `strace -f -e trace=execve`, so the password
/// command's `sh` and anything else a stage starts is seen too), not in any stream between
/// stages (each goes through `tee` to a file), not on any stderr or the last stdout, not in
/// the `Debug` text of a backend error.
pub fn secrets_stay_hidden(dir: &Path, url: &str, secrets: &[&str]) {
    let password = "sluice-repo-pw-Rt47cV";
    let mut secrets: Vec<&str> = secrets.to_vec();
    secrets.push(password);
    let pw_file = dir.join("pw");
    fs::write(&pw_file, format!("{password}\n")).unwrap();
    let src = dir.join("src");
    small_tree(&src);
    let out = dir.join("out");
    let logs = dir.join("logs");
    fs::create_dir(&logs).unwrap();

    let count = std::cell::Cell::new(0);
    let file = |what: &str| {
        count.set(count.get() + 1);
        logs.join(format!("{}-{what}", count.get()))
    };
    let traced = |name: &str, args: &[&OsStr]| -> Vec<OsString> {
        let mut v: Vec<OsString> = ["strace", "-f", "-qq", "-e", "trace=execve", "-s", "65535", "-o"]
            .iter()
            .map(OsString::from)
            .collect();
        v.push(file(&format!("trace-{name}")).into());
        v.push(bin(name).into());
        v.extend(args.iter().map(|a| a.to_os_string()));
        v
    };
    let tee = || vec![OsString::from("tee"), file("stream").into()];
    let mut results = Vec::new();
    let mut run = |stages: Vec<Vec<OsString>>| {
        let mut p = Pipeline::new()
            .env("RESTIC_REPOSITORY", url)
            .env("RESTIC_PASSWORD_COMMAND", format!("cat {}", pw_file.display()))
            .env(TEST_SCRYPT.0, TEST_SCRYPT.1);
        for s in stages {
            p = p.stage(s);
        }
        let res = p.run();
        res.assert_ok();
        results.push(res);
    };
    let t = out.as_os_str();
    run(vec![traced("init-repo", &[])]);
    run(vec![traced("chunk", &[src.as_os_str()]), tee(), traced("pack", &[]), tee(), traced("push", &[])]);
    run(vec![traced("snapshots", &[])]);
    run(vec![
        traced("walk", &[OsStr::new("latest")]),
        tee(),
        traced("fetch-pack", &[]),
        tee(),
        traced("unpack", &[OsStr::new("--target"), t]),
        tee(),
        traced("verify", &[OsStr::new("--target"), t]),
    ]);
    compare_trees(&src, &restored_path(&out, &src), &CompareOpts::restic_014()).unwrap();

    let mut texts: Vec<(String, Vec<u8>)> = Vec::new();
    for res in &results {
        for (i, e) in res.stderrs.iter().enumerate() {
            texts.push((format!("stderr of {:?}", res.argv[i]), e.clone()));
        }
        texts.push((format!("stdout of {:?}", res.argv.last()), res.stdout.clone()));
    }
    let mut execs = 0;
    let mut shells = 0;
    for entry in fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        execs += text.matches("execve(").count();
        shells += text.matches("execve(\"/bin/sh\"").count() + text.matches("execve(\"/usr/bin/sh\"").count();
        texts.push((path.display().to_string(), bytes));
    }
    assert!(execs >= 11 && shells >= 1, "{execs} execve and {shells} sh traced: is strace working?");
    assert!(texts.iter().any(|(w, b)| w.contains("stream") && !b.is_empty()), "no stream captured");

    // And the Debug text of a backend's error.
    let b = common::backend::open(url, &common::backend::Options::default()).unwrap();
    let e = b.read(common::backend::FileType::Key, &"0".repeat(64)).unwrap_err();
    texts.push(("Debug of an error".into(), format!("{e:?} {e}").into_bytes()));

    for (what, bytes) in &texts {
        let text = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(!text.contains(secret), "a secret shows in {what}:\n{text}");
        }
    }
}

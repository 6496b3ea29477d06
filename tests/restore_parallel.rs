//! Parallel and in order: `fetch-pack` keeps several reads in flight and `walk` reads trees
//! many at a time, yet their streams are byte for byte what one read at a time gives, and
//! thousands of small files or directories cost a handful of requests, not one each.

mod support;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use support::faulty::Faulty;
use support::rclone::{Rclone, RcloneOpts};
use support::*;

const DIRS: usize = 60;
const FILES: usize = 600;

/// FILES small files in DIRS directories (some duplicates, so some blobs are sent once and
/// used again), and one file of several blobs; backed up by restic with 4 MiB packs.
fn fixture(dir: &Path) -> (Restic, std::path::PathBuf) {
    let src = dir.join("src");
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for i in 0..FILES {
        let d = src.join(format!("d{:02}", i % DIRS));
        fs::create_dir_all(&d).unwrap();
        let mut data = vec![0u8; rng.gen_range(10..20_000)];
        if i % 10 == 3 {
            data = b"the same small file, again".to_vec();
        } else {
            rng.fill_bytes(&mut data);
        }
        fs::write(d.join(format!("f{i:04}")), data).unwrap();
    }
    let mut big = vec![0u8; 12 << 20];
    rng.fill_bytes(&mut big);
    fs::write(src.join("big.bin"), big).unwrap();
    let r = Restic::new(&dir.join("r"));
    r.init(2, &[]);
    r.backup_dir_contents(&src, &["--pack-size", "4"]);
    (r, src)
}

fn fetch(repo: &str, walked: &[u8], flags: &[&str]) -> Vec<u8> {
    let mut argv: Vec<OsString> = vec!["fetch-pack".into()];
    argv.extend(flags.iter().map(OsString::from));
    argv.extend(["--repo".into(), repo.into()]);
    let res = Pipeline::new().stage(argv).stdin(walked.to_vec()).timeout(Duration::from_secs(300)).run();
    res.assert_ok();
    res.stdout
}

#[test]
fn fetch_pack_stream_is_the_same_for_any_connections_and_read_size() {
    let td = tempdir();
    let (r, _) = fixture(td.path());
    let walked = Pipeline::new().stage(tool(&r, "walk", &["latest"])).run().assert_ok().stdout.clone();
    let repo = r.repo.to_string_lossy().into_owned();
    // One blob per read, one read at a time: the reference.
    let one = fetch(&repo, &walked, &["--connections", "1", "--max-gap", "0", "--max-read", "1"]);
    let blobs = one.split(|b| *b == b'\n').filter(|l| l.starts_with(b"{\"type\":\"blob\"")).count();
    assert!(blobs > FILES, "{blobs} blob records");
    for flags in [
        &[][..],
        &["--connections", "16"][..],
        &["--connections", "3", "--max-read", "65536"][..],
        &["--connections", "8", "--max-gap", "0", "--max-read", "4096"][..],
    ] {
        assert!(fetch(&repo, &walked, flags) == one, "fetch-pack {flags:?} gave another stream");
    }
}

/// The REST server of the repository behind a proxy that counts requests.
fn served(r: &Restic, dir: &Path) -> (Rclone, Faulty, String) {
    let server = Rclone::start(&r.repo, &RcloneOpts::default());
    let proxy = Faulty::with_latency(server.port, Duration::ZERO);
    let url = format!("rest:http://127.0.0.1:{}/", proxy.port);
    let _ = dir;
    (server, proxy, url)
}

fn requests(p: &Faulty) -> u64 {
    p.count(|c| &c.requests)
}

#[test]
fn remote_restore_costs_few_requests_and_gives_the_same_streams() {
    let td = tempdir();
    let (r, src) = fixture(td.path());
    let local_walk = Pipeline::new().stage(tool(&r, "walk", &["latest"])).run().assert_ok().stdout.clone();
    let (_server, proxy, url) = served(&r, td.path());
    let pw = r.password_file.to_string_lossy().into_owned();

    let before = requests(&proxy);
    let walk = argv(["walk", "latest", "--repo", &url, "--password-file", &pw]);
    let walked = Pipeline::new().stage(walk).run().assert_ok().stdout.clone();
    let walk_requests = requests(&proxy) - before;
    assert!(walked == local_walk, "walk over rest: gave another stream");
    // config, keys, snapshots, index: a few; trees: DIRS + 1 of them, read many at a time.
    assert!(walk_requests < 20, "walk made {walk_requests} requests for {} trees", DIRS + 1);

    let before = requests(&proxy);
    let fetched = fetch(&url, &walked, &[]);
    let fetch_requests = requests(&proxy) - before;
    assert!(fetched == fetch(&r.repo.to_string_lossy(), &local_walk, &[]), "fetch-pack over rest: differs");
    // 4 MiB packs: about (FILES * 10 KiB + 12 MiB) / 4 MiB packs, a few reads each.
    assert!(fetch_requests < 40, "fetch-pack made {fetch_requests} requests for {FILES} files");

    // And the whole pipeline restores the data.
    let target = td.path().join("out");
    let unpack =
        argv(["unpack", "--target", &target.to_string_lossy(), "--repo", &url, "--password-file", &pw]);
    Pipeline::new().stage(unpack).stdin(fetched).run().assert_ok();
    for i in [0, 3, FILES - 1] {
        let rel = format!("d{:02}/f{i:04}", i % DIRS);
        assert_eq!(fs::read(target.join(&rel)).unwrap(), fs::read(src.join(&rel)).unwrap(), "{rel}");
    }
    assert_eq!(fs::read(target.join("big.bin")).unwrap(), fs::read(src.join("big.bin")).unwrap());
}

//! A restic repository made for one test: a source tree the test fills, restic 0.14's backup
//! of it (`cd src && restic backup .`, repository version 2), and scratch space beside them,
//! all removed when the fixture is dropped.

use std::fs;
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use serde_json::Value;

use super::restic::Restic;
use super::run::Pipeline;
use super::sluice::{tool, walk_records};
use super::tempdir;

/// A source tree and restic's backup of it.
pub struct Fixture {
    pub td: tempfile::TempDir,
    /// The source tree.
    pub src: PathBuf,
    /// The repository (a local directory), its password and cache.
    pub r: Restic,
}

impl Fixture {
    /// `fill` makes the tree in the (existing, empty) `src`; restic then backs up its contents
    /// with `backup_args` (`--pack-size 4`, say).
    pub fn new(fill: impl FnOnce(&Path), backup_args: &[&str]) -> Fixture {
        let td = tempdir();
        let src = td.path().join("src");
        fs::create_dir(&src).unwrap();
        fill(&src);
        let r = Restic::new(&td.path().join("r"));
        r.init(2, &[]);
        r.backup_dir_contents(&src, backup_args);
        Fixture { td, src, r }
    }

    /// `name` in the scratch space.
    pub fn path(&self, name: &str) -> PathBuf {
        self.td.path().join(name)
    }

    /// The path of a pack file in the repository.
    pub fn pack_path(&self, pack: &str) -> PathBuf {
        self.r.repo.join("data").join(&pack[..2]).join(pack)
    }

    /// walk's records of the latest snapshot.
    pub fn records(&self) -> Vec<Value> {
        walk_records(&self.r, "latest", &[])
    }

    /// walk's output (header and end included).
    pub fn walk_stream(&self) -> Vec<u8> {
        let res = Pipeline::new().stage(tool(&self.r, "walk", &["latest"])).run();
        res.assert_ok();
        res.stdout
    }

    /// `walk | fetch-pack`'s output.
    pub fn fetch_stream(&self) -> Vec<u8> {
        let res = Pipeline::new()
            .stage(tool(&self.r, "walk", &["latest"]))
            .stage(tool(&self.r, "fetch-pack", &[]))
            .run();
        res.assert_ok();
        res.stdout
    }
}

/// `len` random bytes from `seed`. Files of 9 MiB of them are past the chunker's 8 MiB
/// maximum: several blobs whatever the repository's chunker polynomial.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

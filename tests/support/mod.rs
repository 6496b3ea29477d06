//! Shared support for the integration tests: `mod support;` in a `tests/*.rs` file.
//!
//! * [`make_tree`] builds a reproducible directory tree full of edge cases,
//! * [`compare_trees`] checks that a restored tree equals its source, metadata included,
//! * [`Restic`] drives the real `restic` binary, the reference implementation, and
//!   [`Fixture`] is a tree a test makes and restic's backup of it,
//! * [`pipeline`] / [`Pipeline`] run our binaries as real processes joined by pipes,
//! * [`restore_pipeline`] and friends run sluice's restore against a restic repository,
//! * [`measured`] runs a pipeline into a file and reports each stage's peak memory,
//! * [`backup`] drives init-repo and the backup pipeline `chunk | pack | push`,
//! * [`rclone`], [`moto`] and [`s3rver`] start real REST and S3 servers on 127.0.0.1, and
//!   [`remote`] has the round trips every such server must pass.
//!
//! Each test crate uses only part of this, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod backup;
pub mod compare;
pub mod faulty;
pub mod fixture;
pub mod measured;
pub mod moto;
pub mod progress;
pub mod rclone;
pub mod remote;
pub mod restic;
pub mod run;
pub mod s3rver;
pub mod sluice;
pub mod tree;

pub use compare::{compare_trees, go_lossy_utf8, show, CompareOpts};
pub use fixture::{random_bytes, Fixture};
pub use restic::{restic_bin, restored_path, snapshot_subpath, Restic, PASSWORD};
pub use run::{argv, bin, bin_dir, pipeline, run_cmd, Pipeline, PipelineResult};
pub use sluice::{
    assert_nothing_incomplete, assert_restore_ok, count_files, framed_records, one_line, record_for,
    repo_args, restore_pipeline, tool, unnamed_files_held, unnamed_files_work, walk_records,
};
pub use tree::{is_root, make_tree, set_times, TreeInfo, TreeOpts};

/// A fresh temporary directory, removed when the returned guard is dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("sluice-test-").tempdir().expect("create temp dir")
}

//! sluice's library: the restic repository format, its crypto, the backends, and the NDJSON
//! records the tools exchange. Every tool is a thin `main.rs` over this crate.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(unsafe_code)]

pub mod backend;
pub mod check;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod dump;
pub mod error;
pub mod file;
pub mod filter;
pub mod go;
pub mod id;
pub mod index;
pub mod key;
pub mod lock;
pub mod meta;
pub mod node;
pub mod overwrite;
pub mod pack;
pub mod par;
pub mod progress;
pub mod record;
pub mod repo;
pub mod restored;
pub mod signal;
pub mod snapshot;
pub mod stat;
#[allow(unsafe_code)] // the one module that needs it: calls with no safe wrapper
pub mod sys;
pub mod target;
pub mod tree;

pub use error::{Error, Result};
pub use id::Id;

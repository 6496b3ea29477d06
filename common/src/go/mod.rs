//! Go compatibility: the parts of Go's standard library whose exact output restic stores.
//!
//! restic's trees, snapshots, keys and locks are Go's `encoding/json` output of Go values, and
//! a tree's id is the hash of those bytes; reading what restic wrote and writing what restic
//! would write both come down to behaving like Go here. Each file is one Go package's share:
//! [`strconv`] (`Quote`/`Unquote` for node names, with the printable-rune table as data in
//! `printable.rs`), [`json`] (string escaping, `[]byte`, maps, the decoder's key folding),
//! [`time`] (`time.Time` and its calendar) and [`mode`] (`os.FileMode`).

pub mod json;
pub mod mode;
mod printable;
pub mod strconv;
pub mod time;

pub use json::GoJsonFlavor;
pub use time::GoTime;

/// Go writes the hex digits of escapes in lower case.
const HEX: &[u8; 16] = b"0123456789abcdef";

//! restic-compatible repository locks (FORMAT.md §11). Filled in with the backup tools.

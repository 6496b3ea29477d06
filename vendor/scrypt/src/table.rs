//! sluice's change (see vendor/README.md): the lanes' table, in transparent huge pages where
//! Linux gives them on request (`/sys/kernel/mm/transparent_hugepage/enabled` set to
//! `madvise`, as on Debian and Ubuntu). Made of 4 KiB pages, a 32 MiB table is 8192 page
//! faults on its first pass, each a page zeroed on its own: about 40 ms of a 300 ms key
//! derivation on the project's test machine (a VM, where faults cost more). In 2 MiB pages,
//! 16 faults.

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// Huge pages come in this size on x86_64; a table smaller than one is a plain `Vec`.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

pub(crate) enum Table {
    Vec(Vec<u8>),
    /// The mapping (`base`, `mapped` bytes) and the table in it (`at`, `len` bytes), which
    /// starts on a huge page boundary.
    #[cfg(target_os = "linux")]
    Mapped { base: *mut u8, mapped: usize, at: *mut u8, len: usize },
}

impl Table {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Table {
        #[cfg(target_os = "linux")]
        if len >= HUGE {
            if let Some(t) = Table::mapped(len) {
                return t;
            }
        }
        Table::Vec(vec![0u8; len])
    }

    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Table> {
        // One huge page more than asked for, to start the table on a boundary inside it.
        let mapped = len.checked_add(HUGE)?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: a new private anonymous mapping; nothing else refers to its address.
        let base = unsafe { libc::mmap(core::ptr::null_mut(), mapped, prot, flags, -1, 0) };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base.cast::<u8>();
        let at = base.wrapping_add(base.align_offset(HUGE));
        // A request only: refused (THP off, an old kernel), the table is in small pages and
        // works the same.
        // SAFETY: `at..at + len` lies inside the mapping just made.
        let _ = unsafe { libc::madvise(at.cast(), len, libc::MADV_HUGEPAGE) };
        Some(Table::Mapped { base, mapped, at, len })
    }
}

impl Deref for Table {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Table::Vec(v) => v,
            // SAFETY: `len` bytes at `at` are mapped, readable, zero until written, and
            // borrowed only through this table.
            #[cfg(target_os = "linux")]
            Table::Mapped { at, len, .. } => unsafe { core::slice::from_raw_parts(*at, *len) },
        }
    }
}

impl DerefMut for Table {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Table::Vec(v) => v,
            // SAFETY: as in `deref`, and writable; `&mut self` makes the borrow unique.
            #[cfg(target_os = "linux")]
            Table::Mapped { at, len, .. } => unsafe { core::slice::from_raw_parts_mut(*at, *len) },
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Table::Mapped { base, mapped, .. } = *self {
            // SAFETY: the mapping made in `mapped`, unmapped once, no borrow outliving it.
            unsafe { libc::munmap(base.cast(), mapped) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    /// A table of a few huge pages is mapped, starts on a huge page boundary, reads as zeros
    /// and keeps what is written; a small one is a plain vector.
    #[test]
    fn tables_are_zeroed_and_writable() {
        let mut t = Table::zeroed(5 << 20);
        #[cfg(target_os = "linux")]
        {
            assert!(matches!(t, Table::Mapped { .. }));
            assert_eq!(t.as_ptr() as usize % super::HUGE, 0);
        }
        assert_eq!(t.len(), 5 << 20);
        assert!(t.iter().all(|b| *b == 0));
        t[(5 << 20) - 1] = 7;
        t[0] = 1;
        assert_eq!((t[0], t[(5 << 20) - 1]), (1, 7));
        assert!(matches!(Table::zeroed(4096), Table::Vec(_)));
    }
}

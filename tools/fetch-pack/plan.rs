//! Which byte ranges to read: a pure function of the input records, no I/O.
//!
//! The output is cut into units, each at most one ranged read plus the records that go out
//! around its blobs. Consecutive blobs of consecutive files that lie in the same pack share
//! one read when the gap between them is small and the read stays under a cap, in whatever
//! order they lie: thousands of small files packed side by side cost a handful of requests,
//! not one each (DESIGN.md, "Round trips, not bytes"). Units are built from the records as
//! they come, so how far the plan runs ahead of the output is bounded by what the fetcher
//! takes of them.

use std::collections::VecDeque;

use common::index::IdMap;
use common::pack::{MAX_BLOB, MAX_SEALED_BLOB};
use common::record::BlobLoc;
use common::Id;

/// One record of the output, in output order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An input line, passed on unchanged.
    Line(String),
    /// A blob sent earlier in the stream: its record goes out without data.
    Sent(BlobLoc),
    /// A blob whose record claims an impossible size: refused without reading, with why.
    Refused(BlobLoc, String),
    /// A blob whose bytes come from this unit's read.
    Data(BlobLoc),
}

/// Bytes `start..end` of one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub pack: Id,
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Records to write, and the one read (if any) their `Data` items are cut from.
#[derive(Debug, Default)]
pub struct Unit {
    pub items: Vec<Item>,
    pub read: Option<Range>,
    /// Bytes of the lines held, to bound a unit without reads.
    lines: usize,
}

impl Unit {
    /// What the unit will hold once read: the range and the lines.
    pub fn weight(&self) -> u64 {
        self.read.map_or(0, |r| r.len()) + self.lines as u64
    }
}

/// How reads are merged.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Blobs at most this many bytes apart share a read.
    pub max_gap: u64,
    /// A read grows no larger than this (a larger blob is read alone).
    pub max_read: u64,
    /// The first read's cap, doubled for each read after it up to `max_read`: the first
    /// bytes reach the next stage after a small read, not after the largest.
    pub first_read: u64,
    /// A unit holds at most about this many bytes of lines.
    pub max_lines: usize,
}

/// Turns records into units, in order.
pub struct Planner {
    limits: Limits,
    /// Blobs already planned: later uses go without data.
    sent: IdMap<()>,
    open: Unit,
    done: VecDeque<Unit>,
    /// Reads planned before the open unit's.
    reads: u32,
}

impl Planner {
    pub fn new(limits: Limits) -> Planner {
        Planner { limits, sent: IdMap::default(), open: Unit::default(), done: VecDeque::new(), reads: 0 }
    }

    /// A line passed on unchanged, followed by the records of `blobs` (a file's content, or
    /// nothing).
    pub fn line(&mut self, text: String, blobs: &[BlobLoc]) {
        self.open.lines += text.len();
        self.open.items.push(Item::Line(text));
        for b in blobs {
            self.blob(b);
        }
        if self.open.lines >= self.limits.max_lines {
            self.close();
        }
    }

    fn blob(&mut self, b: &BlobLoc) {
        if self.sent.contains_key(&b.id) {
            self.open.items.push(Item::Sent(b.clone()));
            return;
        }
        self.sent.insert(b.id, ());
        // An impossible length is refused before any read or allocation.
        if b.length as u64 > MAX_SEALED_BLOB || b.plain_len() > MAX_BLOB {
            let msg = format!(
                "blob {} claims {} bytes ({} encrypted), more than the {} MiB a blob may hold",
                b.id.short(),
                b.plain_len(),
                b.length,
                MAX_BLOB >> 20
            );
            self.open.items.push(Item::Refused(b.clone(), msg));
            return;
        }
        let end = b.offset + b.length as u64;
        let cap =
            self.limits.first_read.max(1).saturating_mul(1 << self.reads.min(32)).min(self.limits.max_read);
        match &mut self.open.read {
            None => self.open.read = Some(Range { pack: b.pack, start: b.offset, end }),
            // Backups write concurrently, so consecutive files' blobs may sit a little out of
            // order in a pack: a read grows either way, to any blob close to it.
            Some(r)
                if r.pack == b.pack
                    && b.offset <= r.end.saturating_add(self.limits.max_gap)
                    && end.saturating_add(self.limits.max_gap) >= r.start
                    && end.max(r.end) - b.offset.min(r.start) <= cap =>
            {
                r.start = r.start.min(b.offset);
                r.end = r.end.max(end);
            }
            Some(_) => {
                self.close();
                self.open.read = Some(Range { pack: b.pack, start: b.offset, end });
            }
        }
        self.open.items.push(Item::Data(b.clone()));
    }

    fn close(&mut self) {
        let u = std::mem::take(&mut self.open);
        self.reads = self.reads.saturating_add(u32::from(u.read.is_some()));
        if !u.items.is_empty() {
            self.done.push_back(u);
        }
    }

    /// The next unit that can grow no more.
    pub fn pop(&mut self) -> Option<Unit> {
        self.done.pop_front()
    }

    /// At the end of the input: the unit still open, if any.
    pub fn finish(&mut self) -> Option<Unit> {
        self.close();
        self.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_gap: 100, max_read: 1000, first_read: 1000, max_lines: 1 << 20 };

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn blob(n: u8, pack: u8, offset: u64, length: u32) -> BlobLoc {
        BlobLoc { id: id(n), pack: id(pack), offset, length, uncompressed_length: None }
    }

    /// Feeds files (one line each, with their blobs) and returns every unit.
    fn plan(limits: Limits, files: &[Vec<BlobLoc>]) -> Vec<Unit> {
        let mut p = Planner::new(limits);
        let mut units = Vec::new();
        for (i, blobs) in files.iter().enumerate() {
            p.line(format!("file {i}"), blobs);
            while let Some(u) = p.pop() {
                units.push(u);
            }
        }
        units.extend(p.finish());
        units
    }

    fn reads(units: &[Unit]) -> Vec<Option<(u8, u64, u64)>> {
        units.iter().map(|u| u.read.map(|r| (r.pack.0[0], r.start, r.end))).collect()
    }

    /// Every record comes out once, in input order, whatever the cuts.
    fn items(units: &[Unit]) -> Vec<Item> {
        units.iter().flat_map(|u| u.items.clone()).collect()
    }

    #[test]
    fn small_files_side_by_side_share_one_read() {
        let files: Vec<_> = (0..10).map(|i| vec![blob(i, 1, i as u64 * 50, 50)]).collect();
        let units = plan(LIMITS, &files);
        assert_eq!(reads(&units), [Some((1, 0, 500))]);
        assert_eq!(items(&units).len(), 20);
    }

    #[test]
    fn small_gaps_merge_large_ones_split() {
        let files = vec![
            vec![blob(1, 1, 0, 50), blob(2, 1, 150, 50)], // gap 100: merged
            vec![blob(3, 1, 301, 50)],                    // gap 101: a new read
        ];
        assert_eq!(reads(&plan(LIMITS, &files)), [Some((1, 0, 200)), Some((1, 301, 351))]);
    }

    #[test]
    fn reads_are_capped_and_a_large_blob_goes_alone() {
        let files =
            vec![(0..30).map(|i| blob(i, 1, i as u64 * 100, 100)).collect(), vec![blob(99, 1, 3000, 5000)]];
        let r = reads(&plan(LIMITS, &files));
        assert_eq!(
            r,
            [Some((1, 0, 1000)), Some((1, 1000, 2000)), Some((1, 2000, 3000)), Some((1, 3000, 8000))]
        );
    }

    #[test]
    fn reads_start_small_and_double_up_to_the_cap() {
        let limits = Limits { first_read: 200, ..LIMITS };
        let files: Vec<_> = (0..40).map(|i| vec![blob(i, 1, i as u64 * 100, 100)]).collect();
        let r = reads(&plan(limits, &files));
        assert_eq!(
            r,
            [
                Some((1, 0, 200)),
                Some((1, 200, 600)),
                Some((1, 600, 1400)),
                Some((1, 1400, 2400)),
                Some((1, 2400, 3400)),
                Some((1, 3400, 4000))
            ]
        );
        // A first blob larger than the first cap is still read, alone.
        let r = reads(&plan(limits, &[vec![blob(1, 1, 0, 500), blob(2, 1, 500, 100)]]));
        assert_eq!(r, [Some((1, 0, 500)), Some((1, 500, 600))]);
    }

    #[test]
    fn another_pack_or_a_far_step_back_starts_a_new_read() {
        let files = vec![vec![blob(1, 1, 100, 50)], vec![blob(2, 2, 650, 50)], vec![blob(3, 2, 0, 50)]];
        assert_eq!(
            reads(&plan(LIMITS, &files)),
            [Some((1, 100, 150)), Some((2, 650, 700)), Some((2, 0, 50))]
        );
    }

    #[test]
    fn blobs_a_little_out_of_order_share_a_read() {
        let files = vec![vec![blob(1, 1, 300, 50)], vec![blob(2, 1, 200, 50)], vec![blob(3, 1, 400, 50)]];
        let units = plan(LIMITS, &files);
        assert_eq!(reads(&units), [Some((1, 200, 450))]);
        assert_eq!(items(&units).len(), 6);
    }

    #[test]
    fn a_blob_already_sent_goes_without_data_and_is_not_read() {
        let a = blob(1, 1, 0, 50);
        let units = plan(LIMITS, &[vec![a.clone()], vec![a.clone(), blob(2, 1, 50, 50)]]);
        assert_eq!(reads(&units), [Some((1, 0, 100))]);
        assert_eq!(
            items(&units),
            [
                Item::Line("file 0".into()),
                Item::Data(a.clone()),
                Item::Line("file 1".into()),
                Item::Sent(a),
                Item::Data(blob(2, 1, 50, 50))
            ]
        );
    }

    #[test]
    fn impossible_lengths_are_refused_unread() {
        let huge = blob(1, 1, 0, u32::MAX);
        let units = plan(LIMITS, &[vec![huge.clone(), blob(2, 1, 10, 10)]]);
        assert!(
            matches!(&units[0].items[1], Item::Refused(b, msg) if *b == huge && msg.contains("more than"))
        );
        assert_eq!(reads(&units), [Some((1, 10, 20))]);
    }

    #[test]
    fn lines_without_reads_are_cut_into_bounded_units() {
        let limits = Limits { max_lines: 100, ..LIMITS };
        let files: Vec<Vec<BlobLoc>> = vec![Vec::new(); 1000];
        let units = plan(limits, &files);
        assert!(units.len() >= 1000 * 6 / 100 - 1, "{} units", units.len());
        assert!(units.iter().all(|u| u.weight() <= 100 + 10));
        assert_eq!(items(&units).len(), 1000);
    }

    #[test]
    fn weight_is_the_read_and_the_lines() {
        let units = plan(LIMITS, &[vec![blob(1, 1, 0, 300)]]);
        assert_eq!(units[0].weight(), 300 + "file 0".len() as u64);
    }
}

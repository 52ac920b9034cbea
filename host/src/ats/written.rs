//! Whether an ATS record this host read a moment ago may stand for what the ATS has now: this
//! host counts its own writes to each record, and a read begun before one of them is never
//! reused after it. The Lever adapter reads an opportunity to start a screening and, without
//! this, read it again a few milliseconds later to reconcile its tags and links.
//!
//! Only where this host is the only writer: SQLite is one process per file. With PostgreSQL
//! another host may write the record meanwhile, unseen here, so no read is reused
//! ([`Written::before_read`] answers `None`).

use std::collections::HashMap;
use std::sync::Mutex;

/// Records whose last write is remembered; past it the map is cleared and every read begun
/// before is taken as stale.
const RECORDS: usize = 4096;

/// This host's writes to ATS records, by record.
pub struct Written {
    /// `false` on a database several hosts share: no read is reused.
    only_writer: bool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts finished writes (of any record).
    seq: u64,
    /// Each record's last write (`seq` after it), since `floor`.
    last: HashMap<String, u64>,
    /// The `seq` when `last` was last cleared: a read begun before it may predate a write.
    floor: u64,
}

/// When a read began, against this host's writes.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Written {
    /// `only_writer`: whether this host is the only one writing to the ATS for its database.
    pub fn new(only_writer: bool) -> Written {
        Written {
            only_writer,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves consistent numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken just before a read that may be reused; `None` where none may be.
    pub fn before_read(&self) -> Option<Ticket> {
        self.only_writer.then(|| Ticket(self.inner().seq))
    }

    /// Whether no write of this host to `record` ended or was under way since `ticket` was
    /// taken.
    pub fn unchanged_since(&self, record: &str, ticket: Ticket) -> bool {
        let inner = self.inner();
        ticket.0 >= inner.floor && inner.last.get(record).is_none_or(|w| *w <= ticket.0)
    }

    /// Marks writes to `record` for as long as the guard lives, from its first
    /// [`Writing::arm`]: a read begun before the guard drops is stale (the write may have
    /// landed after the read's answer was made, or before).
    pub fn writing<'a>(&'a self, record: &'a str) -> Writing<'a> {
        Writing {
            written: self,
            record,
            armed: false,
        }
    }
}

/// Writes to one record under way ([`Written::writing`]).
pub struct Writing<'a> {
    written: &'a Written,
    record: &'a str,
    /// Whether a write was sent: `seq` moves when an armed guard drops, so a ticket taken
    /// while a write was under way is stale too.
    armed: bool,
}

impl Writing<'_> {
    /// Called before each write.
    pub fn arm(&mut self) {
        self.armed = true;
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.written.inner();
        inner.seq += 1;
        let seq = inner.seq;
        if inner.last.len() >= RECORDS && !inner.last.contains_key(self.record) {
            inner.last.clear();
            inner.floor = seq;
        }
        inner.last.insert(self.record.to_owned(), seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_stands_until_a_write_to_its_record_ends_or_is_under_way() {
        let written = Written::new(true);
        let before = written.before_read().expect("the only writer");
        assert!(written.unchanged_since("a", before), "nothing written");
        // A write under way when a read begins: that read is stale once it ends.
        let mut writing = written.writing("a");
        writing.arm();
        let during = written.before_read().expect("the only writer");
        drop(writing);
        assert!(!written.unchanged_since("a", before));
        assert!(!written.unchanged_since("a", during));
        assert!(written.unchanged_since("b", before), "another record");
        let after = written.before_read().expect("the only writer");
        assert!(written.unchanged_since("a", after));
        // A guard that sent nothing changes nothing.
        drop(written.writing("a"));
        assert!(written.unchanged_since("a", after));
    }

    #[test]
    fn forgetting_records_makes_every_older_read_stale() {
        let written = Written::new(true);
        let before = written.before_read().expect("the only writer");
        for i in 0..=RECORDS {
            written.writing(&i.to_string()).arm();
        }
        // "x" was never written, but its write may have been forgotten.
        assert!(!written.unchanged_since("x", before));
        let after = written.before_read().expect("the only writer");
        assert!(written.unchanged_since("x", after));
        assert!(!written.unchanged_since(&RECORDS.to_string(), before));
    }

    #[test]
    fn with_other_hosts_writing_no_read_is_reused() {
        assert!(Written::new(false).before_read().is_none());
    }
}

//! The idempotent producers' table: for each producer id, its epoch, the next sequence it may
//! use, and the log sequences its last few requests got, so a retried request is answered
//! with the sequence it already has instead of being appended twice (Kafka's idempotent
//! producer; the Durable Streams protocol's `Producer-*` headers).
//!
//! A request's stamp is [`ProducerTable::check`]ed, then [`ProducerTable::reserve`]d as it is
//! handed to the committer (so requests pipelined behind it check against it), then
//! [`ProducerTable::record`]ed with the log sequence its last entry got. That entry carries the
//! stamp on disk (format v4's per-record producer), so [`ProducerTable::rebuild`] makes the
//! table from the log after a crash: a retry that reaches the next owner lands once.

use std::collections::{HashMap, VecDeque};

use crate::error::{Error, Result};
use crate::frame::Producer;

/// How many of each producer's latest requests are remembered: a retry of an older one is
/// refused rather than appended again. A shared store's client never has more than this many
/// stamped requests unanswered (it waits for an answer first), so every request it may retry
/// after a failover is within the window (24 bytes a request remembered).
pub const WINDOW: usize = 4096;

/// What to do with a stamped request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Check {
    /// New: append it.
    Append,
    /// A retry of a request that was appended: its last entry's log sequence.
    Duplicate(u64),
}

#[derive(Debug)]
struct Entry {
    epoch: u32,
    /// The sequence its next request must carry.
    next: u64,
    /// Its latest requests: stamp sequence, and its last entry's log sequence once known.
    window: VecDeque<(u64, Option<u64>)>,
}

/// Every producer's last stamps: see the module documentation.
#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<u64, Entry>,
}

impl ProducerTable {
    /// The table a log's stamped entries give, in log order: `(stamp, its entry's sequence)`.
    pub fn rebuild(stamps: impl IntoIterator<Item = (Producer, u64)>) -> Self {
        let mut table = Self::default();
        for (stamp, sequence) in stamps {
            table.reserve(stamp);
            table.record(stamp, sequence);
        }
        table
    }

    /// What to do with a request stamped `stamp`. A producer the table does not know starts
    /// wherever it says; a newer epoch starts over.
    ///
    /// # Errors
    /// `ProducerFenced` for an epoch older than the producer's; `ProducerGap` when the
    /// sequence skips ahead (requests were lost between); `InvalidArgument` for a retry of a
    /// request older than the window, or of one that is still in flight or failed.
    pub fn check(&self, stamp: Producer) -> Result<Check> {
        let Some(entry) = self.producers.get(&stamp.id) else {
            return Ok(Check::Append);
        };
        if stamp.epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                id: stamp.id,
                epoch: stamp.epoch,
                current: entry.epoch,
            });
        }
        if stamp.epoch > entry.epoch || stamp.seq == entry.next {
            return Ok(Check::Append);
        }
        if stamp.seq > entry.next {
            return Err(Error::ProducerGap {
                id: stamp.id,
                expected: entry.next,
                found: stamp.seq,
            });
        }
        match entry.window.iter().find(|(seq, _)| *seq == stamp.seq) {
            Some((_, Some(last))) => Ok(Check::Duplicate(*last)),
            Some((_, None)) => Err(Error::InvalidArgument(format!(
                "producer {} sequence {} is a retry of a request still in flight or failed",
                stamp.id, stamp.seq
            ))),
            None => Err(Error::InvalidArgument(format!(
                "producer {} sequence {} is older than the last {WINDOW} requests remembered",
                stamp.id, stamp.seq
            ))),
        }
    }

    /// `stamp` (checked: [`Check::Append`]) is handed on: the producer's next request must
    /// carry the sequence after it.
    pub fn reserve(&mut self, stamp: Producer) {
        let entry = self.producers.entry(stamp.id).or_insert(Entry {
            epoch: stamp.epoch,
            next: 0,
            window: VecDeque::new(),
        });
        if stamp.epoch != entry.epoch {
            entry.epoch = stamp.epoch;
            entry.window.clear();
        }
        entry.next = stamp.seq.saturating_add(1);
        if entry.window.len() == WINDOW {
            entry.window.pop_front();
        }
        entry.window.push_back((stamp.seq, None));
    }

    /// The request stamped `stamp` was appended, its last entry at `last`.
    pub fn record(&mut self, stamp: Producer, last: u64) {
        if let Some(slot) = self
            .producers
            .get_mut(&stamp.id)
            .filter(|e| e.epoch == stamp.epoch)
            .and_then(|e| e.window.iter_mut().find(|(seq, _)| *seq == stamp.seq))
        {
            slot.1 = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn stamp(id: u64, epoch: u32, seq: u64) -> Producer {
        Producer { id, epoch, seq }
    }

    fn appended(table: &mut ProducerTable, s: Producer, first: u64) {
        assert_eq!(table.check(s).unwrap(), Check::Append);
        table.reserve(s);
        table.record(s, first);
    }

    #[test]
    fn a_retry_is_answered_with_its_first_sequence() {
        let mut table = ProducerTable::default();
        appended(&mut table, stamp(7, 0, 0), 10);
        appended(&mut table, stamp(7, 0, 1), 11);
        assert_eq!(table.check(stamp(7, 0, 1)).unwrap(), Check::Duplicate(11));
        assert_eq!(table.check(stamp(7, 0, 0)).unwrap(), Check::Duplicate(10));
        assert_eq!(table.check(stamp(7, 0, 2)).unwrap(), Check::Append);
        // Another producer is independent.
        assert_eq!(table.check(stamp(8, 0, 5)).unwrap(), Check::Append);
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_newer_starts_over() {
        let mut table = ProducerTable::default();
        appended(&mut table, stamp(1, 3, 0), 1);
        let fenced = table.check(stamp(1, 2, 1)).unwrap_err();
        assert_eq!(fenced.code(), "PRODUCER_FENCED");
        appended(&mut table, stamp(1, 4, 0), 2);
        assert_eq!(
            table.check(stamp(1, 3, 1)).unwrap_err().code(),
            "PRODUCER_FENCED"
        );
    }

    #[test]
    fn a_gap_names_the_expected_sequence() {
        let mut table = ProducerTable::default();
        appended(&mut table, stamp(1, 0, 0), 1);
        match table.check(stamp(1, 0, 3)).unwrap_err() {
            Error::ProducerGap {
                expected, found, ..
            } => assert_eq!((expected, found), (1, 3)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn in_flight_and_forgotten_retries_are_refused() {
        let mut table = ProducerTable::default();
        table.reserve(stamp(1, 0, 0));
        assert_eq!(
            table.check(stamp(1, 0, 0)).unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
        assert_eq!(table.check(stamp(1, 0, 1)).unwrap(), Check::Append);
        for seq in 1..=WINDOW as u64 {
            appended(&mut table, stamp(1, 0, seq), seq + 100);
        }
        assert_eq!(
            table.check(stamp(1, 0, 0)).unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
        assert_eq!(
            table.check(stamp(1, 0, WINDOW as u64)).unwrap(),
            Check::Duplicate(WINDOW as u64 + 100)
        );
    }

    #[test]
    fn rebuild_from_the_log_gives_the_same_answers() {
        let log = [
            (stamp(1, 0, 0), 5),
            (stamp(2, 1, 9), 6),
            (stamp(1, 0, 1), 7),
        ];
        let table = ProducerTable::rebuild(log);
        assert_eq!(table.check(stamp(1, 0, 1)).unwrap(), Check::Duplicate(7));
        assert_eq!(table.check(stamp(2, 1, 9)).unwrap(), Check::Duplicate(6));
        assert_eq!(table.check(stamp(1, 0, 2)).unwrap(), Check::Append);
        assert_eq!(
            table.check(stamp(2, 0, 10)).unwrap_err().code(),
            "PRODUCER_FENCED"
        );
    }
}

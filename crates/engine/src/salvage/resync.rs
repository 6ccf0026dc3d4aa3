//! Where the log goes on after damage: the next frame that continues the sequence, preferring,
//! over a frame that jumps ahead, a lower one close behind it.
//!
//! Offsets are tried one by one; the frames found are remembered, so a look-ahead never scans
//! an offset twice and the work stays linear in the source's size.

use std::collections::VecDeque;

use crate::error::Result;
use crate::frame::FRAME_HEADER_LEN;

use super::source::{Source, Unit};

/// How far past a frame that jumps ahead of the sequence the scan looks for one that jumps
/// less: far enough to pass damage and a foreign frame or two spliced in before the genuine
/// continuation.
pub(super) const LOOKAHEAD: u64 = 1 << 20;

/// The frames that verify at the offsets of `from..to` of one source, in order: at most one
/// look-ahead's worth, so the memory is bounded too.
#[derive(Debug, Default)]
pub(super) struct Scanner {
    from: u64,
    to: u64,
    found: VecDeque<(u64, Unit)>,
}

/// The most frames a look-ahead can hold (one per frame header's length).
const MAX_FOUND: usize = (LOOKAHEAD as usize) / FRAME_HEADER_LEN + 1;

impl Scanner {
    /// The frame the log resumes with at or after `pos`, when the sequence so far ends at
    /// `last` and a gap of at most `max_gap` sequences may be filled; `None` if no frame after
    /// `pos` fits.
    ///
    /// The first frame that fits is taken if it continues the sequence. If it jumps ahead,
    /// the [`LOOKAHEAD`] bytes after it are searched for a frame that fits and jumps less, and
    /// the lowest such (the first of equals) is taken instead: the frames before it are then
    /// damage, like an isolated outlier (one spliced in from another log).
    ///
    /// # Errors
    /// I/O errors.
    pub(super) fn resume(
        &mut self,
        source: &mut Source,
        pos: u64,
        last: u64,
        max_gap: u64,
    ) -> Result<Option<(u64, Unit)>> {
        let fits = |h: &Unit| h.first > last && h.first - last - 1 <= max_gap;
        let Some(first) = self.scan(source, pos, u64::MAX, |_, h| fits(h))? else {
            return Ok(None);
        };
        if first.1.first == last + 1 {
            return Ok(Some(first));
        }
        // The look-ahead starts after the frame: bytes inside one that verifies are its own.
        let after = first.0 + first.1.len;
        let mut best = first;
        self.scan(
            source,
            after,
            after.saturating_add(LOOKAHEAD),
            |offset, h| {
                if fits(h) && h.first < best.1.first {
                    best = (offset, *h);
                }
                best.1.first == last + 1
            },
        )?;
        Ok(Some(best))
    }

    /// The first frame in `at..limit` that `wanted` accepts (given its offset and header),
    /// trying each offset once.
    fn scan(
        &mut self,
        source: &mut Source,
        at: u64,
        limit: u64,
        mut wanted: impl FnMut(u64, &Unit) -> bool,
    ) -> Result<Option<(u64, Unit)>> {
        if at < self.from || at > self.to {
            self.found.clear();
            self.to = at;
        }
        self.from = at;
        while self.found.front().is_some_and(|&(offset, _)| offset < at) {
            self.found.pop_front();
        }
        for &(offset, header) in &self.found {
            if offset >= limit {
                return Ok(None);
            }
            if wanted(offset, &header) {
                return Ok(Some((offset, header)));
            }
        }
        while self.to < limit.min(source.len()) {
            let offset = self.to;
            let header = source.unit_at(offset)?;
            self.to += 1;
            if let Some(header) = header {
                if self.found.len() == MAX_FOUND
                    && let Some((dropped, _)) = self.found.pop_front()
                {
                    self.from = dropped + 1;
                }
                self.found.push_back((offset, header));
                if wanted(offset, &header) {
                    return Ok(Some((offset, header)));
                }
            }
        }
        Ok(None)
    }
}

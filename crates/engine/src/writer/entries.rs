//! What an append hands the writer: one entry ([`NewEntry`], or borrowed, [`EntryView`]) or the
//! entries of one request ([`NewEntries`]), and the caps each is checked against.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::frame::{Origin, Producer, check_caps};
use crate::hlc::Hlc;

/// One entry to append.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct NewEntry {
    /// The payload bytes (at most 256 MiB): often a slice of the buffer a whole batch of
    /// appends arrived in, shared rather than copied.
    pub payload: Bytes,
    /// Optional principal (at most 4 KiB).
    pub principal: Option<Vec<u8>>,
    /// Where the entry came from.
    pub origin: Origin,
    /// Timestamp; the writer's clock supplies one when `None`.
    pub hlc: Option<Hlc>,
    /// An idempotent producer's stamp, stored with the entry (format v4 WALs only).
    pub producer: Option<Producer>,
}

impl NewEntry {
    /// The entry, borrowed.
    #[must_use]
    pub fn view(&self) -> EntryView<'_> {
        EntryView {
            payload: &self.payload,
            principal: self.principal.as_deref(),
            origin: self.origin,
            hlc: self.hlc,
            producer: self.producer,
        }
    }
}

/// One entry to append, borrowed from wherever it arrived.
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryView<'a> {
    /// The payload bytes (at most 256 MiB).
    pub payload: &'a [u8],
    /// Optional principal (at most 4 KiB).
    pub principal: Option<&'a [u8]>,
    /// Where the entry came from.
    pub origin: Origin,
    /// Timestamp; the writer's clock supplies one when `None`.
    pub hlc: Option<Hlc>,
    /// An idempotent producer's stamp, stored with the entry (format v4 WALs only).
    pub producer: Option<Producer>,
}

impl EntryView<'_> {
    /// Check the entry against the caps.
    ///
    /// # Errors
    /// `PayloadTooLarge` or `PrincipalTooLarge`.
    pub fn validate(&self) -> Result<()> {
        check_caps(self.payload.len(), self.principal)
    }
}

/// The entries of one append request: listed one by one, or local payloads without metadata
/// packed back to back (as a binding receives a batch), split only as they are framed, so the
/// caller's thread makes nothing per entry.
#[derive(Clone, Debug)]
pub enum NewEntries {
    /// Entries one by one.
    List(Vec<NewEntry>),
    /// Payloads back to back; `lengths` sum to `data`'s length ([`NewEntries::packed`]).
    Packed {
        /// The payloads.
        data: Bytes,
        /// Each payload's length, in order.
        lengths: Vec<u32>,
    },
}

impl From<Vec<NewEntry>> for NewEntries {
    fn from(entries: Vec<NewEntry>) -> Self {
        Self::List(entries)
    }
}

impl NewEntries {
    /// Payloads packed back to back, `lengths` giving each one's length.
    ///
    /// # Errors
    /// `InvalidArgument` when the lengths do not add up to the data.
    pub fn packed(data: Bytes, lengths: Vec<u32>) -> Result<Self> {
        let total = lengths.iter().map(|&l| u64::from(l)).sum::<u64>();
        if total != data.len() as u64 {
            return Err(Error::InvalidArgument(format!(
                "payload lengths add up to {total} bytes, not the {} given",
                data.len()
            )));
        }
        Ok(Self::Packed { data, lengths })
    }

    /// How many entries.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::List(entries) => entries.len(),
            Self::Packed { lengths, .. } => lengths.len(),
        }
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Their payload bytes.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            Self::List(entries) => entries.iter().map(|e| e.payload.len()).sum(),
            Self::Packed { data, .. } => data.len(),
        }
    }

    /// The same entries with `producer` stamped on the last one: it lands only with all
    /// before it (a log keeps a prefix), so a log holding the stamp holds the whole request.
    #[must_use]
    pub fn stamped(self, producer: Producer) -> Self {
        let mut list = match self {
            Self::List(entries) => entries,
            Self::Packed { data, lengths } => {
                let mut at = 0usize;
                lengths
                    .iter()
                    .map(|&len| {
                        let start = at;
                        at += len as usize;
                        NewEntry {
                            payload: data.slice(start..at),
                            ..NewEntry::default()
                        }
                    })
                    .collect()
            }
        };
        if let Some(last) = list.last_mut() {
            last.producer = Some(producer);
        }
        Self::List(list)
    }

    /// Each entry, borrowed, with the buffer its payload is a slice of.
    pub(super) fn sourced_views(
        &self,
    ) -> impl Iterator<Item = (EntryView<'_>, Option<&Bytes>)> + Clone {
        let (list, packed) = match self {
            Self::List(entries) => (entries.as_slice(), None),
            Self::Packed { data, lengths } => (&[][..], Some((data, lengths))),
        };
        let split = packed.into_iter().flat_map(|(data, lengths)| {
            lengths.iter().scan(0usize, move |at, &len| {
                let start = *at;
                *at += len as usize;
                let view = EntryView {
                    payload: &data[start..*at],
                    ..EntryView::default()
                };
                Some((view, Some(data)))
            })
        });
        list.iter()
            .map(|e| (e.view(), Some(&e.payload)))
            .chain(split)
    }
}

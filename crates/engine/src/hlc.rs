//! Hybrid logical clock timestamps, monotonic per writer even when the wall clock steps back.

use std::time::{SystemTime, UNIX_EPOCH};

/// A timestamp: whole seconds since the Unix epoch and a 1/2^32-second fraction (NTP64 style).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash)]
pub struct Hlc {
    /// Seconds since the Unix epoch.
    pub seconds: u64,
    /// Fraction of a second in units of 1/2^32 s.
    pub subseconds: u32,
}

impl Hlc {
    /// The timestamp as one 96-bit tick count, for comparisons and stepping.
    pub(crate) const fn ticks(self) -> u128 {
        ((self.seconds as u128) << 32) | self.subseconds as u128
    }

    #[allow(clippy::cast_possible_truncation)]
    pub(crate) const fn from_ticks(ticks: u128) -> Self {
        Self {
            seconds: (ticks >> 32) as u64,
            subseconds: ticks as u32,
        }
    }

    /// The wall clock now.
    #[must_use]
    pub fn wall() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let frac = (u128::from(since.subsec_nanos()) << 32) / 1_000_000_000;
        Self::from_ticks((u128::from(since.as_secs()) << 32) | frac)
    }
}

/// Issues timestamps that never go backwards, whatever the wall clock does.
#[derive(Clone, Copy, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// Next timestamp from `wall`: the wall time, or one tick past the last one if that is later.
    pub fn tick(&mut self, wall: Hlc) -> Hlc {
        let next = if wall > self.last {
            wall
        } else {
            Hlc::from_ticks(self.last.ticks() + 1)
        };
        self.last = next;
        next
    }

    /// The latest timestamp issued or observed.
    #[must_use]
    pub const fn latest(&self) -> Hlc {
        self.last
    }

    /// Take account of a timestamp seen elsewhere (a caller-supplied or recovered one).
    pub fn observe(&mut self, seen: Hlc) {
        self.last = self.last.max(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_wall_clock_steps_back() {
        let mut clock = HlcClock::default();
        let a = clock.tick(Hlc {
            seconds: 100,
            subseconds: 5,
        });
        let b = clock.tick(Hlc {
            seconds: 50,
            subseconds: 0,
        });
        let c = clock.tick(Hlc {
            seconds: 100,
            subseconds: 5,
        });
        assert!(a < b && b < c);
        assert_eq!(
            b,
            Hlc {
                seconds: 100,
                subseconds: 6
            }
        );
    }

    #[test]
    fn subsecond_overflow_carries_into_seconds() {
        let mut clock = HlcClock::default();
        clock.observe(Hlc {
            seconds: 9,
            subseconds: u32::MAX,
        });
        assert_eq!(
            clock.tick(Hlc::default()),
            Hlc {
                seconds: 10,
                subseconds: 0
            }
        );
    }

    #[test]
    fn wall_time_is_recent() {
        let now = Hlc::wall();
        assert!(now.seconds > 1_700_000_000);
    }
}

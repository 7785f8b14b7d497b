//! Loss detection between processes: every publishing process numbers the events it makes
//! (1, 2, 3, … from its start, before they wait for the broker), and the consumer remembers
//! the last number seen from each process. A number that does not follow the last one means
//! events were lost on the way — dropped from a full outbox, failed to publish while the
//! publisher reconnected, or dropped by the queue's length limit — and the hub must mark a gap.
//!
//! A process seen for the first time is not a gap: the consumer may have started after it. So
//! that memory stays bounded, a process not heard from for [`ORIGIN_TTL`] is forgotten, and at
//! most [`MAX_ORIGINS`] are kept (the longest silent goes first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a silent process is remembered: far longer than the replay buffer's age, so
/// forgetting a process that is merely idle is rare.
pub(crate) const ORIGIN_TTL: Duration = Duration::from_secs(3600);
/// Processes remembered at most.
pub(crate) const MAX_ORIGINS: usize = 1024;

/// Where an event stands in its origin's sequence.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// The first event seen from this origin.
    First,
    /// The one after the last seen.
    Next,
    /// Not the one after the last seen: events in between were lost.
    Jump {
        /// The number that was due.
        expected: u64,
        /// The number that came.
        got: u64,
    },
}

/// The last sequence number seen per origin (see the module documentation).
pub(crate) struct Origins {
    ttl: Duration,
    max: usize,
    last: HashMap<String, Seen>,
    last_sweep: Instant,
}

struct Seen {
    seq: u64,
    at: Instant,
}

impl Origins {
    /// Remembers at most `max` origins, each for `ttl` after it was last heard from.
    pub(crate) fn new(ttl: Duration, max: usize) -> Origins {
        Origins {
            ttl,
            max: max.max(1),
            last: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Records event number `seq` from `origin`, telling whether events were lost before it.
    pub(crate) fn observe(&mut self, origin: &str, seq: u64) -> Order {
        self.observe_at(origin, seq, Instant::now())
    }

    fn observe_at(&mut self, origin: &str, seq: u64, now: Instant) -> Order {
        if let Some(seen) = self.last.get_mut(origin) {
            let expected = seen.seq.wrapping_add(1);
            seen.seq = seq;
            seen.at = now;
            return if seq == expected {
                Order::Next
            } else {
                Order::Jump { expected, got: seq }
            };
        }
        self.make_room(now);
        self.last.insert(origin.to_owned(), Seen { seq, at: now });
        Order::First
    }

    /// Forgets the origins silent for longer than the TTL (at most every tenth of it), then the
    /// longest silent while there is no room for one more.
    fn make_room(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) >= self.ttl / 10 {
            self.last_sweep = now;
            let ttl = self.ttl;
            self.last
                .retain(|_, seen| now.saturating_duration_since(seen.at) <= ttl);
        }
        while self.last.len() >= self.max {
            let Some(stalest) = self
                .last
                .iter()
                .min_by_key(|(_, seen)| seen.at)
                .map(|(origin, _)| origin.clone())
            else {
                break;
            };
            self.last.remove(&stalest);
        }
    }

    /// How many origins are remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_order_are_no_loss() {
        let mut origins = Origins::new(ORIGIN_TTL, MAX_ORIGINS);
        assert_eq!(origins.observe("a", 1), Order::First);
        for seq in 2..100 {
            assert_eq!(origins.observe("a", seq), Order::Next, "{seq}");
        }
    }

    #[test]
    fn a_skipped_number_is_a_loss_then_counting_goes_on_from_it() {
        let mut origins = Origins::new(ORIGIN_TTL, MAX_ORIGINS);
        assert_eq!(origins.observe("a", 1), Order::First);
        assert_eq!(origins.observe("a", 2), Order::Next);
        assert_eq!(
            origins.observe("a", 5),
            Order::Jump {
                expected: 3,
                got: 5
            }
        );
        assert_eq!(origins.observe("a", 6), Order::Next);
        // Going back (never expected from one ordered channel) is not continuity either.
        assert_eq!(
            origins.observe("a", 6),
            Order::Jump {
                expected: 7,
                got: 6
            }
        );
    }

    #[test]
    fn a_new_origin_is_no_loss_whatever_its_number_and_origins_are_apart() {
        let mut origins = Origins::new(ORIGIN_TTL, MAX_ORIGINS);
        assert_eq!(origins.observe("a", 1), Order::First);
        // A process running before this one started: its numbers are well under way.
        assert_eq!(origins.observe("b", 4711), Order::First);
        assert_eq!(origins.observe("a", 2), Order::Next);
        assert_eq!(origins.observe("b", 4712), Order::Next);
    }

    #[test]
    fn silent_origins_are_forgotten() {
        let ttl = Duration::from_secs(600);
        let mut origins = Origins::new(ttl, MAX_ORIGINS);
        let start = Instant::now();
        assert_eq!(origins.observe_at("old", 1, start), Order::First);
        assert_eq!(origins.observe_at("busy", 1, start), Order::First);
        let later = start + ttl / 2;
        assert_eq!(origins.observe_at("busy", 2, later), Order::Next);
        let late = start + ttl + Duration::from_secs(1);
        assert_eq!(origins.observe_at("new", 1, late), Order::First);
        assert_eq!(origins.len(), 2, "old was forgotten, busy was not");
        assert_eq!(origins.observe_at("busy", 3, late), Order::Next);
        assert_eq!(
            origins.observe_at("old", 9, late),
            Order::First,
            "forgotten: seen anew"
        );
    }

    #[test]
    fn the_map_is_bounded_and_the_longest_silent_goes_first() {
        let mut origins = Origins::new(ORIGIN_TTL, 3);
        let start = Instant::now();
        for (i, origin) in ["a", "b", "c"].iter().enumerate() {
            let at = start + Duration::from_millis(i as u64);
            assert_eq!(origins.observe_at(origin, 1, at), Order::First);
        }
        // "a" speaks again, so "b" is the longest silent when "d" comes.
        let at = start + Duration::from_millis(10);
        assert_eq!(origins.observe_at("a", 2, at), Order::Next);
        assert_eq!(origins.observe_at("d", 1, at), Order::First);
        assert_eq!(origins.len(), 3);
        for origin in ["e", "f", "g", "h"] {
            origins.observe_at(origin, 1, at);
            assert_eq!(origins.len(), 3);
        }
        let mut origins = Origins::new(ORIGIN_TTL, 3);
        for (i, origin) in ["a", "b", "c"].iter().enumerate() {
            origins.observe_at(origin, 1, start + Duration::from_millis(i as u64));
        }
        origins.observe_at("a", 2, at);
        origins.observe_at("d", 1, at);
        assert_eq!(origins.observe_at("a", 3, at), Order::Next, "a was kept");
        assert_eq!(origins.observe_at("c", 2, at), Order::Next, "c was kept");
        assert_eq!(origins.observe_at("b", 2, at), Order::First, "b went");
    }
}

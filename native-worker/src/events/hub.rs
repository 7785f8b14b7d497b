//! The in-process hub: hands each event to the open streams of its owner and keeps the
//! owner's recent events for `Last-Event-ID` resumes.
//!
//! Per owner: a broadcast channel (a stream that falls behind by more than its capacity is told
//! to resync, it never holds up the others) and a replay buffer of the last `replay_events`
//! events no older than `replay_age`. Owners with no recent events and no open stream are
//! dropped, so memory follows activity.
//!
//! Publishing and subscribing take the same lock, so a subscriber's replay and its live events
//! neither overlap nor leave a hole.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mp3conv_contract::event::Envelope;
use tokio::sync::broadcast;

/// Live events a stream may fall behind by before it is told to resync.
pub(crate) const LIVE_CAPACITY: usize = 256;

/// What the live channel carries.
#[derive(Debug, Clone)]
enum Item {
    Event(Arc<Envelope>),
    /// Events may have been lost (the broker link was re-established): streams must resync.
    Gap,
}

/// What a subscriber gets next.
#[derive(Debug)]
pub(crate) enum Live {
    /// An event of its owner.
    Event(Arc<Envelope>),
    /// Events were lost (a gap in the transport, or the stream fell behind): the client must
    /// refetch the state.
    Resync,
    /// The hub is gone.
    Closed,
}

/// Where a resume starts.
#[derive(Debug, PartialEq)]
pub(crate) enum Replay {
    /// No resume point was given: live events only.
    Nothing,
    /// The owner's events after the resume point, oldest first.
    Events(Vec<Arc<Envelope>>),
    /// The resume point is not in the owner's buffer: the client must refetch the state.
    Resync,
}

/// A stream's view of the hub: what to replay, then its owner's live events.
pub(crate) struct Subscription {
    /// Sent before any live event.
    pub(crate) replay: Replay,
    live: broadcast::Receiver<Item>,
}

impl Subscription {
    /// The next live event (or resync).
    pub(crate) async fn recv(&mut self) -> Live {
        match self.live.recv().await {
            Ok(Item::Event(envelope)) => Live::Event(envelope),
            Ok(Item::Gap) => Live::Resync,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "a stream fell behind; resync");
                // What piled up is in the state the client refetches: carry on from now.
                self.live = self.live.resubscribe();
                Live::Resync
            }
            Err(broadcast::error::RecvError::Closed) => Live::Closed,
        }
    }
}

/// See the module documentation.
pub(crate) struct Hub {
    replay_events: usize,
    replay_age: Duration,
    live_capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    owners: HashMap<String, Owner>,
    last_sweep: Instant,
}

struct Owner {
    recent: VecDeque<(Instant, Arc<Envelope>)>,
    live: broadcast::Sender<Item>,
}

impl Owner {
    fn new(capacity: usize) -> Owner {
        Owner {
            recent: VecDeque::new(),
            live: broadcast::channel(capacity).0,
        }
    }

    fn prune(&mut self, now: Instant, keep: usize, age: Duration) {
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > age)
        {
            self.recent.pop_front();
        }
    }
}

impl Hub {
    /// A hub keeping `replay_events` events per owner for `replay_age`; live streams may fall
    /// behind by `live_capacity` events.
    pub(crate) fn new(replay_events: usize, replay_age: Duration, live_capacity: usize) -> Hub {
        Hub {
            replay_events,
            replay_age,
            live_capacity: live_capacity.max(1),
            inner: Mutex::new(Inner {
                owners: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves consistent data (every change is one
        // push or pop): carry on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `envelope` to its owner's streams and keeps it for resumes.
    pub(crate) fn publish(&self, envelope: Envelope) {
        self.publish_at(envelope, Instant::now());
    }

    fn publish_at(&self, envelope: Envelope, now: Instant) {
        let envelope = Arc::new(envelope);
        let mut inner = self.lock();
        self.sweep(&mut inner, now);
        let capacity = self.live_capacity;
        let owner = inner
            .owners
            .entry(envelope.owner.clone())
            .or_insert_with(|| Owner::new(capacity));
        owner.recent.push_back((now, Arc::clone(&envelope)));
        owner.prune(now, self.replay_events, self.replay_age);
        // No stream open is fine: the buffer keeps it.
        let _ = owner.live.send(Item::Event(envelope));
    }

    /// Marks a gap: events may have been lost (the transport was re-established). Nothing
    /// before it can be resumed from, and open streams are told to resync.
    pub(crate) fn gap(&self) {
        let mut inner = self.lock();
        for owner in inner.owners.values_mut() {
            owner.recent.clear();
            let _ = owner.live.send(Item::Gap);
        }
    }

    /// Subscribes to `owner`'s events; with `after` (a `Last-Event-ID`), the events after it
    /// are replayed first, or a resync is due when it is not in the owner's buffer.
    pub(crate) fn subscribe(&self, owner: &str, after: Option<&str>) -> Subscription {
        self.subscribe_at(owner, after, Instant::now())
    }

    fn subscribe_at(&self, owner: &str, after: Option<&str>, now: Instant) -> Subscription {
        let mut inner = self.lock();
        self.sweep(&mut inner, now);
        let capacity = self.live_capacity;
        let entry = inner
            .owners
            .entry(owner.to_owned())
            .or_insert_with(|| Owner::new(capacity));
        entry.prune(now, self.replay_events, self.replay_age);
        let replay = match after {
            None => Replay::Nothing,
            Some(id) => match entry.recent.iter().position(|(_, e)| e.id == id) {
                Some(at) => Replay::Events(
                    entry
                        .recent
                        .iter()
                        .skip(at + 1)
                        .map(|(_, e)| Arc::clone(e))
                        .collect(),
                ),
                None => Replay::Resync,
            },
        };
        Subscription {
            replay,
            live: entry.live.subscribe(),
        }
    }

    /// Drops the owners with nothing recent and no stream open, at most every tenth of the
    /// replay age.
    fn sweep(&self, inner: &mut Inner, now: Instant) {
        if now.saturating_duration_since(inner.last_sweep) < self.replay_age / 10 {
            return;
        }
        inner.last_sweep = now;
        let (keep, age) = (self.replay_events, self.replay_age);
        inner.owners.retain(|_, owner| {
            owner.prune(now, keep, age);
            !owner.recent.is_empty() || owner.live.receiver_count() > 0
        });
    }

    /// How many owners the hub holds (for tests).
    #[cfg(test)]
    fn owners(&self) -> usize {
        self.lock().owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3conv_contract::event::Event;
    use mp3conv_contract::job::JobId;

    fn event(owner: &str) -> Envelope {
        Envelope::new(
            owner,
            Event::JobDeleted {
                job_id: JobId::new(),
            },
        )
    }

    fn ids(events: &[Arc<Envelope>]) -> Vec<String> {
        events.iter().map(|e| e.id.clone()).collect()
    }

    fn replayed(subscription: &Subscription) -> Vec<String> {
        match &subscription.replay {
            Replay::Events(events) => ids(events),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    async fn next_id(subscription: &mut Subscription) -> String {
        match subscription.recv().await {
            Live::Event(e) => e.id.clone(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn hub() -> Hub {
        Hub::new(5, Duration::from_secs(600), 16)
    }

    #[tokio::test]
    async fn a_resume_replays_what_came_after_the_id_then_goes_live() {
        let hub = hub();
        let sent: Vec<Envelope> = (0..4).map(|_| event("ann")).collect();
        for e in &sent {
            hub.publish(e.clone());
        }
        let mut resumed = hub.subscribe("ann", Some(&sent[1].id));
        assert_eq!(replayed(&resumed), [sent[2].id.clone(), sent[3].id.clone()]);
        let last = hub.subscribe("ann", Some(&sent[3].id));
        assert_eq!(replayed(&last), Vec::<String>::new(), "nothing missed");
        let fresh = hub.subscribe("ann", None);
        assert_eq!(fresh.replay, Replay::Nothing);

        let later = event("ann");
        hub.publish(later.clone());
        assert_eq!(
            next_id(&mut resumed).await,
            later.id,
            "live after the replay"
        );
    }

    #[tokio::test]
    async fn an_unknown_id_means_resync() {
        let hub = hub();
        hub.publish(event("ann"));
        assert_eq!(hub.subscribe("ann", Some("nope")).replay, Replay::Resync);
        assert_eq!(
            hub.subscribe("bob", Some("nope")).replay,
            Replay::Resync,
            "an owner never seen"
        );
    }

    #[tokio::test]
    async fn the_buffer_keeps_the_last_events_within_the_age() {
        let hub = hub();
        let start = Instant::now();
        let sent: Vec<Envelope> = (0..8).map(|_| event("ann")).collect();
        for e in &sent {
            hub.publish_at(e.clone(), start);
        }
        // Five kept: the first three are too old to resume from.
        assert_eq!(
            hub.subscribe_at("ann", Some(&sent[2].id), start).replay,
            Replay::Resync
        );
        let resumed = hub.subscribe_at("ann", Some(&sent[3].id), start);
        assert_eq!(
            replayed(&resumed),
            ids(&sent[4..].iter().cloned().map(Arc::new).collect::<Vec<_>>())
        );
        // Past the age, nothing is resumable, and an owner without streams is dropped.
        drop(resumed);
        let late = start + Duration::from_secs(601);
        assert_eq!(
            hub.subscribe_at("ann", Some(&sent[7].id), late).replay,
            Replay::Resync
        );
        hub.publish_at(event("bob"), late + Duration::from_secs(61));
        assert_eq!(hub.owners(), 1, "only bob is left");
    }

    #[tokio::test]
    async fn owners_see_only_their_events() {
        let hub = hub();
        let mut ann = hub.subscribe("ann", None);
        let mut bob = hub.subscribe("bob", None);
        let for_bob = event("bob");
        let for_ann = event("ann");
        hub.publish(for_bob.clone());
        hub.publish(for_ann.clone());
        assert_eq!(next_id(&mut ann).await, for_ann.id);
        assert_eq!(next_id(&mut bob).await, for_bob.id);
        assert_eq!(
            hub.subscribe("ann", Some(&for_bob.id)).replay,
            Replay::Resync,
            "another owner's id resumes nothing"
        );
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_resyncs_and_carries_on() {
        let hub = Hub::new(5, Duration::from_secs(600), 4);
        let mut slow = hub.subscribe("ann", None);
        let mut quick = hub.subscribe("ann", None);
        for _ in 0..10 {
            let e = event("ann");
            hub.publish(e.clone());
            assert_eq!(next_id(&mut quick).await, e.id, "never held up");
        }
        assert!(matches!(slow.recv().await, Live::Resync));
        let after = event("ann");
        hub.publish(after.clone());
        assert_eq!(
            next_id(&mut slow).await,
            after.id,
            "what piled up is skipped"
        );
    }

    #[tokio::test]
    async fn a_gap_breaks_resumes_and_tells_open_streams() {
        let hub = hub();
        let before = event("ann");
        hub.publish(before.clone());
        let mut open = hub.subscribe("ann", None);
        hub.gap();
        assert!(matches!(open.recv().await, Live::Resync));
        assert_eq!(
            hub.subscribe("ann", Some(&before.id)).replay,
            Replay::Resync,
            "no continuity across the gap"
        );
        let after = event("ann");
        hub.publish(after.clone());
        assert_eq!(next_id(&mut open).await, after.id);
        let since = event("ann");
        hub.publish(since.clone());
        assert_eq!(replayed(&hub.subscribe("ann", Some(&after.id))), [since.id]);
    }
}

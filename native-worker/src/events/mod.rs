//! Live job events: where they are published (the API's intake and delete, the converter) and
//! how they reach the processes holding streams.
//!
//! Embedded (in-process queue): straight into this process's [`Hub`]. RabbitMQ: every event
//! goes to the fanout exchange `<prefix>events`, and every API-serving process feeds its hub
//! from its own queue bound to it (see [`rabbitmq`]) — a process that serves the API and
//! converts gets its own events back that way too, so there is one path.
//!
//! Publishing never fails the caller: events wait in a bounded buffer for the broker, and
//! when it is full (the broker is away) they are dropped with a warning. A client that missed
//! events is told to resync (see [`hub`]). So that such a loss is noticed by the processes
//! consuming the events, each event is numbered as it is made (see [`origins`]).
//!
//! One process's events keep their order, but two processes' need not: a converter's first
//! progress could overtake the intake's `job.queued`. So where a job passes from one process
//! to another, its event is [`Events::announce`]d: published, and waited for (briefly) until
//! the broker has routed it to every stream's queue, before the job is handed on; whatever is
//! published about the job afterwards, by any process, lands behind it in those queues. The
//! intake announces `job.queued` before queueing the job, a converter a retry's `job.queued`
//! before queueing the retry, and a job's end (`job.done`, `job.failed`) before announcing it
//! on `mp3`, from which the notifier's `notification.created` comes.

pub(crate) mod hub;
pub(crate) mod origins;
pub(crate) mod rabbitmq;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mp3conv_contract::event::{Envelope, Event};
use tokio::sync::{mpsc, oneshot};

use crate::config::EventsConfig;
use crate::error::Error;
use crate::job::Job;

pub(crate) use hub::Hub;

/// Events waiting for the broker at most; more are dropped.
const OUTBOX: usize = 4096;
/// Longest [`Events::announce`] waits for the broker to route its event; past it the caller
/// goes on, the order then left to chance as for any event, and later announcements do not
/// wait until the broker confirms one again.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(1);

/// The events side of the worker's state.
pub(crate) struct Events {
    pub(crate) hub: Arc<Hub>,
    outlet: Outlet,
    limits: StreamLimits,
}

enum Outlet {
    /// Straight into the hub (embedded): nothing can be lost on the way.
    Hub,
    /// To the exchange, through the publisher task; `last` is the number of the last event
    /// made, sent or not.
    Exchange {
        outbox: mpsc::Sender<Numbered>,
        last: Mutex<u64>,
        /// Set when an announcement was not routed in time, cleared when one is: meanwhile
        /// announcing does not wait.
        unrouted: Arc<AtomicBool>,
    },
}

/// An event on its way to the exchange with its number in this process's sequence (1, 2, …
/// counting every event made, so the ones dropped leave a hole the consumers notice).
#[derive(Debug)]
pub(crate) struct Numbered {
    /// The event's number.
    pub(crate) seq: u64,
    /// The event.
    pub(crate) envelope: Envelope,
    /// Told once the broker has routed the event (see [`Events::announce`]); dropped untold
    /// when it cannot be sent.
    pub(crate) routed: Option<oneshot::Sender<()>>,
}

impl Events {
    /// Events kept in process only.
    pub(crate) fn in_process(config: &EventsConfig) -> Events {
        Events {
            hub: Arc::new(hub_for(config)),
            outlet: Outlet::Hub,
            limits: StreamLimits::new(config),
        }
    }

    /// Events sent through the exchange; the receiver is the publisher task's.
    pub(crate) fn through_exchange(config: &EventsConfig) -> (Events, mpsc::Receiver<Numbered>) {
        let (sender, receiver) = mpsc::channel(OUTBOX);
        let events = Events {
            hub: Arc::new(hub_for(config)),
            outlet: Outlet::Exchange {
                outbox: sender,
                last: Mutex::new(0),
                unrouted: Arc::default(),
            },
            limits: StreamLimits::new(config),
        };
        (events, receiver)
    }

    /// Publishes `envelope`; never waits, never fails (a lost event is logged).
    pub(crate) fn publish(&self, envelope: Envelope) {
        self.send(envelope, None);
    }

    /// Publishes `envelope` and waits until the broker has routed it to the streams' queues
    /// (at most [`ANNOUNCE_WAIT`]), so that what any process publishes afterwards reaches
    /// every stream after it. Never fails: whether it was routed is the answer, and the
    /// caller goes on either way. While the broker is slow to confirm (the last announcement
    /// was not routed in time) it does not wait, until an announcement is routed again.
    pub(crate) async fn announce(&self, envelope: Envelope) -> bool {
        let (routed, told) = oneshot::channel();
        let kind = envelope.event.kind();
        self.send(envelope, Some(routed));
        let Outlet::Exchange { unrouted, .. } = &self.outlet else {
            return told.await.is_ok();
        };
        if unrouted.load(Ordering::Relaxed) {
            let unrouted = Arc::clone(unrouted);
            tokio::spawn(async move {
                if told.await.is_ok() {
                    tracing::info!("events are routed in time again");
                    unrouted.store(false, Ordering::Relaxed);
                }
            });
            return false;
        }
        match tokio::time::timeout(ANNOUNCE_WAIT, told).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                tracing::debug!(kind, "event not routed; going on");
                false
            }
            Err(_) => {
                tracing::warn!(
                    kind,
                    "event not routed in time; not waiting for the next ones"
                );
                unrouted.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    fn send(&self, envelope: Envelope, routed: Option<oneshot::Sender<()>>) {
        match &self.outlet {
            Outlet::Hub => {
                self.hub.publish(envelope);
                if let Some(routed) = routed {
                    let _ = routed.send(());
                }
            }
            Outlet::Exchange { outbox, last, .. } => {
                // Numbered and queued under one lock, so the numbers reach the outbox in order
                // whichever task makes the event.
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                *last += 1;
                let numbered = Numbered {
                    seq: *last,
                    envelope,
                    routed,
                };
                if let Err(e) = outbox.try_send(numbered) {
                    tracing::warn!(error = %e, "event dropped: the broker is not keeping up");
                }
            }
        }
    }

    /// Publishes the event for `job` in its current state (queued, progress, done, failed).
    pub(crate) fn job(&self, job: &Job) {
        self.publish(job_event(job));
    }

    /// [`Events::announce`]s the event for `job` in its current state.
    pub(crate) async fn announce_job(&self, job: &Job) {
        self.announce(job_event(job)).await;
    }

    /// A stream slot for `owner`, or 429/503 `too_many_streams`.
    pub(crate) fn stream_slot(&self, owner: &str) -> Result<StreamSlot, Error> {
        self.limits.acquire(owner)
    }
}

/// The event for `job` in its current state.
fn job_event(job: &Job) -> Envelope {
    Envelope::new(job.owner.clone(), Event::for_job(job.clone().into()))
}

fn hub_for(config: &EventsConfig) -> Hub {
    Hub::new(config.replay_events, config.replay_age, hub::LIVE_CAPACITY)
}

/// Open streams in this process, in all and per user.
struct StreamLimits {
    max: usize,
    per_user: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_owner: HashMap<String, usize>,
}

impl StreamLimits {
    fn new(config: &EventsConfig) -> StreamLimits {
        StreamLimits {
            max: config.max_streams,
            per_user: config.max_streams_per_user,
            open: Arc::default(),
        }
    }

    fn acquire(&self, owner: &str) -> Result<StreamSlot, Error> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // The user's own limit first: it is the one a client can do something about.
        if open
            .by_owner
            .get(owner)
            .is_some_and(|n| *n >= self.per_user)
        {
            return Err(Error::TooManyStreams { per_user: true });
        }
        if open.total >= self.max {
            return Err(Error::TooManyStreams { per_user: false });
        }
        *open.by_owner.entry(owner.to_owned()).or_default() += 1;
        open.total += 1;
        Ok(StreamSlot {
            owner: owner.to_owned(),
            open: Arc::clone(&self.open),
        })
    }
}

/// One open stream, counted until dropped.
pub(crate) struct StreamSlot {
    owner: String,
    open: Arc<Mutex<Open>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_owner.get_mut(&self.owner) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_owner.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_limited_per_user_and_in_all() {
        let config = EventsConfig {
            max_streams: 3,
            max_streams_per_user: 2,
            ..EventsConfig::default()
        };
        let events = Events::in_process(&config);
        let a1 = events.stream_slot("ann").unwrap();
        let _a2 = events.stream_slot("ann").unwrap();
        assert!(matches!(
            events.stream_slot("ann"),
            Err(Error::TooManyStreams { per_user: true })
        ));
        let _b1 = events.stream_slot("bob").unwrap();
        assert!(matches!(
            events.stream_slot("cat"),
            Err(Error::TooManyStreams { per_user: false })
        ));
        drop(a1);
        let _a3 = events
            .stream_slot("ann")
            .expect("a slot is given back on drop");
    }

    fn deleted(owner: &str) -> Envelope {
        Envelope::new(
            owner,
            Event::JobDeleted {
                job_id: mp3conv_contract::job::JobId::new(),
            },
        )
    }

    #[test]
    fn events_dropped_from_a_full_outbox_leave_a_hole_in_the_numbers() {
        let (events, mut outbox) = Events::through_exchange(&EventsConfig::default());
        for _ in 0..OUTBOX + 2 {
            events.publish(deleted("ann"));
        }
        let mut seqs = Vec::new();
        while let Ok(numbered) = outbox.try_recv() {
            seqs.push(numbered.seq);
        }
        assert_eq!(seqs, (1..=OUTBOX as u64).collect::<Vec<_>>());
        events.publish(deleted("ann"));
        let next = outbox.try_recv().expect("room again");
        assert_eq!(next.seq, OUTBOX as u64 + 3, "the two dropped are missing");
    }
}

//! An in-process queue for the embedded mode: nothing survives a restart, but within a process
//! it behaves like the broker (requeue on drop, delayed retries, a dead-letter list).

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use super::{Deliveries, Delivery, JobQueue, Outcome, Outgoing, Route, Settle, retry_delay};
use crate::error::Error;

/// Announcements kept for [`MemoryQueue::announcements`].
const MAX_KEPT_ANNOUNCEMENTS: usize = 10_000;

/// The in-process queue.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

struct Inner {
    video_tx: mpsc::UnboundedSender<Message>,
    /// The in-process `mp3` queue, for one consumer (the eventing bridge of `mp3conv up`).
    mp3_tx: mpsc::UnboundedSender<Outgoing>,
    mp3_rx: StdMutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    video_rx: Arc<Mutex<mpsc::UnboundedReceiver<Message>>>,
    announcements: StdMutex<Vec<Outgoing>>,
    dead: StdMutex<Vec<Bytes>>,
    retry_base: Duration,
}

struct Message {
    outgoing: Outgoing,
    redelivered: bool,
}

impl MemoryQueue {
    /// An empty queue; retries wait `retry_base`, doubling per attempt.
    pub fn new(retry_base: Duration) -> Self {
        let (video_tx, video_rx) = mpsc::unbounded_channel();
        let (mp3_tx, mp3_rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                video_tx,
                mp3_tx,
                mp3_rx: StdMutex::new(Some(mp3_rx)),
                video_rx: Arc::new(Mutex::new(video_rx)),
                announcements: StdMutex::new(Vec::new()),
                dead: StdMutex::new(Vec::new()),
                retry_base,
            }),
        }
    }

    /// Announcements published so far (the in-process `mp3` queue).
    pub fn announcements(&self) -> Vec<Outgoing> {
        self.inner
            .announcements
            .lock()
            .expect("announcements lock")
            .clone()
    }

    /// The `mp3` queue's consumer end: every announcement from now on, in order. There is one;
    /// the second call gets `None`.
    pub fn take_announcement_consumer(&self) -> Option<mpsc::UnboundedReceiver<Outgoing>> {
        self.inner.mp3_rx.lock().expect("mp3 consumer lock").take()
    }

    /// Bodies of dead-lettered messages.
    pub fn dead_letters(&self) -> Vec<Bytes> {
        self.inner.dead.lock().expect("dead-letter lock").clone()
    }

    fn push(&self, outgoing: Outgoing, redelivered: bool) -> Result<(), Error> {
        self.inner
            .video_tx
            .send(Message {
                outgoing,
                redelivered,
            })
            .map_err(|_| Error::internal("in-process queue closed"))
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish(&self, route: Route, message: Outgoing) -> Result<(), Error> {
        match route {
            Route::Video => self.push(message, false),
            Route::Mp3 => {
                let mut announcements =
                    self.inner.announcements.lock().expect("announcements lock");
                // A record for tests and diagnostics, bounded so a long-running `up` does not grow.
                if announcements.len() >= MAX_KEPT_ANNOUNCEMENTS {
                    announcements.drain(..MAX_KEPT_ANNOUNCEMENTS / 10);
                }
                announcements.push(message.clone());
                // Nobody consuming (no bridge) is not an error: the record above remains.
                let _ = self.inner.mp3_tx.send(message);
                Ok(())
            }
            Route::Retry { attempt } => {
                let queue = self.clone();
                let delay = retry_delay(self.inner.retry_base, attempt);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = queue.push(message, false);
                });
                Ok(())
            }
        }
    }

    async fn consume(&self, _prefetch: u16) -> Result<Deliveries, Error> {
        let queue = self.clone();
        let rx = Arc::clone(&self.inner.video_rx);
        Ok(Box::pin(futures::stream::unfold(
            (queue, rx),
            |(queue, rx)| async move {
                let message = rx.lock().await.recv().await?;
                let body = Bytes::from(message.outgoing.body.clone());
                let delivery = Delivery::new(
                    body,
                    message.outgoing.traceparent.clone(),
                    message.redelivered,
                    Box::new(MemorySettle {
                        queue: queue.clone(),
                        message: Some(message.outgoing),
                    }),
                );
                Some((Ok(delivery), (queue, rx)))
            },
        )))
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

struct MemorySettle {
    queue: MemoryQueue,
    message: Option<Outgoing>,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn settle(mut self: Box<Self>, outcome: Outcome) -> Result<(), Error> {
        let Some(message) = self.message.take() else {
            return Ok(());
        };
        match outcome {
            Outcome::Ack => Ok(()),
            Outcome::Requeue => self.queue.push(message, true),
            Outcome::DeadLetter => {
                self.queue
                    .inner
                    .dead
                    .lock()
                    .expect("dead-letter lock")
                    .push(Bytes::from(message.body));
                Ok(())
            }
        }
    }
}

impl Drop for MemorySettle {
    /// An abandoned delivery (its task was cancelled) goes back on the queue, as a broker
    /// would do when the channel closes.
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            let _ = self.queue.push(message, true);
        }
    }
}

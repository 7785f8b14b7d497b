//! What a request's time limit measures. A limit must bound work, not a transfer that is
//! making progress: a 2 GiB upload or a long download on a slow link may take as long as it
//! takes while bytes move. So a request is stopped when
//!
//! - its guest has run for the request timeout (CPU time: the time spent running the guest
//!   and the host calls it makes, measured around each poll of the guest), or
//! - nothing has happened for the request timeout: no request body chunk arrived, no response
//!   chunk was taken by the client, the guest did not run (a guest waiting on a host call or
//!   an outbound request that never answers), or
//! - the client's request body stalls, with the guest waiting for it, for the (shorter)
//!   body idle timeout, or brings less than [`MIN_BODY_BYTES_PER_WINDOW`] in such a window.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;

/// One request's activity, shared by its guest task, its bodies and its epoch callback.
pub struct Activity {
    started: Instant,
    /// Nanoseconds since `started` of the last progress.
    last_progress: AtomicU64,
    /// Time spent in finished polls of the guest.
    busy: AtomicU64,
    /// Nanoseconds since `started` (plus one) when the poll in progress began; 0 when idle.
    poll_started: AtomicU64,
    stalled: AtomicBool,
    stalled_notify: tokio::sync::Notify,
    /// Whether the guest is waiting for the client's request body, which has a (shorter) idle
    /// limit of its own: that limit then decides, so a stall is always a 408, never a 504.
    awaiting_client: AtomicBool,
    /// The limit on CPU time and on time without progress.
    pub limit: Duration,
}

impl Activity {
    pub fn new(limit: Duration) -> Activity {
        Activity {
            started: Instant::now(),
            last_progress: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            poll_started: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            stalled_notify: tokio::sync::Notify::new(),
            awaiting_client: AtomicBool::new(false),
            limit,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Something moved: a body chunk, or the guest ran.
    pub fn progress(&self) {
        self.last_progress.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// Time since the last progress.
    pub fn idle_for(&self) -> Duration {
        let now = self.now();
        Duration::from_nanos(now.saturating_sub(self.last_progress.load(Ordering::Relaxed)))
    }

    /// CPU time the guest has used, including the poll in progress.
    pub fn busy(&self) -> Duration {
        let mut busy = self.busy.load(Ordering::Relaxed);
        let started = self.poll_started.load(Ordering::Relaxed);
        if started > 0 {
            busy += self.now().saturating_sub(started - 1);
        }
        Duration::from_nanos(busy)
    }

    /// Whether the guest has used up its CPU time (checked on every epoch tick).
    pub fn over_cpu_limit(&self) -> bool {
        self.busy() >= self.limit
    }

    /// Resolves when no progress has happened for the limit (not counting a wait for the
    /// client's request body, which its own idle limit bounds).
    pub async fn idle_too_long(&self) {
        loop {
            let idle = self.idle_for();
            if idle >= self.limit && !self.awaiting_client.load(Ordering::Relaxed) {
                return;
            }
            if idle >= self.limit {
                tokio::time::sleep(self.limit).await;
                continue;
            }
            tokio::time::sleep(self.limit - idle).await;
        }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::Relaxed);
        self.stalled_notify.notify_waiters();
    }

    /// Whether the client's request body has stalled.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Resolves once the client's request body has stalled.
    pub async fn body_stalled(&self) {
        loop {
            let notified = self.stalled_notify.notified();
            if self.stalled.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

/// A future (the guest's run) whose polls are timed: their time is the guest's CPU time, and
/// each poll is progress.
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    activity: Arc<Activity>,
}

impl<F: Future> Metered<F> {
    pub fn new(inner: F, activity: Arc<Activity>) -> Metered<F> {
        Metered {
            inner: Box::pin(inner),
            activity,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let activity = self.activity.clone();
        let started = activity.now();
        activity.poll_started.store(started + 1, Ordering::Relaxed);
        let result = self.inner.as_mut().poll(cx);
        let ended = activity.now();
        activity.poll_started.store(0, Ordering::Relaxed);
        activity
            .busy
            .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
        activity.progress();
        result
    }
}

/// The least a client's request body must bring in each `idle_limit` window: a body
/// trickling a byte now and then is never idle, yet holds a slot for as long as it likes.
/// 1 KiB per window (about 100 B/s with the default 10 s) is far below any honest upload.
pub const MIN_BODY_BYTES_PER_WINDOW: u64 = 1024;

/// A body whose frames count as progress. With `idle_limit` (the client's request body), a
/// wait of that long for the next frame, or a window of that long bringing less than
/// [`MIN_BODY_BYTES_PER_WINDOW`], stalls the request.
pub struct Watched<B> {
    inner: B,
    activity: Arc<Activity>,
    idle_limit: Option<Duration>,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Time spent waiting for the client in the current rate window, and what the window
    /// brought so far: only waiting counts, so a guest slow to read is never taken for a slow
    /// client.
    window: (Duration, u64),
    /// Since when the body has been waiting for the client's next frame.
    pending_since: Option<Instant>,
}

impl<B> Watched<B> {
    pub fn new(inner: B, activity: Arc<Activity>, idle_limit: Option<Duration>) -> Watched<B> {
        Watched {
            inner,
            activity,
            idle_limit,
            waiting: None,
            window: (Duration::ZERO, 0),
            pending_since: None,
        }
    }
}

impl<B> Watched<B> {
    /// Counts `size` more bytes and the wait for them; whether a window that has ended
    /// brought too little.
    fn too_slow(&mut self, limit: Duration, size: u64) -> bool {
        let waited = self
            .pending_since
            .take()
            .map_or(Duration::ZERO, |at| at.elapsed());
        let (window, bytes) = &mut self.window;
        *window += waited;
        *bytes += size;
        if *window < limit {
            return false;
        }
        let slow = *bytes < MIN_BODY_BYTES_PER_WINDOW;
        self.window = (Duration::ZERO, 0);
        slow
    }

    /// Marks the request stalled: the body ends in an error and its idle limit is spent.
    fn stall(&mut self) -> wasmtime_wasi_http::Error {
        self.idle_limit = None;
        self.activity
            .awaiting_client
            .store(false, Ordering::Relaxed);
        self.activity.stall();
        wasmtime_wasi_http::Error::ConnectionReadTimeout
    }
}

impl<B> http_body::Body for Watched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting = None;
                if let Some(limit) = self.idle_limit {
                    self.activity
                        .awaiting_client
                        .store(false, Ordering::Relaxed);
                    let size = match &frame {
                        Some(Ok(frame)) => frame.data_ref().map_or(0, |data| data.len() as u64),
                        _ => 0,
                    };
                    if matches!(frame, Some(Ok(_))) && self.too_slow(limit, size) {
                        return Poll::Ready(Some(Err(self.stall())));
                    }
                }
                if matches!(frame, Some(Ok(_))) {
                    self.activity.progress();
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(limit) = self.idle_limit else {
                    return Poll::Pending;
                };
                self.activity.awaiting_client.store(true, Ordering::Relaxed);
                self.pending_since.get_or_insert_with(Instant::now);
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match waiting.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(self.stall()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_time_restarts_with_progress() {
        let activity = Activity::new(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(activity.idle_for() >= Duration::from_millis(120));
        activity.progress();
        assert!(activity.idle_for() < Duration::from_millis(100));
        let started = Instant::now();
        activity.idle_too_long().await;
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn cpu_time_counts_only_polls() {
        let activity = Arc::new(Activity::new(Duration::from_millis(50)));
        // Waiting is not CPU time.
        Metered::new(
            tokio::time::sleep(Duration::from_millis(80)),
            activity.clone(),
        )
        .await;
        assert!(!activity.over_cpu_limit(), "{:?}", activity.busy());
        // Running is.
        Metered::new(
            async { std::thread::sleep(Duration::from_millis(60)) },
            activity.clone(),
        )
        .await;
        assert!(activity.over_cpu_limit(), "{:?}", activity.busy());
    }

    #[tokio::test]
    async fn a_stalled_body_fails_and_stalls_the_request() {
        use http_body_util::BodyExt as _;
        let activity = Arc::new(Activity::new(Duration::from_secs(60)));
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_from(receiver));
        let mut body = Watched::new(body, activity.clone(), Some(Duration::from_millis(100)));
        sender
            .try_send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_err());
        assert!(started.elapsed() >= Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(1), activity.body_stalled())
            .await
            .expect("the request is marked stalled");
        drop(sender);
    }

    #[tokio::test]
    async fn a_stalled_body_is_never_taken_for_an_idle_guest() {
        use http_body_util::BodyExt as _;
        // The body's idle limit equals the request's: the stall must win every time.
        let limit = Duration::from_millis(100);
        let activity = Arc::new(Activity::new(limit));
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_from(receiver));
        let mut body = Watched::new(body, activity.clone(), Some(limit));
        tokio::select! {
            () = activity.idle_too_long() => panic!("a stalled body counted as an idle guest"),
            frame = body.frame() => assert!(frame.unwrap().is_err()),
        }
        assert!(activity.is_stalled());
        drop(sender);
    }

    #[tokio::test]
    async fn a_trickling_body_is_stopped_but_a_slow_honest_one_is_not() {
        use http_body_util::BodyExt as _;
        let window = Duration::from_millis(200);
        for (chunk, stopped) in [(1usize, true), (4096, false)] {
            let activity = Arc::new(Activity::new(Duration::from_secs(60)));
            // A frame every 50 ms for 600 ms: three windows.
            let frames = futures::stream::unfold(0u32, move |sent| async move {
                if sent == 12 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let frame = Frame::data(Bytes::from(vec![b'x'; chunk]));
                Some((Ok::<_, wasmtime_wasi_http::Error>(frame), sent + 1))
            });
            let body = http_body_util::StreamBody::new(Box::pin(frames));
            let mut body = Watched::new(body, activity.clone(), Some(window));
            let mut failed = false;
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    failed = true;
                    break;
                }
            }
            assert_eq!(failed, stopped, "{chunk}-byte frames");
            assert_eq!(activity.is_stalled(), stopped);
        }
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }
}

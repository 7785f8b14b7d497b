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
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::task::AtomicWaker;
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
    /// Whether the guest was stopped (time limit, trap) before it finished.
    abandoned: AtomicBool,
    /// Cancelled when the client left an event stream before its end.
    client_left: tokio_util::sync::CancellationToken,
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
            abandoned: AtomicBool::new(false),
            client_left: tokio_util::sync::CancellationToken::new(),
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

    /// Marks the guest as stopped before it finished, before its store (and with it the
    /// sending end of its response body) is dropped: the body then ends in an error instead
    /// of looking complete.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Resolves once the client has left an event stream before its end (see
    /// [`StopWhenLeft`]).
    pub async fn client_left(&self) {
        self.client_left.cancelled().await;
    }

    /// Whether the client has left an event stream before its end.
    pub fn has_client_left(&self) -> bool {
        self.client_left.is_cancelled()
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
/// each poll the guest was woken for is progress. The guest shares its task with the watchdog
/// timers that bound it, so their wake-ups poll it too; those polls run no guest code and must
/// not count, or a timer checking for idleness would itself reset the idle time.
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    activity: Arc<Activity>,
    wake: Arc<GuestWake>,
    waker: Waker,
    polled: bool,
}

/// The waker the guest is polled with: it notes that the guest was woken, then wakes the task.
struct GuestWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for GuestWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Metered<F> {
    pub fn new(inner: F, activity: Arc<Activity>) -> Metered<F> {
        let wake = Arc::new(GuestWake {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        Metered {
            inner: Box::pin(inner),
            activity,
            waker: Waker::from(wake.clone()),
            wake,
            polled: false,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.wake.task.register(cx.waker());
        let woken = self.wake.woken.swap(false, Ordering::AcqRel) || !self.polled;
        self.polled = true;
        let activity = self.activity.clone();
        let started = activity.now();
        activity.poll_started.store(started + 1, Ordering::Relaxed);
        let waker = self.waker.clone();
        let result = self.inner.as_mut().poll(&mut Context::from_waker(&waker));
        let ended = activity.now();
        activity.poll_started.store(0, Ordering::Relaxed);
        activity
            .busy
            .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
        if woken || result.is_ready() {
            activity.progress();
        }
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
                // wasmtime ends a body whose store was dropped as if it were complete.
                if frame.is_none() && self.activity.abandoned.load(Ordering::Acquire) {
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                        "the component stopped before finishing the body".into(),
                    )))));
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

/// An event stream's response body. Dropped before its end (the connection closed: the
/// client left), it tells its guest to stop at once, giving back the stream's slots, its
/// instance and its upstream connection. Without it the guest would learn only at its next
/// write (a heartbeat, seconds away), holding all of them until then.
pub struct StopWhenLeft<B: http_body::Body> {
    inner: B,
    activity: Arc<Activity>,
    ended: bool,
}

impl<B: http_body::Body> StopWhenLeft<B> {
    /// `inner`, the body of the stream whose guest `activity` watches.
    pub fn new(inner: B, activity: Arc<Activity>) -> StopWhenLeft<B> {
        StopWhenLeft {
            inner,
            activity,
            ended: false,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for StopWhenLeft<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        // An error ends the body too: the guest has stopped already.
        if let Poll::Ready(None | Some(Err(_))) = &frame {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B: http_body::Body> Drop for StopWhenLeft<B> {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.activity.client_left.cancel();
        }
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

    /// The watchdog shares the guest's task: its wake-ups poll the guest, which must not count
    /// as the guest running, or the idle limit would never be reached.
    #[tokio::test]
    async fn a_timer_waking_the_task_is_not_guest_progress() {
        let limit = Duration::from_millis(200);
        let activity = Arc::new(Activity::new(limit));
        let mut guest = Metered::new(std::future::pending::<()>(), activity.clone());
        let started = Instant::now();
        let stopped = tokio::time::timeout(Duration::from_secs(2), async {
            // The timer's wake-up polls the guest first.
            tokio::select! {
                biased;
                () = &mut guest => unreachable!(),
                () = activity.idle_too_long() => {}
            }
        })
        .await;
        assert!(stopped.is_ok(), "an idle guest was never stopped");
        let elapsed = started.elapsed();
        assert!(
            elapsed < limit * 2,
            "stopped after {elapsed:?}, the limit being {limit:?}"
        );
    }

    #[tokio::test]
    async fn a_guest_woken_by_its_own_events_makes_progress() {
        let activity = Arc::new(Activity::new(Duration::from_secs(60)));
        let guest = Metered::new(
            async {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            activity.clone(),
        );
        let mut guest = std::pin::pin!(guest);
        tokio::time::timeout(Duration::from_millis(150), &mut guest)
            .await
            .expect_err("still running");
        assert!(activity.idle_for() < Duration::from_millis(100));
        guest.await;
        assert!(activity.idle_for() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_body_cut_short_ends_in_an_error() {
        use http_body_util::BodyExt as _;
        for abandoned in [false, true] {
            let activity = Arc::new(Activity::new(Duration::from_secs(60)));
            let body = http_body_util::Full::new(Bytes::from_static(b"part"))
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
            let mut body = Watched::new(body, activity.clone(), None);
            assert!(body.frame().await.unwrap().is_ok());
            if abandoned {
                activity.abandon();
            }
            let end = body.frame().await;
            assert_eq!(end.is_some_and(|frame| frame.is_err()), abandoned);
        }
    }

    #[tokio::test]
    async fn a_stream_dropped_before_its_end_tells_its_guest_the_client_left() {
        use http_body_util::BodyExt as _;
        // Dropped unfinished: the client left.
        let activity = Arc::new(Activity::new(Duration::from_secs(60)));
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_from(receiver));
        let mut body = StopWhenLeft::new(body, activity.clone());
        sender
            .try_send(Ok(Frame::data(Bytes::from_static(b"retry: 3000\n\n"))))
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!activity.has_client_left());
        drop(body);
        assert!(activity.has_client_left());
        tokio::time::timeout(Duration::from_secs(1), activity.client_left())
            .await
            .expect("the guest hears of it");
        drop(sender);

        // Read to its end (or its error): nobody left.
        for end in [None, Some(wasmtime_wasi_http::Error::ConnectionReadTimeout)] {
            let activity = Arc::new(Activity::new(Duration::from_secs(60)));
            let (sender, receiver) =
                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>(1);
            let body = http_body_util::StreamBody::new(tokio_stream_from(receiver));
            let mut body = StopWhenLeft::new(body, activity.clone());
            let failed = end.is_some();
            if let Some(err) = end {
                sender.try_send(Err(err)).unwrap();
            }
            drop(sender);
            let last = body.frame().await;
            assert_eq!(last.is_some(), failed);
            drop(body);
            assert!(!activity.has_client_left(), "failed: {failed}");
        }

        // A body that says it is complete was not left either.
        let activity = Arc::new(Activity::new(Duration::from_secs(60)));
        let body = http_body_util::Empty::<Bytes>::new();
        drop(StopWhenLeft::new(body, activity.clone()));
        assert!(!activity.has_client_left());
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

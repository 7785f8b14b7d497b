//! mp3conv's native worker: takes videos in (uploads and links), stores them, converts them to
//! MP3 with ffmpeg and announces the results.
//!
//! The same code runs in two shapes: against MongoDB (GridFS + a `jobs` collection) and
//! RabbitMQ in production, or embedded (a local directory, SQLite and an in-process queue) for
//! `mp3conv up`. Build it with [`Worker::build`] and run it with [`Worker::run_until_stopped`].

mod child;
pub mod config;
pub mod convert;
pub mod error;
mod events;
pub mod fetch;
pub mod held;
pub mod idempotency;
mod in_process;
pub mod job;
pub mod jobs;
pub mod metrics;
pub mod page;
mod processor;
pub mod proxy;
pub mod queue;
pub mod quota;
pub mod retention;
mod routes;
pub mod storage;
pub mod stored;
pub mod sweep;
pub mod zip;

use std::future::Future;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;
pub use routes::OWNER_HEADER;

use config::{JobStoreConfig, QueueKind, StorageConfig};
use fetch::Fetcher;
use jobs::JobStore;
use metrics::Metrics;
use queue::JobQueue;
use queue::memory::MemoryQueue;
use storage::BlobStore;

/// Everything a request handler or the converter needs.
pub(crate) struct State {
    config: Config,
    jobs: Arc<dyn JobStore>,
    videos: Arc<dyn BlobStore>,
    mp3s: Arc<dyn BlobStore>,
    queue: Arc<dyn JobQueue>,
    metrics: Metrics,
    fetcher: Fetcher,
    /// This process's name on the job leases it takes: unique per run.
    holder: String,
    /// Conversion slots (`concurrency`), taken only for converting: downloads have their own.
    conversion_slots: tokio::sync::Semaphore,
    /// One user's quota checks after their jobs are stored, one at a time in this process.
    quota_gate: quota::Gate,
    /// Live job events: publishing, the hub streams follow, stream limits.
    events: events::Events,
    /// Cancelled when the worker starts shutting down (open event streams end then).
    shutdown: CancellationToken,
    /// Calls from a host in this process ([`Worker::in_process`]) still being answered:
    /// shutdown waits for them as it waits for its listener's connections.
    in_process: tokio_util::task::TaskTracker,
}

/// The worker: the internal HTTP API plus the converter.
pub struct Worker {
    state: Arc<State>,
    memory_queue: Option<MemoryQueue>,
    /// The GridFS database to sweep for orphan files once serving, if this process does it.
    gridfs_sweep: Option<mongodb::Database>,
    /// The RabbitMQ side of events, started by [`Worker::run_until_stopped`].
    event_links: Option<EventLinks>,
}

/// What moves events through RabbitMQ: the publisher's outbox, and this process's bound
/// events queue when it serves the API.
struct EventLinks {
    outbox: tokio::sync::mpsc::Receiver<events::Numbered>,
    subscriber: Option<events::rabbitmq::Subscriber>,
}

/// Mongo clients are shared between the blob and job stores when they use the same URL.
async fn mongo_client(
    url: &secrecy::SecretString,
    cached: &mut Option<(String, mongodb::Client)>,
) -> Result<mongodb::Client, Error> {
    if let Some((cached_url, client)) = cached
        && cached_url == url.expose_secret()
    {
        return Ok(client.clone());
    }
    let client = mongodb::Client::with_uri_str(url.expose_secret())
        .await
        .map_err(|e| Error::unavailable("mongodb", e))?;
    *cached = Some((url.expose_secret().to_owned(), client.clone()));
    Ok(client)
}

/// Removes the conversion directories a crashed worker left (converting roles). A failure is
/// logged, never fatal: leftovers cost space, not correctness.
async fn sweep_temp_dirs(config: &Config) {
    if config.role.converts() {
        match sweep::temp_dirs(config.convert.temp_dir.clone()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed stale conversion directories"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep the conversion directories"),
        }
    }
}

/// Removes the GridFS files no job owns (see [`sweep::gridfs`]). It runs in the background
/// while the worker serves: on a large store it takes a while, and it only frees space.
async fn sweep_gridfs(state: &State, db: &mongodb::Database) {
    for bucket in ["videos", "mp3s"] {
        match sweep::gridfs(db, bucket, state.jobs.as_ref(), state.config.orphan_age).await {
            Ok(0) => {}
            Ok(removed) => {
                state.metrics.gridfs_orphans_removed.inc_by(removed as u64);
                tracing::info!(bucket, removed, "removed orphan GridFS files");
            }
            Err(e) => {
                tracing::warn!(bucket, error = %error::error_chain(&e), "cannot sweep GridFS")
            }
        }
    }
    state.metrics.gridfs_sweeps.inc();
}

impl Worker {
    /// Validates `config` and connects to the configured backends, creating the directories,
    /// tables, indexes and queues they need.
    pub async fn build(config: Config) -> Result<Self, Error> {
        config
            .validate()
            .map_err(|e| Error::bad_request("invalid_config", e.to_string()))?;
        let mut mongo = None;
        let mut gridfs_db = None;
        let (videos, mp3s): (Arc<dyn BlobStore>, Arc<dyn BlobStore>) = match &config.storage {
            StorageConfig::Local { dir } => (
                Arc::new(storage::local::LocalStore::open(dir.join("videos")).await?),
                Arc::new(storage::local::LocalStore::open(dir.join("mp3s")).await?),
            ),
            StorageConfig::Gridfs { url, database } => {
                let db = mongo_client(url, &mut mongo).await?.database(database);
                gridfs_db = Some(db.clone());
                (
                    Arc::new(storage::gridfs::GridFsStore::open(db.clone(), "videos").await?),
                    Arc::new(storage::gridfs::GridFsStore::open(db, "mp3s").await?),
                )
            }
        };
        let jobs: Arc<dyn JobStore> = match &config.jobs {
            JobStoreConfig::Sqlite { path } => {
                Arc::new(jobs::sqlite::SqliteJobs::open(path).await?)
            }
            JobStoreConfig::Mongo { url, database } => {
                let db = mongo_client(url, &mut mongo).await?.database(database);
                Arc::new(jobs::mongo::MongoJobs::open(db).await?)
            }
        };
        let mut memory_queue = None;
        let mut event_links = None;
        let (queue, events): (Arc<dyn JobQueue>, _) = match config.queue.kind {
            QueueKind::Memory => {
                let queue = MemoryQueue::new(config.queue.retry_delay);
                memory_queue = Some(queue.clone());
                (Arc::new(queue), events::Events::in_process(&config.events))
            }
            QueueKind::Rabbitmq => {
                let queue = queue::rabbitmq::RabbitQueue::connect(config.queue.clone()).await?;
                let (events, outbox) = events::Events::through_exchange(&config.events);
                // Bound before the API serves: no event after the first request is missed.
                let subscriber = if config.role.serves_api() {
                    Some(events::rabbitmq::Subscriber::connect(&config.queue).await?)
                } else {
                    None
                };
                event_links = Some(EventLinks { outbox, subscriber });
                (Arc::new(queue), events)
            }
        };
        let metrics = Metrics::default();
        let fetcher = Fetcher::new(&config.fetch, metrics.page_resolutions.clone())?;
        let concurrency = config.concurrency;
        sweep_temp_dirs(&config).await;
        // Only a process serving the API sweeps GridFS, so converters scaled out do not all
        // repeat it.
        let gridfs_sweep = gridfs_db.filter(|_| config.role.serves_api());
        let holder = format!(
            "{}/{}/{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Ok(Self {
            state: Arc::new(State {
                config,
                jobs,
                videos,
                mp3s,
                queue,
                metrics,
                fetcher,
                holder,
                conversion_slots: tokio::sync::Semaphore::new(concurrency),
                quota_gate: quota::Gate::default(),
                events,
                shutdown: CancellationToken::new(),
                in_process: tokio_util::task::TaskTracker::new(),
            }),
            memory_queue,
            gridfs_sweep,
            event_links,
        })
    }

    /// The in-process queue, when the worker uses one (to read its announcements).
    pub fn memory_queue(&self) -> Option<&MemoryQueue> {
        self.memory_queue.as_ref()
    }

    /// The API as a function for a host that embeds the worker in its process (`mp3conv up`):
    /// the same routes, token check and limits as on the listener, without a socket between
    /// (see [`in_process`]).
    pub fn in_process<B>(
        &self,
    ) -> impl Fn(
        http::Request<B>,
    ) -> futures::future::BoxFuture<'static, http::Response<axum::body::Body>>
    + Send
    + Sync
    + 'static
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        in_process::handler(Arc::clone(&self.state))
    }

    /// Serves the API on `listener` and converts jobs until `shutdown` completes; then stops
    /// taking requests and jobs, ends the open event streams, lets in-flight conversions
    /// finish within the configured grace period and abandons the rest to redelivery.
    pub async fn run_until_stopped(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let token = self.state.shutdown.clone();
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let role = self.state.config.role;
        let converter = role
            .converts()
            .then(|| tokio::spawn(processor::run(Arc::clone(&self.state), token.clone())));
        // Only processes serving the API take held uploads in, so only they look for abandoned
        // ones.
        let held_sweeper = role
            .serves_api()
            .then(|| tokio::spawn(held::run(Arc::clone(&self.state), token.clone())));
        // Only processes serving the API sweep what retention removes, like held uploads.
        let retention_sweeper = role
            .serves_api()
            .then(|| tokio::spawn(retention::run(Arc::clone(&self.state), token.clone())));
        let sweeper = self.gridfs_sweep.map(|db| {
            let state = Arc::clone(&self.state);
            let stop = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = sweep_gridfs(&state, &db) => {}
                    () = stop.cancelled() => tracing::info!("GridFS sweep stopped for shutdown"),
                }
            })
        });
        // The publisher outlives the converter (its last events are sent), the subscriber
        // stops with the API.
        let publisher_stop = CancellationToken::new();
        let (publisher, subscriber) = match self.event_links {
            Some(EventLinks { outbox, subscriber }) => {
                let config = self.state.config.queue.clone();
                // The events are stamped with the lease holder's name: unique per run.
                let publisher = tokio::spawn(events::rabbitmq::publish(
                    config.clone(),
                    self.state.holder.clone(),
                    outbox,
                    publisher_stop.clone(),
                ));
                let subscriber = subscriber.map(|first| {
                    tokio::spawn(events::rabbitmq::consume(
                        config,
                        Arc::clone(&self.state.events.hub),
                        first,
                        token.clone(),
                    ))
                });
                (Some(publisher), subscriber)
            }
            None => (None, None),
        };
        // Without TCP_NODELAY a streamed answer's headers and first body bytes went out as
        // two small writes, and the second waited for the client's delayed ACK: about a
        // quarter of MP3 downloads in `up` took 40 ms more than the rest.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let served = axum::serve(listener, routes::router(Arc::clone(&self.state)))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await;
        token.cancel();
        self.state.in_process.close();
        self.state.in_process.wait().await;
        if let Some(converter) = converter {
            converter.await.map_err(Error::internal)?;
        }
        if let Some(sweeper) = sweeper {
            sweeper.await.map_err(Error::internal)?;
        }
        if let Some(held_sweeper) = held_sweeper {
            held_sweeper.await.map_err(Error::internal)?;
        }
        if let Some(retention_sweeper) = retention_sweeper {
            retention_sweeper.await.map_err(Error::internal)?;
        }
        if let Some(subscriber) = subscriber {
            subscriber.await.map_err(Error::internal)?;
        }
        publisher_stop.cancel();
        if let Some(publisher) = publisher {
            publisher.await.map_err(Error::internal)?;
        }
        self.state.queue.close().await;
        served.map_err(|e| Error::unavailable("http listener", e))?;
        tracing::info!("stopped");
        Ok(())
    }
}

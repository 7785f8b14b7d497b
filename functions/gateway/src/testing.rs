//! In-memory stand-ins for what the gateway calls (the worker and auth), a real SQLite
//! database with the repository's migrations, real signed tokens, and request bodies; for the
//! native tests.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use mp3conv_contract::job::{Job, JobId, JobPage, LinkRequest, Source};
use mp3conv_contract::options::Options;
use mp3conv_contract::quota::{Limits, Quota, Usage};
use mp3conv_sql::testing::Sqlite;
use mp3conv_sql::{Db, Param};
use mp3conv_tokens::Verifier;
use mp3conv_tokens::keys::{Jwks, PublicJwk};

use crate::body::Body;
use crate::error::ApiError;
use crate::upstream::{
    Answered, Auth, Chunk, Download, EventStream, JobsQuery, Streamed, Upload, Worker,
};

/// A body arriving as `parts`.
pub fn chunks(parts: &[&str]) -> impl Body + use<> {
    let parts: Vec<std::io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
        .collect();
    futures::stream::iter(parts)
}

/// A body that arrives as `parts`, each a while after the one before (as over a network),
/// then breaks.
pub fn broken(parts: &[&str]) -> impl Body + use<> {
    let mut items: Vec<std::io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
        .collect();
    items.push(Err(std::io::Error::other("connection reset")));
    futures::stream::iter(items)
        .then(|item| async move {
            Later(false).await;
            item
        })
        .boxed()
}

/// Not ready the first time it is polled: what arrives later.
struct Later(bool);

impl std::future::Future for Later {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The boundary [`multipart`] uses.
pub const BOUNDARY: &str = "XyZ";

/// A part of a multipart body: `(name, filename, content)`.
pub type Part<'a> = (&'a str, Option<&'a str>, &'a str);

/// A multipart body with `parts`, split in the middle of each part's content (so files arrive in
/// several chunks); `complete: false` leaves off the closing boundary.
pub fn multipart(parts: &[Part<'_>], complete: bool) -> Vec<String> {
    let mut pieces = Vec::new();
    for (name, filename, content) in parts {
        let disposition = match filename {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        let kind = filename.map_or("", |_| "Content-Type: video/mp4\r\n");
        pieces.push(format!(
            "--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n"
        ));
        let (a, b) = content.split_at(content.len() / 2);
        pieces.push(a.to_owned());
        pieces.push(format!("{b}\r\n"));
    }
    if complete {
        pieces.push(format!("--{BOUNDARY}--\r\n"));
    }
    pieces
}

/// A fresh database with every migration.
pub fn database() -> Sqlite {
    Sqlite::migrated()
}

/// Adds a user (what auth's registration would do).
pub fn add_user(db: &dyn Db, id: &str, email: &str) {
    db.execute(
        "INSERT INTO users (id, email, email_key, password_hash, created_at) VALUES (?, ?, ?, 'x', 0)",
        &[
            Param::Text(id.into()),
            Param::Text(email.into()),
            Param::Text(email.to_lowercase()),
        ],
    )
    .unwrap();
}

/// A signing key and its public JWKS, as `mp3conv keys generate` makes them.
pub struct Keys {
    encoding: jsonwebtoken::EncodingKey,
    public: PublicJwk,
}

impl Keys {
    pub fn new() -> Keys {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        Keys {
            encoding: jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            public: PublicJwk::from_public_key(key.verifying_key().as_bytes()),
        }
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.public.clone()],
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(&self.jwks(), "mp3conv", "mp3conv").unwrap()
    }

    /// A valid token for `user` for the next hour.
    pub fn token(&self, user: &str, email: &str) -> String {
        self.token_for(user, email, 3600)
    }

    /// A valid token for `user` for the next `seconds`.
    pub fn token_for(&self, user: &str, email: &str, seconds: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = mp3conv_tokens::Claims {
            sub: user.into(),
            email: email.into(),
            iat: now,
            exp: now + seconds,
            iss: "mp3conv".into(),
            aud: "mp3conv".into(),
            // Each its own, as auth issues them (a sign-out revokes one token).
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.public.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

/// A file the fake worker was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub upload: Upload,
    pub bytes: Vec<u8>,
    /// Whether the body ended normally (else the request was aborted).
    pub finished: bool,
}

/// The worker, in memory: it keeps jobs, logs every call and can be told to fail.
#[derive(Default)]
pub struct FakeWorker {
    pub jobs: RefCell<Vec<Job>>,
    /// Every call, as `"<what> <id or detail>"`.
    pub calls: RefCell<Vec<String>>,
    pub uploads: RefCell<Vec<Received>>,
    /// Calls answered before the worker becomes unreachable (`None`: never).
    pub calls_before_outage: Cell<Option<usize>>,
    /// What the worker answers to an upload it read to the end (`None`: a job).
    pub upload_refusal: RefCell<Option<ApiError>>,
    /// What the worker answers to starting a held job (`None`: the job, queued).
    pub start_refusal: RefCell<Option<ApiError>>,
    /// Jobs the worker lists but answers 404 for when deleted (deleted meanwhile).
    pub vanishing: RefCell<Vec<JobId>>,
    /// Jobs whose deletion is answered 204 but that stay listed (a broken worker).
    pub undeletable: RefCell<Vec<JobId>>,
    /// Every event stream asked for, with its owner.
    pub streams: RefCell<Vec<(String, EventStream)>>,
    /// What the worker answers to an event stream instead of one (an error).
    pub stream_refusal: RefCell<Option<ApiError>>,
    /// The caller's limits, as last handed over.
    pub limits: Cell<Limits>,
    /// What the worker says the caller uses.
    pub usage: Cell<Usage>,
    /// Whether the worker answers job creations as repeats.
    pub replaying: Cell<bool>,
    /// A worker from before downloads were named by it: no `Content-Disposition`.
    pub unnamed_downloads: Cell<bool>,
}

impl FakeWorker {
    /// A job of `owner`'s, stored.
    pub fn add_job(&self, owner: &str, name: &str) -> Job {
        let job = Job::new(
            owner.into(),
            Source::Upload {
                filename: name.into(),
                content_type: Some("video/mp4".into()),
            },
            Default::default(),
        );
        self.jobs.borrow_mut().push(job.clone());
        job
    }

    /// The calls made, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn call(&self, what: String) -> Result<(), ApiError> {
        let mut calls = self.calls.borrow_mut();
        calls.push(what);
        match self.calls_before_outage.get() {
            Some(n) if calls.len() > n => Err(ApiError::WorkerUnavailable),
            _ => Ok(()),
        }
    }

    fn owned(&self, owner: &str, id: JobId) -> Result<Job, ApiError> {
        self.jobs
            .borrow()
            .iter()
            .find(|j| j.id == id && j.owner == owner)
            .cloned()
            .ok_or(ApiError::JobNotFound)
    }
}

impl Worker for FakeWorker {
    type Audio = Vec<u8>;

    async fn job(&self, owner: &str, id: JobId) -> Result<Job, ApiError> {
        self.call(format!("job {id}"))?;
        self.owned(owner, id)
    }

    /// Like the worker: held jobs are not listed.
    async fn jobs(&self, owner: &str, query: JobsQuery) -> Result<JobPage, ApiError> {
        self.call(format!("jobs {}", query.to_query()))?;
        let jobs: Vec<Job> = self
            .jobs
            .borrow()
            .iter()
            .rev()
            .filter(|j| j.owner == owner && !j.held)
            .take(query.limit as usize)
            .cloned()
            .collect();
        Ok(JobPage {
            jobs,
            next_cursor: None,
        })
    }

    async fn delete_job(&self, owner: &str, id: JobId) -> Result<(), ApiError> {
        self.call(format!("delete {id}"))?;
        if self.undeletable.borrow().contains(&id) {
            return Ok(());
        }
        let mut jobs = self.jobs.borrow_mut();
        if self.vanishing.borrow().contains(&id) {
            jobs.retain(|j| j.id != id);
            return Err(ApiError::JobNotFound);
        }
        let before = jobs.len();
        jobs.retain(|j| !(j.id == id && j.owner == owner));
        if jobs.len() == before {
            return Err(ApiError::JobNotFound);
        }
        Ok(())
    }

    async fn create_link_job(&self, owner: &str, link: &LinkRequest) -> Result<Job, ApiError> {
        self.call(format!("link {}", link.url))?;
        let source = Source::link(link.url.clone());
        let job = Job::with_options(owner.into(), source, link.options.clone());
        self.jobs.borrow_mut().push(job.clone());
        Ok(job)
    }

    async fn create_upload_job<S>(
        &self,
        owner: &str,
        upload: &Upload,
        mut body: S,
    ) -> Result<Job, ApiError>
    where
        S: Stream<Item = Chunk> + Unpin,
    {
        self.call(format!("upload {}", upload.filename))?;
        let mut received = Received {
            upload: upload.clone(),
            bytes: Vec::new(),
            finished: false,
        };
        let mut aborted = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => received.bytes.extend_from_slice(&chunk),
                Err(err) => {
                    aborted = Some(err);
                    break;
                }
            }
        }
        received.finished = aborted.is_none();
        self.uploads.borrow_mut().push(received);
        if let Some(err) = aborted.or_else(|| self.upload_refusal.borrow().clone()) {
            return Err(err);
        }
        let source = Source::Upload {
            filename: upload.filename.clone(),
            content_type: Some(upload.content_type.clone()),
        };
        let mut job = Job::new(owner.into(), source, Default::default());
        job.held = upload.hold;
        self.jobs.borrow_mut().push(job.clone());
        Ok(job)
    }

    /// Like the worker: someone else's job is 404, one not held 409 `not_held`.
    async fn start_job(&self, owner: &str, id: JobId, options: &Options) -> Result<Job, ApiError> {
        self.call(format!(
            "start {id} {}",
            serde_json::to_string(options).unwrap()
        ))?;
        self.owned(owner, id)?;
        if let Some(err) = self.start_refusal.borrow().clone() {
            return Err(err);
        }
        let mut jobs = self.jobs.borrow_mut();
        let job = jobs.iter_mut().find(|j| j.id == id).expect("owned");
        if !job.held {
            return Err(crate::error::upstream_error(
                409,
                &[],
                br#"{"error":{"code":"not_held","message":"the job is not held"}}"#.to_vec(),
            ));
        }
        let mut options = options.clone();
        job.bitrate = options.bitrate.take().unwrap_or_default();
        job.options = options;
        job.held = false;
        Ok(job.clone())
    }

    async fn download(
        &self,
        owner: &str,
        id: JobId,
        what: Download,
        forwarded: &[(String, String)],
    ) -> Result<Streamed<Vec<u8>>, ApiError> {
        let shown: Vec<String> = forwarded.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let kind = match what {
            Download::Audio => "audio".to_owned(),
            Download::Track(n) => format!("track {n}"),
            Download::Tracks => "zip".to_owned(),
        };
        self.call(format!("{kind} {id} {}", shown.join(" ")))?;
        let job = self.owned(owner, id)?;
        // Like the worker: 404 `no_such_track` for a track the job does not have.
        if let Download::Track(n) = what
            && !job.tracks.iter().any(|t| t.number == n)
        {
            return Err(ApiError::TrackNotFound);
        }
        let ranged = forwarded.iter().any(|(n, _)| n == "range");
        let header = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let (content_type, body): (&str, &[u8]) = match what {
            Download::Tracks => ("application/zip", b"PK\x03\x04"),
            _ => ("audio/mpeg", b"ID3"),
        };
        let mut headers = vec![
            header("Content-Type", content_type),
            header("content-length", &body.len().to_string()),
            header("etag", "\"e\""),
            header(
                "Content-Disposition",
                &mp3conv_contract::http::attachment(&job.download_name(what)),
            ),
            header("x-mp3conv-owner", owner),
        ];
        if self.unnamed_downloads.get() {
            headers.retain(|(name, _)| name != "Content-Disposition");
        }
        Ok(Streamed {
            status: if ranged { 206 } else { 200 },
            headers,
            body: body.to_vec(),
        })
    }

    /// Like the worker: someone else's job (or none) is 404; a stream starts with `retry:`.
    fn replayed(&self) -> bool {
        self.replaying.get()
    }

    fn limit_to(&self, limits: Limits) {
        self.limits.set(limits);
    }

    /// The limits handed over, as overrides (the fake has no defaults), and the usage set.
    async fn quota(&self, _owner: &str) -> Result<Quota, ApiError> {
        self.call(format!("quota {}", self.limits.get().to_header()))?;
        Ok(Quota {
            limits: self.limits.get(),
            usage: self.usage.get(),
        })
    }

    async fn events(
        &self,
        owner: &str,
        stream: &EventStream,
    ) -> Result<Streamed<Vec<u8>>, ApiError> {
        self.call(format!("events {}", stream.path()))?;
        self.streams
            .borrow_mut()
            .push((owner.to_owned(), stream.clone()));
        if let Some(id) = stream.job {
            self.owned(owner, id)?;
        }
        if let Some(err) = self.stream_refusal.borrow().clone() {
            return Err(err);
        }
        let header = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        Ok(Streamed {
            status: 200,
            headers: vec![
                header("Content-Type", "text/event-stream"),
                header("cache-control", "no-store"),
                header("x-mp3conv-owner", owner),
            ],
            body: b"retry: 3000\n\n".to_vec(),
        })
    }
}

/// Auth, in memory: answers what it is told and logs the `Authorization` it was given.
pub struct FakeAuth {
    pub login: RefCell<Result<Answered, ApiError>>,
    pub delete: RefCell<Result<Answered, ApiError>>,
    pub calls: RefCell<Vec<String>>,
}

/// An answer with a status and a JSON body.
pub fn answered(status: u16, body: &str) -> Answered {
    Answered {
        status,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: body.as_bytes().to_vec(),
    }
}

impl Default for FakeAuth {
    fn default() -> FakeAuth {
        FakeAuth {
            login: RefCell::new(Ok(answered(200, r#"{"access_token":"t0k"}"#))),
            delete: RefCell::new(Ok(answered(204, ""))),
            calls: RefCell::default(),
        }
    }
}

impl Auth for FakeAuth {
    async fn login(&self, authorization: &str) -> Result<Answered, ApiError> {
        self.calls
            .borrow_mut()
            .push(format!("login {authorization}"));
        self.login.borrow().clone()
    }

    async fn delete_account(&self, authorization: &str) -> Result<Answered, ApiError> {
        self.calls
            .borrow_mut()
            .push(format!("delete {authorization}"));
        self.delete.borrow().clone()
    }
}

/// A test database shared between the test and the gateway, behind [`Db`].
pub struct SharedDb(pub std::rc::Rc<Sqlite>);

impl Db for SharedDb {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<(), mp3conv_sql::DbError> {
        self.0.execute(sql, params)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param],
    ) -> Result<Vec<Vec<mp3conv_sql::Value>>, mp3conv_sql::DbError> {
        self.0.query(sql, params)
    }
}

//! One request, from its route to its answer, in plain Rust: the component hands over the
//! request's parts and the services ([`Worker`], [`Auth`], the database); this decides
//! everything else. Runs natively in the tests against in-memory services.

use mp3conv_kit::Trace;
use mp3conv_kit::reply::Reply;
use mp3conv_sql::Db;
use time::OffsetDateTime;

use crate::body::{self, Body};
use crate::caller;
use crate::config::Config;
use crate::error::ApiError;
use crate::routes::{self, CallerRoute, EventsRoute, Route};
use crate::upstream::{Auth, Download, EventStream, Streamed, Worker};
use crate::{account, audio, events, jobs, notifications, presets, tickets, webhook};

/// The OpenAPI document, served as it is kept in the repository.
pub const OPENAPI: &str = include_str!("../../../openapi.yaml");

/// A request's parts.
pub struct Request<B> {
    pub method: String,
    pub path_with_query: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: B,
}

impl<B> Request<B> {
    /// The first value of the header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the header `name`.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn path_and_query(&self) -> (&str, &str) {
        self.path_with_query
            .split_once('?')
            .unwrap_or((self.path_with_query.as_str(), ""))
    }
}

/// What a request is answered with.
pub enum Answer<A> {
    Reply(Reply),
    /// A worker response streamed on as it arrives.
    Stream(Streamed<A>),
}

impl<A> From<Reply> for Answer<A> {
    fn from(reply: Reply) -> Answer<A> {
        Answer::Reply(reply)
    }
}

/// A request's route, or its whole answer when it needs no settings (404/405,
/// `GET /openapi.yaml`).
pub fn route<B>(request: &Request<B>) -> Result<Route, Reply> {
    let (path, _) = request.path_and_query();
    let route = routes::route(&request.method, path).map_err(|err| err.reply())?;
    match fixed(&route) {
        Some(reply) => Err(reply),
        None => Ok(route),
    }
}

/// The answer of a route that is always the same.
fn fixed(route: &Route) -> Option<Reply> {
    match route {
        Route::OpenApi => Some(openapi()),
        Route::Login | Route::Caller(_) | Route::Events(_) => None,
    }
}

/// `GET /openapi.yaml`.
fn openapi() -> Reply {
    Reply::bytes(200, "application/yaml", OPENAPI)
}

/// Opens the users and notifications database (only for requests that need it).
pub type OpenDb<'a> = dyn Fn() -> Result<Box<dyn Db>, String> + 'a;

/// The services one request is served with.
pub struct Gateway<'a, W, A> {
    pub config: &'a Config,
    pub worker: &'a W,
    pub auth: &'a A,
    pub db: &'a OpenDb<'a>,
    pub trace: &'a Trace,
    pub now: OffsetDateTime,
}

impl<W: Worker, A: Auth> Gateway<'_, W, A> {
    /// Serves a routed request: the answer, or the error's (internal errors logged).
    pub async fn serve<B: Body>(&self, route: Route, request: Request<B>) -> Answer<W::Audio> {
        match self.answer(route, request).await {
            Ok(answer) => answer,
            Err(err) => err.logged_reply(self.trace).into(),
        }
    }

    async fn answer<B: Body>(
        &self,
        route: Route,
        request: Request<B>,
    ) -> Result<Answer<W::Audio>, ApiError> {
        match route {
            Route::Caller(route) => self.for_caller(route, request).await,
            Route::Events(route) => self.events(route, &request).await,
            Route::Login => account::login(self.auth, request.header("authorization"))
                .await
                .map(Answer::from),
            Route::OpenApi => Ok(openapi().into()),
        }
    }

    /// Verifies the caller (token, then that the user still exists), then serves `route`.
    async fn for_caller<B: Body>(
        &self,
        route: CallerRoute,
        request: Request<B>,
    ) -> Result<Answer<W::Audio>, ApiError> {
        let authorization = request.header("authorization").map(str::to_owned);
        let verifier = self.config.verifier().map_err(ApiError::Internal)?;
        let caller = caller::verify(authorization.as_deref(), &verifier)?;
        let db = (self.db)().map_err(|err| ApiError::Internal(format!("database: {err}")))?;
        let caller = caller::known(caller, db.as_ref())?;
        self.worker.limit_to(caller.limits);
        let (owner, db) = (caller.id.as_str(), db.as_ref());
        let query = request.path_and_query().1.to_owned();
        let (worker, now) = (self.worker, self.now);
        let reply = match route {
            CallerRoute::Upload | CallerRoute::CreateJob => {
                let content_type = request.header("content-type").map(str::to_owned);
                let length = request.header("content-length").map(str::to_owned);
                let creation = jobs::Creation {
                    body: request.body,
                    content_type: content_type.as_deref(),
                    content_length: length.as_deref(),
                    query: &query,
                    original: route == CallerRoute::Upload,
                    max_upload_bytes: self.config.max_upload_bytes,
                };
                jobs::create(worker, db, owner, creation).await?
            }
            CallerRoute::ListJobs => jobs::list(worker, owner, &query).await?,
            CallerRoute::GetJob(id) => jobs::get(worker, owner, id).await?,
            CallerRoute::DeleteJob(id) => jobs::delete(worker, owner, id).await?,
            CallerRoute::JobFile(id, what) => {
                return self.download(owner, id, what, &request).await;
            }
            CallerRoute::Download => {
                let id = audio::download_id(&query)?;
                return self.download(owner, id, Download::Audio, &request).await;
            }
            CallerRoute::Me => caller.reply(worker).await,
            CallerRoute::Logout => {
                let now_secs = u64::try_from(now.unix_timestamp()).unwrap_or_default();
                caller::revoke(db, &caller, now_secs)?
            }
            CallerRoute::DeleteMe => {
                let authorization = authorization.as_deref().unwrap_or_default();
                account::delete(worker, self.auth, db, owner, authorization).await?
            }
            CallerRoute::ListNotifications => notifications::list(db, owner, &query)?,
            CallerRoute::ReadNotification(id) => notifications::mark_read(db, owner, &id, now)?,
            CallerRoute::GetWebhook => webhook::get(db, owner)?,
            CallerRoute::PutWebhook => {
                let body = json_body(request, webhook::MAX_BODY_BYTES).await?;
                let allow_local = self.config.webhook_allow_local;
                webhook::put(db, owner, &body, allow_local, now)?
            }
            CallerRoute::DeleteWebhook => webhook::delete(db, owner)?,
            CallerRoute::EventTicket => {
                tickets::mint(db, &caller, now, self.config.event_ticket_seconds.0)?
            }
            CallerRoute::ListPresets => presets::list(db, owner)?,
            CallerRoute::GetPreset(name) => presets::get(db, owner, &name)?,
            CallerRoute::DeletePreset(name) => presets::delete(db, owner, &name)?,
            CallerRoute::CreatePreset => {
                let body = json_body(request, presets::MAX_BODY_BYTES).await?;
                presets::create(db, owner, &body, now)?
            }
            CallerRoute::PutPreset(name) => {
                let body = json_body(request, presets::MAX_BODY_BYTES).await?;
                presets::put(db, owner, &name, &body, now)?
            }
        };
        Ok(reply.into())
    }

    /// An event stream: the `Accept` and the query checked first (a bad request spends no
    /// ticket), then the caller by bearer token or else by ticket, then the worker's stream.
    async fn events<B>(
        &self,
        route: EventsRoute,
        request: &Request<B>,
    ) -> Result<Answer<W::Audio>, ApiError> {
        if !events::accepts_event_stream(request.headers_named("accept")) {
            return Err(ApiError::NotAcceptable);
        }
        let query = events::stream_query(request.path_and_query().1)?;
        // A ticket sent must be one, even beside a bearer token (which then counts instead).
        if query
            .ticket
            .as_deref()
            .is_some_and(|t| !tickets::well_formed(t))
        {
            return Err(ApiError::Unauthorized("invalid_ticket"));
        }
        let last_event_id = events::resume_point(
            request.header("last-event-id"),
            query.last_event_id.as_deref(),
        )?;
        let authorization = request.header("authorization");
        let open_db = || (self.db)().map_err(|err| ApiError::Internal(format!("database: {err}")));
        let (owner, token_expires_at) = match (authorization, &query.ticket) {
            (None, Some(ticket)) => {
                let db = open_db()?;
                let claim = uuid::Uuid::new_v4().to_string();
                let redeemed = tickets::redeem(db.as_ref(), ticket, self.now, &claim)?;
                caller::exists(db.as_ref(), &redeemed.user_id)?;
                (redeemed.user_id, redeemed.token_expires_at)
            }
            // A bearer token, when one is sent, is what counts (and none is 401).
            _ => {
                let verifier = self.config.verifier().map_err(ApiError::Internal)?;
                let caller = caller::verify(authorization, &verifier)?;
                let caller = caller::known(caller, open_db()?.as_ref())?;
                (caller.id, caller.token_expires_at)
            }
        };
        let stream = EventStream {
            job: match route {
                EventsRoute::All => None,
                EventsRoute::Job(id) => Some(id),
            },
            last_event_id,
            until_ms: events::stream_until(
                self.now,
                self.config.event_stream_seconds.0,
                token_expires_at,
            ),
        };
        Ok(Answer::Stream(
            events::open(self.worker, &owner, &stream).await?,
        ))
    }

    async fn download<B>(
        &self,
        owner: &str,
        id: mp3conv_contract::job::JobId,
        what: Download,
        request: &Request<B>,
    ) -> Result<Answer<W::Audio>, ApiError> {
        let header = |name: &str| request.header(name).map(str::to_owned);
        Ok(Answer::Stream(
            audio::open(self.worker, owner, id, what, header).await?,
        ))
    }
}

/// A JSON body of at most `limit` bytes: the content type is checked before the body is read
/// (415 otherwise), the length as it is (413).
async fn json_body<B: Body>(request: Request<B>, limit: usize) -> Result<Vec<u8>, ApiError> {
    webhook::check_content_type(request.header("content-type"))?;
    let length = request.header("content-length").map(str::to_owned);
    Ok(body::read(request.body, length.as_deref(), limit).await?)
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

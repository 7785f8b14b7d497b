//! The Spin entry point: turns Spin's request, variables and databases into what [`crate::api`]
//! needs, and its [`Reply`](crate::api::Reply) back into a response (both through
//! `mp3conv_kit`). No decisions are made here.

use std::cell::OnceCell;

use mp3conv_kit::reply::{self, BodyError};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

use crate::api::{self, ApiError, Context, MAX_BODY_BYTES, Reply, Request};
use crate::config::{Config, Database};
use crate::store::{Reservation, SqlStore, StoreError, User, UserStore};
use crate::tokens::Tokens;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let trace = reply::trace(&request);
    let reply = match serve(request).await {
        Ok(reply) => reply,
        Err(err) => {
            if let ApiError::Internal(cause) = &err {
                eprintln!("auth: trace={}: internal error: {cause}", trace.log_id());
            }
            err.reply()
        }
    };
    reply::send(out, reply).await;
}

async fn serve(request: IncomingRequest) -> Result<Reply, ApiError> {
    let method = request.method().to_string();
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let authorization = reply::header(&request, "authorization");
    let content_type = reply::header(&request, "content-type");
    // Refused as soon as it passes the limit (declared or while arriving); nothing drained.
    let body = reply::read_body(request, MAX_BODY_BYTES, 0)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge { .. } => ApiError::BodyTooLarge,
            BodyError::Unreadable => {
                ApiError::MalformedJson("the body could not be read".to_owned())
            }
        })?;

    let config = Config::load(|name| spin_sdk::variables::get(name).ok())
        .map_err(|err| ApiError::Internal(format!("configuration: {err}")))?;
    let tokens = Tokens::new(&config).map_err(ApiError::Internal)?;
    let store = LazyStore {
        database: &config.database,
        opened: OnceCell::new(),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let request = Request {
        method: &method,
        path: &path,
        authorization: authorization.as_deref(),
        content_type: content_type.as_deref(),
        body: &body,
    };
    let context = Context {
        config: &config,
        tokens: &tokens,
        store: &store,
        now_ms,
    };
    api::handle(&request, &context)
}

/// Opens the database on first use: the JWKS and validate routes never touch it.
struct LazyStore<'a> {
    database: &'a Database,
    opened: OnceCell<Result<Box<dyn UserStore>, StoreError>>,
}

impl LazyStore<'_> {
    fn store(&self) -> Result<&dyn UserStore, StoreError> {
        let opened = self.opened.get_or_init(|| {
            mp3conv_sql::open(self.database)
                .map(|db| Box::new(SqlStore::new(db)) as Box<dyn UserStore>)
                .map_err(|err| StoreError::Other(err.message))
        });
        opened.as_deref().map_err(Clone::clone)
    }
}

impl UserStore for LazyStore<'_> {
    fn find_by_email(&self, email_key: &str) -> Result<Option<User>, StoreError> {
        self.store()?.find_by_email(email_key)
    }
    fn insert(&self, user: &User) -> Result<(), StoreError> {
        self.store()?.insert(user)
    }
    fn reserve_attempt(
        &self,
        email_key: &str,
        now_ms: i64,
        expired_at_or_before_ms: i64,
        max: u32,
    ) -> Result<Reservation, StoreError> {
        self.store()?
            .reserve_attempt(email_key, now_ms, expired_at_or_before_ms, max)
    }
    fn clear_failures(&self, email_key: &str) -> Result<(), StoreError> {
        self.store()?.clear_failures(email_key)
    }
    fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        self.store()?.delete_user(id)
    }
}

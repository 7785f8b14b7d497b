//! The Spin entry point: turns Spin's request, variables and databases into what [`crate::api`]
//! needs, and its [`Reply`](crate::api::Reply) back into a response. No decisions are made here.

use std::cell::OnceCell;

use futures::StreamExt as _;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

use crate::api::{self, ApiError, Context, MAX_BODY_BYTES, Reply, Request};
use crate::config::{Config, Database};
use crate::store::{Reservation, SqlStore, StoreError, User, UserStore};
use crate::tokens::Tokens;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let reply = match serve(request).await {
        Ok(reply) => reply,
        Err(err) => {
            if let ApiError::Internal(cause) = &err {
                eprintln!("auth: internal error: {cause}");
            }
            err.reply()
        }
    };
    send(out, reply).await;
}

async fn serve(request: IncomingRequest) -> Result<Reply, ApiError> {
    let method = request.method().to_string();
    let path_with_query = request.path_with_query().unwrap_or_default();
    let path = path_with_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let declared_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    let body = read_body(request).await?;

    let config =
        Config::load(|name| spin_sdk::variables::get(name).ok()).map_err(ApiError::Internal)?;
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

/// Reads the body, refusing it as soon as it passes the limit.
async fn read_body(request: IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut stream = request.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            ApiError::MalformedJson(format!("the body could not be read: {err:?}"))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn send(out: ResponseOutparam, reply: Reply) {
    let headers: Vec<(String, Vec<u8>)> = reply
        .headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes()))
        .collect();
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid header names"));
    response
        .set_status_code(reply.status)
        .expect("a valid status code");
    out.set_with_body(response, reply.body).await.ok();
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

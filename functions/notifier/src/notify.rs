//! What the notifier does with one event: read it, confirm it with the worker's record of the
//! job (events are not trusted: the job is), record the notification once, tell the owner's
//! live event streams about it (the worker's `POST /internal/events`, best effort), then
//! deliver it by webhook and email, each at most once and with bounded retries.
//!
//! Everything outside (the worker, webhook receivers, the email API, the clock, the log)
//! comes through [`Outside`], so this runs natively in tests against a real SQLite database.
//! Every line logged about an event names it (its id, or `-` before it is read).

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use mp3conv_contract::event::Event;
use mp3conv_contract::job::{Job, JobId, Source, Status};
use mp3conv_sql::Db;
use mp3conv_sql::notifications::{self, Delivery, Notification};
use serde_json::{Value, json};

use crate::config::Config;
use crate::event::{self, CloudEvent, Malformed};
use crate::webhook;

/// The world beyond the database.
pub trait Outside {
    /// The worker's record of a job: `Ok(None)` when the owner has no such job; `Err` when the
    /// worker cannot say now.
    fn job(&self, job_id: &JobId, owner: &str) -> Result<Option<Job>, String>;
    /// Hands `event` to the worker for `owner`'s live event streams; `Err` says why it was
    /// not taken (the caller logs it and goes on).
    fn publish(&self, owner: &str, event: &Event) -> Result<(), String>;
    /// POSTs `body`; the status, or why there is none.
    fn post(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String>;
    fn sleep(&self, duration: Duration);
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
    fn new_id(&self) -> String;
    /// Logs `line` about the event `event_id` (the component adds the request's trace id).
    fn log(&self, event_id: &str, line: &str);
}

/// How a channel fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Not configured (no webhook, no email API, no address).
    Off,
    Delivered {
        attempts: i64,
    },
    Failed {
        attempts: i64,
        error: String,
    },
}

impl Channel {
    fn from_delivery(delivery: &Delivery) -> Channel {
        match delivery.state.as_str() {
            "delivered" => Channel::Delivered {
                attempts: delivery.attempts,
            },
            _ => Channel::Failed {
                attempts: delivery.attempts,
                error: delivery.last_error.clone().unwrap_or_default(),
            },
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Channel::Off => json!({ "state": "off" }),
            Channel::Delivered { attempts } => {
                json!({ "state": "delivered", "attempts": attempts })
            }
            Channel::Failed { attempts, error } => {
                json!({ "state": "failed", "attempts": attempts, "error": error })
            }
        }
    }
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Recorded {
        notification_id: String,
        /// The event, or another about the same outcome, was handled before.
        duplicate: bool,
        webhook: Channel,
        email: Channel,
    },
    /// Nothing to tell anyone (the job was deleted meanwhile).
    Ignored(String),
}

/// Why an event was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It never can be (400: the source must not retry).
    Malformed(String),
    /// It could not be now (503: the source retries).
    Transient(String),
}

impl From<Malformed> for Failure {
    fn from(err: Malformed) -> Failure {
        Failure::Malformed(err.0)
    }
}

fn transient(err: impl std::fmt::Display) -> Failure {
    Failure::Transient(err.to_string())
}

/// Handles one event delivered over HTTP, logging what became of it.
pub fn handle(
    config: &Config,
    db: &dyn Db,
    outside: &dyn Outside,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Outcome, Failure> {
    let event = match event::parse(headers, body) {
        Ok(event) => event,
        Err(Malformed(message)) => {
            outside.log("-", &format!("malformed event: {message}"));
            return Err(Failure::Malformed(message));
        }
    };
    let result = handle_event(config, db, outside, &event);
    let line = match &result {
        Ok(outcome) => outcome.to_string(),
        Err(Failure::Transient(message)) => format!("transient failure: {message}"),
        Err(Failure::Malformed(message)) => format!("malformed event: {message}"),
    };
    outside.log(&event.id, &line);
    result
}

fn handle_event(
    config: &Config,
    db: &dyn Db,
    outside: &dyn Outside,
    event: &CloudEvent,
) -> Result<Outcome, Failure> {
    let announced = event::job_event(event)?;
    let Some(job) = outside
        .job(&announced.job_id, &announced.owner)
        .map_err(Failure::Transient)?
    else {
        return Ok(Outcome::Ignored(
            "the job no longer exists (deleted by its owner)".into(),
        ));
    };
    if job.status != announced.status {
        // Forged or stale: nothing to tell, and answered like any other event so the answer
        // never says what the job is.
        return Ok(Outcome::Ignored(format!(
            "the event says the job is {} but it is {}",
            announced.status, job.status
        )));
    }
    let job_id = announced.job_id.to_string();
    let fresh = notification(config, &job, &event.id, &announced.owner, outside);
    let inserted = notifications::insert(db, &fresh).map_err(transient)?;
    let recorded = if inserted {
        publish(outside, &event.id, &fresh);
        fresh
    } else {
        notifications::find_existing(db, &event.id, &job_id, announced.status.as_str())
            .map_err(transient)?
            .ok_or_else(|| Failure::Transient("the duplicate notification vanished".into()))?
    };
    let deliveries = Deliveries {
        config,
        db,
        outside,
        event_id: &event.id,
    };
    let webhook = deliveries.webhook(&recorded)?;
    let email = deliveries.email(&recorded)?;
    Ok(Outcome::Recorded {
        notification_id: recorded.id,
        duplicate: !inserted,
        webhook,
        email,
    })
}

/// Tells the owner's live streams about a new notification. Never fails the event: streams
/// that miss it resync, and the notification is recorded either way.
fn publish(outside: &dyn Outside, event_id: &str, n: &Notification) {
    let result = n.to_public().and_then(|notification| {
        outside.publish(&n.user_id, &Event::NotificationCreated { notification })
    });
    if let Err(err) = result {
        outside.log(
            event_id,
            &format!("live event for notification {} not published: {err}", n.id),
        );
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Recorded {
                notification_id,
                duplicate,
                webhook,
                email,
            } => write!(
                f,
                "notification {notification_id} {}; webhook {webhook}; email {email}",
                if *duplicate {
                    "already recorded"
                } else {
                    "recorded"
                }
            ),
            Outcome::Ignored(why) => write!(f, "ignored: {why}"),
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Off => f.write_str("off"),
            Channel::Delivered { attempts } => write!(f, "delivered (attempts: {attempts})"),
            Channel::Failed { attempts, error } => {
                write!(f, "failed (attempts: {attempts}; last: {error})")
            }
        }
    }
}

/// The notification for a job in its final state.
fn notification(
    config: &Config,
    job: &Job,
    event_id: &str,
    owner: &str,
    outside: &dyn Outside,
) -> Notification {
    let job_id = job.id.to_string();
    let title = match &job.source {
        Source::Upload { filename, .. } => filename.as_str(),
        // A video page by its title, a link by itself.
        Source::Link { url, .. } => job.source.page_title().unwrap_or(url),
    }
    .chars()
    .take(200)
    .collect::<String>();
    let done = job.status == Status::Done;
    let audio_url = done.then(|| format!("{}/v1/jobs/{job_id}/audio", config.public_url));
    let error_code = job.error.as_ref().map(|e| e.code.clone());
    let message = match (&audio_url, job.error.as_ref().map(|e| e.message.as_str())) {
        (Some(url), _) => format!("Your MP3 of {title} is ready: {url}"),
        (None, Some(reason)) => format!("We could not convert {title}: {reason}"),
        (None, None) => format!("We could not convert {title}."),
    };
    Notification {
        id: outside.new_id(),
        user_id: owner.to_owned(),
        event_id: event_id.to_owned(),
        job_id,
        status: job.status.as_str().to_owned(),
        title,
        message,
        audio_url,
        error_code,
        created_at: outside.now_ms(),
        read_at: None,
    }
}

/// What webhooks and emails carry.
fn payload(n: &Notification, timestamp: &str) -> Value {
    json!({
        "type": format!("job.{}", n.status),
        "timestamp": timestamp,
        "data": {
            "notification_id": n.id,
            "job_id": n.job_id,
            "status": n.status,
            "title": n.title,
            "message": n.message,
            "audio_url": n.audio_url,
            "error_code": n.error_code,
        },
    })
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn whole_ms(duration: Duration) -> Duration {
    Duration::from_millis((duration.as_secs_f64() * 1000.0).round() as u64)
}

/// Delivers one event's notification by webhook and email, logging every attempt.
struct Deliveries<'a> {
    config: &'a Config,
    db: &'a dyn Db,
    outside: &'a dyn Outside,
    event_id: &'a str,
}

impl Deliveries<'_> {
    /// POSTs with up to `config.webhook_attempts` attempts, waiting `webhook_backoff` before
    /// the second and twice as long before each later one (backon's exponential schedule; the
    /// waits go through [`Outside::sleep`]). 2xx is delivered.
    fn with_retries(
        &self,
        channel: &str,
        mut attempt_once: impl FnMut() -> Result<u16, String>,
    ) -> Delivery {
        let attempts = self.config.webhook_attempts;
        let backoff = self.config.webhook_backoff;
        let mut waits = ExponentialBuilder::default()
            .with_min_delay(backoff)
            .with_factor(2.0)
            .with_max_delay(backoff * 1024)
            .with_max_times(attempts.saturating_sub(1) as usize)
            .build();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let error = match attempt_once() {
                Ok(status) if (200..300).contains(&status) => {
                    self.log(channel, attempt, &format!("delivered (answered {status})"));
                    return Delivery {
                        state: "delivered".into(),
                        attempts: i64::from(attempt),
                        last_error: None,
                    };
                }
                Ok(status) => format!("answered {status}"),
                Err(err) => err,
            };
            self.log(channel, attempt, &error);
            match waits.next() {
                // backon computes in floating point; the setting is whole milliseconds.
                Some(wait) => self.outside.sleep(whole_ms(wait)),
                None => {
                    return Delivery {
                        state: "failed".into(),
                        attempts: i64::from(attempt),
                        last_error: Some(error),
                    };
                }
            }
        }
    }

    fn log(&self, channel: &str, attempt: u32, what: &str) {
        let attempts = self.config.webhook_attempts;
        self.outside.log(
            self.event_id,
            &format!("{channel} attempt {attempt}/{attempts}: {what}"),
        );
    }

    fn webhook(&self, n: &Notification) -> Result<Channel, Failure> {
        const CHANNEL: &str = "webhook";
        let (db, outside) = (self.db, self.outside);
        if let Some(done) = notifications::delivery(db, &n.id, CHANNEL).map_err(transient)? {
            return Ok(Channel::from_delivery(&done));
        }
        let Some(hook) = notifications::webhook(db, &n.user_id).map_err(transient)? else {
            return Ok(Channel::Off);
        };
        // The id stays the same across attempts and redeliveries: receivers deduplicate on it.
        let id = format!("msg_{}", n.id);
        let delivery = self.with_retries(CHANNEL, || {
            let now = outside.now_ms();
            let body = payload(n, &rfc3339(now)).to_string();
            let headers = webhook::headers(&hook.secret, &id, now / 1000, body.as_bytes())?;
            outside.post(&hook.url, &headers, body.as_bytes())
        });
        notifications::record_delivery(db, &n.id, CHANNEL, &delivery, outside.now_ms())
            .map_err(transient)?;
        Ok(Channel::from_delivery(&delivery))
    }

    fn email(&self, n: &Notification) -> Result<Channel, Failure> {
        const CHANNEL: &str = "email";
        let (db, outside) = (self.db, self.outside);
        let Some(api) = &self.config.email else {
            return Ok(Channel::Off);
        };
        if let Some(done) = notifications::delivery(db, &n.id, CHANNEL).map_err(transient)? {
            return Ok(Channel::from_delivery(&done));
        }
        let Some(to) = notifications::user_email(db, &n.user_id).map_err(transient)? else {
            return Ok(Channel::Off);
        };
        let subject = match n.status.as_str() {
            "done" => format!("Your MP3 is ready: {}", n.title),
            _ => format!("We could not convert {}", n.title),
        };
        let body = json!({
            "from": api.from,
            "to": to,
            "subject": subject,
            "text": n.message,
        })
        .to_string();
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            // Providers that support it drop a repeated send of the same message.
            ("idempotency-key".to_owned(), n.id.clone()),
        ];
        if let Some(key) = &api.key {
            headers.push((
                "authorization".to_owned(),
                format!("Bearer {}", key.expose()),
            ));
        }
        let delivery = self.with_retries(CHANNEL, || {
            outside.post(api.url.as_str(), &headers, body.as_bytes())
        });
        notifications::record_delivery(db, &n.id, CHANNEL, &delivery, outside.now_ms())
            .map_err(transient)?;
        Ok(Channel::from_delivery(&delivery))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use mp3conv_sql::testing::Sqlite;
    use mp3conv_sql::{Param, notifications::Webhook};

    use super::*;
    use crate::config::{EmailApi, EventsAuth};
    use mp3conv_contract::job::{Bitrate, JobError};
    use mp3conv_contract::message::JobMessage;
    use mp3conv_kit::config::{BaseUrl, HttpUrl, Secret, ServiceToken};

    const JOB_ID: &str = "0192f1a4-7c2b-7d3e-8f00-123456789abc";

    /// A POST the fake received: URL, headers, body.
    type Post = (String, Vec<(String, String)>, Vec<u8>);

    struct Fake {
        job: Option<Job>,
        worker_down: bool,
        /// Statuses the next POSTs answer, in order; then 200.
        answers: RefCell<Vec<Result<u16, String>>>,
        posts: RefCell<Vec<Post>>,
        slept: RefCell<Vec<Duration>>,
        ids: Cell<u32>,
        /// (event id, line) of every line logged.
        logged: RefCell<Vec<(String, String)>>,
        /// (owner, event) of every live event published.
        published: RefCell<Vec<(String, Event)>>,
        /// The worker refuses live events.
        publish_down: bool,
    }

    impl Fake {
        fn with_job(status: Status) -> Fake {
            let mut job = Job::new(
                "u1".into(),
                Source::Upload {
                    filename: "Talk.mp4".into(),
                    content_type: None,
                },
                Bitrate::default(),
            );
            job.id = JOB_ID.parse().unwrap();
            job.status = status;
            if status == Status::Failed {
                job.error = Some(JobError {
                    code: "no_audio".into(),
                    message: "the video has no audio track".into(),
                    field: None,
                });
            }
            Fake {
                job: Some(job),
                worker_down: false,
                answers: RefCell::new(Vec::new()),
                posts: RefCell::new(Vec::new()),
                slept: RefCell::new(Vec::new()),
                ids: Cell::new(0),
                logged: RefCell::new(Vec::new()),
                published: RefCell::new(Vec::new()),
                publish_down: false,
            }
        }
    }

    impl Outside for Fake {
        fn job(&self, job_id: &JobId, owner: &str) -> Result<Option<Job>, String> {
            if self.worker_down {
                return Err("connection refused".into());
            }
            Ok(self
                .job
                .clone()
                .filter(|job| job.id == *job_id && job.owner == owner))
        }
        fn publish(&self, owner: &str, event: &Event) -> Result<(), String> {
            if self.publish_down {
                return Err("the worker answered 503".into());
            }
            self.published
                .borrow_mut()
                .push((owner.to_owned(), event.clone()));
            Ok(())
        }
        fn post(
            &self,
            url: &str,
            headers: &[(String, String)],
            body: &[u8],
        ) -> Result<u16, String> {
            self.posts
                .borrow_mut()
                .push((url.to_owned(), headers.to_vec(), body.to_vec()));
            let mut answers = self.answers.borrow_mut();
            if answers.is_empty() {
                Ok(200)
            } else {
                answers.remove(0)
            }
        }
        fn sleep(&self, duration: Duration) {
            self.slept.borrow_mut().push(duration);
        }
        fn now_ms(&self) -> i64 {
            1_790_000_000_000
        }
        fn new_id(&self) -> String {
            self.ids.set(self.ids.get() + 1);
            format!("n{}", self.ids.get())
        }
        fn log(&self, event_id: &str, line: &str) {
            self.logged
                .borrow_mut()
                .push((event_id.to_owned(), line.to_owned()));
        }
    }

    fn config(email: bool) -> Config {
        Config {
            database: mp3conv_sql::Database::Sqlite.into(),
            worker_url: BaseUrl::new("http://worker").unwrap(),
            worker_token: ServiceToken::new("t".repeat(20)).unwrap(),
            public_url: HttpUrl::new("https://mp3conv.example").unwrap(),
            email: email.then(|| EmailApi {
                url: HttpUrl::new("https://mail.example/send").unwrap(),
                key: Some(Secret::new("key")),
                from: "mp3conv <noreply@mp3conv.example>".into(),
            }),
            webhook_attempts: 3,
            webhook_backoff: Duration::from_millis(200),
            outbound_timeout: Duration::from_secs(5),
            events: EventsAuth::Closed,
        }
    }

    fn database() -> Sqlite {
        let db = Sqlite::migrated();
        db.execute(
            "INSERT INTO users (id, email, email_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            &[
                Param::Text("u1".into()),
                Param::Text("Ann@example.com".into()),
                Param::Text("ann@example.com".into()),
                Param::Text("x".into()),
                Param::Int(1),
            ],
        )
        .unwrap();
        notifications::put_webhook(
            &db,
            &Webhook {
                user_id: "u1".into(),
                url: "https://hooks.example/in".into(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                created_at: 1,
            },
        )
        .unwrap();
        db
    }

    fn event(id: &str, status: Status) -> (Vec<(String, String)>, Vec<u8>) {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            (
                "ce-source",
                "/apis/v1/namespaces/default/rabbitmqsources/mp3#mp3",
            ),
            ("ce-type", "dev.knative.rabbitmq.event"),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let body = JobMessage {
            video_fid: "v".into(),
            mp3_fid: None,
            username: "u1".into(),
            job_id: JOB_ID.parse().unwrap(),
            owner: "u1".into(),
            attempt: 1,
            status,
            audio: None,
            error: None,
        };
        (headers, serde_json::to_vec(&body).unwrap())
    }

    #[test]
    fn a_done_job_is_recorded_and_delivered_once_per_channel() {
        let (db, fake, config) = (database(), Fake::with_job(Status::Done), config(true));
        let (headers, body) = event("e1", Status::Done);
        let outcome = handle(&config, &db, &fake, &headers, &body).unwrap();
        assert_eq!(
            outcome,
            Outcome::Recorded {
                notification_id: "n1".into(),
                duplicate: false,
                webhook: Channel::Delivered { attempts: 1 },
                email: Channel::Delivered { attempts: 1 },
            }
        );
        let posts = fake.posts.borrow().clone();
        assert_eq!(posts.len(), 2);
        let hook: Value = serde_json::from_slice(&posts[0].2).unwrap();
        assert_eq!(hook["type"], "job.done");
        assert_eq!(
            hook["data"]["audio_url"],
            format!("https://mp3conv.example/v1/jobs/{JOB_ID}/audio")
        );
        assert!(
            posts[0]
                .1
                .iter()
                .any(|(n, v)| n == "webhook-id" && v == "msg_n1")
        );
        let mail: Value = serde_json::from_slice(&posts[1].2).unwrap();
        assert_eq!(mail["to"], "Ann@example.com");
        assert_eq!(mail["subject"], "Your MP3 is ready: Talk.mp4");

        // The same event again, and another event about the same outcome: nothing new.
        for id in ["e1", "e2"] {
            let (headers, body) = event(id, Status::Done);
            match handle(&config, &db, &fake, &headers, &body).unwrap() {
                Outcome::Recorded { duplicate, .. } => assert!(duplicate),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(fake.posts.borrow().len(), 2, "no second webhook or email");
        let published = fake.published.borrow().clone();
        assert_eq!(
            published.len(),
            1,
            "one live event, for the new notification only"
        );
        let (owner, Event::NotificationCreated { notification }) = &published[0] else {
            panic!("{published:?}")
        };
        assert_eq!(owner, "u1");
        assert_eq!(notification.id, "n1");
        assert_eq!(notification.job_id.to_string(), JOB_ID);
        assert_eq!(notification.status, Status::Done);
        assert!(!notification.read);
        assert_eq!(
            notifications::list(&db, "u1", false, 10, None)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_failing_webhook_is_retried_a_bounded_number_of_times() {
        let (db, fake, config) = (database(), Fake::with_job(Status::Failed), config(false));
        *fake.answers.borrow_mut() = vec![Ok(500), Err("connection refused".into()), Ok(503)];
        let (headers, body) = event("e1", Status::Failed);
        let outcome = handle(&config, &db, &fake, &headers, &body).unwrap();
        let Outcome::Recorded { webhook, email, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            webhook,
            Channel::Failed {
                attempts: 3,
                error: "answered 503".into()
            }
        );
        assert_eq!(email, Channel::Off);
        assert_eq!(
            *fake.slept.borrow(),
            [Duration::from_millis(200), Duration::from_millis(400)]
        );
        let lines: Vec<String> = fake
            .logged
            .borrow()
            .iter()
            .map(|(event, line)| format!("{event}: {line}"))
            .collect();
        assert_eq!(
            lines,
            [
                "e1: webhook attempt 1/3: answered 500",
                "e1: webhook attempt 2/3: connection refused",
                "e1: webhook attempt 3/3: answered 503",
                "e1: notification n1 recorded; webhook failed (attempts: 3; last: answered 503); email off",
            ]
        );
        // In-app, the failure is there with its reason.
        let recorded = notifications::list(&db, "u1", false, 10, None).unwrap();
        assert_eq!(recorded[0].error_code.as_deref(), Some("no_audio"));
        assert!(recorded[0].message.contains("no audio track"));
        // A redelivery does not start the webhook over.
        handle(&config, &db, &fake, &headers, &body).unwrap();
        assert_eq!(fake.posts.borrow().len(), 3);
    }

    #[test]
    fn a_webhook_that_recovers_is_delivered_once() {
        let (db, fake, config) = (database(), Fake::with_job(Status::Done), config(false));
        *fake.answers.borrow_mut() = vec![Ok(502)];
        let (headers, body) = event("e1", Status::Done);
        let Outcome::Recorded { webhook, .. } =
            handle(&config, &db, &fake, &headers, &body).unwrap()
        else {
            panic!()
        };
        assert_eq!(webhook, Channel::Delivered { attempts: 2 });
        let posts = fake.posts.borrow();
        let id = |i: usize| {
            posts[i]
                .1
                .iter()
                .find(|(n, _)| n == "webhook-id")
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(id(0), id(1), "retries keep the message id");
    }

    #[test]
    fn events_are_checked_against_the_job() {
        let config = config(false);
        let db = database();
        // The worker cannot answer: try again later.
        let mut down = Fake::with_job(Status::Done);
        down.worker_down = true;
        let (headers, body) = event("e1", Status::Done);
        assert!(matches!(
            handle(&config, &db, &down, &headers, &body),
            Err(Failure::Transient(_))
        ));
        // The event claims an outcome the job does not have: nothing to tell.
        let queued = Fake::with_job(Status::Converting);
        assert!(matches!(
            handle(&config, &db, &queued, &headers, &body),
            Ok(Outcome::Ignored(_))
        ));
        // Another owner's job, or a deleted one: nothing to tell.
        let mut gone = Fake::with_job(Status::Done);
        gone.job = None;
        assert!(matches!(
            handle(&config, &db, &gone, &headers, &body).unwrap(),
            Outcome::Ignored(_)
        ));
        assert!(
            notifications::list(&db, "u1", false, 10, None)
                .unwrap()
                .is_empty()
        );
        // Malformed events never reach the worker.
        assert!(matches!(
            handle(&config, &db, &down, &[], b"{}"),
            Err(Failure::Malformed(_))
        ));
    }

    #[test]
    fn a_live_event_that_cannot_be_published_is_logged_and_nothing_else() {
        let (db, mut fake, config) = (database(), Fake::with_job(Status::Done), config(false));
        fake.publish_down = true;
        let (headers, body) = event("e1", Status::Done);
        let outcome = handle(&config, &db, &fake, &headers, &body).unwrap();
        assert!(matches!(
            outcome,
            Outcome::Recorded {
                duplicate: false,
                webhook: Channel::Delivered { attempts: 1 },
                ..
            }
        ));
        let logged = fake.logged.borrow();
        assert!(
            logged.iter().any(|(event, line)| event == "e1"
                && line == "live event for notification n1 not published: the worker answered 503"),
            "{logged:?}"
        );
        assert_eq!(
            notifications::list(&db, "u1", false, 10, None)
                .unwrap()
                .len(),
            1
        );
    }
}

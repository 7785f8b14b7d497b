//! Command-line options, mapped onto the host's typed settings once at start-up.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mp3conv_host::telemetry::LogFormat;
use mp3conv_host::variables::Supplied;
use mp3conv_host::{Host, HostConfig, Limits};

#[derive(Debug, Parser)]
#[command(name = "mp3conv", version, about = "Turns videos into MP3s.")]
pub struct Cli {
    /// Log line format; RUST_LOG sets the level.
    #[arg(
        long,
        global = true,
        env = "MP3CONV_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormatArg,
    /// The mp3conv server the client commands talk to.
    #[arg(
        long,
        global = true,
        env = "MP3CONV_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    server: String,
    /// Client commands: print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Pretty,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> LogFormat {
        match arg {
            LogFormatArg::Pretty => LogFormat::Pretty,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system in one process: the functions, the native worker and the
    /// eventing bridge, on embedded defaults (SQLite, a local blob directory, an in-process
    /// queue) unless flags name real services. Generates development signing keys on first
    /// run and migrates the users database.
    Up(UpArgs),
    /// Run only the function host for a spin.toml, as `spin up` would (the worker runs on its
    /// own); with --eventing and --rabbitmq it also runs the eventing bridge.
    Serve(ServeArgs),
    /// Apply the users database migrations.
    Migrate(MigrateArgs),
    /// Manage token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users (an operator's commands, on the users database).
    #[command(subcommand)]
    Users(UsersCommand),
    #[command(flatten)]
    Client(crate::client::ClientCommand),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct MigrateArgs {
    /// A MySQL/MariaDB URL, e.g. mysql://user:pass@host:3306/mp3conv (created if missing).
    /// With a password, prefer the environment or --mysql-file: `ps` shows command lines.
    #[arg(long, env = "MP3CONV_MIGRATE_MYSQL_URL")]
    mysql: Option<String>,
    /// Read the --mysql URL from this file.
    #[arg(long, env = "MP3CONV_MIGRATE_MYSQL_URL_FILE")]
    mysql_file: Option<PathBuf>,
    /// A SQLite database file (created if missing).
    #[arg(long)]
    sqlite: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Show or set one user's quotas, replacing the worker's defaults for them
    /// (MP3CONV_WORKER__QUOTA__*). Each value is a number, `unlimited`, or `default` (the
    /// worker's again). Without a value, shows the user's limits. A change counts from the
    /// user's next request.
    ///
    /// Example: mp3conv users limit ada@example.com --storage 5GiB --jobs-per-hour 30 --sqlite .mp3conv/sqlite_db.db
    Limit(LimitArgs),
}

#[derive(Debug, Args)]
struct LimitArgs {
    /// The user's email address.
    email: String,
    /// Bytes kept for them: videos not converted yet, MP3s (e.g. 5GiB, 500MB).
    #[arg(long, value_parser = crate::users::Setting::parse_bytes)]
    storage: Option<crate::users::Setting>,
    /// Jobs queued or converting at once.
    #[arg(long, value_parser = crate::users::Setting::parse_count)]
    concurrent_jobs: Option<crate::users::Setting>,
    /// Jobs made per hour.
    #[arg(long, value_parser = crate::users::Setting::parse_count)]
    jobs_per_hour: Option<crate::users::Setting>,
    /// Bytes of one video, uploaded or linked (e.g. 1GiB).
    #[arg(long, value_parser = crate::users::Setting::parse_bytes)]
    max_upload: Option<crate::users::Setting>,
    /// Length of one video (e.g. 2h, 90m).
    #[arg(long, value_parser = crate::users::Setting::parse_duration)]
    max_duration: Option<crate::users::Setting>,
    /// The users database (as for `mp3conv migrate`; `mp3conv up` keeps it in
    /// DATA_DIR/sqlite_db.db).
    #[command(flatten)]
    database: MigrateArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate an Ed25519 signing key (`jwt-signing.pem`, mode 0600) and its `jwks.json`.
    Generate {
        /// Directory to write into; the key file must not exist yet.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Keep users in MySQL/MariaDB at this URL instead of SQLite (e.g.
    /// mysql://root@127.0.0.1:3306/mp3conv; the database is created and migrated).
    #[arg(long, env = "MP3CONV_MYSQL_URL")]
    mysql: Option<String>,
    /// Read the --mysql URL from this file, keeping its password out of `ps`.
    #[arg(long, env = "MP3CONV_MYSQL_URL_FILE", conflicts_with = "mysql")]
    mysql_file: Option<PathBuf>,
    /// Keep videos, MP3s (GridFS) and jobs in MongoDB at this URL instead of local files.
    #[arg(long, env = "MP3CONV_MONGODB_URL")]
    mongodb: Option<String>,
    /// Read the --mongodb URL from this file, keeping its password out of `ps`.
    #[arg(long, env = "MP3CONV_MONGODB_URL_FILE", conflicts_with = "mongodb")]
    mongodb_file: Option<PathBuf>,
    /// MongoDB database for --mongodb.
    #[arg(long, env = "MP3CONV_MONGODB_DATABASE", default_value = "mp3conv")]
    mongodb_database: String,
    /// Carry jobs through RabbitMQ at this AMQP URL instead of the in-process queue. A URL with
    /// a password belongs in the environment or in --rabbitmq-file: `ps` shows command lines.
    #[arg(long, env = "MP3CONV_RABBITMQ_URL")]
    rabbitmq: Option<String>,
    /// Read the --rabbitmq URL from this file (e.g. a mounted secret).
    #[arg(long, env = "MP3CONV_RABBITMQ_URL_FILE", conflicts_with = "rabbitmq")]
    rabbitmq_file: Option<PathBuf>,
    /// Where the worker's internal API listens (loopback only by default; port 0 picks one).
    #[arg(long, env = "MP3CONV_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    worker_listen: SocketAddr,
    /// The eventing bridge's sources [default: eventing.toml beside the manifest, if any].
    #[arg(long, env = "MP3CONV_EVENTING")]
    eventing: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Run the eventing bridge with these sources (eventing.toml); needs --rabbitmq or
    /// --rabbitmq-file.
    #[arg(long, env = "MP3CONV_EVENTING")]
    eventing: Option<PathBuf>,
    /// The RabbitMQ the worker announces on, for the eventing bridge. A URL with a password
    /// belongs in the environment or in --rabbitmq-file: `ps` shows command lines.
    #[arg(long, env = "MP3CONV_RABBITMQ_URL")]
    rabbitmq: Option<String>,
    /// Read the --rabbitmq URL from this file (e.g. a mounted secret).
    #[arg(long, env = "MP3CONV_RABBITMQ_URL_FILE", conflicts_with = "rabbitmq")]
    rabbitmq_file: Option<PathBuf>,
    /// The worker's queue-name prefix (its MP3CONV_WORKER__QUEUE__PREFIX).
    #[arg(long, env = "MP3CONV_QUEUE_PREFIX", default_value = "")]
    queue_prefix: String,
}

#[derive(Debug, Args)]
struct HostArgs {
    /// The application manifest.
    #[arg(long, env = "MP3CONV_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "MP3CONV_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where databases and the compiled-component cache live.
    #[arg(long, env = "MP3CONV_DATA_DIR", default_value = ".mp3conv")]
    data_dir: PathBuf,
    /// Where compiled components are cached [default: DATA_DIR/cache/components].
    #[arg(long, env = "MP3CONV_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Requests handled at once; more are answered 503. Each slot reserves address space
    /// (not memory) for an instance, hence the upper bound.
    #[arg(long, env = "MP3CONV_MAX_CONCURRENT_REQUESTS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_concurrent_requests: u32,
    /// Memory cap of each component instance (e.g. 128MiB).
    #[arg(long, env = "MP3CONV_MEMORY_LIMIT", default_value = "128MiB", value_parser = parse_size)]
    memory_limit: usize,
    /// Work limit of each request (e.g. 60s): the CPU time its guest may use and the time it
    /// may go without progress; a transfer that keeps moving is not cut.
    #[arg(long, env = "MP3CONV_REQUEST_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// How long a request body may stall before the request is answered 408.
    #[arg(long, env = "MP3CONV_BODY_IDLE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    body_idle_timeout: Duration,
    /// How long a client may take to send a request's headers.
    #[arg(long, env = "MP3CONV_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Requests handled at once for one client (an IPv4 address, an IPv6 /64); more are
    /// answered 429.
    #[arg(long, env = "MP3CONV_MAX_REQUESTS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_requests_per_client: u32,
    /// Event streams (GET or HEAD requests of a path ending in /events that accept
    /// text/event-stream) open at once; more are answered 503. Streams have their own slots, apart from --max-concurrent-requests, so
    /// open streams never starve ordinary requests (each reserves an instance's address
    /// space too, hence the upper bound).
    #[arg(long, env = "MP3CONV_MAX_STREAMS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_streams: u32,
    /// Event streams open at once for one client (an IPv4 address, an IPv6 /64); more are
    /// answered 429.
    #[arg(long, env = "MP3CONV_MAX_STREAMS_PER_CLIENT", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_streams_per_client: u32,
    /// PEM root certificates to trust for outbound https besides the Mozilla roots.
    #[arg(long, env = "SSL_CERT_FILE", value_name = "PEM")]
    ssl_cert_file: Option<PathBuf>,
    /// Per-component limits: NAME:memory=64MiB,timeout=10s (repeatable).
    #[arg(long = "component-limit", value_name = "NAME:LIMITS")]
    component_limits: Vec<String>,
    /// How long shutdown waits for requests in flight.
    #[arg(long, env = "MP3CONV_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.parse().map_err(|err| format!("`{text}`: {err}"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("`{text}` is too large"))
}

impl HostArgs {
    fn into_config(self) -> anyhow::Result<HostConfig> {
        if self.memory_limit == 0 {
            anyhow::bail!("--memory-limit must be above zero");
        }
        let limits = Limits {
            memory: self.memory_limit,
            timeout: self.request_timeout,
        };
        let mut component_limits = BTreeMap::new();
        for text in &self.component_limits {
            let (name, overrides) = parse_component_limit(text, limits)
                .with_context(|| format!("--component-limit `{text}`"))?;
            component_limits.insert(name, overrides);
        }
        Ok(HostConfig {
            manifest: self.manifest,
            listen: self.listen,
            data_dir: self.data_dir,
            cache_dir: self.cache_dir,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            max_requests_per_client: self.max_requests_per_client as usize,
            max_streams: self.max_streams as usize,
            max_streams_per_client: self.max_streams_per_client as usize,
            body_idle_timeout: self.body_idle_timeout,
            header_read_timeout: self.header_read_timeout,
            extra_root_certificates: self.ssl_cert_file,
            limits,
            component_limits,
            shutdown_grace: self.shutdown_grace,
            variables: BTreeMap::new(),
            in_process: Vec::new(),
        })
    }
}

/// `NAME:memory=64MiB,timeout=10s`; unset limits keep the defaults.
fn parse_component_limit(text: &str, defaults: Limits) -> anyhow::Result<(String, Limits)> {
    let (name, settings) = text
        .split_once(':')
        .context("expected NAME:memory=SIZE,timeout=DURATION")?;
    let mut limits = defaults;
    for setting in settings.split(',') {
        match setting.split_once('=') {
            Some(("memory", value)) => {
                limits.memory = parse_size(value).map_err(anyhow::Error::msg)?;
                anyhow::ensure!(limits.memory > 0, "memory must be above zero");
            }
            Some(("timeout", value)) => limits.timeout = humantime::parse_duration(value)?,
            _ => anyhow::bail!("unknown setting `{setting}`: use memory=SIZE or timeout=DURATION"),
        }
    }
    Ok((name.to_owned(), limits))
}

/// Runs a command; client commands exit with their documented codes, the rest with 1 on error.
pub async fn run(cli: Cli) -> std::process::ExitCode {
    if let Command::Client(command) = cli.command {
        let outcome = match crate::client::Client::new(&cli.server, cli.json) {
            Ok(client) => client.run(command).await,
            Err(failure) => Err(failure),
        };
        return match outcome {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("mp3conv: {}", failure.message());
                std::process::ExitCode::from(failure.exit_code())
            }
        };
    }
    match serve_command(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mp3conv: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Migrate(MigrateArgs {
            sqlite: Some(path), ..
        }) => crate::migrate::sqlite(&path).await,
        Command::Migrate(MigrateArgs {
            mysql, mysql_file, ..
        }) => match url_from(mysql, mysql_file.as_deref(), "--mysql")? {
            Some(url) => crate::migrate::mysql(&url).await,
            None => unreachable!("clap requires --mysql, --mysql-file or --sqlite"),
        },
        Command::Keys(KeysCommand::Generate { dir }) => {
            let pair = crate::keys::generate()?;
            crate::keys::write(&dir, &pair)?;
            println!("{}", pair.kid());
            Ok(())
        }
        Command::Users(UsersCommand::Limit(args)) => users_limit(args).await,
        Command::Client(_) => unreachable!("handled by run"),
    }
}

async fn users_limit(args: LimitArgs) -> anyhow::Result<()> {
    use mp3conv_contract::quota::Limit;
    let settings: Vec<(Limit, crate::users::Setting)> = [
        (Limit::StorageBytes, args.storage),
        (Limit::ConcurrentJobs, args.concurrent_jobs),
        (Limit::JobsPerHour, args.jobs_per_hour),
        (Limit::MaxUploadBytes, args.max_upload),
        (Limit::MaxDurationSecs, args.max_duration),
    ]
    .into_iter()
    .filter_map(|(limit, setting)| setting.map(|setting| (limit, setting)))
    .collect();
    let MigrateArgs {
        mysql,
        mysql_file,
        sqlite,
    } = args.database;
    let url = url_from(mysql, mysql_file.as_deref(), "--mysql")?;
    let database = match (&sqlite, &url) {
        (Some(path), _) => crate::users::Database::Sqlite(path),
        (None, Some(url)) => crate::users::Database::Mysql(url),
        (None, None) => unreachable!("clap requires --mysql, --mysql-file or --sqlite"),
    };
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let limits = crate::users::limit(database, &args.email, &settings, now_ms).await?;
    print!("{}", crate::users::describe(&args.email, &limits));
    Ok(())
}

/// The whole system on embedded defaults: development keys from the data directory (unless
/// `SPIN_VARIABLE_JWT_*` supply real ones), the users database migrated, then the host.
/// Refuses to start when the environment sets a variable it supplies itself ([`up_supplies`]).
async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    args.mysql = url_from(args.mysql, args.mysql_file.as_deref(), "--mysql")?;
    args.mongodb = url_from(args.mongodb, args.mongodb_file.as_deref(), "--mongodb")?;
    args.rabbitmq = url_from(args.rabbitmq, args.rabbitmq_file.as_deref(), "--rabbitmq")?;
    mp3conv_host::variables::refuse_overrides(&up_supplies(&args), &|name| {
        std::env::var(name).ok()
    })
    .context(
        "`mp3conv up` supplies these variables itself (`mp3conv serve` takes them from the \
         environment)",
    )?;
    let mut config = args.host.into_config()?;
    private_files();
    mp3conv_host::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let keys = crate::keys::load_or_generate(&config.data_dir.join("keys"))?;
    config
        .variables
        .insert("jwt_signing_key".into(), keys.signing_pem.clone());
    config
        .variables
        .insert("jwt_public_keys".into(), keys.jwks_json());
    if let Some(url) = &args.mysql {
        let host = mysql_host(url)?;
        config
            .variables
            .insert("auth_database".into(), "mysql".into());
        config.variables.insert("mysql_url".into(), url.clone());
        config.variables.insert("mysql_host".into(), host);
    }

    // The worker, in this process, behind a token made for this run.
    let mut worker_config = native_worker::Config::from_env_unchecked()?;
    worker_config.place_defaults_under(&config.data_dir);
    let token = crate::keys::random_token()?;
    worker_config.internal_token = Some(token.clone().into());
    if let Some(url) = &args.mongodb {
        worker_config.storage = native_worker::config::StorageConfig::Gridfs {
            url: url.clone().into(),
            database: args.mongodb_database.clone(),
        };
        worker_config.jobs = native_worker::config::JobStoreConfig::Mongo {
            url: url.clone().into(),
            database: args.mongodb_database.clone(),
        };
    }
    if let Some(url) = &args.rabbitmq {
        worker_config.queue.kind = native_worker::config::QueueKind::Rabbitmq;
        worker_config.queue.url = url.clone().into();
    }
    let eventing = match &args.eventing {
        Some(path) => Some(crate::eventing::EventingFile::load(path)?),
        None => {
            let beside = config
                .manifest
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("eventing.toml");
            match beside.exists() {
                true => Some(crate::eventing::EventingFile::load(&beside)?),
                false => {
                    tracing::warn!(
                        "no eventing.toml beside the manifest: notifications are off (give --eventing)"
                    );
                    None
                }
            }
        }
    };
    let queue_prefix = worker_config.queue.prefix.clone();
    let rabbitmq_url = args.rabbitmq.clone().or_else(|| {
        (worker_config.queue.kind == native_worker::config::QueueKind::Rabbitmq)
            .then(|| secrecy::ExposeSecret::expose_secret(&worker_config.queue.url).to_owned())
    });
    let worker_listener = tokio::net::TcpListener::bind(args.worker_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.worker_listen))?;
    let worker_addr = worker_listener.local_addr()?;
    let worker = native_worker::Worker::build(worker_config)
        .await
        .context("starting the worker")?;
    config
        .variables
        .insert("worker_url".into(), format!("http://{worker_addr}"));
    config.variables.insert("worker_token".into(), token);
    // The functions' calls to the worker stay in this process: no loopback socket, no HTTP
    // encoding. The listener still serves anything else that calls the worker's address.
    let api = worker.in_process::<mp3conv_host::connector::LocalBody>();
    config.in_process.push(mp3conv_host::connector::InProcess {
        host: worker_addr.ip().to_string(),
        port: worker_addr.port(),
        service: std::sync::Arc::new(move |request| {
            let answered = api(request);
            Box::pin(async move {
                use http_body_util::BodyExt as _;
                answered
                    .await
                    .map(|body| body.map_err(Into::into).boxed_unsync())
            })
        }),
    });
    let events_token = supply_events_token(&mut config)?;

    let variables = mp3conv_host::app_variables(&config)?;
    match variables.get("auth_database").map(String::as_str) {
        Some("mysql") => {
            let url = variables
                .get("mysql_url")
                .context("auth_database is mysql but mysql_url is not set")?;
            crate::migrate::mysql(url).await?;
        }
        _ => {
            let path = mp3conv_host::spin::sqlite::database_file(&config.data_dir, "default");
            crate::migrate::sqlite(&path).await?;
        }
    }

    let host = Host::build(config).await?;
    announce(&host, Some(worker_addr))?;
    // One signal stops everything, each part draining what it has in flight.
    let stopped = stop_on_signal();
    if let Some(eventing) = eventing {
        let mut memory = worker
            .memory_queue()
            .and_then(native_worker::queue::memory::MemoryQueue::take_announcement_consumer);
        for source in eventing.sources {
            let queue = match (&rabbitmq_url, memory.take()) {
                (Some(url), _) => crate::eventing::Queue::Rabbitmq {
                    url: url.clone(),
                    prefix: queue_prefix.clone(),
                },
                (None, Some(receiver)) => crate::eventing::Queue::Memory(receiver),
                (None, None) => anyhow::bail!(
                    "the in-process queue has one consumer: eventing.toml may list one source"
                ),
            };
            let sink = crate::eventing::Target {
                url: source.sink_url(host.local_addr()),
                token: events_token.clone(),
            };
            tokio::spawn(crate::eventing::run(
                source,
                queue,
                sink,
                until_stopped(stopped.clone()),
            ));
        }
    }
    let worker_stopped = until_stopped(stopped.clone());
    tokio::try_join!(host.run_until_stopped(until_stopped(stopped)), async move {
        worker
            .run_until_stopped(worker_listener, worker_stopped)
            .await
            .context("the worker stopped")
    },)?;
    Ok(())
}

/// The variables `up` supplies and the environment may not replace: the in-process worker's
/// address and its token for the run, and with `--mysql` the users database. (Its development
/// keys and events token are defaults: `SPIN_VARIABLE_JWT_*` and `SPIN_VARIABLE_EVENTS_TOKEN`
/// replace them.)
fn up_supplies(args: &UpArgs) -> Vec<Supplied> {
    let mut supplied = vec![
        Supplied {
            name: "worker_url",
            what: "the worker in this process",
        },
        Supplied {
            name: "worker_token",
            what: "made for this run's worker",
        },
    ];
    if args.mysql.is_some() {
        supplied.extend([
            Supplied {
                name: "auth_database",
                what: "`mysql`, from --mysql",
            },
            Supplied {
                name: "mysql_url",
                what: "--mysql",
            },
            Supplied {
                name: "mysql_host",
                what: "the host of --mysql",
            },
        ]);
    }
    supplied
}

/// SIGTERM or SIGINT, once, for every part that must stop: each waits on its own receiver with
/// [`until_stopped`] and drains what it has in flight.
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        mp3conv_host::shutdown_signal().await;
        let _ = stop.send(true);
    });
    stopped
}

async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The token the notifier requires on `/events` and the eventing bridge sends: the manifest's
/// `events_token` (`SPIN_VARIABLE_EVENTS_TOKEN`) when given, else one made for this run, so
/// `/events` is never open to whoever reaches the listener.
fn supply_events_token(config: &mut HostConfig) -> anyhow::Result<String> {
    config
        .variables
        .insert("events_token".into(), crate::keys::random_token()?);
    let token = mp3conv_host::app_variables(config)?
        .get("events_token")
        .map(|token| token.trim().to_owned())
        .unwrap_or_default();
    // The notifier refuses shorter ones; say so now rather than dead-letter every event.
    anyhow::ensure!(
        token.is_empty() || token.chars().count() >= 16,
        "SPIN_VARIABLE_EVENTS_TOKEN must be at least 16 characters (unset, one is made for the run)"
    );
    Ok(token)
}

/// A service URL given as itself (flag or environment variable) or in a file (`--*-file`, its
/// surrounding whitespace dropped). Files and the environment keep passwords out of `ps`.
fn url_from(
    direct: Option<String>,
    file: Option<&std::path::Path>,
    flag: &str,
) -> anyhow::Result<Option<String>> {
    let (None, Some(path)) = (&direct, file) else {
        return Ok(direct);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {flag} URL from {}", path.display()))?;
    let url = text.trim();
    anyhow::ensure!(!url.is_empty(), "{} holds no {flag} URL", path.display());
    Ok(Some(url.to_owned()))
}

/// `host:port` of a MySQL URL, for `allowed_outbound_hosts`.
fn mysql_host(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("mysql://")
        .context("--mysql must be a mysql:// URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    anyhow::ensure!(!host_port.is_empty(), "--mysql names no host");
    Ok(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:3306")
    })
}

/// Prints where the system listens. Tests and scripts read the first line.
fn announce(host: &Host, worker: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Serving http://{}", host.local_addr())?;
    writeln!(out, "Available Routes:")?;
    for (route, component) in host.routes() {
        writeln!(out, "  {component}: http://{}{route}", host.local_addr())?;
    }
    if let Some(worker) = worker {
        writeln!(out, "Worker internal API (not public): http://{worker}")?;
    }
    out.flush()?;
    Ok(())
}

/// Files and directories this process creates (users database and its WAL, job store, blobs,
/// keys, caches) are readable by this user only: umask 077.
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    private_files();
    args.rabbitmq = url_from(args.rabbitmq, args.rabbitmq_file.as_deref(), "--rabbitmq")?;
    anyhow::ensure!(
        args.eventing.is_none() || args.rabbitmq.is_some(),
        "--eventing needs --rabbitmq or --rabbitmq-file (or MP3CONV_RABBITMQ_URL)"
    );
    let eventing = args
        .eventing
        .as_deref()
        .map(crate::eventing::EventingFile::load)
        .transpose()?;
    let mut config = args.host.into_config()?;
    let events_token = supply_events_token(&mut config)?;
    let host = Host::build(config).await?;
    announce(&host, None)?;
    let stopped = stop_on_signal();
    if let (Some(eventing), Some(url)) = (eventing, args.rabbitmq) {
        for source in eventing.sources {
            let sink = crate::eventing::Target {
                url: source.sink_url(host.local_addr()),
                token: events_token.clone(),
            };
            let queue = crate::eventing::Queue::Rabbitmq {
                url: url.clone(),
                prefix: args.queue_prefix.clone(),
            };
            tokio::spawn(crate::eventing::run(
                source,
                queue,
                sink,
                until_stopped(stopped.clone()),
            ));
        }
    }
    host.run_until_stopped(until_stopped(stopped)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_hosts() {
        assert_eq!(mysql_host("mysql://root@db:3307/x").unwrap(), "db:3307");
        assert_eq!(
            mysql_host("mysql://u:p@127.0.0.1/x").unwrap(),
            "127.0.0.1:3306"
        );
        assert!(mysql_host("postgres://x").is_err());
    }

    #[test]
    fn service_urls_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amqp-url");
        std::fs::write(&file, "amqp://u:secret@127.0.0.1:5672/%2f\n").unwrap();
        assert_eq!(
            url_from(None, Some(&file), "--rabbitmq")
                .unwrap()
                .as_deref(),
            Some("amqp://u:secret@127.0.0.1:5672/%2f")
        );
        assert_eq!(url_from(None, None, "--rabbitmq").unwrap(), None);
        std::fs::write(&file, " \n").unwrap();
        assert!(url_from(None, Some(&file), "--rabbitmq").is_err());
        assert!(url_from(None, Some(&dir.path().join("none")), "--rabbitmq").is_err());
        let both = [
            "mp3conv",
            "up",
            "--rabbitmq",
            "amqp://x",
            "--rabbitmq-file",
            "f",
        ];
        assert!(Cli::try_parse_from(both).is_err());
    }

    /// What a user gets without flags is what the host documents and defaults to.
    #[test]
    fn host_defaults() {
        for subcommand in ["up", "serve"] {
            let cli = Cli::try_parse_from(["mp3conv", subcommand]).unwrap();
            let args = match cli.command {
                Command::Up(args) => args.host,
                Command::Serve(args) => args.host,
                _ => unreachable!(),
            };
            let config = args.into_config().unwrap();
            let defaults = HostConfig::new("spin.toml".into());
            assert_eq!(config.limits, defaults.limits);
            assert_eq!(config.limits.timeout, Duration::from_secs(60));
            assert_eq!(config.body_idle_timeout, Duration::from_secs(10));
            assert_eq!(config.body_idle_timeout, defaults.body_idle_timeout);
            assert_eq!(config.header_read_timeout, Duration::from_secs(10));
            assert_eq!(config.header_read_timeout, defaults.header_read_timeout);
            assert_eq!(config.max_concurrent_requests, 128);
            assert_eq!(config.max_requests_per_client, 64);
            assert_eq!(
                config.max_requests_per_client,
                defaults.max_requests_per_client
            );
            assert_eq!(config.max_streams, 1024);
            assert_eq!(config.max_streams, defaults.max_streams);
            assert_eq!(config.max_streams_per_client, 16);
            assert_eq!(
                config.max_streams_per_client,
                defaults.max_streams_per_client
            );
        }
    }

    /// The stream caps reach the host from both commands, and stay within their bounds.
    #[test]
    fn stream_caps_are_host_options() {
        for subcommand in ["up", "serve"] {
            let argv = [
                "mp3conv",
                subcommand,
                "--max-streams",
                "3",
                "--max-streams-per-client",
                "2",
            ];
            let args = match Cli::try_parse_from(argv).unwrap().command {
                Command::Up(args) => args.host,
                Command::Serve(args) => args.host,
                _ => unreachable!(),
            };
            let config = args.into_config().unwrap();
            assert_eq!(config.max_streams, 3);
            assert_eq!(config.max_streams_per_client, 2);
            assert_eq!(
                config.max_concurrent_requests, 128,
                "the ordinary cap is apart"
            );
            for bad in [
                ["--max-streams", "0"],
                ["--max-streams", "4097"],
                ["--max-streams-per-client", "0"],
                ["--max-streams-per-client", "many"],
            ] {
                let argv = ["mp3conv", subcommand, bad[0], bad[1]];
                assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
            }
        }
    }

    /// `up` refuses a stray worker address or token always, and database variables only when
    /// `--mysql` supplies them; its keys and events token stay open to the environment.
    #[test]
    fn up_supplies_the_worker_always_and_the_database_with_mysql() {
        let names = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Command::Up(args) => up_supplies(&args)
                .into_iter()
                .map(|supplied| supplied.name)
                .collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        assert_eq!(names(&["mp3conv", "up"]), ["worker_url", "worker_token"]);
        assert_eq!(
            names(&["mp3conv", "up", "--mysql", "mysql://root@db/x"]),
            [
                "worker_url",
                "worker_token",
                "auth_database",
                "mysql_url",
                "mysql_host"
            ]
        );
    }

    #[test]
    fn component_limits() {
        let defaults = Limits::default();
        let (name, limits) =
            parse_component_limit("gateway:memory=64MiB,timeout=5s", defaults).unwrap();
        assert_eq!(name, "gateway");
        assert_eq!(limits.memory, 64 << 20);
        assert_eq!(limits.timeout, Duration::from_secs(5));
        let (_, limits) = parse_component_limit("auth:timeout=1s", defaults).unwrap();
        assert_eq!(limits.memory, defaults.memory);
        for bad in [
            "gateway",
            "gateway:memory=lots",
            "gateway:cpu=2",
            "g:memory=0",
        ] {
            assert!(parse_component_limit(bad, defaults).is_err(), "{bad}");
        }
    }
}

//! Runtime configuration: the only code that reads environment variables.
//!
//! Every variable is read once, defaulted, validated and turned into a typed field. A bad value is
//! reported as one line that names the variable and the value, so start-up can stop with it.
//! Every numeric variable has a range (the `*_RANGE` constants) and is read by one rule,
//! `Var::number_or`, so a value outside it is refused the same way for each.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine;
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;

/// Every environment variable the server reads: its name, its default as `--help` shows it
/// (`None`: unset), and what it does, in a line. Tests hold it to [`Config::from_lookup`]: every
/// variable read is here, and each default here is the one applied.
pub const SETTINGS: &[(&str, Option<&str>, &str)] = &[
    (
        "HOST",
        Some("0.0.0.0"),
        "bind address (an IP address, or localhost)",
    ),
    ("PORT", Some("8080"), "TCP port, 0 to 65535 (0: a free one)"),
    (
        "API_PREFIX",
        Some("/api/v1"),
        "prefix of every API route (\"\": the root)",
    ),
    (
        "DATA_DIR",
        Some("./data"),
        "folder of books.json, auction.json and things.json",
    ),
    (
        "RUST_LOG",
        Some("info"),
        "log filter (tracing EnvFilter syntax)",
    ),
    ("LOG_FORMAT", Some("text"), "text or json"),
    (
        "MAX_BODY_BYTES",
        Some("65536"),
        "largest request body; larger is 413",
    ),
    (
        "REQUEST_TIMEOUT_SECS",
        Some("10"),
        "longest a request may take; longer is 408",
    ),
    (
        "HEADER_READ_TIMEOUT_SECS",
        Some("10"),
        "time a client has to send its request headers",
    ),
    (
        "WRITE_TIMEOUT_SECS",
        Some("20"),
        "time a client has to read what is written to it",
    ),
    (
        "MAX_CONNECTIONS",
        Some("1024"),
        "most connections open at once",
    ),
    (
        "SECRET_KEY",
        None,
        "the echo API's shared key (unset: echo answers 503)",
    ),
    (
        "CORS_ALLOWED_ORIGINS",
        None,
        "comma-separated origins, or *",
    ),
    (
        "RATE_LIMIT_PER_SECOND",
        Some("0"),
        "requests per second per client IP (0: off)",
    ),
    (
        "RATE_LIMIT_BURST",
        Some("0"),
        "requests a client may send at once (0: a second's worth)",
    ),
    (
        "MAX_RECORDS_PER_RESOURCE",
        Some("250000"),
        "most books, users, items and bids, each",
    ),
    (
        "FEED_HISTORY",
        Some("100"),
        "events kept per item for feeds that reconnect",
    ),
    (
        "FEED_MAX_OPEN",
        Some("1000"),
        "most item feeds open at once; more are 503",
    ),
    (
        "FEED_HEARTBEAT_SECS",
        Some("15"),
        "a quiet feed sends a comment line this often",
    ),
    (
        "IDEMPOTENCY_RETENTION_SECS",
        Some("86400"),
        "how long an Idempotency-Key's answer is kept",
    ),
    (
        "IDEMPOTENCY_MAX_KEYS",
        Some("100000"),
        "most Idempotency-Keys kept at once",
    ),
    (
        "TLS_CERT_PATH",
        None,
        "PEM certificate chain: with TLS_KEY_PATH, serve HTTPS",
    ),
    ("TLS_KEY_PATH", None, "PEM private key for TLS_CERT_PATH"),
    (
        "TLS_SELF_SIGNED",
        Some("false"),
        "true: HTTPS with a certificate made at start-up",
    ),
    (
        "DATABASE_URL",
        None,
        "postgres://…: keep records in PostgreSQL instead of memory",
    ),
    (
        "DATABASE_MAX_CONNECTIONS",
        Some("16"),
        "connections in the pool, per replica",
    ),
    (
        "DATABASE_STATEMENT_TIMEOUT_SECS",
        Some("5"),
        "longest one statement, or a wait for a connection",
    ),
    (
        "DATABASE_STARTUP_TIMEOUT_SECS",
        Some("30"),
        "how long start-up retries the database",
    ),
];

/// The environment variables and their defaults, for `--help`.
pub fn settings_help() -> String {
    let width = SETTINGS
        .iter()
        .map(|(name, ..)| name.len())
        .max()
        .unwrap_or(0);
    let mut help = String::from(
        "Environment (also read from a .env file in the working directory; the README's \
         Configuration section has the ranges):\n",
    );
    for (name, default, meaning) in SETTINGS {
        let default = default.map_or("unset".to_owned(), |value| format!("default {value}"));
        help.push_str(&format!("  {name:width$}  {meaning} [{default}]\n"));
    }
    help
}

/// The server's configuration, built by [`Config::from_env`] or, in tests, [`Config::for_tests`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to bind (`HOST`, `PORT`).
    pub bind: SocketAddr,
    /// Prefix of every API route (`API_PREFIX`): empty, or `/` followed by a path without a
    /// trailing `/`.
    pub api_prefix: String,
    /// Folder holding the seed files (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// Log filter in `EnvFilter` syntax (`RUST_LOG`); validated at load.
    pub log_filter: String,
    /// How log lines are written (`LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, in [`MAX_BODY_BYTES_RANGE`]).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 408 (`REQUEST_TIMEOUT_SECS`, in
    /// [`TIMEOUT_SECS_RANGE`]).
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers before its connection is closed
    /// (`HEADER_READ_TIMEOUT_SECS`, in [`TIMEOUT_SECS_RANGE`]): the defence against slowloris. It
    /// also bounds the wait for a new connection's first byte, and how long an HTTP/2 connection
    /// may stay silent before it is pinged.
    pub header_read_timeout: Duration,
    /// Longest a write to a client may stay blocked, because the client does not read, before
    /// its connection is closed (`WRITE_TIMEOUT_SECS`); also how long an HTTP/2 client has to
    /// answer a keep-alive ping.
    pub write_timeout: Duration,
    /// Most connections held open at once (`MAX_CONNECTIONS`), lowered at start-up to fit the
    /// process's file-descriptor limit.
    pub max_connections: usize,
    /// The echo API's shared key (`SECRET_KEY`); `None` makes the echo API answer 503.
    pub secret_key: Option<SecretString>,
    /// Whether and how to serve HTTPS (`TLS_CERT_PATH`, `TLS_KEY_PATH`, `TLS_SELF_SIGNED`).
    pub tls: TlsMode,
    /// Origins allowed by CORS (`CORS_ALLOWED_ORIGINS`).
    pub cors: CorsOrigins,
    /// Per-client-IP rate limit (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, each in
    /// [`RATE_RANGE`]); `None` is off.
    pub rate_limit: Option<RateLimit>,
    /// The most records each resource (books, users, items, bids) may hold
    /// (`MAX_RECORDS_PER_RESOURCE`); past it a create is refused with 507.
    pub max_records: usize,
    /// The PostgreSQL store (`DATABASE_URL` and the `DATABASE_*` settings); `None` keeps every
    /// record in memory.
    pub database: Option<DatabaseConfig>,
    /// Item feeds (`FEED_*`).
    pub feeds: FeedConfig,
    /// Retries of POSTs (`IDEMPOTENCY_*`).
    pub idempotency: IdempotencyConfig,
}

/// The live feeds of items (`GET /items/{id}/events`).
#[derive(Debug, Clone, Copy)]
pub struct FeedConfig {
    /// Events kept per item for a reader that reconnects (`FEED_HISTORY`).
    pub history: usize,
    /// Most feeds open at once (`FEED_MAX_OPEN`); more are answered 503.
    pub max_open: usize,
    /// How often a quiet feed sends a comment line (`FEED_HEARTBEAT_SECS`).
    pub heartbeat: Duration,
}

/// `Idempotency-Key` on POST.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyConfig {
    /// How long a key's answer is kept (`IDEMPOTENCY_RETENTION_SECS`).
    pub retention: Duration,
    /// Most keys kept at once (`IDEMPOTENCY_MAX_KEYS`).
    pub max_keys: usize,
}

/// How to reach and use PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; secret, because it may carry a password.
    pub url: SecretString,
    /// The URL with its password replaced by `***`: the only form that may be logged.
    pub redacted_url: String,
    /// Most connections in the pool (`DATABASE_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// Longest one statement may run, and longest a request waits for a pooled connection
    /// (`DATABASE_STATEMENT_TIMEOUT_SECS`); past it the request is answered 503.
    pub statement_timeout: Duration,
    /// How long start-up keeps retrying an unreachable database before it exits 1
    /// (`DATABASE_STARTUP_TIMEOUT_SECS`).
    pub startup_timeout: Duration,
}

/// How the server speaks HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    Off,
    /// HTTPS with a certificate chain and a private key from PEM files, re-read on SIGHUP.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// HTTPS with a certificate generated at start-up, for local testing only.
    SelfSigned,
}

/// Which cross-origin callers may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers are sent.
    None,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins.
    List(Vec<HeaderValue>),
}

/// A token bucket per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: u32,
    /// Bucket size: how many requests may come at once.
    pub burst: u32,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Text,
    /// One JSON object per line, for a log shipper.
    Json,
}

/// A configuration variable with a value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub variable: &'static str,
    /// The value as it was given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

const DEFAULT_PORT: u16 = 8080;
const DEFAULT_PREFIX: &str = "/api/v1";
const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 20;
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
// Two connections per core of a small database server, times a few: enough to keep PostgreSQL
// busy without making it switch between hundreds of backends.
const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 16;
// Under the default request timeout (10 s), so a slow database is a 503, not a 408.
const DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECS: u64 = 5;
const DEFAULT_DATABASE_STARTUP_TIMEOUT_SECS: u64 = 30;
/// Events kept per item for feeds that reconnect (`FEED_HISTORY`).
pub const DEFAULT_FEED_HISTORY: usize = 100;
const DEFAULT_FEED_MAX_OPEN: usize = 1000;
const DEFAULT_FEED_HEARTBEAT_SECS: u64 = 15;
const DEFAULT_IDEMPOTENCY_RETENTION_SECS: u64 = 24 * 3600;
const DEFAULT_IDEMPOTENCY_MAX_KEYS: usize = 100_000;

// The ranges of the numeric settings (README configuration table). Each is small enough that
// nothing downstream can overflow: timeouts plus the shutdown grace stay far from `Duration`'s and
// tokio's limits, and a rate of 1 000 000/s is still a whole number of nanoseconds per token.

/// Values `PORT` may take; 0 picks a free port.
pub const PORT_RANGE: RangeInclusive<u16> = 0..=u16::MAX;
/// Values `MAX_BODY_BYTES` may take: 1 byte to 1 GiB.
pub const MAX_BODY_BYTES_RANGE: RangeInclusive<usize> = 1..=1 << 30;
/// Values `REQUEST_TIMEOUT_SECS` and `HEADER_READ_TIMEOUT_SECS` may take: 1 s to an hour.
pub const TIMEOUT_SECS_RANGE: RangeInclusive<u64> = 1..=3_600;
/// Values `MAX_CONNECTIONS` may take.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 1..=1_000_000;
/// Values `MAX_RECORDS_PER_RESOURCE` may take: 1 to 100 million records per resource.
pub const MAX_RECORDS_RANGE: RangeInclusive<usize> = 1..=100_000_000;
/// Values `DATABASE_MAX_CONNECTIONS` may take.
pub const DATABASE_MAX_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_000;
/// Values `DATABASE_STATEMENT_TIMEOUT_SECS` may take.
pub const DATABASE_STATEMENT_TIMEOUT_SECS_RANGE: RangeInclusive<u64> = 1..=600;
/// Values `FEED_HISTORY` may take.
pub const FEED_HISTORY_RANGE: RangeInclusive<usize> = 0..=100_000;
/// Values `FEED_MAX_OPEN` may take; 0 turns feeds off.
pub const FEED_MAX_OPEN_RANGE: RangeInclusive<usize> = 0..=1_000_000;
/// Values `IDEMPOTENCY_RETENTION_SECS` may take: a minute to 30 days.
pub const IDEMPOTENCY_RETENTION_SECS_RANGE: RangeInclusive<u64> = 60..=30 * 86_400;
/// Values `IDEMPOTENCY_MAX_KEYS` may take.
pub const IDEMPOTENCY_MAX_KEYS_RANGE: RangeInclusive<usize> = 1..=10_000_000;
/// Values `DATABASE_STARTUP_TIMEOUT_SECS` may take; 0 tries once.
pub const DATABASE_STARTUP_TIMEOUT_SECS_RANGE: RangeInclusive<u64> = 0..=3_600;
/// Values `RATE_LIMIT_PER_SECOND` and `RATE_LIMIT_BURST` may take; 0 is off (rate) or one
/// second's worth (burst).
pub const RATE_RANGE: RangeInclusive<u32> = 0..=1_000_000;

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the configuration through `lookup`, which maps a variable name to its value.
    ///
    /// Separate from [`Config::from_env`] so that tests can check the rules without touching the
    /// process environment (`set_var` is racy across parallel tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| Var {
            name,
            value: lookup(name),
        };
        let host = var("HOST").parse_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), parse_host)?;
        let port = var("PORT").number_or(DEFAULT_PORT, PORT_RANGE)?;
        Ok(Self {
            bind: SocketAddr::new(host, port),
            api_prefix: var("API_PREFIX").parse_or(DEFAULT_PREFIX.to_owned(), normalize_prefix)?,
            data_dir: var("DATA_DIR").parse_or(PathBuf::from("./data"), |v| {
                if v.is_empty() {
                    Err("expected a folder path".to_owned())
                } else {
                    Ok(PathBuf::from(v))
                }
            })?,
            log_filter: var("RUST_LOG").parse_or("info".to_owned(), |v| {
                EnvFilter::try_new(v)
                    .map(|_| v.to_owned())
                    .map_err(|e| format!("not a log filter: {e}"))
            })?,
            log_format: var("LOG_FORMAT").parse_or(LogFormat::Text, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected `text` or `json`".to_owned()),
                }
            })?,
            max_body_bytes: var("MAX_BODY_BYTES")
                .number_or(DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_RANGE)?,
            request_timeout: Duration::from_secs(
                var("REQUEST_TIMEOUT_SECS").number_or(DEFAULT_TIMEOUT_SECS, TIMEOUT_SECS_RANGE)?,
            ),
            header_read_timeout: Duration::from_secs(
                var("HEADER_READ_TIMEOUT_SECS")
                    .number_or(DEFAULT_HEADER_TIMEOUT_SECS, TIMEOUT_SECS_RANGE)?,
            ),
            write_timeout: Duration::from_secs(
                var("WRITE_TIMEOUT_SECS")
                    .number_or(DEFAULT_WRITE_TIMEOUT_SECS, TIMEOUT_SECS_RANGE)?,
            ),
            max_connections: var("MAX_CONNECTIONS")
                .number_or(DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_RANGE)?,
            // Never echoed in an error: the value is a secret.
            secret_key: lookup("SECRET_KEY")
                .filter(|v| !v.is_empty())
                .map(SecretString::from),
            tls: tls_mode(&var)?,
            cors: var("CORS_ALLOWED_ORIGINS").parse_or(CorsOrigins::None, parse_origins)?,
            rate_limit: rate_limit(&var)?,
            max_records: var("MAX_RECORDS_PER_RESOURCE")
                .number_or(crate::store::DEFAULT_MAX_RECORDS, MAX_RECORDS_RANGE)?,
            database: database(&var)?,
            feeds: FeedConfig {
                history: var("FEED_HISTORY").number_or(DEFAULT_FEED_HISTORY, FEED_HISTORY_RANGE)?,
                max_open: var("FEED_MAX_OPEN")
                    .number_or(DEFAULT_FEED_MAX_OPEN, FEED_MAX_OPEN_RANGE)?,
                heartbeat: Duration::from_secs(
                    var("FEED_HEARTBEAT_SECS")
                        .number_or(DEFAULT_FEED_HEARTBEAT_SECS, TIMEOUT_SECS_RANGE)?,
                ),
            },
            idempotency: IdempotencyConfig {
                retention: Duration::from_secs(var("IDEMPOTENCY_RETENTION_SECS").number_or(
                    DEFAULT_IDEMPOTENCY_RETENTION_SECS,
                    IDEMPOTENCY_RETENTION_SECS_RANGE,
                )?),
                max_keys: var("IDEMPOTENCY_MAX_KEYS")
                    .number_or(DEFAULT_IDEMPOTENCY_MAX_KEYS, IDEMPOTENCY_MAX_KEYS_RANGE)?,
            },
        })
    }

    /// A configuration for tests: defaults, seeded from `data_dir`, bound to `127.0.0.1:0`.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::from_lookup(|_| None).expect("the defaults are valid");
        config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config.data_dir = data_dir.into();
        config
    }
}

/// Reads `DATABASE_URL` and the settings that only matter with it.
fn database(var: &impl Fn(&'static str) -> Var) -> Result<Option<DatabaseConfig>, ConfigError> {
    let Some(url) = var("DATABASE_URL").value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let url = url.trim().to_owned();
    let redacted_url = redact_database_url(&url).map_err(|reason| ConfigError {
        variable: "DATABASE_URL",
        // Never the value itself: it may hold a password.
        value: "(not shown: it may hold a password)".to_owned(),
        reason,
    })?;
    Ok(Some(DatabaseConfig {
        url: SecretString::from(url),
        redacted_url,
        max_connections: var("DATABASE_MAX_CONNECTIONS").number_or(
            DEFAULT_DATABASE_MAX_CONNECTIONS,
            DATABASE_MAX_CONNECTIONS_RANGE,
        )?,
        statement_timeout: Duration::from_secs(var("DATABASE_STATEMENT_TIMEOUT_SECS").number_or(
            DEFAULT_DATABASE_STATEMENT_TIMEOUT_SECS,
            DATABASE_STATEMENT_TIMEOUT_SECS_RANGE,
        )?),
        startup_timeout: Duration::from_secs(var("DATABASE_STARTUP_TIMEOUT_SECS").number_or(
            DEFAULT_DATABASE_STARTUP_TIMEOUT_SECS,
            DATABASE_STARTUP_TIMEOUT_SECS_RANGE,
        )?),
    }))
}

/// Checks that `url` is a PostgreSQL URL and gives it back with any password replaced by `***`.
/// The reasons never quote the URL.
fn redact_database_url(url: &str) -> Result<String, String> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| format!("not a URL ({e}); expected postgres://…"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme is {:?}; expected postgres:// or postgresql://",
            parsed.scheme()
        ));
    }
    <sqlx::postgres::PgConnectOptions as FromStr>::from_str(url)
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
    if parsed.password().is_some() {
        parsed
            .set_password(Some("***"))
            .map_err(|()| "the URL cannot carry a password".to_owned())?;
    }
    Ok(parsed.to_string())
}

/// Reads the three TLS variables and checks that they agree.
fn tls_mode(var: &impl Fn(&'static str) -> Var) -> Result<TlsMode, ConfigError> {
    let path = |name| {
        var(name).parse_or(None, |v| {
            std::fs::File::open(v)
                .map(|_| Some(PathBuf::from(v)))
                .map_err(|e| format!("cannot read the file: {e}"))
        })
    };
    let cert = path("TLS_CERT_PATH")?;
    let key = path("TLS_KEY_PATH")?;
    let self_signed =
        var("TLS_SELF_SIGNED").parse_or(false, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })?;
    let refuse = |variable: &'static str, value: String, reason: &str| ConfigError {
        variable,
        value,
        reason: reason.to_owned(),
    };
    match (cert, key, self_signed) {
        (Some(_), _, true) | (_, Some(_), true) => Err(refuse(
            "TLS_SELF_SIGNED",
            "true".to_owned(),
            "conflicts with TLS_CERT_PATH/TLS_KEY_PATH: use one or the other",
        )),
        (Some(cert), Some(key), false) => Ok(TlsMode::Files { cert, key }),
        (Some(cert), None, false) => Err(refuse(
            "TLS_KEY_PATH",
            String::new(),
            &format!(
                "TLS_CERT_PATH is set ({}), so TLS_KEY_PATH must be too",
                cert.display()
            ),
        )),
        (None, Some(key), false) => Err(refuse(
            "TLS_CERT_PATH",
            String::new(),
            &format!(
                "TLS_KEY_PATH is set ({}), so TLS_CERT_PATH must be too",
                key.display()
            ),
        )),
        (None, None, true) => Ok(TlsMode::SelfSigned),
        (None, None, false) => Ok(TlsMode::Off),
    }
}

fn parse_origins(value: &str) -> Result<CorsOrigins, String> {
    if value == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let well_formed = authority.is_some_and(|a| !a.is_empty() && !a.contains('/'));
        if !well_formed {
            return Err(format!(
                "{origin:?} is not an origin: expected `*` or a comma-separated list such as \
                 https://example.com,http://localhost:3000"
            ));
        }
        origins.push(HeaderValue::from_str(origin).map_err(|e| e.to_string())?);
    }
    Ok(if origins.is_empty() {
        CorsOrigins::None
    } else {
        CorsOrigins::List(origins)
    })
}

fn rate_limit(var: &impl Fn(&'static str) -> Var) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = var("RATE_LIMIT_PER_SECOND").number_or(0, RATE_RANGE)?;
    let burst = var("RATE_LIMIT_BURST").number_or(0, RATE_RANGE)?;
    Ok((per_second > 0).then_some(RateLimit {
        per_second,
        // A burst of 0 could never let a request through; default it to one second's worth.
        burst: if burst == 0 { per_second } else { burst },
    }))
}

/// A fresh random key for `SECRET_KEY`: 32 bytes from the OS, as URL-safe base64 (43 characters).
pub fn generate_secret_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// One variable's raw value, kept with its name for error messages.
struct Var {
    name: &'static str,
    value: Option<String>,
}

impl Var {
    /// Parses the value, or gives `default` when the variable is unset or empty.
    ///
    /// An empty value counts as unset because `.env` files and compose files often write
    /// `NAME=` to mean "leave the default". `API_PREFIX` is the exception: empty is a real value.
    fn parse_or<T>(
        self,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.value {
            None => Ok(default),
            Some(v) if v.trim().is_empty() && self.name != "API_PREFIX" => Ok(default),
            Some(v) => parse(v.trim()).map_err(|reason| ConfigError {
                variable: self.name,
                value: v,
                reason,
            }),
        }
    }

    /// Parses a whole number in `range`, or gives `default` when unset or empty.
    fn number_or<T>(self, default: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display,
    {
        self.parse_or(default, |v| parse_in_range(v, &range))
    }
}

/// Parses `value` as a whole number in `range`: plain decimal digits only, so a sign, a fraction,
/// an exponent or a number too large for `T` get the same message naming the range.
fn parse_in_range<T>(value: &str, range: &RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let all_digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    all_digits
        .then(|| value.parse::<T>().ok())
        .flatten()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

fn parse_host(value: &str) -> Result<IpAddr, String> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    value
        .parse()
        .map_err(|_| "expected an IP address such as 0.0.0.0, 127.0.0.1 or ::".to_owned())
}

/// Normalises an API prefix: a leading `/`, no trailing `/`; `/` alone means the root (empty).
fn normalize_prefix(value: &str) -> Result<String, String> {
    let trimmed = value.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let valid_segment = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    if trimmed.split('/').all(valid_segment) {
        let prefix = format!("/{trimmed}");
        // The operations endpoints sit at the root, beside the prefix: the index at the prefix
        // itself would take their place.
        if crate::routes::ops::paths().contains(&prefix) {
            return Err(format!(
                "{prefix} is an operations endpoint; choose another prefix, such as /api/v1"
            ));
        }
        Ok(prefix)
    } else {
        Err(
            "expected path segments of letters, digits, `-`, `_`, `.` or `~`, such as /api/v1"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_settings_table_names_every_variable_read_and_the_defaults_applied() {
        // With a database, so that its settings are read too.
        let database = ("DATABASE_URL", "postgres://monolith@localhost/monolith");
        let read = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Config::from_lookup(|name| {
            read.lock().unwrap().insert(name.to_owned());
            (name == database.0).then(|| database.1.to_owned())
        })
        .unwrap();
        let listed: std::collections::BTreeSet<String> = SETTINGS
            .iter()
            .map(|(name, ..)| (*name).to_owned())
            .collect();
        assert_eq!(read.into_inner().unwrap(), listed);
        // A variable set to its listed default configures exactly what leaving it unset does.
        let unset = format!("{:?}", config(&[database]).unwrap());
        for (name, default, _) in SETTINGS {
            if let Some(default) = default {
                let set = format!("{:?}", config(&[database, (name, default)]).unwrap());
                assert_eq!(set, unset, "{name}={default}");
            }
        }
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.api_prefix, "/api/v1");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.write_timeout, Duration::from_secs(20));
        assert_eq!(c.max_connections, 1024);
    }

    #[test]
    fn prefixes_are_normalised() {
        for (given, expected) in [
            ("", ""),
            ("/", ""),
            ("api", "/api"),
            ("/custom/", "/custom"),
            ("//a/b//", "/a/b"),
            ("/api/v2", "/api/v2"),
        ] {
            let c = config(&[("API_PREFIX", given)]).unwrap();
            assert_eq!(c.api_prefix, expected, "API_PREFIX={given:?}");
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        for (name, value) in [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("HOST", "not-an-ip"),
            ("API_PREFIX", "/a b"),
            ("API_PREFIX", "/a//{id}"),
            ("API_PREFIX", "/healthz"),
            ("API_PREFIX", "readyz/"),
            ("API_PREFIX", "/metrics"),
            ("LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,[[["),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "-5"),
            ("REQUEST_TIMEOUT_SECS", "soon"),
            ("WRITE_TIMEOUT_SECS", "0"),
            ("WRITE_TIMEOUT_SECS", "3601"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "1000001"),
            ("MAX_CONNECTIONS", "many"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            let line = err.to_string();
            assert!(line.contains(name) && line.contains(value), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn numbers_are_plain_digits_within_their_range() {
        let range = 1..=3_600_u64;
        assert_eq!(parse_in_range("1", &range), Ok(1));
        assert_eq!(parse_in_range("3600", &range), Ok(3_600));
        assert_eq!(parse_in_range("010", &range), Ok(10));
        for bad in [
            "0",
            "3601",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "1 000",
            "",
            "١",
            "18446744073709551615",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_in_range(bad, &range),
                Err("expected a whole number from 1 to 3600".to_owned()),
                "{bad:?}"
            );
        }
        // Too large for the type is out of range too, not a different error.
        assert!(parse_in_range::<u16>("65536", &PORT_RANGE).is_err());
        assert!(parse_in_range::<u32>("4294967296", &RATE_RANGE).is_err());
    }

    /// A database URL whose (made-up) password the tests look for in every output.
    const DATABASE_URL: &str = "postgres://app:hunter2@db:5432/app"; // pragma: allowlist secret

    #[test]
    fn every_numeric_setting_takes_the_ends_of_its_range_and_nothing_beyond() {
        for (name, min, max) in [
            ("PORT", 0, 65_535),
            ("MAX_BODY_BYTES", 1, 1 << 30),
            ("REQUEST_TIMEOUT_SECS", 1, 3_600),
            ("HEADER_READ_TIMEOUT_SECS", 1, 3_600),
            ("RATE_LIMIT_PER_SECOND", 0, 1_000_000),
            ("RATE_LIMIT_BURST", 0, 1_000_000),
            ("MAX_RECORDS_PER_RESOURCE", 1, 100_000_000),
            ("WRITE_TIMEOUT_SECS", 1, 3_600),
            ("MAX_CONNECTIONS", 1, 1_000_000),
            ("DATABASE_MAX_CONNECTIONS", 1, 1_000),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", 1, 600),
            ("DATABASE_STARTUP_TIMEOUT_SECS", 0, 3_600),
            ("FEED_HISTORY", 0, 100_000),
            ("FEED_MAX_OPEN", 0, 1_000_000),
            ("FEED_HEARTBEAT_SECS", 1, 3_600),
            ("IDEMPOTENCY_RETENTION_SECS", 60, 30 * 86_400),
            ("IDEMPOTENCY_MAX_KEYS", 1, 10_000_000),
        ] {
            // The DATABASE_* settings are read only beside a DATABASE_URL; it changes nothing
            // for the others.
            let config = |value: &str| config(&[(name, value), ("DATABASE_URL", DATABASE_URL)]);
            for good in [min, max] {
                assert!(config(&good.to_string()).is_ok(), "{name}={good}");
            }
            let mut bad = vec![(max + 1).to_string(), "-1".to_owned()];
            if min > 0 {
                bad.push((min - 1).to_string());
            }
            for value in bad {
                let err = config(&value).unwrap_err();
                assert_eq!(err.variable, name);
                assert_eq!(
                    err.reason,
                    format!("expected a whole number from {min} to {max}")
                );
            }
        }
    }

    #[test]
    fn the_database_settings_apply_only_with_a_url_and_default_sensibly() {
        assert!(config(&[]).unwrap().database.is_none());
        assert!(config(&[("DATABASE_URL", " ")]).unwrap().database.is_none());
        // Without a URL they are not read, so not refused either.
        assert!(
            config(&[("DATABASE_MAX_CONNECTIONS", "0")])
                .unwrap()
                .database
                .is_none()
        );
        let database = config(&[("DATABASE_URL", DATABASE_URL)])
            .unwrap()
            .database
            .unwrap();
        assert_eq!(database.max_connections, 16);
        assert_eq!(database.statement_timeout, Duration::from_secs(5));
        assert_eq!(database.startup_timeout, Duration::from_secs(30));
        let database = config(&[
            ("DATABASE_URL", DATABASE_URL),
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "2"),
            ("DATABASE_STARTUP_TIMEOUT_SECS", "0"),
        ])
        .unwrap()
        .database
        .unwrap();
        assert_eq!(database.max_connections, 4);
        assert_eq!(database.statement_timeout, Duration::from_secs(2));
        assert_eq!(database.startup_timeout, Duration::ZERO);
    }

    #[test]
    fn the_database_password_is_redacted_and_never_in_an_error_or_debug_output() {
        let c = config(&[("DATABASE_URL", DATABASE_URL)]).unwrap();
        let database = c.database.as_ref().unwrap();
        assert_eq!(database.redacted_url, "postgres://app:***@db:5432/app");
        assert!(!format!("{c:?}").contains("hunter2"));
        // No password: nothing to redact.
        let plain = config(&[("DATABASE_URL", "postgresql://db.example/monolith")]).unwrap();
        assert_eq!(
            plain.database.unwrap().redacted_url,
            "postgresql://db.example/monolith"
        );
        for bad in [
            "postgres://u:hunter2@host:notaport/db", // pragma: allowlist secret
            "mysql://u:hunter2@host/db",             // pragma: allowlist secret
            "u:hunter2@host/db",                     // pragma: allowlist secret
            "postgres://u:hunter2@host:5432/db?sslmode=sometimes", // pragma: allowlist secret
        ] {
            let err = config(&[("DATABASE_URL", bad)]).unwrap_err();
            assert_eq!(err.variable, "DATABASE_URL", "{bad}");
            let line = err.to_string();
            assert!(!line.contains("hunter2"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn empty_values_mean_the_default_except_for_the_prefix() {
        let c = config(&[("PORT", ""), ("LOG_FORMAT", " "), ("API_PREFIX", "")]).unwrap();
        assert_eq!(c.bind.port(), 8080);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.api_prefix, "");
    }

    #[test]
    fn the_secret_key_is_optional_and_never_shown_in_debug_output() {
        assert!(config(&[]).unwrap().secret_key.is_none());
        assert!(config(&[("SECRET_KEY", "")]).unwrap().secret_key.is_none());
        let c = config(&[("SECRET_KEY", "hunter2-hunter2")]).unwrap();
        assert!(c.secret_key.is_some());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn tls_needs_both_files_or_self_signed_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "x").unwrap();
        std::fs::write(&key, "x").unwrap();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        assert_eq!(config(&[]).unwrap().tls, TlsMode::Off);
        assert_eq!(
            config(&[("TLS_SELF_SIGNED", "true")]).unwrap().tls,
            TlsMode::SelfSigned
        );
        assert!(matches!(
            config(&[("TLS_CERT_PATH", cert), ("TLS_KEY_PATH", key)])
                .unwrap()
                .tls,
            TlsMode::Files { .. }
        ));
        let only_cert = config(&[("TLS_CERT_PATH", cert)]).unwrap_err();
        assert_eq!(only_cert.variable, "TLS_KEY_PATH");
        let only_key = config(&[("TLS_KEY_PATH", key)]).unwrap_err();
        assert_eq!(only_key.variable, "TLS_CERT_PATH");
        let both = config(&[
            ("TLS_CERT_PATH", cert),
            ("TLS_KEY_PATH", key),
            ("TLS_SELF_SIGNED", "true"),
        ])
        .unwrap_err();
        assert_eq!(both.variable, "TLS_SELF_SIGNED");
        let missing = config(&[
            ("TLS_CERT_PATH", "/no/such/cert.pem"),
            ("TLS_KEY_PATH", key),
        ])
        .unwrap_err();
        assert_eq!(missing.variable, "TLS_CERT_PATH");
        assert!(missing.to_string().contains("/no/such/cert.pem"));
    }

    #[test]
    fn cors_origins_and_rate_limits_are_parsed() {
        assert_eq!(config(&[]).unwrap().cors, CorsOrigins::None);
        assert_eq!(
            config(&[("CORS_ALLOWED_ORIGINS", "*")]).unwrap().cors,
            CorsOrigins::Any
        );
        let list = config(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example, http://localhost:3000",
        )])
        .unwrap()
        .cors;
        assert_eq!(
            list,
            CorsOrigins::List(vec![
                HeaderValue::from_static("https://app.example"),
                HeaderValue::from_static("http://localhost:3000"),
            ])
        );
        for bad in [
            "app.example",
            "https://a.example/path",
            "ftp://x",
            "http://é/",
            "*,x",
        ] {
            let err = config(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
            assert_eq!(err.variable, "CORS_ALLOWED_ORIGINS", "{bad}");
        }
        assert_eq!(config(&[]).unwrap().rate_limit, None);
        assert_eq!(
            config(&[("RATE_LIMIT_PER_SECOND", "5")])
                .unwrap()
                .rate_limit,
            Some(RateLimit {
                per_second: 5,
                burst: 5
            })
        );
        assert_eq!(
            config(&[("RATE_LIMIT_PER_SECOND", "5"), ("RATE_LIMIT_BURST", "20")])
                .unwrap()
                .rate_limit,
            Some(RateLimit {
                per_second: 5,
                burst: 20
            })
        );
        assert!(config(&[("RATE_LIMIT_BURST", "-1")]).is_err());
        let most = config(&[
            ("RATE_LIMIT_PER_SECOND", "1000000"),
            ("RATE_LIMIT_BURST", "1000000"),
        ])
        .unwrap();
        assert_eq!(
            most.rate_limit,
            Some(RateLimit {
                per_second: 1_000_000,
                burst: 1_000_000
            })
        );
        assert!(config(&[("RATE_LIMIT_PER_SECOND", "2000000000")]).is_err());
    }

    #[test]
    fn generated_keys_are_long_url_safe_and_fresh() {
        let a = generate_secret_key().unwrap();
        let b = generate_secret_key().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn values_are_parsed() {
        let c = config(&[
            ("HOST", "127.0.0.1"),
            ("PORT", "9000"),
            ("LOG_FORMAT", "JSON"),
            ("MAX_BODY_BYTES", "1024"),
            ("REQUEST_TIMEOUT_SECS", "3"),
            ("DATA_DIR", "/srv/data"),
            ("WRITE_TIMEOUT_SECS", "3600"),
            ("MAX_CONNECTIONS", "1"),
        ])
        .unwrap();
        assert_eq!(c.bind, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.data_dir, PathBuf::from("/srv/data"));
        assert_eq!(c.write_timeout, Duration::from_secs(3600));
        assert_eq!(c.max_connections, 1);
    }
}

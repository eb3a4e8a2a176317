//! Test plumbing: a fresh app per test driven through `oneshot`, and response helpers.
//!
//! The backend is chosen by the environment: without `TEST_DATABASE_URL` every test runs on the
//! in-memory store; with it, every [`TestApp`], `RunningServer` and `ServerProcess` gets its own
//! fresh PostgreSQL schema in that database (see [`TestDatabase`]), so tests stay parallel.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use monolith::config::DatabaseConfig;
use monolith::{AppState, Config, Store, app};
use serde_json::Value;
use tower::ServiceExt;

/// The bundled seed data.
pub const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

/// Process-wide set-up, once: the TLS crypto provider (clients and servers need it), and logs,
/// silent unless `TEST_LOG=1`.
pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        monolith::tls::install_crypto_provider();
        if std::env::var_os("TEST_LOG").is_some() {
            // The guard is kept for the life of the test process, so no line is lost.
            if let Ok(guard) = monolith::telemetry::init("debug", monolith::config::LogFormat::Text)
            {
                std::mem::forget(guard);
            }
        }
    });
}

/// The default test configuration on the bundled data.
pub fn test_config() -> Config {
    Config::for_tests(DATA_DIR)
}

/// A configuration whose `API_PREFIX` is `prefix`, normalised as the server does.
pub fn config_with_prefix(prefix: &str) -> Config {
    let normalised = Config::from_lookup(|name| (name == "API_PREFIX").then(|| prefix.to_owned()))
        .expect("a valid prefix");
    Config {
        api_prefix: normalised.api_prefix,
        ..test_config()
    }
}

/// The variable naming the PostgreSQL database to test against: a URL such as the one `.ci/run`
/// gives its local test cluster (README, Testing).
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Each test's pool: small, because a parallel run holds one pool per running test and the
/// server's `max_connections` is shared by all of them.
pub const TEST_POOL_SIZE: &str = "4";

/// The URL of the database the tests run against, or `None` for the in-memory store.
pub fn test_database_url() -> Option<String> {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Whether this run is the PostgreSQL half of the suite. Tests of a property the PostgreSQL
/// store does not have by design return early with `if on_postgres() { return; }` and say why.
pub fn on_postgres() -> bool {
    test_database_url().is_some()
}

/// A fresh, empty schema `t_<random>` in the test database, dropped when this is dropped.
///
/// Each test gets its own schema rather than its own database: `CREATE SCHEMA` is cheap, and the
/// store sees nothing else because its URL sets `search_path` (`options=-c search_path=…`, which
/// sqlx passes to the server at connect time), so its migrations, sequences and functions land
/// in the schema too.
pub struct TestDatabase {
    admin_url: String,
    schema: String,
    /// The URL a store or a server process connects with: `DATABASE_URL`.
    pub url: String,
}

impl TestDatabase {
    /// A fresh schema, if the run has a test database; `None` on the memory half.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let admin_url = test_database_url()?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL} does not connect: {e}"));
        // The name is ours (`t_` and hex digits), never input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut connection)
            .await
            .expect("CREATE SCHEMA");
        let _ = connection.close().await;
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.query_pairs_mut()
            .append_pair("options", &format!("-c search_path={schema}"));
        Some(Self {
            admin_url,
            schema,
            url: url.into(),
        })
    }

    /// [`TestDatabase::create`] for synchronous callers, also from inside a runtime: it runs on
    /// a thread of its own.
    pub fn create_blocking() -> Option<Self> {
        test_database_url()?;
        std::thread::spawn(|| on_own_runtime(Self::create()))
            .join()
            .expect("the schema is created")
    }

    /// The store settings for this schema, read through the server's own configuration rules.
    pub fn config(&self) -> DatabaseConfig {
        database_config(&self.url)
    }
}

impl Drop for TestDatabase {
    /// Drops the schema, best effort: a left-over one (a connection of a killed server still
    /// holding a lock, say) costs only catalogue space in a throwaway database.
    fn drop(&mut self) {
        let (admin_url, schema) = (self.admin_url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            on_own_runtime(async move {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut connection)
                .await
                .ok()?;
                connection.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Runs `future` to completion on a fresh single-thread runtime.
fn on_own_runtime<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `DATABASE_URL=url` with a test-sized pool, parsed as the server parses it.
pub fn database_config(url: &str) -> DatabaseConfig {
    Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.to_owned()),
        "DATABASE_MAX_CONNECTIONS" => Some(TEST_POOL_SIZE.to_owned()),
        _ => None,
    })
    .expect("the test database URL is valid")
    .database
    .expect("DATABASE_URL is set")
}

/// Points `config` at a fresh schema when the run has a test database and `config` names none
/// yet; the returned guard drops the schema.
pub async fn with_test_database(config: &mut Config) -> Option<TestDatabase> {
    if config.database.is_some() {
        return None;
    }
    let database = TestDatabase::create().await?;
    config.database = Some(database.config());
    Some(database)
}

/// Opens the store `config` asks for, as the server does.
pub async fn open_store(config: &Config) -> Store {
    Store::open(config)
        .await
        .unwrap_or_else(|e| panic!("the store opens: {e}"))
}

/// A fresh application with its own store.
pub struct TestApp {
    router: Router,
    /// The state behind the router, for tests that look inside or flip readiness.
    pub state: AppState,
    /// Declared last, so it is dropped after the store that uses it.
    _database: Option<TestDatabase>,
}

impl TestApp {
    /// The app on the bundled data with the default configuration.
    pub async fn new() -> Self {
        Self::with_config(test_config()).await
    }

    /// The app with `config`, seeded from its `data_dir`; on a fresh schema when the run has a
    /// test database.
    pub async fn with_config(mut config: Config) -> Self {
        init_logs();
        let database = with_test_database(&mut config).await;
        let store = open_store(&config).await;
        let state = AppState::new(config, store);
        Self {
            router: app(state.clone()),
            state,
            _database: database,
        }
    }

    /// Sends any request.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        TestResponse::read(response).await
    }

    /// A request with a body and a content type.
    pub async fn send_body(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn delete(&self, uri: &str) -> TestResponse {
        self.send(Request::delete(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_json(&self, uri: &str, body: Value) -> TestResponse {
        self.json(Method::POST, uri, body).await
    }

    pub async fn put_json(&self, uri: &str, body: Value) -> TestResponse {
        self.json(Method::PUT, uri, body).await
    }

    pub async fn patch_json(&self, uri: &str, body: Value) -> TestResponse {
        self.json(Method::PATCH, uri, body).await
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> TestResponse {
        self.send_body(method, uri, Some("application/json"), body.to_string())
            .await
    }
}

/// A response read whole.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON, or `Null` if it is not JSON.
    pub body: Value,
    /// The body as sent.
    pub bytes: axum::body::Bytes,
}

impl TestResponse {
    pub async fn read(response: axum::response::Response) -> Self {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body reads").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Self {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
            bytes,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Asserts a JSON success with `status`.
    #[track_caller]
    pub fn assert_json(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert!(
            self.content_type().starts_with("application/json"),
            "content type {:?}",
            self.content_type()
        );
        &self.body
    }

    /// Asserts an RFC 9457 problem with `status` for a request to `instance`.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, instance: &str) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.body["type"], "about:blank");
        assert_eq!(self.body["status"], status.as_u16());
        assert_eq!(self.body["title"], status.canonical_reason().unwrap());
        assert_eq!(self.body["instance"], instance);
        assert!(self.body["detail"].is_string(), "detail in {}", self.text);
        &self.body
    }

    /// The JSON pointers of a 422's `errors`.
    pub fn error_pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["pointer"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A data folder with the given files, for seed tests.
/// The names of an OpenAPI operation's parameters.
pub fn parameter_names(operation: &Value) -> Vec<String> {
    operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn data_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// A data folder with `count` books of about 100 bytes of JSON each, for tests that need
/// large responses.
pub fn many_books(count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut json = String::with_capacity(count * 110);
    json.push('[');
    for id in 1..=count {
        if id > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"id":{id},"title":"Book number {id:08} of a long shelf","author":"Author {id:08} and friends"}}"#
        ));
    }
    json.push(']');
    std::fs::write(dir.path().join("books.json"), json).unwrap();
    dir
}

/// The path of the built `monolith` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_monolith"))
}

/// The resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The plumbing of the PostgreSQL half itself: a store connecting with a [`TestDatabase`]'s URL
/// works in that schema alone, and the schema is gone once the guard is dropped.
#[tokio::test]
async fn a_test_database_is_a_fresh_schema_on_the_search_path_dropped_afterwards() {
    use sqlx::Connection;
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database to check.
    };
    let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(schema, database.schema);
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!(tables, 0, "fresh");
    connection.close().await.unwrap();

    let schema = database.schema.clone();
    drop(database);
    let mut admin = sqlx::PgConnection::connect(&test_database_url().unwrap())
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
        .bind(&schema)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "{schema} is dropped");
}

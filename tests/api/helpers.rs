//! Test plumbing: a fresh app per test driven through `oneshot`, and response helpers.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
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
            let _ = monolith::telemetry::init("debug", monolith::config::LogFormat::Text);
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

/// A fresh application with its own store.
pub struct TestApp {
    router: Router,
    /// The state behind the router, for tests that look inside or flip readiness.
    pub state: AppState,
}

impl TestApp {
    /// The app on the bundled data with the default configuration.
    pub fn new() -> Self {
        Self::with_config(test_config())
    }

    /// The app with `config`, seeded from its `data_dir`.
    pub fn with_config(config: Config) -> Self {
        init_logs();
        let store = Store::load(&config.data_dir, config.max_records).expect("seed data loads");
        let state = AppState::new(config, store);
        Self {
            router: app(state.clone()),
            state,
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

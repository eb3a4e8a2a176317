//! Plumbing for the replica and fault tests: a fresh schema on `TEST_DATABASE_URL`, several
//! server processes on it, an HTTP client that times every answer, and a private PostgreSQL
//! cluster that a test may crash and restart.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
// Every dynamic statement here names only this module's own `t_<hex>` schema and literal
// table names: nothing from outside reaches the SQL text.
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::cli::ServerProcess;

/// The API prefix the server processes run with (the default).
pub const API: &str = "/api/v1";

/// `TEST_DATABASE_URL`, or `None` (with a note on stderr) when the PostgreSQL half is off.
pub fn test_database_url(test: &str) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("{test}: skipped, TEST_DATABASE_URL is not set");
    }
    url
}

/// `url` with `options=-c search_path=<schema>`, so every connection made from it works in
/// `schema`.
pub fn url_with_search_path(url: &str, schema: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("TEST_DATABASE_URL is a URL");
    parsed
        .query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    parsed.to_string()
}

/// A schema of its own on the test database, for one test's server processes.
pub struct FreshSchema {
    pub name: String,
    /// The URL that puts a connection into this schema.
    pub url: String,
    admin: PgPool,
}

impl FreshSchema {
    /// Creates `t_<random>` on the database at `url`.
    pub async fn create(url: &str) -> Self {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .expect("TEST_DATABASE_URL accepts connections");
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        Self {
            url: url_with_search_path(url, &name),
            name,
            admin,
        }
    }

    /// Rows in `table` of this schema.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {}.{table}", self.name);
        sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&self.admin)
            .await
            .unwrap()
            .get(0)
    }

    /// The rows `sql` returns (run with this schema first on the search path), each as text.
    pub async fn rows(&self, sql: &'static str) -> Vec<String> {
        let mut connection = self.admin.acquire().await.unwrap();
        sqlx::query(AssertSqlSafe(format!("SET search_path TO {}", self.name)))
            .execute(&mut *connection)
            .await
            .unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut *connection).await.unwrap();
        sqlx::query("RESET search_path")
            .execute(&mut *connection)
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<Option<String>, _>(0).unwrap_or_default())
            .collect()
    }

    /// Takes an exclusive lock on `table` in a transaction of its own, held until the
    /// transaction is dropped: every statement on the table waits meanwhile.
    pub async fn lock(&self, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut transaction = self.admin.begin().await.unwrap();
        let sql = format!("LOCK TABLE {}.{table} IN ACCESS EXCLUSIVE MODE", self.name);
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut *transaction)
            .await
            .unwrap();
        transaction
    }

    /// Runs `sql` (row locks, say) in a transaction of its own, in this schema, and keeps the
    /// transaction open until it is dropped.
    pub async fn hold(&self, sql: &'static str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut transaction = self.admin.begin().await.unwrap();
        let search_path = format!("SET LOCAL search_path TO {}", self.name);
        sqlx::query(AssertSqlSafe(search_path))
            .execute(&mut *transaction)
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut *transaction).await.unwrap();
        transaction
    }

    /// Drops the schema; a failed test keeps its schema for a look.
    pub async fn drop_schema(self) {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.name)))
            .execute(&self.admin)
            .await
            .unwrap();
        self.admin.close().await;
    }
}

/// Starts `count` server processes at the same moment, each with `env`, and waits until all
/// listen: their start-ups (migrations, seeding) race.
pub fn start_together(count: usize, env: &[(&str, &str)]) -> Vec<ServerProcess> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let starting: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| ServerProcess::start(env)))
                .collect();
            starting
                .into_iter()
                .map(|handle| handle.join().expect("the server starts"))
                .collect()
        })
    })
}

/// One answer, with when its request left and when its answer was read.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub sent: Instant,
    pub received: Instant,
    /// 503s answered before this one, by [`Node::send_retrying`].
    pub retried: u32,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// How long the request took.
    pub fn latency(&self) -> Duration {
        self.received - self.sent
    }

    /// Whether this is a 503 problem+json with `Retry-After`, as a lost database must give.
    pub fn is_unavailable_problem(&self) -> bool {
        self.status == 503
            && self.header("content-type") == Some("application/problem+json")
            && self.body["status"] == 503
            && self.header("retry-after").is_some()
    }
}

/// An HTTP client on one server process.
#[derive(Clone)]
pub struct Node {
    client: Client,
    /// `http://host:port`.
    pub origin: String,
}

impl Node {
    /// A client on the server at `address` that gives up on an answer after `timeout`.
    pub fn new(address: &str, timeout: Duration) -> Self {
        crate::helpers::init_logs();
        Self {
            client: Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            origin: format!("http://{address}"),
        }
    }

    /// Sends a request to `path` (relative to the origin); `Err` when no answer came.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.origin));
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{method} {path}: body: {e:?}"))?;
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            sent,
            received: Instant::now(),
            retried: 0,
        })
    }

    /// Like [`Node::try_send`], but a missing answer fails the test.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("no answer from {}: {e}", self.origin))
    }

    /// Like [`Node::send`], but a 503 problem (an overloaded pool, say) is retried a few times
    /// after a pause, as its `Retry-After` invites: a client that does so must never cause a
    /// write twice. The answer is the last attempt's.
    pub async fn send_retrying(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut retried = 0;
        loop {
            let answer = self.send(method.clone(), path, body).await;
            if !answer.is_unavailable_problem() || retried == 20 {
                return Answer { retried, ..answer };
            }
            retried += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST`, retried on 503 as [`Node::send_retrying`] does.
    pub async fn post_retrying(&self, path: &str, body: &Value) -> Answer {
        self.send_retrying(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `GET` that must answer 200; its JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let answer = self.get(path).await;
        assert_eq!(
            answer.status, 200,
            "GET {path} on {}: {answer:?}",
            self.origin
        );
        answer.body
    }
}

/// The number at the end of a server-assigned id (`bid17` → 17).
pub fn id_number(id: &str) -> u64 {
    let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{id} ends in a number"))
}

/// The winning bid among `bids` (full bids, in placing order): the highest value, the
/// earliest among equals.
pub fn winner_of(bids: &[Value]) -> Option<String> {
    let mut best: Option<&Value> = None;
    for bid in bids {
        let value = bid["bid"]["value"].as_f64().unwrap();
        if best.is_none_or(|b| value > b["bid"]["value"].as_f64().unwrap()) {
            best = Some(bid);
        }
    }
    best.map(|bid| bid["bid_id"].as_str().unwrap().to_owned())
}

/// The ids of `bids` (full bids), in their order.
pub fn bid_ids(bids: &Value) -> Vec<String> {
    bids.as_array()
        .unwrap()
        .iter()
        .map(|bid| bid["bid_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Fails when a value occurs twice in `ids`.
pub fn assert_unique<T: std::hash::Hash + Eq + std::fmt::Debug>(ids: &[T], what: &str) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id), "{what}: {id:?} was handed out twice");
    }
}

/// A small fast generator (xorshift); its seed is printed so that a failure can be replayed.
pub struct Random(u64);

impl Random {
    pub fn new(test: &str) -> Self {
        let seed = std::env::var("REPLICAS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| getrandom::u64().unwrap() | 1);
        eprintln!("{test}: REPLICAS_SEED={seed}");
        Self(seed)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// A PostgreSQL cluster of the test's own, in a temporary folder, on a free port: one the
/// test may crash and restart without hurting other tests.
pub struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    as_postgres_user: bool,
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Creates and starts the cluster; `None` (with a note) when PostgreSQL's server binaries
    /// are not installed.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = server_binaries() else {
            eprintln!("{test}: skipped, no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: then its files and processes belong to `postgres`.
        let as_postgres_user = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        if as_postgres_user {
            run_ok(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                String::new,
            );
        }
        let port = free_port();
        let cluster = Self {
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            bin,
            port,
            as_postgres_user,
            dir,
        };
        let data = cluster.data.to_str().unwrap().to_owned();
        // --no-sync: the files only need to outlive a crash of PostgreSQL, not of the machine.
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.restart();
        Some(cluster)
    }

    /// The URL of its `postgres` database, with `password` in it (never asked for: the
    /// cluster trusts local connections, so it only tests where the URL ends up).
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Starts PostgreSQL on the same port and folder, and waits until it accepts connections.
    pub fn restart(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        self.run_ok(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "20",
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
                "-o",
                &options,
            ],
        );
    }

    /// Stops PostgreSQL the way a crash would: no checkpoint, clients cut off at once.
    pub fn crash(&self) {
        self.run_ok("pg_ctl", &self.stop_args());
    }

    fn stop_args(&self) -> Vec<&str> {
        vec![
            "stop",
            "-m",
            "immediate",
            "-w",
            "-D",
            self.data.to_str().unwrap(),
        ]
    }

    /// Runs one of the server binaries, as `postgres` when we are root.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }

    /// Runs a server binary that must succeed; a failure shows PostgreSQL's own log too.
    fn run_ok(&self, program: &str, args: &[&str]) {
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        run_ok(&mut self.command(program, args), log);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // No PostgreSQL outlives its test, even a failed one.
        let _ = self.command("pg_ctl", &self.stop_args()).output();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `command`, which must succeed; `more` adds to the failure message.
fn run_ok(command: &mut Command, more: impl Fn() -> String) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        more()
    );
}

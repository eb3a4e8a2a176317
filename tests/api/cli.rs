//! The `monolith` binary: its command line, start-up failures, `.env`, and signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{
    DATA_DIR, TEST_POOL_SIZE, TestDatabase, binary, data_dir_with, on_postgres, write_files,
};

/// A command for the binary with a clean environment, run in `cwd` (so no stray `.env`).
fn monolith(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied());
    command
}

fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    monolith(cwd, args, env).output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_and_version_describe_the_binary() {
    let cwd = tempfile::tempdir().unwrap();
    let help = run(cwd.path(), &["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("check-data") && text.contains("serve"),
        "{text}"
    );
    // Every environment variable, with its default (the table is tested against the config).
    for (name, default, _) in monolith::config::SETTINGS {
        let default = default.map_or("[unset]".to_owned(), |value| format!("[default {value}]"));
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{name} ")));
        assert!(
            line.is_some_and(|line| line.ends_with(&default)),
            "{name}: {line:?}"
        );
    }

    let version = run(cwd.path(), &["--version"], &[]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("monolith {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_data_accepts_the_bundled_data() {
    let cwd = tempfile::tempdir().unwrap();
    let output = run(cwd.path(), &["check-data"], &[("DATA_DIR", DATA_DIR)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("12 books, 4 things, 3 users, 2 items, 2 bids"),
        "{text}"
    );
}

#[test]
fn a_bad_seed_stops_check_data_and_the_server_with_the_same_message() {
    let data = data_dir_with(&[(
        "books.json",
        "[\n  {\"id\": 1, \"title\": \"a\"},\n  {\"id\": }\n]",
    )]);
    let data_path = data.path().to_str().unwrap();
    let env = [
        ("DATA_DIR", data_path),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ];
    let check = run(data.path(), &["check-data"], &env);
    let serve = run(data.path(), &[], &env);
    for output in [&check, &serve] {
        assert!(!output.status.success());
        let message = stderr(output);
        assert!(message.contains("books.json"), "{message}");
        assert!(message.contains("line 3 column 10"), "{message}");
    }
    assert_eq!(stderr(&check), stderr(&serve));
}

/// Runs `check-data` on a data folder holding `files`, expects it to fail, returns its message.
fn check_data_refuses(files: &[(&str, &str)]) -> String {
    let data = data_dir_with(files);
    let output = run(
        data.path(),
        &["check-data"],
        &[("DATA_DIR", data.path().to_str().unwrap())],
    );
    assert!(!output.status.success());
    stderr(&output)
}

#[test]
fn a_rule_breaking_seed_names_the_file_and_the_record() {
    let message = check_data_refuses(&[(
        "books.json",
        r#"[{"id": 1, "title": "a"}, {"id": 1, "title": "b"}]"#,
    )]);
    assert!(
        message.contains("books.json") && message.contains("book 1: duplicate id"),
        "{message}"
    );
}

#[test]
fn a_seed_text_that_is_invisible_or_has_control_characters_names_the_record() {
    let message = check_data_refuses(&[(
        "books.json",
        r#"[{"id": 1, "title": "a"}, {"id": 2, "title": "\u200b\u00a0\ufeff"}]"#,
    )]);
    assert!(message.contains("books.json"), "{message}");
    assert!(
        message.contains("book 2: title must not be blank"),
        "{message}"
    );
    let message = check_data_refuses(&[(
        "books.json",
        r#"[{"id": 3, "title": "a", "author": "b\u0000"}]"#,
    )]);
    assert!(
        message.contains(
            "book 3: author must not contain control characters other than tab and newline"
        ),
        "{message}"
    );
    let message = check_data_refuses(&[(
        "auction.json",
        r#"{"users": {"user1": {"name": "A\u001b[0m"}}}"#,
    )]);
    assert!(message.contains("auction.json"), "{message}");
    assert!(
        message.contains("user user1: name must not contain control characters"),
        "{message}"
    );
    let message = check_data_refuses(&[(
        "auction.json",
        r#"{"items": {"item1": {"name": "\u2060\u3164"}}}"#,
    )]);
    assert!(
        message.contains("item item1: name must not be blank"),
        "{message}"
    );
}

#[test]
fn a_seed_record_written_as_an_array_is_refused() {
    let message = check_data_refuses(&[("books.json", r#"[{"id": 1, "title": "a"}, [2, "b"]]"#)]);
    assert!(message.contains("books.json"), "{message}");
    assert!(message.contains("expected a JSON object"), "{message}");
    let message = check_data_refuses(&[("auction.json", r#"{"users": {"user1": ["Albert"]}}"#)]);
    assert!(
        message.contains("users.user1: invalid type: sequence"),
        "{message}"
    );
}

#[test]
fn an_inconsistent_auction_seed_names_the_file_and_the_record() {
    let cases = [
        (
            r#"{"users": {"user1": {"name": "A"}}, "items": {"item1": {"name": "I"}},
                "bids": {"bid1": {"item": "item1", "value": 5, "user": "user9"}}}"#,
            "bid bid1: user user9 does not exist",
        ),
        (
            r#"{"users": {"user1": {"name": "A"}}, "items": {"item1": {"name": "I"}},
                "bids": {"bid1": {"item": "item7", "value": 5, "user": "user1"}}}"#,
            "bid bid1: item item7 does not exist",
        ),
        (
            r#"{"users": {"user1": {"name": "A"}}, "items": {"item1": {"name": "I"}},
                "bids": {"bid1": {"item": "item1", "value": -2, "user": "user1"}}}"#,
            "bids.bid1.value: must be a finite number greater than 0",
        ),
        (
            r#"{"items": {"item1": {"name": "I"}, "item1": {"name": "J"}}}"#,
            r#"duplicate id "item1""#,
        ),
    ];
    for (seed, expected) in cases {
        let message = check_data_refuses(&[("auction.json", seed)]);
        assert!(message.contains("auction.json"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn missing_seed_files_start_empty() {
    let data = tempfile::tempdir().unwrap();
    let output = run(
        data.path(),
        &["check-data"],
        &[("DATA_DIR", data.path().to_str().unwrap())],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("0 books, 0 things, 0 users"), "{stdout}");
    assert!(
        stdout.contains("seed file missing"),
        "the absence is logged: {stdout}"
    );
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let cwd = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("PORT", "eighty"),
        ("LOG_FORMAT", "xml"),
        ("MAX_BODY_BYTES", "0"),
        ("REQUEST_TIMEOUT_SECS", "-1"),
        ("HOST", "somewhere"),
    ] {
        let output = run(cwd.path(), &[], &[(name, value), ("DATA_DIR", DATA_DIR)]);
        assert!(!output.status.success(), "{name}={value}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains(name) && message.contains(value),
            "{message}"
        );
    }
}

#[test]
fn dot_env_is_read_and_real_environment_variables_win() {
    let cwd = tempfile::tempdir().unwrap();
    let broken = data_dir_with(&[("things.json", "{")]);
    write_files(
        cwd.path(),
        &[(".env", &format!("DATA_DIR={}\n", broken.path().display()))],
    );
    let from_file = run(cwd.path(), &["check-data"], &[]);
    assert!(!from_file.status.success());
    assert!(stderr(&from_file).contains("things.json"));

    let overridden = run(cwd.path(), &["check-data"], &[("DATA_DIR", DATA_DIR)]);
    assert!(overridden.status.success(), "{}", stderr(&overridden));
}

/// A server process on an ephemeral port, with its address and everything it logs.
pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    _cwd: tempfile::TempDir,
    /// The schema the server's store lives in on the PostgreSQL half; dropped after the process
    /// is killed.
    _database: Option<TestDatabase>,
}

impl ServerProcess {
    /// Starts the binary on the bundled data with JSON logs and the extra `env`; on a fresh
    /// schema when the run has a test database and `env` names no `DATABASE_URL`.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_under_ulimit("", env)
    }

    /// Like [`ServerProcess::start`], but first runs the shell's `ulimit` with `ulimit_args`
    /// (`-n 64`, say) unless they are empty.
    pub fn start_under_ulimit(ulimit_args: &str, env: &[(&str, &str)]) -> Self {
        let cwd = tempfile::tempdir().unwrap();
        let names_database = env.iter().any(|(name, _)| *name == "DATABASE_URL");
        let database = if names_database {
            None
        } else {
            TestDatabase::create_blocking()
        };
        let mut vars = vec![
            ("DATA_DIR", DATA_DIR),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
        ];
        if let Some(database) = &database {
            vars.push(("DATABASE_URL", &database.url));
            vars.push(("DATABASE_MAX_CONNECTIONS", TEST_POOL_SIZE));
        }
        vars.extend_from_slice(env);
        let mut command = if ulimit_args.is_empty() {
            monolith(cwd.path(), &[], &vars)
        } else {
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(format!("ulimit {ulimit_args} && exec \"$0\""))
                .arg(binary())
                .current_dir(cwd.path())
                .env_clear()
                .envs(vars.iter().copied());
            command
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let stderr_logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_logs.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the server exited: {:?}", logs.lock().unwrap()))
                .unwrap();
            logs.lock().unwrap().push(line.clone());
            let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
            if entry["message"] == "listening" {
                break entry["address"].as_str().unwrap().to_owned();
            }
        };
        // Keep reading the log so the server never blocks on a full pipe.
        let stdout_logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                stdout_logs.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            address,
            logs,
            _cwd: cwd,
            _database: database,
        }
    }

    /// Sends a signal (`-TERM`, `-HUP`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        wait_with_timeout(&mut self.child, Duration::from_secs(10))
    }

    /// Stops the server, then returns its exit status and everything it logged.
    pub fn stop_keeping_logs(mut self) -> (std::process::ExitStatus, String) {
        self.signal("-TERM");
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(10));
        // The reader threads drain what the process wrote before it exited.
        std::thread::sleep(Duration::from_millis(200));
        (status, self.log_text())
    }

    /// Everything logged so far, one line each.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// POSTs a JSON `body` over a fresh connection and returns the raw response.
pub fn http_post_json(address: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_and_sigint_stop_the_server_with_exit_status_0() {
    for signal in ["-TERM", "-INT"] {
        let mut server = ServerProcess::start(&[]);
        let response = http_get(&server.address, "/healthz");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        server.signal(signal);
        let status = wait_with_timeout(&mut server.child, Duration::from_secs(10));
        assert!(status.success(), "{signal}: {status:?}");
    }
}

#[test]
fn secret_prints_a_fresh_url_safe_key() {
    let cwd = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let output = run(cwd.path(), &["secret"], &[]);
            assert!(output.status.success());
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        })
        .collect();
    for key in &keys {
        assert!(key.len() >= 43, "32 bytes of randomness: {key}");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn the_echo_key_never_reaches_the_logs_however_it_is_sent() {
    const KEY: &str = "Lk3-never-log-me-9QzW";
    const WRONG: &str = "wrong-key-never-log-me-too";
    let server = ServerProcess::start(&[("SECRET_KEY", KEY), ("RUST_LOG", "trace")]);
    let send = |request: String| {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let head = "host: test\r\nconnection: close";
    let body = format!(r#"{{"message": "hi", "server_key": "{KEY}"}}"#);
    let responses = [
        send(format!(
            "GET /api/v1/echo?message=hi HTTP/1.1\r\nx-server-key: {KEY}\r\n{head}\r\n\r\n"
        )),
        send(format!(
            "GET /api/v1/echo?message=hi&server_key={KEY} HTTP/1.1\r\n{head}\r\n\r\n"
        )),
        send(format!(
            "POST /api/v1/echo HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{head}\r\n\r\n{body}",
            body.len()
        )),
        send(format!(
            "GET /api/v1/echo?message=hi&server_key={WRONG} HTTP/1.1\r\n{head}\r\n\r\n"
        )),
        send(format!(
            "GET /api/v1/echo?message=hi HTTP/1.1\r\nx-server-key: {WRONG}\r\n{head}\r\n\r\n"
        )),
    ];
    for response in &responses[..3] {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    for response in &responses[3..] {
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    }
    for response in &responses {
        assert!(
            !response.contains(KEY) && !response.contains(WRONG),
            "{response}"
        );
    }
    let status = server.stop_keeping_logs();
    assert!(status.0.success());
    let logs = status.1;
    let access_lines = logs
        .lines()
        .filter(|l| l.contains("request handled") && l.contains("/api/v1/echo"))
        .count();
    assert_eq!(access_lines, 5, "one access-log line per request:\n{logs}");
    assert!(!logs.contains(KEY), "the key leaked into the logs");
    assert!(
        !logs.contains(WRONG),
        "a presented key leaked into the logs"
    );
}

/// Every numeric setting with its documented range (README configuration table), inclusive.
/// A new numeric setting is one more row here.
const NUMERIC_SETTINGS: &[(&str, u64, u64)] = &[
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
];

/// Whether `name` is read only beside a `DATABASE_URL`.
fn is_database_setting(name: &str) -> bool {
    name.starts_with("DATABASE_")
}

/// A URL for settings checks that never connect (port 1 refuses at once if one does), with a
/// made-up password that tests look for in every output.
const UNREACHABLE_DATABASE_URL: &str = "postgres://u:hunter2@127.0.0.1:1/db"; // pragma: allowlist secret

/// Values no numeric setting takes: what the issue lists, plus the neighbours of the range.
fn out_of_range(min: u64, max: u64) -> Vec<String> {
    let mut values: Vec<String> = [
        "-1",
        "18446744073709551615",
        "99999999999999999999",
        "1.5",
        "+1",
        "1e3",
        "ten",
    ]
    .map(str::to_owned)
    .into();
    values.push((max + 1).to_string());
    if min > 0 {
        values.push("0".to_owned());
        values.push((min - 1).to_string());
    }
    values.dedup();
    values
}

#[test]
fn a_numeric_setting_outside_its_range_stops_start_up_before_anything_is_bound() {
    let cwd = tempfile::tempdir().unwrap();
    for &(name, min, max) in NUMERIC_SETTINGS {
        for value in out_of_range(min, max) {
            let env = [
                (name, value.as_str()),
                ("DATA_DIR", DATA_DIR),
                ("HOST", "127.0.0.1"),
                ("LOG_FORMAT", "json"),
                // The DATABASE_* settings are read only beside a URL; the settings are refused
                // before it is used, so it need not lead anywhere.
                ("DATABASE_URL", UNREACHABLE_DATABASE_URL),
            ];
            // PORT's own row sets the port; every other row binds nothing if start-up goes on.
            let env: Vec<_> = if name == "PORT" {
                env.to_vec()
            } else {
                [&env[..], &[("PORT", "0")]].concat()
            };
            let output = monolith(cwd.path(), &[], &env)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let message = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{name}={value}: {message}");
            assert_eq!(message.lines().count(), 1, "{name}={value}: {message}");
            assert!(
                message.contains(&format!("{name}={value:?}"))
                    && message.contains(&format!("expected a whole number from {min} to {max}")),
                "{message}"
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(!stdout.contains("listening"), "{name}={value}: {stdout}");
        }
    }
}

/// Starts the server with `env`, checks that it serves, then stops it with SIGTERM.
fn serves_then_stops(env: &[(&str, &str)]) {
    let server = ServerProcess::start(env);
    for path in ["/healthz", "/api/v1/books/1"] {
        let response = http_get(&server.address, path);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{env:?} {path}: {response}"
        );
    }
    let (status, logs) = server.stop_keeping_logs();
    assert!(status.success(), "{env:?}: {status:?}\n{logs}");
    assert!(!logs.contains("panicked"), "{env:?}: {logs}");
}

#[test]
fn every_numeric_setting_works_at_both_ends_of_its_range() {
    let ends = |pick: fn(u64, u64) -> u64| -> Vec<(&str, String)> {
        NUMERIC_SETTINGS
            .iter()
            // The port is taken as 0 (a free one) below: a fixed one may be in use.
            .filter(|(name, ..)| *name != "PORT")
            // The DATABASE_* settings need a database to serve with: the PostgreSQL half.
            .filter(|(name, ..)| on_postgres() || !is_database_setting(name))
            .map(|&(name, min, max)| (name, pick(min, max).to_string()))
            .collect()
    };
    // At MAX_RECORDS_PER_RESOURCE=1 the bundled seed is too large to load: one book will do.
    let one_book = crate::helpers::data_dir_with(&[("books.json", r#"[{"id": 1, "title": "a"}]"#)]);
    let mut at_min = ends(|min, _| min);
    at_min.push(("DATA_DIR", one_book.path().display().to_string()));
    for values in [at_min, ends(|_, max| max)] {
        let env: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
        serves_then_stops(&env);
    }
    // The highest port is accepted; check-data reads the same settings without binding.
    let cwd = tempfile::tempdir().unwrap();
    let (_, _, max_port) = NUMERIC_SETTINGS[0];
    let output = run(
        cwd.path(),
        &["check-data"],
        &[("PORT", &max_port.to_string()), ("DATA_DIR", DATA_DIR)],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Runs the binary with `env` and stdin closed, killing it if it takes longer than `limit`;
/// its output and how long it ran.
fn run_within(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = monolith(cwd, args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The output is a few lines: it fits the pipes, so waiting before reading cannot block.
    wait_with_timeout(&mut child, limit);
    let elapsed = started.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

/// Asserts that nothing the process printed holds the password of [`UNREACHABLE_DATABASE_URL`]
/// or of the bad URLs below.
#[track_caller]
fn assert_no_password(output: &Output) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains("hunter2"),
            "the password was printed: {text}"
        );
    }
}

#[test]
fn help_never_shows_the_database_password() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", UNREACHABLE_DATABASE_URL)];
    for args in [&["--help"][..], &["help", "migrate"], &["serve", "--help"]] {
        let output = run(cwd.path(), args, &env);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_no_password(&output);
    }
    let help = run(cwd.path(), &["--help"], &env);
    assert!(String::from_utf8_lossy(&help.stdout).contains("migrate"));
}

#[test]
fn a_malformed_database_url_stops_start_up_with_one_line_without_its_password() {
    let cwd = tempfile::tempdir().unwrap();
    for url in [
        "postgres://u:hunter2@host:notaport/db", // pragma: allowlist secret
        "mysql://u:hunter2@host/db",             // pragma: allowlist secret
    ] {
        for args in [&[][..], &["migrate"]] {
            let env = [
                ("DATABASE_URL", url),
                ("DATA_DIR", DATA_DIR),
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
            ];
            let (output, _) = run_within(cwd.path(), args, &env, Duration::from_secs(10));
            let message = stderr(&output);
            assert_eq!(output.status.code(), Some(1), "{url} {args:?}: {message}");
            assert_eq!(message.lines().count(), 1, "{message}");
            assert!(message.contains("DATABASE_URL"), "{message}");
            assert_no_password(&output);
        }
    }
}

#[test]
fn an_unreachable_database_stops_start_up_after_its_timeout_with_one_line() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", UNREACHABLE_DATABASE_URL),
        ("DATABASE_STARTUP_TIMEOUT_SECS", "1"),
        ("DATA_DIR", DATA_DIR),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("LOG_FORMAT", "json"),
    ];
    for args in [&[][..], &["migrate"]] {
        // A second of retries, then out: well within the limit even on a loaded machine.
        let (output, elapsed) = run_within(cwd.path(), args, &env, Duration::from_secs(15));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(elapsed < Duration::from_secs(10), "{args:?}: {elapsed:?}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(
            message.starts_with("monolith: ")
                && ["database", "postgres"]
                    .iter()
                    .any(|word| message.to_lowercase().contains(word)),
            "names the problem: {message}"
        );
        assert_no_password(&output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("listening"), "{stdout}");
    }
}

#[test]
fn migrate_without_a_database_url_exits_1_saying_it_needs_one() {
    let cwd = tempfile::tempdir().unwrap();
    let (output, _) = run_within(
        cwd.path(),
        &["migrate"],
        &[("DATA_DIR", DATA_DIR)],
        Duration::from_secs(10),
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("DATABASE_URL"), "{message}");
}

#[test]
fn the_start_up_line_names_the_store_and_never_the_database_password() {
    let server = ServerProcess::start(&[]);
    // Served once: the signal handlers are in place by then, so SIGTERM stops it cleanly.
    let response = http_get(&server.address, "/readyz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (status, logs) = server.stop_keeping_logs();
    assert!(status.success(), "{logs}");
    let startup: serde_json::Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == "listening")
        .expect("a start-up line");
    let Some(test_url) = crate::helpers::test_database_url() else {
        assert_eq!(startup["store"], "memory", "{startup}");
        assert_eq!(startup["database"], "none", "{startup}");
        return;
    };
    assert_eq!(startup["store"], "postgres", "{startup}");
    let logged = startup["database"].as_str().expect("the database URL");
    let test_url = url::Url::parse(&test_url).unwrap();
    assert_eq!(
        url::Url::parse(logged).unwrap().host_str(),
        test_url.host_str()
    );
    if let Some(password) = test_url.password() {
        assert!(logged.contains(":***@"), "{logged}");
        assert!(
            !logs.contains(&format!(":{password}@")),
            "the password was logged: {logs}"
        );
    }
}

#[test]
fn migrate_applies_the_schema_and_can_run_again_leaving_seeding_to_the_server() {
    let Some(database) = crate::helpers::TestDatabase::create_blocking() else {
        eprintln!("TEST_DATABASE_URL is not set: migrate needs a database");
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("DATA_DIR", DATA_DIR),
        ("DATABASE_URL", database.url.as_str()),
    ];
    for run in ["first", "second"] {
        let (output, _) = run_within(cwd.path(), &["migrate"], &env, Duration::from_secs(30));
        assert!(output.status.success(), "{run}: {}", stderr(&output));
        assert_no_password(&output);
    }
    // Migrated, not seeded: a server started on it next seeds it from DATA_DIR.
    let server = ServerProcess::start(&[("DATABASE_URL", database.url.as_str())]);
    let response = http_get(&server.address, "/api/v1/books/1");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

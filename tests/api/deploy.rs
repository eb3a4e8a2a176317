//! Shipping: the healthcheck subcommand, the binary run the way the container runs it, the
//! compose file's and Dockerfile's hardening, and the idempotent VM install script.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cli::ServerProcess;
use crate::helpers::{DATA_DIR, binary};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn healthcheck(env: &[(&str, &str)]) -> std::process::Output {
    let cwd = tempfile::tempdir().unwrap();
    Command::new(binary())
        .arg("healthcheck")
        .current_dir(cwd.path())
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn healthcheck_exits_0_for_a_serving_server_and_1_otherwise() {
    let server = ServerProcess::start(&[]);
    let port = server.address.rsplit_once(':').unwrap().1.to_owned();
    let ok = healthcheck(&[("PORT", &port), ("HOST", "0.0.0.0")]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    drop(server);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let down = healthcheck(&[("PORT", &closed_port)]);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
}

#[test]
fn healthcheck_speaks_https_when_the_server_does() {
    let server = ServerProcess::start(&[("TLS_SELF_SIGNED", "true")]);
    let port = server.address.rsplit_once(':').unwrap().1.to_owned();
    let ok = healthcheck(&[("PORT", &port), ("TLS_SELF_SIGNED", "true")]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// Runs `program` as UID/GID 65532 (the image's `nonroot`), with no groups.
fn as_unprivileged(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65532", "--regid=65532", "--clear-groups", "--"])
        .arg(program);
    command
}

#[test]
fn the_binary_serves_as_the_container_runs_it_unprivileged_read_only_without_env() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    // A copy the unprivileged user can reach, data it cannot write, a working directory it
    // cannot write, and no .env anywhere.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("monolith");
    std::fs::copy(binary(), &exe).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for file in ["books.json", "auction.json", "things.json"] {
        let target = data.join(file);
        std::fs::copy(Path::new(DATA_DIR).join(file), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o555)).unwrap();

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let mut child = as_unprivileged(&exe)
        .current_dir(&cwd)
        .env_clear()
        .envs([
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("DATA_DIR", data.to_str().unwrap()),
            ("LOG_FORMAT", "json"),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        let probe = as_unprivileged(&exe)
            .arg("healthcheck")
            .current_dir(&cwd)
            .env_clear()
            .env("PORT", &port)
            .output()
            .unwrap();
        if probe.status.success() {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let served = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream
            .write_all(b"GET /api/v1/things/1 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(healthy, "the healthcheck passed");
    assert!(
        served.starts_with("HTTP/1.1 200") && served.contains("Thing 1"),
        "{served}"
    );
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap()
}

#[test]
fn the_compose_file_is_hardened_and_its_healthcheck_exists_in_the_binary() {
    let compose = read("docker-compose.yml");
    for needle in [
        "read_only: true",
        "cap_drop: [ALL]",
        "no-new-privileges:true",
        "restart: unless-stopped",
        "mem_limit:",
        "pids_limit:",
        "user: \"65532:65532\"",
        "LOG_FORMAT: json",
        "HOST: 0.0.0.0",
        "./data:/data:ro",
        "\"${MONOLITH_PORT:-8080}:8080\"",
        "required: false",
        "profiles: [observability]",
    ] {
        assert!(compose.contains(needle), "docker-compose.yml has {needle}");
    }
    let test_line = compose
        .lines()
        .find(|l| l.trim_start().starts_with("test: [\"CMD\""))
        .expect("a healthcheck command");
    assert!(test_line.contains("\"/usr/local/bin/monolith\", \"healthcheck\""));

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/monolith\", \"healthcheck\"]"));
    assert!(
        dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/monolith\"]"),
        "exec form"
    );
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(
        !dockerfile.contains("COPY data"),
        "data is mounted, not copied"
    );

    // The subcommand the health checks run is really there.
    let help = Command::new(binary())
        .args(["healthcheck", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let dockerignore = read(".dockerignore");
    for ignored in ["target/", ".git/", ".env"] {
        assert!(
            dockerignore.lines().any(|l| l == ignored),
            ".dockerignore has {ignored}"
        );
    }
}

/// The lines of one service of the compose file, from its name to the next service.
fn compose_service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    let first = lines.next().unwrap_or_else(|| panic!("a service {name}"));
    std::iter::once(first)
        .chain(lines.take_while(|l| l.is_empty() || l.starts_with("    ") || l.starts_with("  #")))
        .collect()
}

#[test]
fn the_postgres_profile_puts_hardened_replicas_on_a_healthy_database_behind_nginx() {
    let compose = read("docker-compose.yml");
    let has = |service: &str, needle: &str| {
        let block = compose_service(&compose, service).join("\n");
        assert!(block.contains(needle), "service {service} has {needle}");
    };
    // The default service stays in memory: the profile adds services, it changes none.
    assert!(
        !compose_service(&compose, "monolith")
            .join("\n")
            .contains("DATABASE_URL")
    );
    for service in ["postgres", "monolith-pg", "lb"] {
        has(service, "profiles: [postgres]");
        for needle in [
            "read_only: true",
            "cap_drop: [ALL]",
            "no-new-privileges:true",
            "restart: unless-stopped",
            "mem_limit:",
            "pids_limit:",
            "user: ",
        ] {
            has(service, needle);
        }
    }
    has("postgres", "image: postgres:17");
    has("postgres", "postgres-data:/var/lib/postgresql/data");
    has("postgres", "\"pg_isready\"");
    has(
        "postgres",
        "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-monolith-dev-only}",
    );
    has("postgres", "DEVELOPMENT DEFAULT ONLY");
    has("monolith-pg", "replicas: 2");
    has(
        "monolith-pg",
        "DATABASE_URL: postgres://monolith:${POSTGRES_PASSWORD:-monolith-dev-only}@postgres:5432/monolith",
    );
    has("monolith-pg", "condition: service_healthy");
    has("monolith-pg", "user: \"65532:65532\"");
    has("monolith-pg", "LOG_FORMAT: json");
    has("monolith-pg", "./data:/data:ro");
    has(
        "monolith-pg",
        "[\"CMD\", \"/usr/local/bin/monolith\", \"healthcheck\"]",
    );
    has("lb", "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro");
    has("lb", "\"${LB_PORT:-8081}:8080\"");
    has("lb", "monolith-pg:\n        condition: service_healthy");

    // nginx sends to the replicas by their service name and passes the request id on;
    // Prometheus finds the same replicas by that name.
    let nginx = read("deploy/nginx/nginx.conf");
    assert!(nginx.contains("server monolith-pg:8080 resolve"));
    assert!(nginx.contains("listen 8080;"));
    assert!(nginx.contains("proxy_set_header X-Request-Id $forwarded_request_id;"));
    let prometheus = read("deploy/prometheus/prometheus.yml");
    assert!(prometheus.contains("names: [\"monolith-pg\"]") && prometheus.contains("port: 8080"));
    let example = read(".env.example");
    for line in ["LB_PORT=8081", "POSTGRES_PASSWORD="] {
        assert!(
            example.lines().any(|l| l == line),
            ".env.example has {line}"
        );
    }
}

#[test]
fn env_example_lists_every_variable_with_its_default() {
    let example = read(".env.example");
    for (name, default) in [
        ("HOST", "0.0.0.0"),
        ("PORT", "8080"),
        ("API_PREFIX", "/api/v1"),
        ("DATA_DIR", "./data"),
        ("SECRET_KEY", ""),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "text"),
        ("MAX_BODY_BYTES", "65536"),
        ("REQUEST_TIMEOUT_SECS", "10"),
        ("HEADER_READ_TIMEOUT_SECS", "10"),
        ("WRITE_TIMEOUT_SECS", "20"),
        ("MAX_CONNECTIONS", "1024"),
        ("CORS_ALLOWED_ORIGINS", ""),
        ("RATE_LIMIT_PER_SECOND", "0"),
        ("RATE_LIMIT_BURST", "0"),
        ("TLS_CERT_PATH", ""),
        ("TLS_KEY_PATH", ""),
        ("TLS_SELF_SIGNED", "false"),
    ] {
        let line = format!("{name}={default}");
        assert!(
            example.lines().any(|l| l == line),
            ".env.example has {line}"
        );
    }
    // And the example is a configuration the server accepts as it is.
    let vars: BTreeMap<String, String> = example
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    monolith::Config::from_lookup(|name| vars.get(name).cloned()).expect("a valid configuration");
    assert!(read(".gitignore").lines().any(|l| l == ".env"));
}

/// Every file under `root`: its path, mode, modification time and content.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, std::time::SystemTime, Vec<u8>)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let key = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .display()
                    .to_string();
                let mode = meta.permissions().mode() & 0o7777;
                files.insert(
                    key,
                    (
                        mode,
                        meta.modified().unwrap(),
                        std::fs::read(entry.path()).unwrap(),
                    ),
                );
            }
        }
    }
    files
}

#[test]
fn the_install_script_stages_everything_and_a_second_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let run = || {
        Command::new("bash")
            .arg(Path::new(ROOT).join("deploy/install.sh"))
            .arg(binary())
            .env("DESTDIR", root.path())
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let after_first = snapshot(root.path());
    for (path, mode) in [
        ("usr/local/bin/monolith", 0o755),
        ("usr/local/share/monolith/data/books.json", 0o644),
        ("usr/local/share/monolith/data/auction.json", 0o644),
        ("usr/local/share/monolith/data/things.json", 0o644),
        ("etc/systemd/system/monolith.service", 0o644),
        ("etc/monolith/monolith.env", 0o600),
    ] {
        assert_eq!(after_first.get(path).map(|f| f.0), Some(mode), "{path}");
    }
    let env = String::from_utf8(after_first["etc/monolith/monolith.env"].2.clone()).unwrap();
    let key = env
        .lines()
        .find_map(|l| l.strip_prefix("SECRET_KEY="))
        .unwrap();
    assert!(key.len() >= 43);

    std::thread::sleep(Duration::from_millis(20));
    let second = run();
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "nothing to change"
    );
    assert_eq!(
        snapshot(root.path()),
        after_first,
        "nothing changed, not even a timestamp"
    );

    // An operator's edit to the environment file survives a re-install.
    let env_path = root.path().join("etc/monolith/monolith.env");
    std::fs::write(&env_path, "SECRET_KEY=mine\n").unwrap();
    assert!(run().status.success());
    assert_eq!(
        std::fs::read_to_string(&env_path).unwrap(),
        "SECRET_KEY=mine\n"
    );
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit = read("deploy/systemd/monolith.service");
    for needle in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", // pragma: allowlist secret (not one)
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "PORT=80",
        "ExecStart=/usr/local/bin/monolith",
    ] {
        assert!(
            unit.lines().any(|l| l.contains(needle)),
            "the unit has {needle}"
        );
    }
}

#[test]
fn the_image_build_copies_everything_the_compile_reads() {
    let dockerfile = read("Dockerfile");
    // `sqlx::migrate!()` embeds migrations/ at compile time; build.rs makes cargo notice a
    // changed migration. Without either in the build context the image does not build.
    for needed in ["migrations", "build.rs"] {
        assert!(
            dockerfile
                .lines()
                .any(|line| line.starts_with("COPY ") && line.contains(needed)),
            "the Dockerfile copies {needed}"
        );
        assert!(
            !read(".dockerignore")
                .lines()
                .any(|line| line.trim_end_matches('/') == needed),
            ".dockerignore keeps {needed}"
        );
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(needed)
                .exists()
        );
    }
}

//! The `monolith` binary: reads `.env` and the environment, sets up logging, then serves or
//! checks the data. Everything it calls lives in the library, where the tests reach it too.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use monolith::{AppState, Config, Store, telemetry};
use tokio::net::TcpListener;

/// One REST API server: books, an auction bid tracker, an authenticated echo and a things
/// catalogue. Configured by environment variables, optionally from a `.env` file.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Load and validate the seed files in DATA_DIR, then exit: 0 if the server would start on
    /// them, non-zero with the server's message if not.
    CheckData,
    /// Apply the database migrations to DATABASE_URL, then exit (serving applies them too).
    Migrate,
    /// Print a fresh random key (32 bytes from the OS, URL-safe text) to use as SECRET_KEY.
    Secret,
    /// Ask the server on this machine (PORT, TLS settings) for /healthz: exit 0 if healthy.
    /// For container health checks.
    Healthcheck,
}

fn main() -> ExitCode {
    // The variables and their defaults come from the one table the configuration is tested
    // against; never their current values (a DATABASE_URL holds a password).
    let command = Cli::command().after_help(monolith::config::settings_help());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli.command.unwrap_or(Command::Serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("monolith: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Err` is the one-line reason to exit non-zero.
fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Secret => {
            let key = monolith::config::generate_secret_key()
                .map_err(|e| format!("cannot read OS randomness: {e}"))?;
            println!("{key}");
            Ok(())
        }
        Command::Healthcheck => monolith::healthcheck::check(&load_config()?),
        Command::CheckData => {
            // The seed files alone are checked, with the rules every backend applies: no
            // database is needed or touched.
            let (config, _logs) = start()?;
            let store =
                Store::load(&config.data_dir, config.max_records).map_err(|e| e.to_string())?;
            let counts = runtime()?
                .block_on(store.counts())
                .map_err(|e| e.to_string())?;
            println!(
                "{}: ok ({} books, {} things, {} users, {} items, {} bids)",
                config.data_dir.display(),
                counts.books,
                counts.things,
                counts.users,
                counts.items,
                counts.bids
            );
            Ok(())
        }
        Command::Migrate => {
            let (config, _logs) = start()?;
            let database = config
                .database
                .as_ref()
                .ok_or("migrate needs DATABASE_URL: the in-memory store has no schema")?;
            runtime()?.block_on(async {
                monolith::store::postgres::migrate(database)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            tracing::info!(database = %database.redacted_url, "migrations applied");
            Ok(())
        }
        Command::Serve => {
            let (config, _logs) = start()?;
            runtime()?.block_on(serve(config))
        }
    }
}

/// Reads `.env` and the environment into a checked configuration.
fn load_config() -> Result<Config, String> {
    // The file is optional and real environment variables win; a file that exists but cannot
    // be parsed is an error rather than a silently ignored configuration.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        return Err(format!("cannot read .env: {e}"));
    }
    Config::from_env().map_err(|e| e.to_string())
}

/// The configuration and logging: what every command that reads data shares. Hold the guard
/// until the command ends: dropping it writes out the last log lines.
fn start() -> Result<(Config, telemetry::LogWriterGuard), String> {
    let config = load_config()?;
    let logs = telemetry::init(&config.log_filter, config.log_format)?;
    Ok((config, logs))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn serve(config: Config) -> Result<(), String> {
    let store = Store::open(&config).await.map_err(|e| e.to_string())?;
    // Each connection is a file descriptor; the default soft limit (often 1024) would cap them
    // well below what the machine allows.
    monolith::conn::raise_fd_limit();
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    telemetry::log_startup(&config, local);
    let state = AppState::new(config, store.clone());
    let served = monolith::serve(listener, state, monolith::shutdown_signal()).await;
    store.close().await;
    served.map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

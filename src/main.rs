//! The `switchyard` binary: `serve` (default), `migrate`, `token`, `catalog`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::config::{Config, LogFormat};
use switchyard::domain::Role;
use switchyard::{App, auth, catalog, store};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Socket.IO-compatible real-time server for operations software"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a JWT signed with the configured JWT_SECRET.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        company: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print the merged catalog (built-in + CATALOG_FILE: events, rooms,
    /// documents, commands; rules with RULES_FILE); needs no database and
    /// no JWT secret.
    Catalog {
        /// As one JSON document (for client code generation; see docs/protocol.md).
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "role must be operator, supervisor, manager or admin".to_string())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,switchyard=info,socketioxide=warn,engineioxide=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// How often a worker takes a task from tokio's shared (injection) queue
/// instead of its own: every second task (tokio's default tunes it to
/// 200 µs of polling, up to every 127th task). Under overload a socket's wakeup that
/// finds the worker's queue full (256) moves there, and at the default
/// rate those sockets waited for hundreds of ms while the ones that kept
/// the local queue ran at once: at saturation (1,000 connections pinging
/// in a closed loop) ack p99 was 350 ms against a 1 ms p50, 3.9× Node
/// socket.io's p99; at 2 it is 78–101 ms, Node's 77–98 (bench/README.md,
/// "Scheduling fairness"). At 1 the shared queue starves the sockets'
/// writers and fan-out dropped 160,000+ ephemeral deliveries per run.
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("switchyard: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Catalog { json } = command {
        return print_catalog(json);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Token {
            user,
            company,
            role,
            ttl,
        } => auth::mint_token(&config, &user, &company, role, ttl).map(|t| println!("{t}")),
        Command::Catalog { .. } => Ok(()), // handled above, without configuration
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let addr = app.local_addr()?;
    let state = app.state();
    let config = &state.config;
    // The URLs print without their passwords (`crate::secret::SecretUrl`).
    tracing::info!(
        node = %config.node_id,
        database = %config.database_url,
        redis = %config.redis_url.as_ref().map_or("disabled".to_string(), ToString::to_string),
        metrics = %app.metrics_addr().map_or_else(|| format!("http://{addr}/metrics"), |a| format!("http://{a}/metrics")),
        adapter = if state.redis.is_some() { "redis" } else { "local" },
        ws = %config.ws_json_paths.join(","),
        sse = %config.sse_paths.join(","),
        "switchyard listening on http://{addr} (socket.io path /socket.io/); \
         mint a token with: switchyard token --user U --company C --role operator"
    );
    app.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

/// `switchyard catalog [--json]`: reads only `CATALOG_FILE` and
/// `RULES_FILE` (from the environment or `.env`), so it runs where the
/// server's other settings (database, JWT secret) are absent.
fn print_catalog(json: bool) -> std::process::ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("switchyard: .env: {e}");
        return std::process::ExitCode::from(2);
    }
    let path = |var: &str| {
        std::env::var(var)
            .ok()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)
    };
    let (file, rules) = (path("CATALOG_FILE"), path("RULES_FILE"));
    let doc = match switchyard::rules::export::catalog_json(file.as_deref(), rules.as_deref()) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let text = match json {
        true => serde_json::to_string_pretty(&doc).map(|t| t + "\n"),
        false => Ok(catalog::export::summary(&doc)),
    };
    let written = text
        .map_err(std::io::Error::other)
        .and_then(|t| std::io::stdout().lock().write_all(t.as_bytes()));
    match written {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("switchyard: {e}");
            std::process::ExitCode::FAILURE
        }
        _ => std::process::ExitCode::SUCCESS,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

//! The `switchyard` binary: `serve` (default), `migrate`, `token`.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::config::{Config, LogFormat};
use switchyard::domain::Role;
use switchyard::{App, auth, store};

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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Token {
            user,
            company,
            role,
            ttl,
        } => auth::mint_token(&config, &user, &company, role, ttl).map(|t| println!("{t}")),
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
    tracing::info!(
        node = %state.config.node_id,
        database = state.store.backend(),
        adapter = if state.redis.is_some() { "redis" } else { "local" },
        "switchyard listening on http://{addr} (socket.io path /socket.io/); \
         mint a token with: switchyard token --user U --company C --role operator"
    );
    app.run_until(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = store::connect(&config.database_url).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend());
    Ok(())
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

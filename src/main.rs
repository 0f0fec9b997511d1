//! `duet`: runs Duet's services, applies migrations, prints the API specs.

use clap::{Parser, Subcommand};

/// mimalloc returns freed memory to the OS and fragments less than glibc
/// under many small per-connection allocations (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use duet::{Application, Service};
use duet_common::{Settings, telemetry};

#[derive(Parser)]
#[command(name = "duet", version, about = "Realtime 1:1 chat backend")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run services (all of them unless --only is given).
    Serve {
        /// Comma-separated services to run in this process.
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Service>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Create the database if needed and apply pending migrations.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Print the AsyncAPI document of the WebSocket protocol (YAML).
    Asyncapi,
    /// Read-side maintenance.
    Projector {
        #[command(subcommand)]
        command: ProjectorCommand,
    },
}

#[derive(Subcommand)]
enum ProjectorCommand {
    /// Recompute every Redis projection from PostgreSQL (safe while projectors run).
    Rebuild {
        #[command(flatten)]
        settings: Settings,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Openapi) => {
            println!("{}", duet::openapi_spec());
            Ok(())
        }
        Some(Command::Asyncapi) => {
            print!("{}", duet_common::protocol::asyncapi::document());
            Ok(())
        }
        Some(Command::Migrate { settings }) => {
            telemetry::init(settings.log_format);
            duet_common::db::ensure_database(&settings.database_url).await?;
            duet_common::db::migrate(&settings.database_url).await?;
            let pool = duet_common::db::connect(&settings.database_url, 1).await?;
            duet_jobs::setup(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::Serve { only, settings }) => serve(only, settings).await,
        Some(Command::Projector { command: ProjectorCommand::Rebuild { settings } }) => {
            telemetry::init(settings.log_format);
            let ctx = duet_common::AppContext::build(settings).await?;
            match duet_projector::rebuild::rebuild(&ctx).await? {
                Some(rebuilt) => tracing::info!(entries = rebuilt.entries, "projections rebuilt"),
                None => anyhow::bail!("another process is rebuilding the projections; try again later"),
            }
            Ok(())
        }
        None => serve(Vec::new(), Settings::from_env()?).await,
    }
}

async fn serve(only: Vec<Service>, settings: Settings) -> anyhow::Result<()> {
    telemetry::init(settings.log_format);
    raise_fd_limit();
    let services = if only.is_empty() { Service::ALL.to_vec() } else { only };
    let app = Application::build(settings, &services).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Every WebSocket is a file descriptor: lift the soft limit to the hard one,
/// and say how many connections that allows.
fn raise_fd_limit() {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_err() {
                tracing::warn!(soft, hard, "could not raise the open-files limit");
            }
            tracing::info!(open_files = hard, "open-files limit (bounds concurrent connections)");
        }
        Err(e) => tracing::warn!(error = %e, "could not read the open-files limit"),
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

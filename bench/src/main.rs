//! `duet-bench`: drives real WebSocket clients against running Duet nodes.
//!
//! - `chat`: P pairs chatting at a total rate R for D seconds, open-loop, with
//!   a checker that proves nothing acked was lost, duplicated or reordered.
//! - `connections`: N authenticated idle connections, and the server's memory
//!   per connection.
//! - `floor`: a minimal durable relay in-process, for the latency no Duet build
//!   can beat on this machine.
//!
//! The command lines and the JSON they print are a public contract.

use clap::{Parser, Subcommand};
use duet_bench::{append, chat, connections, floor, proxy};

#[derive(Parser)]
#[command(name = "duet-bench", version, about = "Load generator and consistency checker for Duet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// P pairs of users chatting 1:1 at a total rate R messages/s for D seconds.
    Chat(chat::ChatArgs),
    /// Closed-loop append throughput over REST (group commit vs one transaction per message).
    Append(append::AppendArgs),
    /// N authenticated idle WebSocket connections held for a while.
    Connections(connections::ConnectionsArgs),
    /// The least a durable relay does per message (no Duet): this machine's latency floor.
    Floor(floor::FloorArgs),
    /// A TCP proxy that delays, stalls or cuts on command (scripts/fault-suite).
    Proxy(proxy::ProxyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    let cli = Cli::parse();
    let ok = match cli.command {
        Command::Chat(args) => chat::run(args).await?,
        Command::Connections(args) => connections::run(args).await?,
        Command::Append(args) => append::run(args).await?,
        Command::Floor(args) => floor::run(args).await?,
        Command::Proxy(args) => proxy::run(args).await?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Every connection is a file descriptor: lift the soft limit to the hard one.
fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}

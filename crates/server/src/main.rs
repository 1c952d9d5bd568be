//! `switchyard`: the realtime server. Serves Socket.IO at `/socket.io/`, the chat page at `/`,
//! `/health` and Prometheus `/metrics`, all on one port. With `--redis-url` it joins a cluster of
//! servers (Switchyard or Node socket.io) through Redis; `switchyard emit` publishes to a cluster.

use axum::routing::get;
use axum::Router;
use clap::Parser;
use std::time::Duration;
use switchyard_engine::{CorsConfig, EngineConfig};
use switchyard_socketio::{SocketIo, SocketIoConfig};

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "A Socket.IO server: HTTP long-polling and WebSocket, rooms, acks")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Engine.IO ping interval, in milliseconds.
    #[arg(long, env = "SWITCHYARD_PING_INTERVAL_MS", default_value_t = 25_000)]
    ping_interval_ms: u64,
    /// Engine.IO ping timeout, in milliseconds.
    #[arg(long, env = "SWITCHYARD_PING_TIMEOUT_MS", default_value_t = 20_000)]
    ping_timeout_ms: u64,
    /// Largest message or polling body, in bytes (maxHttpBufferSize).
    #[arg(long, env = "SWITCHYARD_MAX_PAYLOAD", default_value_t = 1_000_000)]
    max_payload: usize,
    /// Outgoing bytes queued per connection before it is disconnected as too slow.
    #[arg(long, env = "SWITCHYARD_MAX_QUEUE_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_queue_bytes: usize,
    /// Allowed CORS origins for polling (comma-separated; `*` for any). None by default.
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    #[command(flatten)]
    cluster: switchyard::cluster::ClusterArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Publish an event to a cluster's clients through Redis, without running a server.
    Emit(switchyard::cluster::EmitArgs),
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    switchyard::init_tracing();
    let args = Args::parse();
    if let Some(Command::Emit(emit)) = &args.command {
        return switchyard::cluster::run_emit(emit).await.map_err(std::io::Error::other);
    }
    let engine = EngineConfig {
        ping_interval: Duration::from_millis(args.ping_interval_ms),
        ping_timeout: Duration::from_millis(args.ping_timeout_ms),
        max_payload: args.max_payload,
        max_queue_bytes: args.max_queue_bytes,
        cors: (!args.cors_origins.is_empty())
            .then(|| CorsConfig { origins: args.cors_origins.clone(), credentials: false }),
        ..EngineConfig::default()
    };
    let builder = SocketIo::builder().config(SocketIoConfig { engine, ..Default::default() });
    let (io, cluster) = switchyard::cluster::configure(builder, &args.cluster).map_err(std::io::Error::other)?;
    switchyard::chat::install(&io);
    let metrics_io = io.clone();
    let render_metrics = move || {
        let mut text = switchyard::metrics::render(&metrics_io);
        if let Some(node) = &cluster {
            text.push_str(&switchyard::cluster::render_metrics(node));
        }
        std::future::ready(text)
    };
    let app = Router::new()
        .merge(switchyard::chat::routes())
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .route_service("/socket.io/", io.service());
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "switchyard listening");
    let shutdown_io = io.clone();
    switchyard::serve(listener, app, async move {
        switchyard::shutdown_signal().await;
        tracing::info!("shutting down: disconnecting clients");
        shutdown_io.close();
    })
    .await
}

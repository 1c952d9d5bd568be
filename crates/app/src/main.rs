//! `switchyard`: the realtime server. Parses arguments, loads the configuration and runs the server
//! (see the library's docs for the layout); `switchyard config` prints the effective configuration,
//! `switchyard emit` publishes to a cluster and `switchyard token` mints a JWT with the configured secret.

use clap::Parser;

/// jemalloc, chosen by measurement: at 19,000 idle WebSocket connections it holds each in about 340
/// fewer bytes of RSS than glibc's malloc (12% less; BENCHMARKS.md, issue 11), with no per-chunk
/// header on small allocations.
#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::config::{Config, Loader, CONFIG_FILE_ENV};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A Socket.IO server: HTTP long-polling and WebSocket, rooms, acks, clusters over Redis",
    after_help = "Every key of the configuration (docs/CONFIG.md) can be set in the file, as SWITCHYARD_<SECTION>_<KEY>, or with --set section.key=value. Precedence: flags > environment > file > defaults."
)]
struct Args {
    /// TOML configuration file (or SWITCHYARD_CONFIG).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Sets any key, e.g. `--set limits.events_per_second=50` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
    /// server.host: address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// server.port: port to listen on.
    #[arg(long)]
    port: Option<u16>,
    /// engine.ping_interval_ms.
    #[arg(long)]
    ping_interval_ms: Option<u64>,
    /// engine.ping_timeout_ms.
    #[arg(long)]
    ping_timeout_ms: Option<u64>,
    /// engine.max_payload: largest message or polling body, in bytes.
    #[arg(long)]
    max_payload: Option<usize>,
    /// engine.max_queue_bytes: outgoing bytes queued per connection before it is disconnected.
    #[arg(long)]
    max_queue_bytes: Option<usize>,
    /// cors.origins: allowed origins for polling (comma-separated; `*` for any).
    #[arg(long)]
    cors_origins: Option<String>,
    /// redis.url: Redis to join a cluster through.
    #[arg(long)]
    redis_url: Option<String>,
    /// redis.cluster_nodes: seed nodes of a Redis Cluster (comma-separated).
    #[arg(long)]
    redis_cluster_nodes: Option<String>,
    /// redis.key_prefix.
    #[arg(long)]
    redis_key_prefix: Option<String>,
    /// redis.mode: `classic` or `sharded`.
    #[arg(long)]
    redis_mode: Option<String>,
    /// redis.subscription_mode: `dynamic`, `dynamic-private` or `static`.
    #[arg(long)]
    redis_subscription_mode: Option<String>,
    /// redis.requests_timeout_ms.
    #[arg(long)]
    redis_requests_timeout_ms: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Publish an event to a cluster's clients through Redis, without running a server.
    Emit(switchyard::cluster::EmitArgs),
    /// Mint an HS256 token with the configured auth.jwt.secret (for development and the chat page).
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user id (`sub`); the user's sockets join the room `user:<sub>`.
    #[arg(long)]
    sub: String,
    /// Room patterns the user may join (the `rooms.claim` claim), e.g. 'chat:*' (comma-separated, repeatable).
    #[arg(long, value_delimiter = ',')]
    rooms: Vec<String>,
    /// Room patterns the user may publish to (the `rooms.publish_claim` claim; default: as --rooms).
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// Lifetime: 90, 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = switchyard::auth::parse_ttl)]
    ttl: std::time::Duration,
}

impl Args {
    fn load(&self) -> Result<Config, String> {
        let file = self.config.clone().or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        let mut loader = Loader::new().file(file).env(std::env::vars());
        let flags: [(&str, Option<String>); 13] = [
            ("server.host", self.host.clone()),
            ("server.port", self.port.map(|v| v.to_string())),
            ("engine.ping_interval_ms", self.ping_interval_ms.map(|v| v.to_string())),
            ("engine.ping_timeout_ms", self.ping_timeout_ms.map(|v| v.to_string())),
            ("engine.max_payload", self.max_payload.map(|v| v.to_string())),
            ("engine.max_queue_bytes", self.max_queue_bytes.map(|v| v.to_string())),
            ("cors.origins", self.cors_origins.clone()),
            ("redis.url", self.redis_url.clone()),
            ("redis.cluster_nodes", self.redis_cluster_nodes.clone()),
            ("redis.key_prefix", self.redis_key_prefix.clone()),
            ("redis.mode", self.redis_mode.clone()),
            ("redis.subscription_mode", self.redis_subscription_mode.clone()),
            ("redis.requests_timeout_ms", self.redis_requests_timeout_ms.map(|v| v.to_string())),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                loader = loader.flag(key, value);
            }
        }
        for setting in &self.set {
            let (key, value) = setting.split_once('=').ok_or_else(|| format!("--set {setting}: expected KEY=VALUE"))?;
            loader = loader.flag(key.trim(), value);
        }
        loader.load().map_err(|e| e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Emit(emit)) = &args.command {
        switchyard::init_tracing();
        return match switchyard::cluster::run_emit(emit).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchyard emit: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match args.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchyard: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config) = &args.command {
        print!("{}", config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Token(token)) = &args.command {
        let request = switchyard::auth::TokenRequest {
            sub: token.sub.clone(),
            rooms: token.rooms.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
            publish: token.publish.iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
            ttl: token.ttl,
        };
        return match switchyard::auth::mint(&config, &request) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchyard token: {e}");
                ExitCode::from(2)
            }
        };
    }
    switchyard::logging::init(&config.log);
    match switchyard::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        // A key file that cannot be used is an invalid configuration, found while building.
        Err(e @ switchyard::AppError::Auth(_)) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("switchyard: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "switchyard stopped");
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

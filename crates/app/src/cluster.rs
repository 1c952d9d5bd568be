//! Running Switchyard as one node of a cluster over Redis, and the `switchyard emit` subcommand.
//!
//! Without a Redis address the server runs alone on the in-memory adapter. With `--redis-url` (or
//! `REDIS_URL`), or `--redis-cluster-nodes` for a Redis Cluster, it joins the cluster in the wire
//! format of Node's `@socket.io/redis-adapter`: `classic` (the default) or `sharded`.

use crate::config::RedisSection;
use clap::Args;
use serde_json::Value;
use std::time::Duration;
use switchyard_redis::{ConfigError, Emitter, Mode, RedisAdapterConfig, RedisNode, RedisTarget};
use switchyard_socketio::{Payload, SocketIo, SocketIoBuilder};

impl RedisSection {
    /// Where Redis is, if anywhere.
    pub fn target(&self) -> Option<RedisTarget> {
        if !self.cluster_nodes.is_empty() {
            return Some(RedisTarget::Cluster(self.cluster_nodes.clone()));
        }
        (!self.url.is_empty()).then(|| RedisTarget::Single(self.url.clone()))
    }

    /// The adapter settings. `mode` and `subscription_mode` were checked by `Config::validate`.
    pub fn adapter_config(&self) -> RedisAdapterConfig {
        RedisAdapterConfig {
            key_prefix: self.key_prefix.clone(),
            mode: self.mode.parse().unwrap_or_default(),
            subscription_mode: self.subscription_mode.parse().unwrap_or_default(),
            requests_timeout: Duration::from_millis(self.requests_timeout_ms),
            ..RedisAdapterConfig::default()
        }
    }
}

/// Builds the server, joining the cluster `redis` describes, if any: every namespace then uses the
/// Redis adapter. Returns the server and the node (its stats feed the metrics, its link the readiness).
pub fn configure(builder: SocketIoBuilder, redis: &RedisSection) -> Result<(SocketIo, Option<RedisNode>), ConfigError> {
    let Some(target) = redis.target() else { return Ok((builder.build(), None)) };
    let config = redis.adapter_config();
    let mode = config.mode;
    let node = RedisNode::start(target.clone(), config)?;
    tracing::info!(?target, ?mode, uid = node.uid(), "joining the cluster through Redis");
    Ok((builder.adapter(node.adapter_factory()).build(), Some(node)))
}

/// `switchyard emit`: publish one event to a cluster's clients without running a server.
#[derive(Debug, Clone, Args)]
pub struct EmitArgs {
    /// Redis URL of the cluster.
    #[arg(long = "redis", env = "REDIS_URL", required_unless_present = "redis_cluster_nodes")]
    pub redis: Option<String>,
    /// Seed nodes of a Redis Cluster (comma-separated URLs), instead of --redis.
    #[arg(long = "redis-cluster-nodes", env = "REDIS_CLUSTER_NODES", value_delimiter = ',')]
    pub redis_cluster_nodes: Vec<String>,
    /// Channel prefix of the cluster.
    #[arg(long = "key-prefix", env = "REDIS_KEY_PREFIX", default_value = "socket.io")]
    pub key_prefix: String,
    /// Wire format of the cluster: `classic` or `sharded`.
    #[arg(long = "mode", env = "REDIS_MODE", default_value = "classic")]
    pub mode: Mode,
    /// Namespace of the clients to reach.
    #[arg(long = "nsp", default_value = "/")]
    pub nsp: String,
    /// Only clients in this room (repeat for several; none: every client).
    #[arg(long = "room")]
    pub rooms: Vec<String>,
    /// Not clients in this room (repeatable).
    #[arg(long = "except")]
    pub except: Vec<String>,
    /// May be dropped for clients not ready to receive.
    #[arg(long)]
    pub volatile: bool,
    /// Event name.
    pub event: String,
    /// Arguments, each a JSON value (a word that is not JSON is sent as a string).
    pub args: Vec<String>,
}

impl EmitArgs {
    fn target(&self) -> RedisTarget {
        if !self.redis_cluster_nodes.is_empty() {
            RedisTarget::Cluster(self.redis_cluster_nodes.clone())
        } else {
            RedisTarget::Single(self.redis.clone().unwrap_or_default())
        }
    }

    /// The event's arguments as JSON values.
    pub fn payload(&self) -> Payload {
        Payload::new(
            self.args
                .iter()
                .map(|arg| serde_json::from_str(arg).unwrap_or_else(|_| Value::String(arg.clone())))
                .collect(),
        )
    }
}

/// Publishes the event `args` describes. Errors are meant for the terminal.
pub async fn run_emit(args: &EmitArgs) -> Result<(), String> {
    let target = args.target();
    target.validate().map_err(|e| format!("invalid Redis address: {e}"))?;
    let emitter = tokio::time::timeout(Duration::from_secs(10), Emitter::connect(target, &args.key_prefix, args.mode))
        .await
        .map_err(|_| "Redis did not answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let mut operator = emitter.of(&args.nsp);
    for room in &args.rooms {
        operator = operator.to(room.as_str());
    }
    for room in &args.except {
        operator = operator.except(room.as_str());
    }
    if args.volatile {
        operator = operator.volatile();
    }
    operator.emit(&args.event, args.payload()).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct EmitCli {
        #[command(flatten)]
        emit: EmitArgs,
    }

    #[test]
    fn redis_section_to_adapter_settings() {
        let mut redis =
            RedisSection { url: "redis://127.0.0.1:7000/".into(), mode: "sharded".into(), ..Default::default() };
        assert_eq!(redis.target(), Some(RedisTarget::Single("redis://127.0.0.1:7000/".into())));
        assert_eq!(redis.adapter_config().mode, Mode::Sharded);
        redis.cluster_nodes = vec!["redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()];
        assert!(matches!(redis.target(), Some(RedisTarget::Cluster(nodes)) if nodes.len() == 2));
        assert_eq!(RedisSection::default().target(), None);
    }

    #[test]
    fn emit_arguments_are_json_or_strings() {
        let cli = EmitCli::parse_from([
            "x",
            "--redis",
            "redis://127.0.0.1/",
            "--room",
            "r",
            "news",
            "{\"a\":1}",
            "plain",
            "3",
        ]);
        assert_eq!(cli.emit.rooms, vec!["r"]);
        assert_eq!(cli.emit.payload().args, vec![json!({"a": 1}), json!("plain"), json!(3)]);
    }
}

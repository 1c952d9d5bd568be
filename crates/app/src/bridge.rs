//! `redis.bridge`: plain Redis channels (`order.created`) whose JSON messages reach rooms as events,
//! so services that already publish to Redis reach browsers with no code (docs/CLUSTER.md).
//!
//! Every node subscribes to the configured channels (Redis delivers each publish to every
//! subscriber) and emits each message to its own sockets only (`local()`): together the nodes reach
//! the room across the cluster, each socket once. The message, parsed as JSON, is the event's one
//! argument; the room is the route's template (`user:{userId}`) filled from its fields.
//!
//! A message that is not JSON, or lacks a field its template needs, is not emitted: it is counted
//! in `switchyard_redis_bridge_messages_total{result}` and logged (at warn, at most every 10 s per
//! reason, else at debug). The subscription reconnects (every second) when the link drops;
//! messages published while it is down are not seen (Redis pub/sub keeps nothing).

use crate::config::BridgeRoute;
use futures_util::StreamExt;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::limits::LogThrottle;
use switchyard_redis::RedisTarget;
use switchyard_socketio::{Payload, SocketIo};

/// How long the bridge waits before subscribing again after losing Redis.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// A room template: text with `{field}` (or `{a.b}`) holes filled from a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTemplate(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Vec<String>),
}

/// Why a message could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The template needs `field` and the message has none (or it is not a string or number).
    #[error("the message has no string or number field {0:?}")]
    MissingField(String),
    /// The filled room is empty or longer than [`crate::events::MAX_ROOM_BYTES`].
    #[error("the room would be empty or longer than 256 bytes")]
    BadRoom,
}

impl RoomTemplate {
    /// Parses `user:{userId}`: `{` opens a field name (letters, digits, `_`, `-`, `.` for nesting),
    /// `}` closes it.
    pub fn parse(text: &str) -> Result<RoomTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or("a \"{\" without its \"}\"")?;
            let name = &after[..close];
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                || name.split('.').any(str::is_empty)
            {
                return Err(format!("{{{name}}} is not a field name (letters, digits, _, -, . between names)"));
            }
            parts.push(Part::Field(name.split('.').map(str::to_string).collect()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("a \"}\" without its \"{\"".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if parts.is_empty() {
            return Err("empty".into());
        }
        Ok(RoomTemplate(parts))
    }

    /// The room for `message`.
    pub fn fill(&self, message: &Value) -> Result<String, FillError> {
        let mut room = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => room.push_str(text),
                Part::Field(path) => {
                    let value = path.iter().try_fold(message, |value, name| value.get(name));
                    match value {
                        Some(Value::String(s)) => room.push_str(s),
                        Some(Value::Number(n)) => room.push_str(&n.to_string()),
                        _ => return Err(FillError::MissingField(path.join("."))),
                    }
                }
            }
        }
        if room.is_empty() || room.len() > crate::events::MAX_ROOM_BYTES {
            return Err(FillError::BadRoom);
        }
        Ok(room)
    }
}

struct Route {
    event: String,
    room: RoomTemplate,
}

/// The bridge of one node.
pub struct Bridge {
    io: SocketIo,
    routes: HashMap<String, Vec<Route>>,
    messages: IntCounterVec,
    log: LogThrottle,
}

impl Bridge {
    /// The bridge for `routes` (checked by `Config::validate`).
    pub fn new(io: SocketIo, routes: &[BridgeRoute]) -> Result<Arc<Bridge>, String> {
        let mut by_channel: HashMap<String, Vec<Route>> = HashMap::new();
        for route in routes {
            let room =
                RoomTemplate::parse(&route.room).map_err(|e| format!("redis.bridge room {:?}: {e}", route.room))?;
            by_channel.entry(route.channel.clone()).or_default().push(Route { event: route.event.clone(), room });
        }
        let messages = IntCounterVec::new(
            Opts::new(
                "switchyard_redis_bridge_messages_total",
                "Messages received on redis.bridge channels, by channel and result: emitted (once per route), \
                 bad_json, missing_field, bad_room.",
            ),
            &["channel", "result"],
        )
        .expect("valid metric");
        Ok(Arc::new(Bridge { io, routes: by_channel, messages, log: LogThrottle::default() }))
    }

    /// Registers `switchyard_redis_bridge_messages_total{channel, result}`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.messages.clone()))
    }

    /// The channels to subscribe to.
    pub fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.routes.keys().cloned().collect();
        channels.sort();
        channels
    }

    /// Routes one message from `channel`: emitted to this node's sockets in the room of each route.
    pub fn handle(&self, channel: &str, payload: &[u8]) {
        let Some(routes) = self.routes.get(channel) else { return };
        let message: Value = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => return self.refuse(channel, "bad_json", &e.to_string()),
        };
        let ns = self.io.of("/");
        for route in routes {
            match route.room.fill(&message) {
                Ok(room) => {
                    ns.to(room.as_str()).local().emit(&route.event, Payload::new(vec![message.clone()]));
                    self.messages.with_label_values(&[channel, "emitted"]).inc();
                }
                Err(e @ FillError::MissingField(_)) => self.refuse(channel, "missing_field", &e.to_string()),
                Err(e @ FillError::BadRoom) => self.refuse(channel, "bad_room", &e.to_string()),
            }
        }
    }

    fn refuse(&self, channel: &str, result: &str, reason: &str) {
        self.messages.with_label_values(&[channel, result]).inc();
        if self.log.ready() {
            tracing::warn!(channel, result, reason, "redis.bridge: message not emitted");
        } else {
            tracing::debug!(channel, result, reason, "redis.bridge: message not emitted");
        }
    }

    /// Subscribes and routes messages until the task is aborted, reconnecting when Redis goes away.
    pub fn spawn(self: &Arc<Self>, target: RedisTarget) -> tokio::task::JoinHandle<()> {
        let bridge = self.clone();
        // Redis Cluster delivers a PUBLISH to the subscribers of every node: one seed is enough.
        let url = match target {
            RedisTarget::Single(url) => url,
            RedisTarget::Cluster(nodes) => nodes.into_iter().next().unwrap_or_default(),
        };
        tokio::spawn(async move {
            let channels = bridge.channels();
            loop {
                match bridge.subscribe(&url, &channels).await {
                    Ok(mut pubsub) => {
                        tracing::info!(?channels, "redis.bridge: subscribed");
                        let mut messages = pubsub.on_message();
                        while let Some(msg) = messages.next().await {
                            bridge.handle(msg.get_channel_name(), msg.get_payload_bytes());
                        }
                        tracing::warn!("redis.bridge: lost the Redis subscription; subscribing again");
                    }
                    Err(e) => {
                        if bridge.log.ready() {
                            tracing::warn!(error = %e, "redis.bridge: cannot subscribe; retrying");
                        }
                    }
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        })
    }

    async fn subscribe(&self, url: &str, channels: &[String]) -> redis::RedisResult<redis::aio::PubSub> {
        let client = redis::Client::open(url)?;
        let mut pubsub = tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        pubsub.subscribe(channels).await?;
        Ok(pubsub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_from_fields() {
        let t = RoomTemplate::parse("user:{userId}").unwrap();
        assert_eq!(t.fill(&json!({"userId": "42", "total": 3})), Ok("user:42".into()));
        assert_eq!(t.fill(&json!({"userId": 42})), Ok("user:42".into()));
        assert_eq!(t.fill(&json!({"user": "42"})), Err(FillError::MissingField("userId".into())));
        assert_eq!(t.fill(&json!({"userId": null})), Err(FillError::MissingField("userId".into())));
        assert_eq!(t.fill(&json!({"userId": {"a": 1}})), Err(FillError::MissingField("userId".into())));
        assert_eq!(t.fill(&json!([1, 2])), Err(FillError::MissingField("userId".into())));
        let nested = RoomTemplate::parse("shop-{shop.id}/{kind}").unwrap();
        assert_eq!(nested.fill(&json!({"shop": {"id": "s1"}, "kind": "x"})), Ok("shop-s1/x".into()));
        assert_eq!(RoomTemplate::parse("orders").unwrap().fill(&json!(5)), Ok("orders".into()));
        assert_eq!(t.fill(&json!({"userId": ""})), Ok("user:".into()));
        assert_eq!(RoomTemplate::parse("{id}").unwrap().fill(&json!({"id": ""})), Err(FillError::BadRoom));
        let long = "x".repeat(300);
        assert_eq!(t.fill(&json!({ "userId": long })), Err(FillError::BadRoom));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["", "user:{", "user:{}", "user:}", "{a b}", "{a..b}", "{.a}"] {
            assert!(RoomTemplate::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

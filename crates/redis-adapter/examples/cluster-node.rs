//! A cluster node for the mixed-cluster tests (tests/cluster): Switchyard with the Redis adapter, plus
//! a `cmd` event through which a test client makes this node act on the whole cluster. The Node
//! server of those tests implements the same contract.
//!
//! Environment: `PORT` (0: any; the port is printed as `listening on PORT`), `REDIS_URL` or
//! `REDIS_CLUSTER_NODES` (comma-separated), `REDIS_MODE` (classic|sharded), `REDIS_KEY_PREFIX`,
//! `REDIS_SUBSCRIPTION_MODE` (static|dynamic|dynamic-private, sharded mode).
//!
//! Events on `/`: `join`(room, ack), `leave`(room, ack), `setData`(data, ack), and
//! `cmd`(name, options, ack) with name one of: `broadcast` {to, except, event, args},
//! `fetchSockets` {to}, `allRooms`, `serverSideEmit` {event, args, timeout}, `emitWithAck`
//! {to, event, args, timeout}, `socketsJoin` {to, rooms}, `socketsLeave` {to, rooms},
//! `disconnectSockets` {to, close}, `serverCount`, `notes`, `port` (this node's port). Server-side events: `ping`(...args, ack)
//! answers `["switchyard", port, ...args]`; `note`(...args) is recorded for `notes`.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard_redis::{Mode, RedisAdapterConfig, RedisNode, RedisTarget, SubscriptionMode};
use switchyard_socketio::{BroadcastOperator, Namespace, Payload, Room, SocketIo, SocketIoConfig};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn operator(ns: &Arc<Namespace>, options: &Value) -> BroadcastOperator {
    let mut op = ns.broadcast().to_many(strings(&options["to"]));
    for room in strings(&options["except"]) {
        op = op.except(room);
    }
    op
}

fn args_of(options: &Value) -> Payload {
    Payload::new(options["args"].as_array().cloned().unwrap_or_default())
}

struct Context {
    ns: Arc<Namespace>,
    node: RedisNode,
    notes: Arc<Mutex<Vec<Value>>>,
    port: u16,
}

async fn command(ctx: Arc<Context>, name: String, options: Value) -> Value {
    let (ns, node, notes) = (ctx.ns.clone(), ctx.node.clone(), &ctx.notes);
    let timeout = Duration::from_millis(options["timeout"].as_u64().unwrap_or(3000));
    match name.as_str() {
        "broadcast" => {
            operator(&ns, &options).emit(options["event"].as_str().unwrap_or("message"), args_of(&options));
            json!(true)
        }
        "fetchSockets" => match operator(&ns, &options).fetch_sockets().await {
            Ok(sockets) => {
                json!(sockets
                    .iter()
                    .map(|s| json!({"id": s.id, "rooms": s.rooms, "data": s.data, "local": s.local}))
                    .collect::<Vec<_>>())
            }
            Err(err) => json!({"error": err.to_string()}),
        },
        "allRooms" => match ns.adapter().all_rooms(&ns).await {
            Ok(rooms) => json!(rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
            Err(err) => json!({"error": err.to_string()}),
        },
        "serverSideEmit" => {
            let event = options["event"].as_str().unwrap_or("ping").to_string();
            match ns.server_side_emit(&event, args_of(&options), Some(timeout)).await {
                Ok(answers) => {
                    json!({"responses": answers.into_iter().map(|p| p.args.into_iter().next().unwrap_or(Value::Null)).collect::<Vec<_>>()})
                }
                Err(err) => json!({"error": err.to_string()}),
            }
        }
        "serverSideEmitNoAck" => {
            let event = options["event"].as_str().unwrap_or("note").to_string();
            let _ = ns.server_side_emit(&event, args_of(&options), None).await;
            json!(true)
        }
        "emitWithAck" => {
            let op = operator(&ns, &options).timeout(timeout);
            match op.emit_with_ack(options["event"].as_str().unwrap_or("ask"), args_of(&options)).await {
                Ok(answers) => {
                    json!({"responses": answers.into_iter().map(|p| p.args.into_iter().next().unwrap_or(Value::Null)).collect::<Vec<_>>()})
                }
                Err(err) => {
                    json!({"error": err.to_string(), "responses": err.responses.into_iter().map(|p| p.args.into_iter().next().unwrap_or(Value::Null)).collect::<Vec<_>>()})
                }
            }
        }
        "socketsJoin" | "socketsLeave" => {
            let rooms: Vec<Room> = strings(&options["rooms"]).into_iter().map(Room::from).collect();
            let op = operator(&ns, &options);
            if name == "socketsJoin" {
                op.sockets_join(&rooms)
            } else {
                op.sockets_leave(&rooms)
            }
            json!(true)
        }
        "disconnectSockets" => {
            operator(&ns, &options).disconnect_sockets(options["close"].as_bool().unwrap_or(false));
            json!(true)
        }
        "serverCount" => json!(node.server_count(ns.name()).await.unwrap_or(0)),
        "notes" => Value::Array(notes.lock().clone()),
        "port" => json!(ctx.port),
        "stats" => {
            let s = node.stats().snapshot();
            json!({"published": s.published, "dropped": s.dropped, "received": s.received, "malformed": s.malformed})
        }
        other => json!({"error": format!("unknown command {other}")}),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let target = match (env("REDIS_CLUSTER_NODES"), env("REDIS_URL")) {
        (Some(nodes), _) => RedisTarget::Cluster(nodes.split(',').map(str::to_string).collect()),
        (None, Some(url)) => RedisTarget::Single(url),
        (None, None) => return Err(std::io::Error::other("set REDIS_URL or REDIS_CLUSTER_NODES")),
    };
    let mode: Mode = env("REDIS_MODE").unwrap_or_else(|| "classic".into()).parse().map_err(std::io::Error::other)?;
    let subscription_mode: SubscriptionMode =
        env("REDIS_SUBSCRIPTION_MODE").unwrap_or_else(|| "dynamic".into()).parse().map_err(std::io::Error::other)?;
    let config = RedisAdapterConfig {
        mode,
        subscription_mode,
        key_prefix: env("REDIS_KEY_PREFIX").unwrap_or_else(|| "socket.io".into()),
        requests_timeout: Duration::from_millis(3000),
        ..Default::default()
    };
    let node = RedisNode::start(target, config).map_err(std::io::Error::other)?;
    let io = SocketIo::builder().config(SocketIoConfig::default()).adapter(node.adapter_factory()).build();
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", env("PORT").and_then(|p| p.parse().ok()).unwrap_or(0))).await?;
    let port = listener.local_addr()?.port();

    let ns = io.of("/");
    let notes: Arc<Mutex<Vec<Value>>> = Arc::default();
    {
        let notes = notes.clone();
        ns.on_server_side("note", move |payload, _| notes.lock().push(Value::Array(payload.args)));
    }
    ns.on_server_side("ping", move |payload, ack| {
        if let Some(ack) = ack {
            let mut answer = vec![json!("switchyard"), json!(port)];
            answer.extend(payload.args);
            ack(Payload::new(vec![Value::Array(answer)]));
        }
    });
    let ctx = Arc::new(Context { ns: ns.clone(), node: node.clone(), notes: notes.clone(), port });
    ns.on_connection(move |socket| {
        socket.on("join", |socket, payload, ack| {
            for room in payload.args.first().map(strings).unwrap_or_default() {
                socket.join(room);
            }
            if let Some(ack) = ack {
                ack.send(json!("ok"));
            }
        });
        socket.on("leave", |socket, payload, ack| {
            for room in payload.args.first().map(strings).unwrap_or_default() {
                socket.leave(&room);
            }
            if let Some(ack) = ack {
                ack.send(json!("ok"));
            }
        });
        socket.on("setData", |socket, payload, ack| {
            socket.set_data(payload.args.first().cloned().unwrap_or(Value::Null));
            if let Some(ack) = ack {
                ack.send(json!("ok"));
            }
        });
        let ctx = ctx.clone();
        socket.on("cmd", move |_, payload, ack| {
            let name = payload.args.first().and_then(Value::as_str).unwrap_or_default().to_string();
            let options = payload.args.get(1).cloned().unwrap_or(Value::Null);
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let result = command(ctx, name, options).await;
                if let Some(ack) = ack {
                    ack.send(result);
                }
            });
        });
    });
    let app = axum::Router::new().route_service("/socket.io/", io.service());
    node.wait_connected(Duration::from_secs(10)).await;
    println!("listening on {port}");
    axum::serve(listener, app).await
}

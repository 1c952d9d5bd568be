//! The Socket.IO layer's extension points as a client sees them: message middleware (namespace and
//! socket, rejections answering the ack), several `on_any` / `on_any_outgoing` handlers, observers,
//! async handlers, node-local extensions and the serde payload helpers.
//!
//! To show that something did NOT happen (a handler did not run, an ack was not answered), a test
//! then sends an event whose answer must be the client's next packet: packets on one connection keep
//! their order.

use crate::common::*;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard_socketio::{
    BroadcastOptions, ConnectError, DisconnectReason, Namespace, Observer, Payload, Rejection, Room, Socket, SocketIo,
};
use tokio::sync::mpsc;

/// A server serving an already built `io` (for servers made with the builder).
async fn serve_io(io: &SocketIo) -> TestServer {
    serve(Router::new().route_service(SIO_PATH, io.service())).await
}

async fn connect(addr: std::net::SocketAddr, nsp: &str, auth: Option<&str>) -> (WsClient, String) {
    let (mut ws, _open) = WsClient::open_session(addr, SIO_PATH).await;
    let sid = ws.sio_connect(nsp, auth).await;
    (ws, sid)
}

fn args(payload: &Payload) -> Value {
    Value::Array(payload.args.clone())
}

// ---- message middleware -------------------------------------------------------------------------

#[tokio::test]
async fn event_middleware_rejection_answers_the_ack_and_skips_handlers() {
    let (ran_tx, mut ran) = mpsc::unbounded_channel::<String>();
    let server = SioServer::start(sio_config(), |io| {
        let ns = io.of("/");
        ns.use_event_middleware(|_socket, event, _payload| match event {
            "limited" => Err(Rejection::new(json!({"error": "rate_limited"}))),
            "quiet" => Err(Rejection::silent()),
            _ => Ok(()),
        });
        ns.on_connection(move |socket| {
            socket.use_event_middleware(|_socket, event, payload| {
                if event == "admin" && payload.arg::<String>(0).ok().as_deref() != Some("root") {
                    return Err(Rejection::new(json!({"ok": false, "error": "forbidden"})));
                }
                Ok(())
            });
            let any = ran_tx.clone();
            socket.on_any(move |_socket, event, _payload| {
                let _ = any.send(format!("any:{event}"));
            });
            for event in ["limited", "quiet", "admin", "free"] {
                let ran = ran_tx.clone();
                socket.on(event, move |_socket, payload, ack| {
                    let _ = ran.send(format!("handler:{event}"));
                    if let Some(ack) = ack {
                        ack.send(json!({"ran": event, "args": args(&payload)}));
                    }
                });
            }
        });
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;

    // Namespace middleware: the ack carries the rejection's value.
    ws.sio_send(r#"21["limited",1]"#).await;
    assert_eq!(ws.sio_recv().await, r#"31[{"error":"rate_limited"}]"#);
    // Without an ack request nothing is sent; a silent rejection answers nothing either.
    ws.sio_send(r#"2["limited"]"#).await;
    ws.sio_send(r#"22["quiet"]"#).await;
    // Socket middleware, depending on the payload.
    ws.sio_send(r#"23["admin","guest"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"33[{"error":"forbidden","ok":false}]"#);
    ws.sio_send(r#"24["admin","root"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"34[{"args":["root"],"ran":"admin"}]"#);
    ws.sio_send(r#"25["free"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"35[{"args":[],"ran":"free"}]"#);

    // Rejected events reached neither `on_any` nor their handler.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(next(&mut ran, "handler reports").await);
    }
    assert_eq!(seen, ["any:admin", "handler:admin", "any:free", "handler:free"]);
    assert!(ran.try_recv().is_err(), "nothing else ran");
}

#[tokio::test]
async fn event_middleware_order_parent_namespace_then_socket() {
    type Log = Arc<std::sync::Mutex<Vec<String>>>;
    let log: Log = Arc::default();
    let record = |log: &Log, label: &'static str| {
        let log = log.clone();
        move |_socket: &Arc<Socket>, event: &str, _payload: &Payload| {
            log.lock().unwrap().push(format!("{label}:{event}"));
            if event == "stop-at-namespace" && label == "child" {
                return Err(Rejection::new(json!("stopped")));
            }
            Ok(())
        }
    };
    let server = SioServer::start(sio_config(), |io| {
        let parent = io.dynamic_namespace(|name| name.starts_with("/dyn-"));
        parent.use_event_middleware(record(&log, "parent-1"));
        parent.use_event_middleware(record(&log, "parent-2"));
        let socket_log = log.clone();
        parent.on_connection(move |socket| {
            socket.use_event_middleware(record(&socket_log, "socket-1"));
            socket.use_event_middleware(record(&socket_log, "socket-2"));
            let log = socket_log.clone();
            socket.on("order", move |_socket, _payload, ack| {
                let order = std::mem::take(&mut *log.lock().unwrap());
                if let Some(ack) = ack {
                    ack.send(json!(order));
                }
            });
        });
    })
    .await;
    let (mut ws, _) = server.connect("/dyn-1", None).await;
    // The child exists now; middleware added to it runs after its parent's.
    server.io.of("/dyn-1").use_event_middleware(record(&log, "child"));
    ws.sio_send(r#"2/dyn-1,1["order"]"#).await;
    assert_eq!(
        ws.sio_recv().await,
        r#"3/dyn-1,1[["parent-1:order","parent-2:order","child:order","socket-1:order","socket-2:order"]]"#
    );
    // A namespace rejection stops the chain before the socket's middleware.
    ws.sio_send(r#"2/dyn-1,2["stop-at-namespace"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"3/dyn-1,2["stopped"]"#);
    ws.sio_send(r#"2/dyn-1,3["order"]"#).await;
    assert_eq!(
        ws.sio_recv().await,
        r#"3/dyn-1,3[["parent-1:stop-at-namespace","parent-2:stop-at-namespace","child:stop-at-namespace","parent-1:order","parent-2:order","child:order","socket-1:order","socket-2:order"]]"#
    );
}

// ---- on_any / on_any_outgoing -------------------------------------------------------------------

#[tokio::test]
async fn several_on_any_and_on_any_outgoing_handlers_run_in_order() {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let server = SioServer::start(sio_config(), |io| {
        io.of("/").on_connection(move |socket| {
            for label in ["any-1", "any-2"] {
                let tx = tx.clone();
                socket.on_any(move |_socket, event, payload| {
                    let _ = tx.send(format!("{label}:{event}:{}", args(payload)));
                });
            }
            for label in ["out-1", "out-2", "out-3"] {
                let tx = tx.clone();
                socket.on_any_outgoing(move |_socket, event, payload| {
                    let _ = tx.send(format!("{label}:{event}:{}", args(payload)));
                });
            }
            let tx = tx.clone();
            socket.on("ping", move |socket, payload, _ack| {
                let _ = tx.send("handler:ping".to_string());
                let _ = socket.emit("pong", payload);
            });
        });
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;
    ws.sio_send(r#"2["ping",7]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["pong",7]"#);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        seen.push(next(&mut rx, "on_any reports").await);
    }
    assert_eq!(
        seen,
        ["any-1:ping:[7]", "any-2:ping:[7]", "handler:ping", "out-1:pong:[7]", "out-2:pong:[7]", "out-3:pong:[7]"]
    );
    // Broadcasts are not outgoing events of the socket; emit_with_ack is.
    server.io.emit("news", "all");
    assert_eq!(ws.sio_recv().await, r#"2["news","all"]"#);
    let socket = server.io.of("/").local_sockets().pop().expect("the socket");
    let asking = tokio::spawn(async move { socket.emit_with_ack("question", json!(1), WAIT).await });
    let (id, rest) = {
        let packet = ws.sio_recv().await;
        let (id, rest) = split_ack_id(&packet, "2");
        (id, rest.to_string())
    };
    assert_eq!(rest, r#"["question",1]"#);
    ws.sio_send(&format!(r#"3{id}["answer"]"#)).await;
    let answer = within("the ack", asking).await.expect("task").expect("answered");
    assert_eq!(answer.args, vec![json!("answer")]);
    for label in ["out-1", "out-2", "out-3"] {
        assert_eq!(next(&mut rx, "outgoing reports").await, format!("{label}:question:[1]"));
    }
    assert!(rx.try_recv().is_err(), "nothing reported for the broadcast");
}

// ---- observers ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Connect { nsp: String, id: String },
    Disconnect { id: String, reason: &'static str },
    Join { id: String, room: String },
    Leave { id: String, room: String },
    Event { id: String, event: String, args: Value },
    Rejected { id: String, event: String, ack: Option<Value> },
    Emit { id: String, event: String, args: Value },
    Broadcast { nsp: String, rooms: Vec<String>, except: Vec<String>, event: String, args: Value, recipients: usize },
    Ack { id: String, args: Value },
    AckTimeout { id: String, event: String },
}

struct Recorder(mpsc::UnboundedSender<Rec>);

fn sid(socket: &Socket) -> String {
    socket.id().as_str().to_string()
}

impl Observer for Recorder {
    fn on_connect(&self, socket: &Socket) {
        let _ = self.0.send(Rec::Connect { nsp: socket.ns().name().to_string(), id: sid(socket) });
    }
    fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        let _ = self.0.send(Rec::Disconnect { id: sid(socket), reason: reason.as_str() });
    }
    fn on_join(&self, socket: &Socket, room: &Room) {
        let _ = self.0.send(Rec::Join { id: sid(socket), room: room.to_string() });
    }
    fn on_leave(&self, socket: &Socket, room: &Room) {
        let _ = self.0.send(Rec::Leave { id: sid(socket), room: room.to_string() });
    }
    fn on_event(&self, socket: &Socket, event: &str, payload: &Payload) {
        let _ = self.0.send(Rec::Event { id: sid(socket), event: event.to_string(), args: args(payload) });
    }
    fn on_event_rejected(&self, socket: &Socket, event: &str, rejection: &Rejection) {
        let _ = self.0.send(Rec::Rejected { id: sid(socket), event: event.to_string(), ack: rejection.ack().cloned() });
    }
    fn on_emit(&self, socket: &Socket, event: &str, payload: &Payload) {
        let _ = self.0.send(Rec::Emit { id: sid(socket), event: event.to_string(), args: args(payload) });
    }
    fn on_broadcast(&self, ns: &Namespace, opts: &BroadcastOptions, event: &str, payload: &Payload, recipients: usize) {
        let _ = self.0.send(Rec::Broadcast {
            nsp: ns.name().to_string(),
            rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
            except: opts.except.iter().map(|r| r.to_string()).collect(),
            event: event.to_string(),
            args: args(payload),
            recipients,
        });
    }
    fn on_ack(&self, socket: &Socket, payload: &Payload) {
        let _ = self.0.send(Rec::Ack { id: sid(socket), args: args(payload) });
    }
    fn on_ack_timeout(&self, socket: &Socket, event: &str) {
        let _ = self.0.send(Rec::AckTimeout { id: sid(socket), event: event.to_string() });
    }
}

/// Two observers (one from the builder, one added later) must report the same things, in order.
struct Observed2(mpsc::UnboundedReceiver<Rec>, mpsc::UnboundedReceiver<Rec>);

impl Observed2 {
    async fn expect(&mut self, expected: Rec) {
        assert_eq!(next(&mut self.0, &format!("{expected:?} (observer 1)")).await, expected, "observer 1");
        assert_eq!(next(&mut self.1, &format!("{expected:?} (observer 2)")).await, expected, "observer 2");
    }

    fn nothing_more(&mut self) {
        assert_eq!(self.0.try_recv().ok(), None, "observer 1 reported more");
        assert_eq!(self.1.try_recv().ok(), None, "observer 2 reported more");
    }
}

fn event(id: &str, event: &str, args: Value) -> Rec {
    Rec::Event { id: id.into(), event: event.into(), args }
}

#[tokio::test]
async fn observers_see_connections_rooms_events_broadcasts_and_acks() {
    let (tx1, rx1) = mpsc::unbounded_channel();
    let (tx2, rx2) = mpsc::unbounded_channel();
    let io = SocketIo::builder().config(sio_config()).observer(Arc::new(Recorder(tx1))).build();
    io.observe(Arc::new(Recorder(tx2)));
    let ns = io.of("/");
    ns.use_event_middleware(|_socket, event, _payload| match event {
        "blocked" => Err(Rejection::new(json!({"error": "forbidden"}))),
        _ => Ok(()),
    });
    ns.on_connection(|socket| {
        socket.on("join", |socket, payload, ack| {
            socket.join(payload.arg::<String>(0).unwrap_or_default()).unwrap();
            if let Some(ack) = ack {
                ack.send(());
            }
        });
        socket.on("leave", |socket, payload, ack| {
            socket.leave(&payload.arg::<String>(0).unwrap_or_default());
            if let Some(ack) = ack {
                ack.send(());
            }
        });
        socket.on("shout", |socket, payload, ack| {
            socket.to("r1").emit("shout", payload);
            if let Some(ack) = ack {
                ack.send(());
            }
        });
        socket.on("echo", |socket, payload, _ack| {
            let _ = socket.emit("echo-back", payload);
        });
    });
    let server = serve_io(&io).await;
    let mut seen = Observed2(rx1, rx2);

    let (mut a, id_a) = connect(server.addr, "/", None).await;
    seen.expect(Rec::Connect { nsp: "/".into(), id: id_a.clone() }).await;
    let (mut b, id_b) = connect(server.addr, "/", None).await;
    seen.expect(Rec::Connect { nsp: "/".into(), id: id_b.clone() }).await;

    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        ws.sio_send(r#"21["join","r1"]"#).await;
        assert_eq!(ws.sio_recv().await, "31[]");
        seen.expect(event(id, "join", json!(["r1"]))).await;
        seen.expect(Rec::Join { id: id.clone(), room: "r1".into() }).await;
    }

    // A broadcast from a socket to its room: one report, with the local recipient count.
    a.sio_send(r#"22["shout","hi"]"#).await;
    assert_eq!(a.sio_recv().await, "32[]");
    assert_eq!(b.sio_recv().await, r#"2["shout","hi"]"#);
    seen.expect(event(&id_a, "shout", json!(["hi"]))).await;
    seen.expect(Rec::Broadcast {
        nsp: "/".into(),
        rooms: vec!["r1".into()],
        except: vec![id_a.clone()],
        event: "shout".into(),
        args: json!(["hi"]),
        recipients: 1,
    })
    .await;
    // A server-wide broadcast.
    io.emit("news", json!({"n": 1}));
    assert_eq!(a.sio_recv().await, r#"2["news",{"n":1}]"#);
    assert_eq!(b.sio_recv().await, r#"2["news",{"n":1}]"#);
    seen.expect(Rec::Broadcast {
        nsp: "/".into(),
        rooms: vec![],
        except: vec![],
        event: "news".into(),
        args: json!([{"n": 1}]),
        recipients: 2,
    })
    .await;

    // An emit to one socket.
    a.sio_send(r#"2["echo",5]"#).await;
    assert_eq!(a.sio_recv().await, r#"2["echo-back",5]"#);
    seen.expect(event(&id_a, "echo", json!([5]))).await;
    seen.expect(Rec::Emit { id: id_a.clone(), event: "echo-back".into(), args: json!([5]) }).await;

    // A rejected event.
    a.sio_send(r#"23["blocked",1]"#).await;
    assert_eq!(a.sio_recv().await, r#"33[{"error":"forbidden"}]"#);
    seen.expect(event(&id_a, "blocked", json!([1]))).await;
    seen.expect(Rec::Rejected { id: id_a.clone(), event: "blocked".into(), ack: Some(json!({"error": "forbidden"})) })
        .await;

    // An ack answered by A, then one B lets time out.
    let socket_a = ns.get_socket(&switchyard_socketio::Sid::parse(&id_a).unwrap()).expect("A");
    let asking = tokio::spawn(async move { socket_a.emit_with_ack("question", json!("a?"), WAIT).await });
    let packet = a.sio_recv().await;
    let (ack_id, rest) = split_ack_id(&packet, "2");
    assert_eq!(rest, r#"["question","a?"]"#);
    seen.expect(Rec::Emit { id: id_a.clone(), event: "question".into(), args: json!(["a?"]) }).await;
    a.sio_send(&format!(r#"3{ack_id}["yes"]"#)).await;
    within("A's ack", asking).await.expect("task").expect("answered");
    seen.expect(Rec::Ack { id: id_a.clone(), args: json!(["yes"]) }).await;
    let socket_b = ns.get_socket(&switchyard_socketio::Sid::parse(&id_b).unwrap()).expect("B");
    let result = socket_b.emit_with_ack("question", json!("b?"), Duration::from_millis(100)).await;
    assert_eq!(result, Err(switchyard_socketio::AckError::Timeout));
    split_ack_id(&b.sio_recv().await, "2");
    seen.expect(Rec::Emit { id: id_b.clone(), event: "question".into(), args: json!(["b?"]) }).await;
    seen.expect(Rec::AckTimeout { id: id_b.clone(), event: "question".into() }).await;

    // A broadcast with acks: reported once, then each answer.
    let op = ns.to("r1").timeout(WAIT);
    let asking = tokio::spawn(async move { op.emit_with_ack("poll", json!(0)).await });
    seen.expect(Rec::Broadcast {
        nsp: "/".into(),
        rooms: vec!["r1".into()],
        except: vec![],
        event: "poll".into(),
        args: json!([0]),
        recipients: 2,
    })
    .await;
    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let packet = ws.sio_recv().await;
        let (ack_id, _) = split_ack_id(&packet, "2");
        ws.sio_send(&format!("3{ack_id}[{}]", id.len())).await;
        seen.expect(Rec::Ack { id: id.clone(), args: json!([id.len()]) }).await;
    }
    assert_eq!(within("the poll", asking).await.expect("task").expect("all answered").len(), 2);

    // Leaving, and disconnecting (rooms left first, then the disconnect with its reason).
    a.sio_send(r#"24["leave","r1"]"#).await;
    assert_eq!(a.sio_recv().await, "34[]");
    seen.expect(event(&id_a, "leave", json!(["r1"]))).await;
    seen.expect(Rec::Leave { id: id_a.clone(), room: "r1".into() }).await;
    b.sio_send("1").await;
    seen.expect(Rec::Leave { id: id_b.clone(), room: "r1".into() }).await;
    seen.expect(Rec::Disconnect { id: id_b.clone(), reason: "client namespace disconnect" }).await;
    drop(a);
    seen.expect(Rec::Disconnect { id: id_a.clone(), reason: "transport close" }).await;
    seen.nothing_more();
}

// ---- async handlers -----------------------------------------------------------------------------

#[tokio::test]
async fn async_handler_answers_its_ack_without_holding_the_connection() {
    let server = SioServer::start(sio_config(), |io| {
        io.of("/").on_connection(|socket| {
            socket.on_async("slow-double", |socket, payload, ack| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let n = payload.arg::<i64>(0).unwrap_or_default();
                if let Some(ack) = ack {
                    ack.send(json!({"double": n * 2, "connected": socket.connected()}));
                }
            });
            socket.on("quick", |socket, _payload, _ack| {
                let _ = socket.emit("quick-done", ());
            });
        });
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;
    ws.sio_send(r#"27["slow-double",21]"#).await;
    ws.sio_send(r#"2["quick"]"#).await;
    // The quick event was handled while the slow one was still sleeping.
    assert_eq!(ws.sio_recv().await, r#"2["quick-done"]"#);
    assert_eq!(ws.sio_recv().await, r#"37[{"connected":true,"double":42}]"#);
}

// ---- extensions ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Claims {
    user: String,
    admin: bool,
}

const SECRET_CLAIM: &str = "claims-stay-on-this-node";

#[tokio::test]
async fn extensions_stay_on_the_node_and_feed_middleware() {
    let server = SioServer::start(sio_config(), |io| {
        let ns = io.of("/");
        // An ACL on claims set at connection time.
        ns.use_event_middleware(|socket, event, _payload| {
            let admin = socket.extensions().get::<Claims>().is_some_and(|c| c.admin);
            if event.starts_with("admin:") && !admin {
                return Err(Rejection::new(json!({"ok": false, "error": "forbidden"})));
            }
            Ok(())
        });
        ns.on_connection(|socket| {
            let admin = socket.auth().get("role").and_then(Value::as_str) == Some("admin");
            socket.extensions().insert(Claims { user: SECRET_CLAIM.into(), admin });
            socket.set_data(json!({"public": true}));
            socket.on("whoami", |socket, _payload, ack| {
                let claims = socket.extensions().get::<Claims>();
                if let Some(ack) = ack {
                    ack.send(json!(claims.map(|c| c.user)));
                }
            });
            socket.on("admin:reset", |_socket, _payload, ack| {
                if let Some(ack) = ack {
                    ack.send(json!({"ok": true}));
                }
            });
        });
    })
    .await;
    let (mut user, _) = server.connect("/", Some(r#"{"role":"user"}"#)).await;
    let (mut admin, _) = server.connect("/", Some(r#"{"role":"admin"}"#)).await;
    user.sio_send(r#"21["whoami"]"#).await;
    assert_eq!(user.sio_recv().await, format!(r#"31["{SECRET_CLAIM}"]"#));
    user.sio_send(r#"22["admin:reset"]"#).await;
    assert_eq!(user.sio_recv().await, r#"32[{"error":"forbidden","ok":false}]"#);
    admin.sio_send(r#"22["admin:reset"]"#).await;
    assert_eq!(admin.sio_recv().await, r#"32[{"ok":true}]"#);

    // What the cluster sees of the sockets: data, never extensions.
    let infos = within("fetch_sockets", server.io.of("/").broadcast().fetch_sockets()).await.expect("fetched");
    assert_eq!(infos.len(), 2);
    for info in &infos {
        assert_eq!(info.data, json!({"public": true}));
        let seen = format!("{info:?}");
        assert!(!seen.contains(SECRET_CLAIM), "extensions leaked into fetch_sockets: {seen}");
    }
    // Removing works and is visible to the next event.
    let socket = server.io.of("/").local_sockets().into_iter().find(|s| s.id().as_str() == infos[0].id).unwrap();
    assert!(socket.extensions().remove::<Claims>().is_some());
    assert_eq!(socket.extensions().get::<Claims>(), None);
}

// ---- payload helpers ----------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    item: String,
    qty: u32,
}

#[tokio::test]
async fn payload_helpers_convert_arguments_with_serde() {
    let server = SioServer::start(sio_config(), |io| {
        io.of("/").on_connection(|socket| {
            socket.on("order", |socket, payload, ack| {
                let answer = match payload.args_as::<(String, Order)>() {
                    Ok((customer, order)) => {
                        let receipt = Payload::from_args(&(&customer, &order, order.qty * 3)).expect("serializable");
                        let _ = socket.emit("receipt", receipt);
                        Payload::from_serialize(&json!({"ok": true})).expect("serializable")
                    }
                    Err(error) => Payload::from_serialize(&json!({"ok": false, "error": error.to_string()})).unwrap(),
                };
                if let Some(ack) = ack {
                    ack.send(answer);
                }
            });
            socket.on("qty", |_socket, payload, ack| {
                let answer = match payload.arg::<Order>(1) {
                    Ok(order) => json!(order.qty),
                    Err(error) => json!(error.to_string()),
                };
                if let Some(ack) = ack {
                    ack.send(answer);
                }
            });
        });
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;
    ws.sio_send(r#"21["order","ada",{"item":"tea","qty":2}]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["receipt","ada",{"item":"tea","qty":2},6]"#);
    assert_eq!(ws.sio_recv().await, r#"31[{"ok":true}]"#);
    ws.sio_send(r#"22["order","ada",{"item":"tea","qty":-1}]"#).await;
    let answer = ws.sio_recv().await;
    assert!(answer.starts_with(r#"32[{"error":"arguments: invalid value: integer `-1`"#), "{answer}");
    ws.sio_send(r#"23["qty","x",{"item":"tea","qty":9}]"#).await;
    assert_eq!(ws.sio_recv().await, "33[9]");
    ws.sio_send(r#"24["qty","x"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"34["argument 1 is missing"]"#);
}

// ---- server-wide connect middleware ---------------------------------------------------------------

/// The builder's connect middleware sees every CONNECT, to static namespaces, dynamic children and
/// namespaces made after the build, before the namespace's own middleware; a refusal is the client's
/// CONNECT_ERROR and the namespace's middleware and handler do not run.
#[tokio::test]
async fn server_wide_connect_middleware_covers_every_namespace() {
    let (tx, mut seen) = mpsc::unbounded_channel::<String>();
    let server_tx = tx.clone();
    let io = SocketIo::builder()
        .config(sio_config())
        .connect_middleware(move |socket: Arc<Socket>| {
            let tx = server_tx.clone();
            async move {
                let _ = tx.send(format!("server:{}", socket.ns().name()));
                match socket.auth().get("token").and_then(Value::as_str) {
                    Some("good") => {
                        socket.extensions().insert(String::from("alice"));
                        Ok(())
                    }
                    _ => Err(ConnectError::new("Auth error").with_data(json!({"reason": "missing"}))),
                }
            }
        })
        .build();
    let ns_tx = tx.clone();
    io.of("/static").use_middleware(move |socket: Arc<Socket>| {
        let tx = ns_tx.clone();
        async move {
            // Runs after the server-wide middleware, which left the user in the extensions.
            let _ = tx.send(format!("namespace:{}", socket.extensions().get::<String>().unwrap_or_default()));
            Ok(())
        }
    });
    io.dynamic_namespace(|name| name.starts_with("/dyn-"));
    let _ = io.of("/");
    let server = serve_io(&io).await;
    let (mut ws, _) = WsClient::open_session(server.addr, SIO_PATH).await;

    ws.sio_send("0/static,").await;
    assert_eq!(ws.sio_recv().await, r#"4/static,{"data":{"reason":"missing"},"message":"Auth error"}"#);
    assert_eq!(seen.recv().await.unwrap(), "server:/static");
    ws.sio_send(r#"0/static,{"token":"good"}"#).await;
    assert!(ws.sio_recv().await.starts_with(r#"0/static,{"sid":"#));
    assert_eq!(seen.recv().await.unwrap(), "server:/static");
    assert_eq!(seen.recv().await.unwrap(), "namespace:alice");

    for nsp in ["/dyn-7", "/made-later"] {
        if nsp == "/made-later" {
            let _ = io.of(nsp);
        }
        ws.sio_send(&format!("0{nsp},")).await;
        assert_eq!(ws.sio_recv().await, format!(r#"4{nsp},{{"data":{{"reason":"missing"}},"message":"Auth error"}}"#));
        assert_eq!(seen.recv().await.unwrap(), format!("server:{nsp}"));
        ws.sio_send(&format!(r#"0{nsp},{{"token":"good"}}"#)).await;
        assert!(ws.sio_recv().await.starts_with(&format!(r#"0{nsp},{{"sid":"#)));
        assert_eq!(seen.recv().await.unwrap(), format!("server:{nsp}"));
    }
    // The main namespace too; nothing else ran.
    ws.sio_send("0").await;
    assert_eq!(ws.sio_recv().await, r#"4{"data":{"reason":"missing"},"message":"Auth error"}"#);
    assert_eq!(seen.recv().await.unwrap(), "server:/");
    assert!(seen.try_recv().is_err());
}

/// Middleware that completes at once runs on the connection's task; middleware that waits goes on in a
/// task of its own. Both connect (or refuse) the same way, in the order of their CONNECTs' outcomes.
#[tokio::test]
async fn connect_middleware_that_waits_still_connects_and_refuses() {
    let io = SocketIo::builder()
        .config(sio_config())
        .connect_middleware(|socket: Arc<Socket>| async move {
            if socket.ns().name().starts_with("/slow") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match socket.ns().name() {
                "/slow-refused" | "/fast-refused" => Err(ConnectError::new("no")),
                _ => Ok(()),
            }
        })
        .build();
    for nsp in ["/slow", "/slow-refused", "/fast", "/fast-refused"] {
        let _ = io.of(nsp);
    }
    let server = serve_io(&io).await;
    let (mut ws, _) = WsClient::open_session(server.addr, SIO_PATH).await;
    ws.sio_send("0/slow,").await;
    ws.sio_send("0/slow-refused,").await;
    // An event right behind a CONNECT whose middleware completes at once finds its socket.
    ws.sio_send("0/fast,").await;
    ws.sio_send(r#"2/fast,["hello"]"#).await;
    ws.sio_send("0/fast-refused,").await;
    assert!(ws.sio_recv().await.starts_with(r#"0/fast,{"sid":"#));
    assert_eq!(ws.sio_recv().await, r#"4/fast-refused,{"message":"no"}"#);
    let mut rest = vec![ws.sio_recv().await, ws.sio_recv().await];
    rest.sort();
    assert!(rest[0].starts_with(r#"0/slow,{"sid":"#), "{rest:?}");
    assert_eq!(rest[1], r#"4/slow-refused,{"message":"no"}"#);
    assert_eq!(io.of("/fast").local_socket_count() + io.of("/slow").local_socket_count(), 2);
}

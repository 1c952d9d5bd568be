//! The built-in events: `join`, `leave`, `message`, `typing`, `presence`, `signal` and `history`, on every
//! namespace the application serves. docs/EVENTS.md is the contract (every argument, ack and error).
//!
//! They are ordinary event handlers, so the server-wide limits (event rate, payload size) and every
//! message middleware apply to them as to any event. Who may join and publish where is
//! [`Access`]'s answer; who a socket is, [`access::user_of`]. Broadcasts go through the namespace's
//! operator and adapter: encoded once, and over Redis to every node of a cluster.
//!
//! ```no_run
//! # fn demo(io: &switchyard_socketio::SocketIo) {
//! use std::sync::Arc;
//! use switchyard::{access::Access, events::Events};
//! let events = Events::new(Arc::new(Access::allow_all()), None);
//! events.install(&io.of("/"));
//! # }
//! ```

use crate::access::{self, Access};
use crate::history::{History, ReadOptions};
use crate::pipeline::{confirm_both, AcceptedMessage, Confirm, Held, Hold, InOrder, MessageSink, Refused};
use crate::presence::Presence;
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_socketio::{AckSender, Namespace, Payload, Sid, Socket};

/// Rooms whose names start with this are users' own rooms (`user:<name>`).
pub const USER_ROOM_PREFIX: &str = "user:";
/// The longest room name (bytes) the events accept.
pub const MAX_ROOM_BYTES: usize = 256;
/// The longest user name (bytes) `signal` accepts.
pub const MAX_USER_BYTES: usize = 256;
/// How long `join`, `leave` and `presence` wait for this node's presence changes to reach the store
/// before answering anyway (the store may be unreachable).
pub const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The error strings of the acks (docs/EVENTS.md).
pub mod errors {
    /// An argument is missing or has the wrong type or size.
    pub const INVALID: &str = "invalid";
    /// The access policy refuses it, or the socket has not joined the room.
    pub const FORBIDDEN: &str = "forbidden";
    /// The socket is in as many rooms as `limits.rooms_per_socket` allows.
    pub const TOO_MANY_ROOMS: &str = "too_many_rooms";
    /// `signal`'s target has no socket anywhere.
    pub const OFFLINE: &str = "offline";
    /// Presence is off or its store cannot be reached; `history`: history is off.
    pub const UNAVAILABLE: &str = "unavailable";
    /// `message`: the history store could not take the message; `history`: nor be read.
    pub const HISTORY_UNAVAILABLE: &str = crate::history::errors::HISTORY_UNAVAILABLE;
}

/// The built-in events of one server.
pub struct Events {
    access: Arc<Access>,
    presence: Option<Arc<Presence>>,
    /// The sink that must hold a message before `sinks` take it (history): a message it refuses
    /// reaches none of them.
    gate: Option<Arc<dyn MessageSink>>,
    /// Shared with each gated message's future (one reference count, no copy of the list).
    sinks: Arc<[Arc<dyn MessageSink>]>,
    /// Answers the `history` event (`unavailable` without it).
    history: Option<Arc<History>>,
}

/// With a gate: the end of a socket's chain of messages handed (or refused) to the sinks after
/// the gate, so that the sinks take one sender's messages in the order it sent them.
#[derive(Clone, Default)]
struct Handed(Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>);

/// What `sinks` return together for `message`: resolves once every one holds it (or one refused),
/// with every confirm the sender's ack must wait for.
fn hold_all(sinks: &[Arc<dyn MessageSink>], message: &AcceptedMessage) -> Hold {
    match sinks {
        [sink] => sink.accept(message),
        sinks => {
            let holds: Vec<Hold> = sinks.iter().map(|sink| sink.accept(message)).collect();
            if holds.iter().all(|hold| matches!(hold, Hold::Ready(_))) {
                let mut confirm = None;
                for hold in holds {
                    if let Hold::Ready(held) = hold {
                        match held {
                            Ok(more) => confirm = confirm_both(confirm, more),
                            Err(refused) => return Hold::Ready(Err(refused)),
                        }
                    }
                }
                return Hold::Ready(Ok(confirm));
            }
            Hold::Pending(Box::pin(async move {
                let mut confirm = None;
                for held in futures_util::future::join_all(holds.into_iter().map(Hold::into_future)).await {
                    confirm = confirm_both(confirm, held?);
                }
                Ok(confirm)
            }))
        }
    }
}

/// A socket's messages in order: their broadcasts, and their acks (which may wait for a sink's
/// confirm after the broadcast).
#[derive(Clone, Default)]
struct SenderOrder {
    broadcasts: InOrder<Held>,
    acks: Acks,
}

/// A socket's `message` acks, in the order its messages came.
#[derive(Clone, Default)]
struct Acks(InOrder<Result<(), Refused>>);

impl Acks {
    /// Answers `ack` once `confirm` resolves, after the acks of the messages before it.
    fn ack_when(&self, ack: AckSender, confirm: Confirm, reply: Vec<u8>) {
        self.0.submit(
            confirm,
            Box::new(move |outcome| match outcome {
                Ok(()) => ack.send_json(&reply),
                Err(refused) => ack.send(refusal(refused.error)),
            }),
        );
    }

    /// Answers `ack` with `outcome` now, or after the acks still waiting for their confirms.
    fn ack_now(&self, ack: AckSender, outcome: Result<Vec<u8>, Refused>) {
        if self.0.idle() {
            match outcome {
                Ok(reply) => ack.send_json(&reply),
                Err(refused) => ack.send(refusal(refused.error)),
            }
        } else {
            let (confirm, reply): (Confirm, Vec<u8>) = match outcome {
                Ok(reply) => (Box::pin(async { Ok(()) }), reply),
                Err(refused) => (Box::pin(async move { Err(refused) }), Vec::new()),
            };
            self.ack_when(ack, confirm, reply);
        }
    }
}

/// One of the built-in events' handlers.
type Handle = fn(&Events, &Arc<Socket>, Payload, Option<AckSender>);

/// The built-in events and their handlers: registered on a namespace ([`Events::register`]) or on
/// one socket ([`Events::attach`]) from this one list.
const BUILT_IN: [(&str, Handle); 7] = [
    ("join", Events::on_join),
    ("leave", Events::on_leave),
    ("message", Events::on_message),
    ("typing", Events::on_typing),
    ("presence", Events::on_presence),
    ("signal", Events::on_signal),
    ("history", Events::on_history),
];

impl Events {
    /// Events checked against `access`, with presence when `presence` is given.
    pub fn new(access: Arc<Access>, presence: Option<Arc<Presence>>) -> Arc<Events> {
        Arc::new(Events { access, presence, gate: None, sinks: Arc::from(Vec::new()), history: None })
    }

    /// Events whose accepted messages pass through `sinks` (history, Kafka) before they are
    /// broadcast and acknowledged; see [`crate::pipeline`].
    pub fn with_sinks(
        access: Arc<Access>,
        presence: Option<Arc<Presence>>,
        sinks: Vec<Arc<dyn MessageSink>>,
    ) -> Arc<Events> {
        Arc::new(Events { access, presence, gate: None, sinks: sinks.into(), history: None })
    }

    /// Events whose accepted messages must be held by `gate` before `sinks` take them, then by
    /// `sinks`, before they are broadcast and acknowledged: a message `gate` refuses reaches none of
    /// `sinks` (history before Kafka: a message history refuses is not produced either).
    pub fn with_gate(
        access: Arc<Access>,
        presence: Option<Arc<Presence>>,
        gate: Arc<dyn MessageSink>,
        sinks: Vec<Arc<dyn MessageSink>>,
    ) -> Arc<Events> {
        Arc::new(Events { access, presence, gate: Some(gate), sinks: sinks.into(), history: None })
    }

    /// Events with message history: every accepted message waits for `history`, then for the other
    /// `sinks` (see [`Events::with_gate`]), before it is broadcast and acknowledged, and the `history`
    /// event reads it.
    pub fn with_history(
        access: Arc<Access>,
        presence: Option<Arc<Presence>>,
        sinks: Vec<Arc<dyn MessageSink>>,
        history: Arc<History>,
    ) -> Arc<Events> {
        let gate: Arc<dyn MessageSink> = history.clone();
        Arc::new(Events { access, presence, gate: Some(gate), sinks: sinks.into(), history: Some(history) })
    }

    /// Handles the built-in events on every socket that connects to `ns`, with handlers registered
    /// once on the namespace ([`Namespace::on`]) and shared by its sockets, and puts each socket in
    /// its user's room (`user:<user>`). This takes the namespace's connection handler; code that
    /// needs its own calls [`Events::attach`] from it instead (or [`Events::register`] once and
    /// [`Events::join_user_room`] from its handler).
    pub fn install(self: &Arc<Self>, ns: &Arc<Namespace>) {
        self.register(ns);
        let events = self.clone();
        ns.on_connection(move |socket| events.join_user_room(&socket));
    }

    /// Registers the built-in events' handlers on the namespace, once for all of its sockets (a
    /// socket's own handler of the same name, registered with `socket.on`, takes precedence).
    pub fn register(self: &Arc<Self>, ns: &Namespace) {
        for (event, handle) in BUILT_IN {
            let events = self.clone();
            ns.on(event, move |socket, payload, ack| handle(&events, socket, payload, ack));
        }
    }

    /// Puts `socket` in its user's room (`user:<user>`), where direct messages reach it.
    pub fn join_user_room(&self, socket: &Arc<Socket>) {
        if let Err(e) = socket.join(access::user_room_of(socket)) {
            tracing::debug!(socket = %socket.id(), error = %e, "could not join the user's own room");
        }
    }

    /// Registers the built-in events on one socket (its own handlers, about 50 bytes each per
    /// socket) and puts it in its user's room (`user:<user>`).
    pub fn attach(self: &Arc<Self>, socket: &Arc<Socket>) {
        self.join_user_room(socket);
        for (event, handle) in BUILT_IN {
            let events = self.clone();
            socket.on(event, move |socket, payload, ack| handle(&events, socket, payload, ack));
        }
    }

    fn on_history(&self, socket: &Arc<Socket>, payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "history", ack, error),
        };
        let options = match ReadOptions::from_value(payload.args.get(1)) {
            Ok(options) => options,
            Err(reason) => {
                tracing::debug!(socket = %socket.id(), reason, "history: invalid options");
                return refuse(socket, "history", ack, errors::INVALID);
            }
        };
        // As `join`: a user's own room is theirs alone, other rooms as the policy says.
        let own = room == access::user_room(&access::user_of(socket));
        if !own && (room.starts_with(USER_ROOM_PREFIX) || !self.access.may_join(socket, &room)) {
            return refuse(socket, "history", ack, errors::FORBIDDEN);
        }
        let Some(history) = self.history.clone() else {
            return refuse(socket, "history", ack, errors::UNAVAILABLE);
        };
        let Some(ack) = ack else {
            tracing::debug!(socket = %socket.id(), "history without an ack: nothing to answer");
            return;
        };
        tokio::spawn(async move {
            match history.read(&room, options.since, options.limit).await {
                Ok(page) => ack.send(json!({"ok": true, "messages": page.messages, "more": page.more})),
                Err(_) => ack.send(refusal(crate::history::errors::HISTORY_UNAVAILABLE)),
            }
        });
    }

    fn on_join(&self, socket: &Arc<Socket>, payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "join", ack, error),
        };
        // A user's own room: always theirs (the socket is in it already), nobody else's.
        let own = room == access::user_room(&access::user_of(socket));
        if !own && (room.starts_with(USER_ROOM_PREFIX) || !self.access.may_join(socket, &room)) {
            return refuse(socket, "join", ack, errors::FORBIDDEN);
        }
        // Joined here, on the connection's task, so that an event the client sends right after
        // `join` (without waiting for the ack) already finds the socket in the room.
        if socket.join(room.as_str()).is_err() {
            return refuse(socket, "join", ack, errors::TOO_MANY_ROOMS);
        }
        self.reply_when_settled(ack, json!({"ok": true, "room": room}));
    }

    fn on_leave(&self, socket: &Arc<Socket>, payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "leave", ack, error),
        };
        if room == access::user_room(&access::user_of(socket)) {
            return refuse(socket, "leave", ack, errors::FORBIDDEN);
        }
        socket.leave(&room);
        self.reply_when_settled(ack, json!({"ok": true, "room": room}));
    }

    fn on_message(&self, socket: &Arc<Socket>, mut payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "message", ack, error),
        };
        if payload.args.len() < 2 {
            return refuse(socket, "message", ack, errors::INVALID);
        }
        if !joined(socket, &room) || !self.access.may_publish(socket, &room) {
            return refuse(socket, "message", ack, errors::FORBIDDEN);
        }
        let data = std::mem::take(&mut payload.args[1]);
        let id = uuid::Uuid::now_v7();
        let ts = id
            .get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos / 1_000_000)
            })
            .unwrap_or_default();
        let id = id.to_string();
        let user = access::user_of(socket);
        if self.sinks.is_empty() && self.gate.is_none() {
            // Binary attachments of `data` keep their placeholders: the packet carries them unchanged.
            let to = socket.ns().to(room.as_str());
            if to.takes_json() {
                // Encoded by hand once and framed from these bytes: no `Value` built for the envelope.
                to.emit_json("message", &crate::json::message_envelope(&id, &room, &user, &data, ts), payload.binary);
            } else {
                // A cluster adapter (or another parser, recovery, an observer) needs the `Value`.
                let message = json!({"id": id, "room": room, "user": &*user, "data": data, "ts": ts});
                to.emit("message", Payload { args: vec![message], binary: payload.binary });
            }
            if let Some(ack) = ack {
                ack.send_json(&crate::json::message_ack(&id, ts));
            }
            return;
        }
        let accepted = AcceptedMessage::new(id, room, user.to_string(), data, ts);
        let hold: Hold = match &self.gate {
            // Every sink takes the message here, on the connection's task, in arrival order.
            None => hold_all(&self.sinks, &accepted),
            // The gate takes it here, in arrival order; the other sinks only once the gate holds it.
            Some(gate) if self.sinks.is_empty() => gate.accept(&accepted),
            Some(gate) => {
                let gated = gate.accept(&accepted);
                let handed = socket.extensions().get::<Handed>().unwrap_or_else(|| {
                    let handed = Handed::default();
                    socket.extensions().insert(handed.clone());
                    handed
                });
                let (handed_now, next_handed) = tokio::sync::oneshot::channel::<()>();
                let previous_handed = handed.0.lock().replace(next_handed);
                let sinks = self.sinks.clone();
                let message = accepted.clone();
                Hold::Pending(Box::pin(async move {
                    let gated = gated.into_future().await;
                    // The sinks see one sender's messages in its order, whatever order the gate's
                    // answers are polled in.
                    if let Some(previous_handed) = previous_handed {
                        let _ = previous_handed.await;
                    }
                    match gated {
                        Ok(gate_confirm) => {
                            let held = hold_all(&sinks, &message);
                            let _ = handed_now.send(());
                            Ok(confirm_both(gate_confirm, held.into_future().await?))
                        }
                        Err(refused) => {
                            let _ = handed_now.send(());
                            Err(refused)
                        }
                    }
                }))
            }
        };
        let order = socket.extensions().get::<SenderOrder>().unwrap_or_else(|| {
            let order = SenderOrder::default();
            socket.extensions().insert(order.clone());
            order
        });
        let ns = socket.ns().clone();
        let SenderOrder { broadcasts, acks } = order;
        let release = move |outcome: Held| match outcome {
            Ok(confirm) => {
                let reply = ack.map(|ack| (ack, crate::json::message_ack(&accepted.id, accepted.ts)));
                let to = ns.to(accepted.room.as_str());
                if to.takes_json() {
                    // The bytes the sinks took (the Kafka record, the history entry) are what the room gets.
                    to.emit_json("message", &accepted.json, payload.binary);
                } else {
                    // A cluster adapter (or another parser, recovery, an observer) needs the `Value`.
                    let AcceptedMessage { id, room, user, data, ts, .. } = accepted;
                    let message = json!({"id": id, "room": room, "user": user, "data": data, "ts": ts});
                    to.emit("message", Payload { args: vec![message], binary: payload.binary });
                }
                match (reply, confirm) {
                    (None, _) => {}
                    // Only the sender waits for the confirm (Kafka's `persisted`): the room has it.
                    (Some((ack, reply)), Some(confirm)) => acks.ack_when(ack, confirm, reply),
                    (Some((ack, reply)), None) => acks.ack_now(ack, Ok(reply)),
                }
            }
            Err(refused) => {
                if let Some(ack) = ack {
                    acks.ack_now(ack, Err(refused));
                }
            }
        };
        match hold {
            // Queued for Kafka (or refused) at once: broadcast here, nothing boxed.
            Hold::Ready(held) => broadcasts.submit_ready(held, release),
            Hold::Pending(future) => broadcasts.submit(future, Box::new(release)),
        }
    }

    fn on_typing(&self, socket: &Arc<Socket>, payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "typing", ack, error),
        };
        if !joined(socket, &room) || !self.access.may_publish(socket, &room) {
            return refuse(socket, "typing", ack, errors::FORBIDDEN);
        }
        socket.to(room.as_str()).volatile().emit("typing", json!({"room": room, "user": &*access::user_of(socket)}));
        if let Some(ack) = ack {
            ack.send(json!({"ok": true}));
        }
    }

    fn on_presence(&self, socket: &Arc<Socket>, payload: Payload, ack: Option<AckSender>) {
        let room = match room_arg(&payload) {
            Ok(room) => room,
            Err(error) => return refuse(socket, "presence", ack, error),
        };
        if room.starts_with(USER_ROOM_PREFIX) || !self.access.may_join(socket, &room) {
            return refuse(socket, "presence", ack, errors::FORBIDDEN);
        }
        let Some(presence) = self.presence.clone() else {
            return refuse(socket, "presence", ack, errors::UNAVAILABLE);
        };
        let Some(ack) = ack else {
            tracing::debug!(socket = %socket.id(), "presence without an ack: nothing to answer");
            return;
        };
        let nsp = socket.ns().name().to_string();
        tokio::spawn(async move {
            // Changes this socket caused (a join just before) are in the store before it is read.
            let _ = tokio::time::timeout(SETTLE_WAIT, presence.settled()).await;
            match presence.users(&nsp, &room).await {
                Ok(users) => ack.send(json!({"ok": true, "users": users})),
                Err(e) => {
                    tracing::warn!(error = %e, room = %room, "presence: reading the store failed");
                    ack.send(refusal(errors::UNAVAILABLE));
                }
            }
        });
    }

    fn on_signal(&self, socket: &Arc<Socket>, mut payload: Payload, ack: Option<AckSender>) {
        let target = match payload.args.first() {
            Some(Value::String(user)) if !user.is_empty() && user.len() <= MAX_USER_BYTES => user.clone(),
            _ => return refuse(socket, "signal", ack, errors::INVALID),
        };
        if payload.args.len() < 2 {
            return refuse(socket, "signal", ack, errors::INVALID);
        }
        if !self.access.may_signal(socket, &target) {
            return refuse(socket, "signal", ack, errors::FORBIDDEN);
        }
        let data = std::mem::take(&mut payload.args[1]);
        let message =
            Payload { args: vec![json!({"from": &*access::user_of(socket), "data": data})], binary: payload.binary };
        let room = access::user_room(&target);
        let ns = socket.ns().clone();
        let Some(presence) = self.presence.clone() else {
            // Without presence nobody knows cheaply whether the target is connected: sent blindly.
            ns.to(room.as_str()).emit("signal", message);
            if let Some(ack) = ack {
                ack.send(json!({"ok": true}));
            }
            return;
        };
        tokio::spawn(async move {
            let online = match presence.users(ns.name(), &room).await {
                Ok(users) => users.contains(&target),
                Err(e) => {
                    // The store is away: deliver anyway (the target may well be there).
                    tracing::warn!(error = %e, "presence: cannot tell whether a signal's target is online");
                    true
                }
            };
            let reply = if online {
                ns.to(room.as_str()).emit("signal", message);
                json!({"ok": true})
            } else {
                refusal(errors::OFFLINE)
            };
            if let Some(ack) = ack {
                ack.send(reply);
            }
        });
    }

    /// Acks once this node's presence changes so far are in the store (so that a `presence` right
    /// after the ack sees them), at once without presence.
    fn reply_when_settled(&self, ack: Option<AckSender>, reply: Value) {
        let Some(ack) = ack else { return };
        match self.presence.clone() {
            Some(presence) => {
                tokio::spawn(async move {
                    if tokio::time::timeout(SETTLE_WAIT, presence.settled()).await.is_err() {
                        tracing::warn!("presence store slow: acknowledging before the change reached it");
                    }
                    ack.send(reply);
                });
            }
            None => ack.send(reply),
        }
    }
}

/// The room argument: a non-empty string of at most [`MAX_ROOM_BYTES`], not a socket id (a socket's
/// id is a room holding that socket: joining it would receive what is sent to that socket).
fn room_arg(payload: &Payload) -> Result<String, &'static str> {
    match payload.args.first() {
        Some(Value::String(room)) if !room.is_empty() && room.len() <= MAX_ROOM_BYTES && Sid::parse(room).is_none() => {
            Ok(room.clone())
        }
        _ => Err(errors::INVALID),
    }
}

fn joined(socket: &Socket, room: &str) -> bool {
    socket.in_room(room)
}

fn refusal(error: &str) -> Value {
    json!({"ok": false, "error": error})
}

/// Answers a refused event's ack; without an ack the refusal is logged (never dropped unseen).
fn refuse(socket: &Socket, event: &str, ack: Option<AckSender>, error: &str) {
    match ack {
        Some(ack) => ack.send(refusal(error)),
        None => tracing::debug!(socket = %socket.id(), event, error, "built-in event refused (no ack to answer)"),
    }
}

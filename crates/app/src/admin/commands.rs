//! The UI's commands, plain events without acks (as Node's `instrument()` takes them):
//!
//! - `join`(nsp, room, filter?), `leave`(nsp, room, filter?): the sockets of namespace `nsp` (only
//!   those in room `filter` when given; a socket id is a room too) join or leave `room`;
//! - `_disconnect`(nsp, close, filter?): they disconnect (`close`: their whole connection too);
//! - `emit`(nsp, filter, event, ...args): `event` to them.
//!
//! Each goes through the namespace's adapter, so it reaches sockets on every node of the cluster.
//! A namespace that does not exist is never created; arguments of the wrong type are refused. Both
//! are logged and counted (`switchyard_admin_commands_total{command, outcome}`), as are commands
//! sent to a readonly server, which are ignored.

use super::Inner;
use serde_json::Value;
use std::sync::Arc;
use switchyard_socketio::{BroadcastOperator, Payload, Room, Socket};

/// The commands the UI may send.
const COMMANDS: [&str; 4] = ["join", "leave", "_disconnect", "emit"];

/// Why a command was not carried out.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// An argument is missing or of the wrong type.
    Invalid(&'static str),
    /// No namespace of that name exists on this server.
    UnknownNamespace,
}

pub(super) fn register(inner: &Arc<Inner>, socket: &Arc<Socket>) {
    for command in COMMANDS {
        let inner = inner.clone();
        socket.on(command, move |socket, payload, _ack| {
            if inner.readonly {
                inner.counters.commands.with_label_values(&[command, "readonly"]).inc();
                tracing::info!(command, admin = %socket.id(), "admin: command ignored (admin.readonly)");
                return;
            }
            let outcome = match inner.run(command, payload) {
                Ok(()) => "ok",
                Err(Refused::UnknownNamespace) => "unknown_namespace",
                Err(Refused::Invalid(_)) => "invalid",
            };
            inner.counters.commands.with_label_values(&[command, outcome]).inc();
            if outcome == "ok" {
                tracing::info!(command, admin = %socket.id(), "admin: command");
            } else {
                tracing::warn!(command, outcome, admin = %socket.id(), "admin: command refused");
            }
        });
    }
}

/// An optional room filter: absent, `null` or `""` mean the whole namespace.
fn filter(arg: Option<&Value>) -> Result<Option<&str>, Refused> {
    match arg {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refused::Invalid("the filter must be a room name")),
    }
}

fn string<'a>(arg: Option<&'a Value>, what: &'static str) -> Result<&'a str, Refused> {
    arg.and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(Refused::Invalid(what))
}

impl Inner {
    /// The sockets of `nsp` (in room `filter`, when given), never creating the namespace.
    fn target(&self, nsp: &str, filter: Option<&str>) -> Result<BroadcastOperator, Refused> {
        let ns = self.io.namespaces().into_iter().find(|ns| ns.name() == nsp).ok_or(Refused::UnknownNamespace)?;
        let op = ns.broadcast();
        Ok(match filter {
            Some(room) => op.to(room),
            None => op,
        })
    }

    fn run(&self, command: &str, payload: Payload) -> Result<(), Refused> {
        let args = &payload.args;
        let nsp = string(args.first(), "the first argument must be a namespace")?;
        match command {
            "join" | "leave" => {
                let room: Room = string(args.get(1), "the second argument must be a room")?.into();
                let op = self.target(nsp, filter(args.get(2))?)?;
                if command == "join" {
                    op.sockets_join(&[room]);
                } else {
                    op.sockets_leave(&[room]);
                }
            }
            "_disconnect" => {
                let close = match args.get(1) {
                    Some(Value::Bool(close)) => *close,
                    None | Some(Value::Null) => false,
                    Some(_) => return Err(Refused::Invalid("the second argument must be true or false")),
                };
                self.target(nsp, filter(args.get(2))?)?.disconnect_sockets(close);
            }
            "emit" => {
                let target = filter(args.get(1))?;
                let event = string(args.get(2), "the third argument must be an event name")?;
                if switchyard_engine::protocol::socketio::RESERVED_EVENTS.contains(&event) {
                    return Err(Refused::Invalid("reserved event name"));
                }
                let op = self.target(nsp, target)?;
                op.emit(event, Payload { args: args[3..].to_vec(), binary: payload.binary.clone() });
            }
            _ => return Err(Refused::Invalid("unknown command")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_strings() {
        assert_eq!(filter(None), Ok(None));
        assert_eq!(filter(Some(&Value::Null)), Ok(None));
        assert_eq!(filter(Some(&json!(""))), Ok(None));
        assert_eq!(filter(Some(&json!("room"))), Ok(Some("room")));
        assert!(filter(Some(&json!(3))).is_err());
        assert!(string(Some(&json!("")), "x").is_err());
        assert!(string(None, "x").is_err());
    }
}

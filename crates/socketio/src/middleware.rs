//! Message middleware (Node's `socket.use`): synchronous checks that see every incoming event before
//! its handlers and may reject it.
//!
//! Server-wide middleware ([`SocketIoBuilder::event_middleware`](crate::SocketIoBuilder::event_middleware))
//! runs first, then namespace middleware
//! ([`Namespace::use_event_middleware`](crate::Namespace::use_event_middleware); a dynamic
//! namespace's parent's before the child's), then the socket's own
//! ([`Socket::use_event_middleware`](crate::Socket::use_event_middleware)), each list in registration
//! order. The first [`Rejection`] stops the chain: neither `on_any` handlers nor the event's handler
//! run, and if the client asked for an acknowledgement it is answered with the rejection's value.
//!
//! ```
//! use serde_json::json;
//! use switchyard_socketio::{Rejection, SocketIo};
//!
//! let io = SocketIo::new(Default::default());
//! io.of("/").use_event_middleware(|socket, event, _payload| {
//!     if event.starts_with("admin:") && socket.extensions().get::<&'static str>() != Some("admin") {
//!         return Err(Rejection::new(json!({"ok": false, "error": "forbidden"})));
//!     }
//!     Ok(())
//! });
//! ```

#![warn(missing_docs)]

use crate::payload::Payload;
use crate::socket::Socket;
use serde_json::Value;
use std::sync::Arc;

/// A message middleware's refusal of one incoming event. The client's ack, when it asked for one,
/// is answered with [`Rejection::ack`] as the single argument (or not at all for [`Rejection::silent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    ack: Option<Value>,
}

impl Rejection {
    /// Rejects the event and answers the client's ack, if it asked for one, with `ack`
    /// (e.g. `{"error": "rate_limited"}`).
    pub fn new(ack: Value) -> Self {
        Rejection { ack: Some(ack) }
    }

    /// Rejects the event without answering the client's ack.
    pub fn silent() -> Self {
        Rejection { ack: None }
    }

    /// The value the client's ack is answered with, if any.
    pub fn ack(&self) -> Option<&Value> {
        self.ack.as_ref()
    }
}

/// A message middleware: sees the socket, the event name and its arguments.
pub(crate) type EventMiddleware = Arc<dyn Fn(&Arc<Socket>, &str, &Payload) -> Result<(), Rejection> + Send + Sync>;

/// Runs `chain` in order; stops at the first rejection.
pub(crate) fn run(
    chain: &[EventMiddleware],
    socket: &Arc<Socket>,
    event: &str,
    payload: &Payload,
) -> Result<(), Rejection> {
    chain.iter().try_for_each(|middleware| middleware(socket, event, payload))
}

/// Per-socket values that never leave this server (unlike [`Socket::data`](crate::Socket::data),
/// which fetch-sockets sends to other nodes): authentication claims, rate-limiter state, handles.
///
/// A type map keyed by the value's type, at most one value per type. It costs one pointer on an idle
/// socket and allocates on the first insert. Values are cloned out by [`Extensions::get`], so store
/// cheap-to-clone values (`Arc<T>` for large ones).
///
/// ```
/// # fn demo(socket: &switchyard_socketio::Socket) {
/// #[derive(Clone)]
/// struct Claims { user: String }
/// socket.extensions().insert(Claims { user: "ada".into() });
/// assert_eq!(socket.extensions().get::<Claims>().map(|c| c.user), Some("ada".to_string()));
/// # }
/// ```
#[derive(Default)]
pub struct Extensions(parking_lot::Mutex<http::Extensions>);

impl Extensions {
    /// Stores `value`, returning the previous value of the same type.
    pub fn insert<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.0.lock().insert(value)
    }

    /// A clone of the value of type `T`, if one is stored.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0.lock().get::<T>().cloned()
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.0.lock().get::<T>().is_some()
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0.lock().remove::<T>()
    }

    /// Runs `f` on the value of type `T` in place (to update a counter without cloning, say),
    /// holding the map's lock: `f` must not use this socket's extensions.
    pub fn with_mut<T: Send + Sync + 'static, R>(&self, f: impl FnOnce(Option<&mut T>) -> R) -> R {
        f(self.0.lock().get_mut::<T>())
    }

    /// Removes every value.
    pub fn clear(&self) {
        self.0.lock().clear();
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions").field("len", &self.0.lock().len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_by_type() {
        let ext = Extensions::default();
        assert_eq!(std::mem::size_of::<Extensions>(), 2 * std::mem::size_of::<usize>());
        assert_eq!(ext.get::<u32>(), None);
        assert_eq!(ext.insert(7u32), None);
        assert_eq!(ext.insert(8u32), Some(7));
        ext.insert(String::from("claims"));
        assert_eq!(ext.get::<u32>(), Some(8));
        assert!(ext.contains::<String>());
        ext.with_mut::<u32, _>(|v| *v.unwrap() += 1);
        assert_eq!(ext.remove::<u32>(), Some(9));
        assert!(!ext.contains::<u32>());
        ext.clear();
        assert_eq!(ext.get::<String>(), None);
    }

    #[test]
    fn rejection_carries_the_ack_value() {
        let r = Rejection::new(serde_json::json!({"error": "rate_limited"}));
        assert_eq!(r.ack(), Some(&serde_json::json!({"error": "rate_limited"})));
        assert_eq!(Rejection::silent().ack(), None);
    }
}

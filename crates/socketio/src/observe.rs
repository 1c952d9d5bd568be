//! Observers: server-wide hooks that see the life of every socket, for metrics, logs and admin UIs.
//!
//! Implement [`Observer`] (every method has a no-op default) and register it with
//! [`SocketIo::observe`](crate::SocketIo::observe) or [`SocketIoBuilder::observer`](crate::SocketIoBuilder::observer).
//! Several observers may be registered; each is called in registration order, synchronously, on the
//! task where the thing happened, so keep them cheap (count, enqueue) and never block in them.
//!
//! With no observer registered the hot paths pay one relaxed atomic load: no lock, no allocation.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use switchyard_socketio::{Observer, Payload, Socket, SocketIo};
//!
//! #[derive(Default)]
//! struct EventCounter(AtomicU64);
//!
//! impl Observer for EventCounter {
//!     fn on_event(&self, _socket: &Socket, _event: &str, _payload: &Payload) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let counter = Arc::new(EventCounter::default());
//! let io = SocketIo::builder().observer(counter.clone()).build();
//! # let _ = io;
//! ```

#![warn(missing_docs)]

use crate::adapter::{BroadcastOptions, Room};
use crate::middleware::Rejection;
use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::socket::{DisconnectReason, Socket};
use parking_lot::RwLock;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Server-wide hooks, called synchronously where each thing happens. Every method defaults to doing
/// nothing, so an observer implements only what it needs. Methods must not block; they may use the
/// socket (emit, join, read its extensions) but should stay cheap: they run on the hot path.
#[allow(unused_variables)]
pub trait Observer: Send + Sync + 'static {
    /// A socket connected to its namespace (after the connect middleware accepted it, before the
    /// namespace's connection handler runs).
    fn on_connect(&self, socket: &Socket) {}

    /// A socket disconnected, after it left its rooms and before its own disconnect handlers ran.
    fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {}

    /// A socket joined `room` (not called for the room named after the socket's id).
    fn on_join(&self, socket: &Socket, room: &Room) {}

    /// A socket left `room`, by itself or because it disconnected.
    fn on_leave(&self, socket: &Socket, room: &Room) {}

    /// The socket's connection moved from HTTP long-polling to WebSocket (called for each of the
    /// connection's sockets).
    fn on_upgrade(&self, socket: &Socket) {}

    /// [`Socket::set_data`] replaced the socket's data.
    fn on_data(&self, socket: &Socket) {}

    /// A socket received an event from its client, before any message middleware saw it.
    fn on_event(&self, socket: &Socket, event: &str, payload: &Payload) {}

    /// Message middleware rejected an incoming event; its handlers did not run.
    fn on_event_rejected(&self, socket: &Socket, event: &str, rejection: &Rejection) {}

    /// An event was sent to one socket with [`Socket::emit`] or [`Socket::emit_with_ack`].
    fn on_emit(&self, socket: &Socket, event: &str, payload: &Payload) {}

    /// A broadcast was emitted on this server (once per broadcast, never per recipient).
    /// `recipients` is the number of local sockets the packet was written to; with a cluster adapter,
    /// other nodes' recipients are not counted. Broadcasts arriving from other nodes are not reported.
    fn on_broadcast(&self, ns: &Namespace, opts: &BroadcastOptions, event: &str, payload: &Payload, recipients: usize) {
    }

    /// A client answered an acknowledgement the server asked for (one socket's or a broadcast's).
    fn on_ack(&self, socket: &Socket, payload: &Payload) {}

    /// A client did not answer [`Socket::emit_with_ack`] in time.
    fn on_ack_timeout(&self, socket: &Socket, event: &str) {}
}

/// The registered observers, shared by the server and every namespace.
pub(crate) struct Observers {
    /// Set once the first observer is registered: the only thing the hot path reads without one.
    active: AtomicBool,
    list: RwLock<Arc<[Arc<dyn Observer>]>>,
}

impl Default for Observers {
    fn default() -> Self {
        Observers::new(Vec::new())
    }
}

impl Observers {
    pub(crate) fn new(list: Vec<Arc<dyn Observer>>) -> Self {
        Observers { active: AtomicBool::new(!list.is_empty()), list: RwLock::new(list.into()) }
    }

    pub(crate) fn add(&self, observer: Arc<dyn Observer>) {
        let mut list = self.list.write();
        let mut next = list.to_vec();
        next.push(observer);
        *list = next.into();
        self.active.store(true, Ordering::Release);
    }

    /// Whether any observer is registered (one relaxed load).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls `f` for every observer; nothing but a relaxed load when there is none.
    #[inline]
    pub(crate) fn notify(&self, f: impl Fn(&dyn Observer)) {
        if self.active() {
            self.notify_slow(&f);
        }
    }

    #[cold]
    fn notify_slow(&self, f: &dyn Fn(&dyn Observer)) {
        // A snapshot, so an observer may register another one without deadlocking.
        let list = self.list.read().clone();
        for observer in list.iter() {
            f(&**observer);
        }
    }
}

thread_local! {
    /// Local recipients counted while a broadcast runs on this thread (adapters deliver locally and
    /// synchronously inside `Adapter::broadcast`), when an observer wants the count.
    static LOCAL_RECIPIENTS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` (a broadcast) and returns how many local recipients it reported through [`add_local`].
pub(crate) fn count_local(f: impl FnOnce()) -> usize {
    let outer = LOCAL_RECIPIENTS.with(|c| c.replace(Some(0)));
    f();
    LOCAL_RECIPIENTS.with(|c| c.replace(outer)).unwrap_or(0)
}

/// Adds `n` local recipients to the broadcast being counted on this thread, if any.
pub(crate) fn add_local(n: usize) {
    LOCAL_RECIPIENTS.with(|c| {
        if let Some(count) = c.get() {
            c.set(Some(count + n));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Observer for Count {
        fn on_join(&self, _socket: &Socket, _room: &Room) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn inactive_until_the_first_observer() {
        let observers = Observers::default();
        assert!(!observers.active());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        observers.add(count.clone());
        observers.add(count.clone());
        assert!(observers.active());
        let calls = Cell::new(0);
        observers.notify(|_| calls.set(calls.get() + 1));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn local_counts_nest_and_ignore_uncounted_calls() {
        add_local(5);
        let outer = count_local(|| {
            add_local(2);
            assert_eq!(count_local(|| add_local(3)), 3);
            add_local(1);
        });
        assert_eq!(outer, 3);
        assert_eq!(LOCAL_RECIPIENTS.with(|c| c.get()), None);
    }
}

//! What an accepted `message` passes through before it is broadcast and acknowledged: the message
//! sinks (history, Kafka). Each is a small trait object chosen by configuration; with none
//! configured the `message` event broadcasts and acknowledges at once, with nothing extra on its
//! path.
//!
//! The contract of a sink, so that several can be chained and order kept:
//! - [`MessageSink::accept`] is called on the sender's connection task, in the order the messages
//!   arrive, and does its ordering-relevant work there (assign a sequence, enqueue); it must not
//!   block.
//! - The [`Hold`] it returns says when the message may be broadcast: the sink holds it as its
//!   configuration requires before anyone sees it. [`Hold::Ready`] when that is known at once
//!   (queued or spooled for Kafka: then the message is broadcast on the sender's task with nothing
//!   boxed on the way), [`Hold::Pending`] when it is not (written to the history store).
//! - A sink whose configuration promises more to the sender than to the room (Kafka with
//!   `kafka.ack = "persisted"`: acknowledged by Kafka, or fsynced in the spool) resolves its hold
//!   with a [`Confirm`]: the message is broadcast at once and only the sender's ack waits for it.
//!   The room's delivery does not pay for the sender's durability.
//! - An `Err` refuses the message: from the hold, it is not broadcast and the sender's ack is
//!   `{"ok": false, "error": <the refusal's error>}`; from a confirm (only when the sink could not
//!   keep its promise after the broadcast, such as a failed fsync), the sender's ack carries the
//!   error. A sink that refuses counts and logs why.
//! - With a gate (history: `Events::with_history`, `Events::with_gate`) the gate takes the message
//!   on the connection's task; the other sinks take it only once the gate holds it, from the
//!   message's task, still in the sender's order, so a message the gate refuses reaches none of them
//!   (a message history refuses is not produced to Kafka). A later sink's refusal cannot take the
//!   message back out of the gate's store.
//! - One sender's broadcasts go out in the order it sent them ([`InOrder`]), and so do its acks.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

/// A `message` the server accepted: what history keeps, Kafka receives and the room is sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedMessage {
    /// UUIDv7: unique across the cluster and ordered by time.
    pub id: String,
    /// The room it was sent to.
    pub room: String,
    /// The sender's user name (`access::user_of`).
    pub user: String,
    /// The message's data, as the client sent it.
    pub data: Value,
    /// Milliseconds since the Unix epoch, the time part of `id`.
    pub ts: u64,
    /// The message as its room receives it, encoded once ([`crate::json::message_envelope`]): the
    /// broadcast, the Kafka record and the history entry are made from these bytes.
    #[serde(skip)]
    pub json: bytes::Bytes,
}

impl AcceptedMessage {
    /// The message with its JSON encoded.
    pub fn new(id: String, room: String, user: String, data: Value, ts: u64) -> AcceptedMessage {
        let json = crate::json::message_envelope(&id, &room, &user, &data, ts).into();
        AcceptedMessage { id, room, user, data, ts, json }
    }
}

/// Why a sink refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message refused: {error}")]
pub struct Refused {
    /// The `error` of the sender's ack (docs/EVENTS.md lists them).
    pub error: &'static str,
}

/// Resolves once the sender may be acknowledged, after the broadcast (see the module docs).
pub type Confirm = BoxFuture<'static, Result<(), Refused>>;

/// What a message's hold comes to: it may be broadcast, with what the sender's ack must still wait
/// for; or the refusal.
pub type Held = Result<Option<Confirm>, Refused>;

/// What a sink (or all of a message's sinks together) answers for one message.
pub enum Hold {
    /// Known at once (queued for Kafka, or refused): released with no future and no task.
    Ready(Held),
    /// Resolves once the message may be broadcast (history's write).
    Pending(BoxFuture<'static, Held>),
}

impl Hold {
    /// The hold as a future, whichever it is.
    pub fn into_future(self) -> BoxFuture<'static, Held> {
        match self {
            Hold::Ready(held) => Box::pin(std::future::ready(held)),
            Hold::Pending(future) => future,
        }
    }
}

/// A stage an accepted message must reach before it is broadcast and acknowledged.
pub trait MessageSink: Send + Sync + 'static {
    /// Takes `message` (see the module docs for the contract).
    fn accept(&self, message: &AcceptedMessage) -> Hold;
}

/// Both confirms, as one.
pub fn confirm_both(a: Option<Confirm>, b: Option<Confirm>) -> Option<Confirm> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::pin(async move {
            let (a, b) = futures_util::future::join(a, b).await;
            a.and(b)
        })),
        (a, b) => a.or(b),
    }
}

/// What happens to a message once its future resolved, in order (see [`InOrder`]).
pub type Release<T> = Box<dyn FnOnce(T) + Send>;

/// The messages of one sender waiting for their sinks (or their acks waiting for their confirms),
/// released in the order they arrived, whatever order their futures finish in.
///
/// A message whose future is ready at once (`kafka.ack = "accepted"`, nothing older waiting) is
/// released inline, on the sender's task, with no task or channel on its way. The others go to
/// one task per sender (started at its first waiting message), which on every wake releases every
/// message that is ready, in order: a batch Kafka acknowledged is answered in one go, so the
/// sender's connection writes the batch at once instead of one frame per wake.
pub struct InOrder<T>(std::sync::Arc<parking_lot::Mutex<Option<InOrderTask<T>>>>);

impl<T> Clone for InOrder<T> {
    fn clone(&self) -> Self {
        InOrder(self.0.clone())
    }
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder(Default::default())
    }
}

/// One message's future and what to do once it resolved.
type Waiting<T> = (BoxFuture<'static, T>, Release<T>);

struct InOrderTask<T> {
    tx: tokio::sync::mpsc::UnboundedSender<Waiting<T>>,
    /// Messages sent to the task and not yet released.
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<T: Send + 'static> InOrder<T> {
    /// Whether nothing submitted is still waiting: a message released now keeps the order.
    pub fn idle(&self) -> bool {
        self.0.lock().as_ref().is_none_or(|t| t.waiting.load(std::sync::atomic::Ordering::Acquire) == 0)
    }

    /// Releases `outcome` with `release` at once when nothing submitted before it waits (no
    /// allocation on that path), else after them. Called in arrival order, like [`InOrder::submit`].
    pub fn submit_ready<F: FnOnce(T) + Send + 'static>(&self, outcome: T, release: F) {
        if self.idle() {
            // Only the sender's own calls add to the queue, so it stays empty until `release` is done.
            release(outcome);
        } else {
            self.submit(Box::pin(std::future::ready(outcome)), Box::new(release));
        }
    }

    /// Releases `future`'s message with `release` after every message submitted before it.
    /// Called in arrival order.
    pub fn submit(&self, mut future: BoxFuture<'static, T>, release: Release<T>) {
        use std::sync::atomic::Ordering;
        let mut task = self.0.lock();
        let idle = task.as_ref().is_none_or(|t| t.waiting.load(Ordering::Acquire) == 0);
        if idle {
            // Nothing older waits: if it is ready already, release it here.
            let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
            if let std::task::Poll::Ready(outcome) = future.as_mut().poll(&mut cx) {
                drop(task);
                release(outcome);
                return;
            }
        }
        let task = task.get_or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            tokio::spawn(release_in_order(rx, waiting.clone()));
            InOrderTask { tx, waiting }
        });
        task.waiting.fetch_add(1, Ordering::AcqRel);
        if let Err(returned) = task.tx.send((future, release)) {
            // The task ends only when every sender is gone, which cannot be while `self` holds one.
            task.waiting.fetch_sub(1, Ordering::AcqRel);
            let (future, release) = returned.0;
            tokio::spawn(async move { release(future.await) });
        }
    }
}

/// The task of [`InOrder`]: releases messages in arrival order, every ready one per wake. Ends when
/// the sender is gone and everything it submitted is released.
///
/// Only the oldest waiting message's future is polled (a later one cannot be released before it
/// anyway): when it resolves, the next ones are polled in turn until one is still pending, and only
/// that one's waker is registered. No per-message task or allocation, unlike `FuturesOrdered`.
async fn release_in_order<T>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Waiting<T>>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::task::Poll;
    let mut queue: std::collections::VecDeque<Waiting<T>> = std::collections::VecDeque::new();
    let mut open = true;
    std::future::poll_fn(move |cx| {
        loop {
            // Take everything submitted so far (in arrival order).
            while open {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(item)) => queue.push_back(item),
                    Poll::Ready(None) => open = false,
                    Poll::Pending => break,
                }
            }
            let Some((future, _)) = queue.front_mut() else {
                return if open { Poll::Pending } else { Poll::Ready(()) };
            };
            match future.as_mut().poll(cx) {
                Poll::Ready(outcome) => {
                    let (_, release) = queue.pop_front().expect("the front was just polled");
                    release(outcome);
                    waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// Which message was released, with what outcome, in release order.
    type Log = Arc<Mutex<Vec<(u32, Result<(), Refused>)>>>;

    fn recorder(log: &Log, n: u32) -> Release<Result<(), Refused>> {
        let log = log.clone();
        Box::new(move |outcome| log.lock().push((n, outcome)))
    }

    #[tokio::test]
    async fn messages_are_released_in_arrival_order_whatever_order_their_sinks_finish_in() {
        let order = InOrder::<Result<(), Refused>>::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut finish = Vec::new();
        for n in 0..5u32 {
            let (tx, rx) = oneshot::channel::<Result<(), Refused>>();
            finish.push(tx);
            order.submit(Box::pin(async move { rx.await.unwrap() }), recorder(&log, n));
        }
        // Ready at once, but older messages wait: it must wait behind them, not go inline.
        order.submit_ready(Ok(()), recorder(&log, 5));
        assert!(log.lock().is_empty());
        // Finish them newest first; the refusal of 2 is released in its place.
        let mut finish: Vec<_> = finish.into_iter().enumerate().collect();
        finish.reverse();
        for (n, tx) in finish {
            let outcome = if n == 2 { Err(Refused { error: "spool_full" }) } else { Ok(()) };
            tx.send(outcome).unwrap();
            tokio::task::yield_now().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log.lock().len() < 6 {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {:?}", log.lock());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = log.lock().clone();
        let numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(got[2].1, Err(Refused { error: "spool_full" }));
        assert!(got.iter().enumerate().all(|(i, (_, o))| i == 2 || o.is_ok()));
        // Nothing waits any more: a ready message is released inline, before submit returns.
        order.submit(Box::pin(async { Ok(()) }), recorder(&log, 6));
        assert_eq!(log.lock().last().map(|(n, _)| *n), Some(6));
        order.submit_ready(Err(Refused { error: "spool_full" }), recorder(&log, 7));
        assert_eq!(log.lock().last(), Some(&(7, Err(Refused { error: "spool_full" }))));
    }

    #[tokio::test]
    async fn a_ready_first_message_is_released_inline_without_a_task() {
        let order = InOrder::<Result<(), Refused>>::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        order.submit(Box::pin(async { Err(Refused { error: "unavailable" }) }), recorder(&log, 0));
        assert_eq!(*log.lock(), vec![(0, Err(Refused { error: "unavailable" }))]);
        assert!(order.0.lock().is_none(), "no task started for a message released inline");
    }
}

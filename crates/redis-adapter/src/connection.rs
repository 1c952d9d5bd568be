//! The two Redis links of a node, each supervised: a publisher fed by a bounded queue (which also
//! answers queries such as `PUBSUB NUMSUB`), and a subscriber that reconnects and resubscribes to
//! every channel by itself. While Redis is away, messages to publish are dropped and counted rather
//! than queued without bound.

use crate::error::Error;
use crate::stats::Stats;
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisResult};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often an idle subscriber checks that its connection still answers.
const HEALTH_CHECK: Duration = Duration::from_secs(2);

/// Where Redis is: one server, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Checks the URLs without connecting.
    pub fn validate(&self) -> RedisResult<()> {
        match self {
            RedisTarget::Single(url) => url.as_str().into_connection_info().map(|_| ()),
            RedisTarget::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err((redis::ErrorKind::InvalidClientConfig, "no cluster node given").into());
                }
                nodes.iter().try_for_each(|n| n.as_str().into_connection_info().map(|_| ()))
            }
        }
    }

    pub(crate) async fn connect(&self, push: Option<PushHandler>) -> RedisResult<Conn> {
        match self {
            RedisTarget::Single(url) => {
                let info = url.as_str().into_connection_info()?;
                let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                let client = Client::open(info.set_redis_settings(settings))?;
                let mut config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                if let Some(push) = push {
                    config = config.set_push_sender(move |info: PushInfo| {
                        push(info);
                        Ok::<(), std::convert::Infallible>(())
                    });
                }
                let conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                Ok(Conn::Single(conn))
            }
            RedisTarget::Cluster(nodes) => {
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2);
                if let Some(push) = push {
                    builder = builder.push_sender(move |info: PushInfo| {
                        push(info);
                        Ok::<(), std::convert::Infallible>(())
                    });
                }
                let conn = builder.build()?.get_async_connection().await?;
                Ok(Conn::Cluster(conn))
            }
        }
    }
}

pub(crate) type PushHandler = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// A live connection; cheap to clone (both kinds multiplex).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(crate) async fn query(&mut self, cmd: &Cmd) -> RedisResult<redis::Value> {
        match self {
            Conn::Single(conn) => cmd.query_async(conn).await,
            Conn::Cluster(conn) => cmd.query_async(conn).await,
        }
    }

    /// Runs a pipeline built with `ignore_errors`: one result per command.
    async fn query_pipeline(&mut self, pipe: &redis::Pipeline) -> RedisResult<Vec<RedisResult<redis::Value>>> {
        match self {
            Conn::Single(conn) => pipe.query_async(conn).await,
            Conn::Cluster(conn) => pipe.query_async(conn).await,
        }
    }
}

/// Errors after which the connection is not worth keeping.
pub(crate) fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_timeout() || err.is_unrecoverable_error()
}

/// One message to publish.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// SPUBLISH (sharded) rather than PUBLISH.
    pub sharded: bool,
    pub channel: String,
    pub payload: Vec<u8>,
    /// Connection state recovery: store the broadcast in the namespace's stream first, and publish
    /// `payload` completed with the stream id (see [`crate::recovery`]).
    pub record: Option<Box<crate::recovery::Record>>,
}

impl Drop for Outgoing {
    /// A recorded broadcast that never got its stream id (queue full, Redis unreachable, connection
    /// lost, an error reply) takes its message parts to the record's failure path, which delivers it
    /// locally and keeps it to be published again (see [`crate::recovery`]); moved, not copied.
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.failed(self.sharded, std::mem::take(&mut self.channel), std::mem::take(&mut self.payload));
        }
    }
}

impl Outgoing {
    /// The command that sends this message.
    fn command(&self, script_loaded: bool) -> Cmd {
        match &self.record {
            None => {
                let mut cmd = redis::cmd(if self.sharded { "SPUBLISH" } else { "PUBLISH" });
                cmd.arg(&self.channel).arg(&self.payload);
                cmd
            }
            Some(record) => record.command(self, script_loaded),
        }
    }
}

/// What became of one batch of messages.
struct BatchOutcome {
    published: u64,
    failed: u64,
    /// The connection failed (the batch's messages are lost with it).
    connection_error: Option<redis::RedisError>,
}

/// Sends `batch` as one pipeline (one write, answers in order), so messages are stored and published
/// in the order they were queued. A recorded broadcast whose script Redis does not know (loaded at
/// connect, so only after a `SCRIPT FLUSH`) is sent again with the script's text. Each record's
/// waiter learns its stream id, or that it failed.
async fn send_batch(mut conn: Conn, mut batch: Vec<Outgoing>) -> BatchOutcome {
    // From here a failure leaves a record's outcome unknown: Redis may run it without answering.
    // One clock read per batch: a record republished later looks for itself in the stream back to
    // when it was sent.
    let now = std::time::Instant::now();
    for message in &mut batch {
        if let Some(record) = message.record.as_mut() {
            record.sent(now);
        }
    }
    // A Redis Cluster routes each command to its slot's primary: one pipeline cannot span them, so
    // there the batch's commands go one after another, still in queue order.
    let cluster = matches!(conn, Conn::Cluster(_));
    let results = match cluster {
        true => {
            let mut results = Vec::with_capacity(batch.len());
            // The commands first: a record's completion callback is not `Sync`, so `batch` must not be
            // borrowed across an await.
            let commands: Vec<Cmd> = batch.iter().map(|message| message.command(true)).collect();
            for command in &commands {
                let result = conn.query(command).await;
                if matches!(&result, Err(err) if is_connection_error(err)) {
                    results.push(result);
                    break;
                }
                results.push(result);
            }
            results
        }
        false => {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for message in &batch {
                pipe.add_command(message.command(true));
            }
            match conn.query_pipeline(&pipe).await {
                Ok(results) => results,
                Err(err) => {
                    let failed = batch.len() as u64;
                    let connection_error = is_connection_error(&err).then_some(err);
                    // Dropping the batch tells every record's waiter (delivered without an offset).
                    return BatchOutcome { published: 0, failed, connection_error };
                }
            }
        }
    };
    let mut outcome = BatchOutcome { published: 0, failed: 0, connection_error: None };
    let mut results = results.into_iter();
    for message in &mut batch {
        let mut result = results.next().unwrap_or_else(|| Err((redis::ErrorKind::Parse, "missing reply").into()));
        if matches!(&result, Err(err) if err.code() == Some("NOSCRIPT")) {
            result = conn.query(&message.command(false)).await;
        }
        match &result {
            Ok(_) => outcome.published += 1,
            Err(err) => {
                outcome.failed += 1;
                if is_connection_error(err) && outcome.connection_error.is_none() {
                    outcome.connection_error = Some(err.clone());
                }
            }
        }
        // A stored record's waiter learns its stream id; any other outcome leaves the record in its
        // message, whose drop (with the batch) takes both to the failure path.
        if let Ok(reply) = &result {
            if let Some(id) = message.record.as_ref().and_then(|_| crate::recovery::stream_id_reply(reply)) {
                if let Some(mut record) = message.record.take() {
                    record.done(id);
                }
            }
        }
    }
    outcome
}

/// The publishing side: a bounded queue drained by a supervised task, and the live connection for
/// queries.
pub(crate) struct Publisher {
    queue: mpsc::Sender<Outgoing>,
    /// The live connection and its generation (bumped on every reconnect).
    current: RwLock<Option<(u64, Conn)>>,
    broken: Arc<Notify>,
    stats: Arc<Stats>,
    /// Messages sent first on every new connection, before anything queued (see [`Backlog`]).
    backlog: std::sync::OnceLock<Backlog>,
}

/// Takes up to `n` messages that an earlier connection did not get through (the recorded broadcasts
/// Redis did not take, [`crate::recovery`]), oldest first: a new connection sends them before the
/// queue, so they keep their order with the broadcasts made while Redis was away or since.
pub(crate) type Backlog = Box<dyn Fn(usize) -> Vec<Outgoing> + Send + Sync>;

impl Publisher {
    pub(crate) fn start(target: RedisTarget, capacity: usize, max_in_flight: usize, stats: Arc<Stats>) -> Arc<Self> {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let publisher = Arc::new(Publisher {
            queue,
            current: RwLock::new(None),
            broken: Arc::new(Notify::new()),
            stats: stats.clone(),
            backlog: std::sync::OnceLock::new(),
        });
        tokio::spawn(run_publisher(Arc::downgrade(&publisher), target, rx, max_in_flight.max(1), stats));
        publisher
    }

    /// Sets what every new connection sends first (once).
    pub(crate) fn set_backlog(&self, backlog: Backlog) {
        let _ = self.backlog.set(backlog);
    }

    /// Queues a message; counts and logs it as dropped when the queue is full.
    pub(crate) fn publish(&self, message: Outgoing) {
        if let Err(err) = self.queue.try_send(message) {
            let reason = match err {
                mpsc::error::TrySendError::Full(_) => "publish queue full",
                mpsc::error::TrySendError::Closed(_) => "publisher stopped",
            };
            self.stats.dropped(reason, 1);
        }
    }

    /// Runs a command on the live connection, failing at once when Redis is unreachable. A command
    /// that finds the connection dead is tried once more on the next one.
    pub(crate) async fn query(&self, cmd: &Cmd, timeout: Duration) -> Result<redis::Value, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut retried = false;
        loop {
            let Some((generation, mut conn)) = self.current.read().clone() else {
                return Err(Error::Unreachable);
            };
            match tokio::time::timeout_at(deadline, conn.query(cmd)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if is_connection_error(&err) && !retried => {
                    retried = true;
                    self.broken.notify_one();
                    // Wait (briefly) for the supervisor to put a new connection in place.
                    let reconnected = tokio::time::timeout_at(deadline, async {
                        loop {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if matches!(&*self.current.read(), Some((g, _)) if *g != generation) {
                                return;
                            }
                        }
                    });
                    if reconnected.await.is_err() {
                        return Err(err.into());
                    }
                }
                Ok(Err(err)) => {
                    if is_connection_error(&err) {
                        self.broken.notify_one();
                    }
                    return Err(err.into());
                }
                Err(_) => return Err(Error::Timeout(timeout)),
            }
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.current.read().is_some()
    }

    /// The live connection's generation (bumped on every reconnect), if connected.
    pub(crate) fn generation(&self) -> Option<u64> {
        self.current.read().as_ref().map(|(g, _)| *g)
    }

    /// Runs a pipeline on the live connection, failing at once when Redis is unreachable.
    pub(crate) async fn query_pipeline(&self, pipe: &redis::Pipeline, timeout: Duration) -> Result<(), Error> {
        let Some((_, conn)) = self.current.read().clone() else { return Err(Error::Unreachable) };
        let result = match conn {
            Conn::Single(mut c) => tokio::time::timeout(timeout, pipe.query_async::<()>(&mut c)).await,
            Conn::Cluster(mut c) => tokio::time::timeout(timeout, pipe.query_async::<()>(&mut c)).await,
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                if is_connection_error(&err) {
                    self.broken.notify_one();
                }
                Err(err.into())
            }
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }
}

async fn run_publisher(
    publisher: std::sync::Weak<Publisher>,
    target: RedisTarget,
    mut rx: mpsc::Receiver<Outgoing>,
    max_in_flight: usize,
    stats: Arc<Stats>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    let mut generation = 0u64;
    let Some(broken) = publisher.upgrade().map(|p| p.broken.clone()) else { return };
    loop {
        // The publisher only listens for the connection's end, to reconnect before the next publish.
        let on_push: PushHandler = {
            let broken = broken.clone();
            Arc::new(move |info: PushInfo| {
                if info.kind == PushKind::Disconnection {
                    broken.notify_one();
                }
            })
        };
        // Connect, dropping (and counting) whatever is queued meanwhile.
        let conn = {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT * 2, target.connect(Some(on_push)));
            tokio::pin!(connect);
            loop {
                tokio::select! {
                    result = &mut connect => break connect_result(result),
                    message = rx.recv() => match message {
                        Some(_) => stats.dropped("Redis unreachable", 1),
                        None => return,
                    },
                }
            }
        };
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(err) => {
                if first || backoff == BACKOFF_MAX {
                    tracing::warn!(error = %err, "redis adapter: cannot connect the publisher; retrying");
                }
                first = false;
                if !drain_for(&mut rx, backoff, &stats).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // Load the recovery scripts before anything is sent: an `EVALSHA` answered `NOSCRIPT` is sent
        // again after later messages, which would store and publish them out of order.
        if let Err(err) = load_scripts(&mut conn).await {
            tracing::warn!(error = %err, "redis adapter: cannot load the recovery scripts; reconnecting");
            if !drain_for(&mut rx, backoff, &stats).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        let Some(publisher) = publisher.upgrade() else { return };
        if let Err(err) = send_backlog(&publisher, &conn, max_in_flight, &stats).await {
            tracing::warn!(error = %err, "redis adapter: publisher connection lost; reconnecting");
            drop(publisher);
            if !drain_for(&mut rx, backoff, &stats).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        generation += 1;
        *publisher.current.write() = Some((generation, conn.clone()));
        stats.publisher_connected.store(true, Ordering::Relaxed);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("redis adapter: publisher connected");
        backoff = BACKOFF_MIN;
        first = true;

        // One batch in flight at a time: its messages go out in one write, and the next batch only
        // after its answers, so Redis stores and publishes them in queue order.
        let mut in_flight: Option<std::pin::Pin<Box<dyn std::future::Future<Output = BatchOutcome> + Send>>> = None;
        let mut lost = 0usize;
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                message = rx.recv(), if in_flight.is_none() => {
                    let Some(first) = message else { return };
                    let mut batch = vec![first];
                    while batch.len() < max_in_flight {
                        match rx.try_recv() {
                            Ok(message) => batch.push(message),
                            Err(_) => break,
                        }
                    }
                    lost = batch.len();
                    in_flight = Some(Box::pin(send_batch(conn.clone(), batch)));
                }
                outcome = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    lost = 0;
                    stats.published.fetch_add(outcome.published, Ordering::Relaxed);
                    if outcome.failed > 0 {
                        stats.dropped("publish failed", outcome.failed);
                    }
                    if let Some(err) = outcome.connection_error {
                        tracing::warn!(error = %err, "redis adapter: publisher connection lost");
                        break;
                    }
                }
                _ = publisher.broken.notified() => {
                    // The connection ended or a query failed: check with a PING before throwing it away.
                    let ping = tokio::time::timeout(RESPONSE_TIMEOUT, conn.query(&redis::cmd("PING"))).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        tracing::warn!("redis adapter: publisher connection lost");
                        break;
                    }
                }
                _ = health.tick() => {
                    let ping = tokio::time::timeout(RESPONSE_TIMEOUT, conn.query(&redis::cmd("PING"))).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        tracing::warn!("redis adapter: publisher connection does not answer");
                        break;
                    }
                }
            }
        }
        *publisher.current.write() = None;
        stats.publisher_connected.store(false, Ordering::Relaxed);
        // Whatever was in flight on the dead connection is lost (its records are delivered locally).
        drop(in_flight);
        if lost > 0 {
            stats.dropped("connection lost with messages in flight", lost as u64);
        }
        drop(publisher);
    }
}

/// Sends the publisher's backlog on a new connection, in batches, before it takes the queue. Stops
/// at the first batch with a failure (its messages go back to the backlog's owner, which retries them
/// later: no loop on a message Redis refuses); fails when the connection does.
async fn send_backlog(publisher: &Publisher, conn: &Conn, max_in_flight: usize, stats: &Stats) -> RedisResult<()> {
    let Some(take) = publisher.backlog.get() else { return Ok(()) };
    loop {
        let batch = take(max_in_flight);
        if batch.is_empty() {
            return Ok(());
        }
        let outcome = send_batch(conn.clone(), batch).await;
        stats.published.fetch_add(outcome.published, Ordering::Relaxed);
        if outcome.failed > 0 {
            stats.dropped("publish failed", outcome.failed);
        }
        if let Some(err) = outcome.connection_error {
            return Err(err);
        }
        if outcome.failed > 0 {
            return Ok(());
        }
    }
}

/// `SCRIPT LOAD`s the recovery scripts (every primary of a Redis Cluster).
async fn load_scripts(conn: &mut Conn) -> RedisResult<()> {
    for text in crate::recovery::script_texts() {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(text);
        tokio::time::timeout(RESPONSE_TIMEOUT, conn.query(&cmd))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "SCRIPT LOAD timed out")))??;
    }
    Ok(())
}

/// A connection attempt bounded by `CONNECT_TIMEOUT * 2`.
fn connect_result(result: Result<RedisResult<Conn>, tokio::time::error::Elapsed>) -> Result<Conn, Error> {
    result.map_err(|_| Error::ConnectTimeout(CONNECT_TIMEOUT * 2))?.map_err(Error::from)
}

/// Waits `delay`, dropping queued messages meanwhile. False when the queue closed.
async fn drain_for(rx: &mut mpsc::Receiver<Outgoing>, delay: Duration, stats: &Stats) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            message = rx.recv() => match message {
                Some(_) => stats.dropped("Redis unreachable", 1),
                None => return false,
            },
        }
    }
}

/// What a subscription is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Subscription {
    Channel(String),
    Pattern(String),
    Shard(String),
}

impl Subscription {
    /// The channel, or the pattern.
    pub(crate) fn name(&self) -> &str {
        match self {
            Subscription::Channel(name) | Subscription::Pattern(name) | Subscription::Shard(name) => name,
        }
    }

    fn command(&self, subscribe: bool) -> Cmd {
        let (verb, name) = match (self, subscribe) {
            (Subscription::Channel(c), true) => ("SUBSCRIBE", c),
            (Subscription::Channel(c), false) => ("UNSUBSCRIBE", c),
            (Subscription::Pattern(p), true) => ("PSUBSCRIBE", p),
            (Subscription::Pattern(p), false) => ("PUNSUBSCRIBE", p),
            (Subscription::Shard(c), true) => ("SSUBSCRIBE", c),
            (Subscription::Shard(c), false) => ("SUNSUBSCRIBE", c),
        };
        let mut cmd = redis::cmd(verb);
        cmd.arg(name);
        cmd
    }
}

enum SubscriberCommand {
    Add(Subscription),
    Remove(Subscription),
    /// Answered once every command queued before it took effect in Redis (dropped, unanswered,
    /// while the subscriber is disconnected).
    Sync(oneshot::Sender<()>),
}

/// The subscribing side: a supervised connection that keeps the wanted subscriptions.
pub(crate) struct Subscriber {
    commands: mpsc::UnboundedSender<SubscriberCommand>,
    /// Every subscription wanted now, with how many holders want it (a room's members, a restore
    /// waiting for the room's packets), kept here so a reconnect resubscribes to all of them.
    wanted: Arc<Mutex<BTreeMap<Subscription, usize>>>,
}

impl Subscriber {
    pub(crate) fn start(target: RedisTarget, handler: PushHandler, stats: Arc<Stats>) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let wanted = Arc::new(Mutex::new(BTreeMap::new()));
        tokio::spawn(run_subscriber(target, handler, rx, wanted.clone(), stats));
        Subscriber { commands, wanted }
    }

    /// Adds one holder of `subscription`; the first one subscribes.
    pub(crate) fn subscribe(&self, subscription: Subscription) {
        let mut wanted = self.wanted.lock();
        let holders = wanted.entry(subscription.clone()).or_insert(0);
        *holders += 1;
        if *holders == 1 {
            let _ = self.commands.send(SubscriberCommand::Add(subscription));
        }
    }

    /// Removes one holder of `subscription`; the last one unsubscribes. True when it was the last.
    pub(crate) fn unsubscribe(&self, subscription: Subscription) -> bool {
        let mut wanted = self.wanted.lock();
        let Some(holders) = wanted.get_mut(&subscription) else { return false };
        *holders -= 1;
        if *holders > 0 {
            return false;
        }
        wanted.remove(&subscription);
        let _ = self.commands.send(SubscriberCommand::Remove(subscription));
        true
    }

    /// Resolves once every subscription asked for so far is in effect in Redis (its confirmation
    /// came back), so anything published after that reaches this node. Fails when the subscriber
    /// is disconnected meanwhile.
    pub(crate) fn synced(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(SubscriberCommand::Sync(tx));
        rx
    }
}

async fn run_subscriber(
    target: RedisTarget,
    handler: PushHandler,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    wanted: Arc<Mutex<BTreeMap<Subscription, usize>>>,
    stats: Arc<Stats>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        let lost = Arc::new(Notify::new());
        let push: PushHandler = {
            let lost = lost.clone();
            let handler = handler.clone();
            Arc::new(move |info: PushInfo| {
                if info.kind == PushKind::Disconnection {
                    lost.notify_one();
                } else {
                    handler(info);
                }
            })
        };
        // Commands that arrive while disconnected only change `wanted`, which is applied on connect.
        let connected = {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT * 2, target.connect(Some(push)));
            tokio::pin!(connect);
            loop {
                tokio::select! {
                    result = &mut connect => break connect_result(result),
                    command = commands.recv() => if command.is_none() { return },
                }
            }
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(err) => {
                if first || backoff == BACKOFF_MAX {
                    tracing::warn!(error = %err, "redis adapter: cannot connect the subscriber; retrying");
                }
                first = false;
                if !wait_for(&mut commands, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // One channel per command: RESP3 answers a multi-channel SUBSCRIBE with one push per channel.
        let all: Vec<Subscription> = wanted.lock().keys().cloned().collect();
        let mut ok = true;
        for subscription in &all {
            if let Err(err) = conn.query(&subscription.command(true)).await {
                tracing::warn!(error = %err, ?subscription, "redis adapter: subscribe failed");
                ok = false;
                break;
            }
        }
        if !ok {
            if !wait_for(&mut commands, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        stats.subscriber_connected.store(true, Ordering::Relaxed);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(subscriptions = all.len(), "redis adapter: subscriber connected");
        backoff = BACKOFF_MIN;
        first = true;

        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let result = match command {
                        SubscriberCommand::Add(s) => conn.query(&s.command(true)).await,
                        SubscriberCommand::Remove(s) => conn.query(&s.command(false)).await,
                        SubscriberCommand::Sync(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "redis adapter: (un)subscribe failed; reconnecting");
                        break;
                    }
                }
                _ = lost.notified() => {
                    tracing::warn!("redis adapter: subscriber connection lost");
                    break;
                }
                _ = health.tick() => {
                    let ping = tokio::time::timeout(RESPONSE_TIMEOUT, conn.query(&redis::cmd("PING"))).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        tracing::warn!("redis adapter: subscriber connection does not answer");
                        break;
                    }
                }
            }
        }
        stats.subscriber_connected.store(false, Ordering::Relaxed);
    }
}

/// Waits `delay` while consuming subscription commands. False when the subscriber was dropped.
async fn wait_for(commands: &mut mpsc::UnboundedReceiver<SubscriberCommand>, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            command = commands.recv() => if command.is_none() { return false },
        }
    }
}

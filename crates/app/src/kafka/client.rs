//! The Kafka client: rdkafka (librdkafka, built in) behind [`Transport`] for the producer, and the
//! consumer task of `kafka.consume`.

use super::dedupe::Dedupe;
use super::producer::{Connect, Reports, Transport};
use super::record::{BadRecord, InRecord};
use super::Stats;
use crate::config::KafkaConfig;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_socketio::{Payload, SocketIo};

/// How long a consumer may be silent before the group moves its partitions to another node.
pub const SESSION_TIMEOUT_MS: u32 = 10_000;

/// librdkafka's logs and errors, into `tracing`. "All brokers down" marks Kafka down at once (the
/// pump notices at its next failed delivery; this makes `/readyz` and the metrics tell sooner).
struct Context {
    stats: Arc<Stats>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            // Connection failures repeat every second while a broker is down: debug, not warn
            // (the state change itself is logged once by the pump and the error callback).
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::debug!(target: "librdkafka", facility, "{message}")
            }
            _ => tracing::trace!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if self.stats.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(reason, "kafka: all brokers down");
            }
        } else {
            tracing::debug!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for Context {}

fn base_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", kafka.brokers.trim())
        .set("client.id", "switchyard")
        .set("reconnect.backoff.max.ms", "1000")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// The producer's context: the client's logs and errors as [`Context`], and each delivery report
/// into the transport's [`Reports`] (on librdkafka's polling thread; a batch of reports is one
/// wake of the pump).
struct ProducerCtx {
    inner: Context,
    reports: Arc<Reports>,
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.inner.log(level, facility, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let all_down = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        self.inner.error(error, reason);
        if all_down {
            // The pump replaces this producer (a new producer id) once nothing is left in flight;
            // an idle pump is woken for it.
            self.reports.brokers_down();
        }
    }
}

impl ProducerContext for ProducerCtx {
    /// The record's sequence number (`Transport::send`).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.to_string()),
        };
        self.reports.push(seq as u64, outcome);
    }
}

/// How long one round of the polling thread waits for librdkafka's events. rdkafka's own
/// `ThreadedProducer` polls in 100 ms rounds, and the crate's poll loop spins through the last
/// millisecond of every round (it rounds the time left down to whole milliseconds, and 0 means "do
/// not wait"): about 1% of a core for an idle producer. With one-second rounds that is 0.1%; a
/// round's length only delays the thread's end when the producer is dropped (off the runtime's
/// threads: see `Pump`), never an event.
const POLL_ROUND: Duration = Duration::from_secs(1);

/// librdkafka's producer and the thread that serves its events (delivery reports, errors) until
/// dropped.
struct Polled {
    producer: Arc<BaseProducer<ProducerCtx>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Polled {
    fn start(producer: BaseProducer<ProducerCtx>) -> Result<Polled, String> {
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafka-producer-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL_ROUND);
                    }
                })
                .map_err(|e| format!("cannot start the producer's polling thread: {e}"))?
        };
        Ok(Polled { producer, stop, thread: Some(thread) })
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// librdkafka's handle of `kafka.topic` on one producer, kept for [`Transport::send_batch`] (rdkafka's
/// `send` looks the topic up by name, with a `CString` of it, for every record).
struct TopicHandle(std::ptr::NonNull<rdkafka::bindings::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles may be used from any thread (its API is thread-safe); this one
// is only passed to rd_kafka_produce_batch and destroyed once.
unsafe impl Send for TopicHandle {}
// SAFETY: as above; `&TopicHandle` only hands the pointer to librdkafka's thread-safe calls.
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    fn new(producer: &BaseProducer<ProducerCtx>, topic: &str) -> Result<TopicHandle, String> {
        let name = std::ffi::CString::new(topic).map_err(|_| format!("topic name {topic:?} holds a NUL byte"))?;
        // SAFETY: the client pointer is the live producer's; a null topic config means "the
        // producer's defaults"; the name is a valid C string for the call's length.
        let handle = unsafe {
            rdkafka::bindings::rd_kafka_topic_new(producer.client().native_ptr(), name.as_ptr(), std::ptr::null_mut())
        };
        std::ptr::NonNull::new(handle).map(TopicHandle).ok_or_else(|| format!("librdkafka refused topic {topic:?}"))
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_new and destroyed only here; the producer it belongs to
        // is dropped after it (field order of `RdTransport`).
        unsafe { rdkafka::bindings::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// librdkafka's "any partition": the partitioner picks one by key.
const PARTITION_UA: i32 = -1;

struct RdTransport {
    /// Declared before `producer`: destroyed before it.
    topic_handle: TopicHandle,
    producer: Polled,
    reports: Arc<Reports>,
    topic: Arc<str>,
}

impl Transport for RdTransport {
    fn send(&self, seq: u64, key: &[u8], value: &[u8]) -> Result<(), String> {
        // usize is 64 bits on every target this server builds for; a wrap would only need 2^64 records.
        let record = BaseRecord::with_opaque_to(&self.topic, seq as usize).key(key).payload(value);
        self.producer.producer.send(record).map_err(|(error, _)| error.to_string())
    }

    fn send_batch(&self, first_seq: u64, records: &[(&[u8], &[u8])], refused: &mut Vec<(usize, String)>) {
        use rdkafka::bindings::{rd_kafka_message_t, rd_kafka_produce_batch, RD_KAFKA_MSG_F_COPY};
        use rdkafka::types::RDKafkaRespErr;
        let mut messages: Vec<rd_kafka_message_t> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| rd_kafka_message_t {
                err: RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: std::ptr::null_mut(),
                partition: PARTITION_UA,
                payload: value.as_ptr() as *mut std::ffi::c_void,
                len: value.len(),
                key: key.as_ptr() as *mut std::ffi::c_void,
                key_len: key.len(),
                offset: 0,
                // The delivery report's opaque: the record's sequence number, as `send` passes it.
                _private: (first_seq + i as u64) as usize as *mut std::ffi::c_void,
            })
            .collect();
        let count = std::ffi::c_int::try_from(messages.len()).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: the topic handle is live (owned by self); every key and payload points into
        // `records`, alive for the call, and RD_KAFKA_MSG_F_COPY makes librdkafka copy them before it
        // returns (it never writes through them); `messages` holds `count` initialised entries, whose
        // `err` librdkafka sets. The batch is never larger than the pump's window (c_int is ample).
        unsafe {
            rd_kafka_produce_batch(
                self.topic_handle.0.as_ptr(),
                PARTITION_UA,
                RD_KAFKA_MSG_F_COPY as std::ffi::c_int,
                messages.as_mut_ptr(),
                count,
            );
        }
        for (i, message) in messages.iter().enumerate() {
            if message.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                refused.push((i, rdkafka::error::RDKafkaErrorCode::from(message.err).to_string()));
            }
        }
    }

    fn reports(&self) -> &Reports {
        &self.reports
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'static, bool> {
        let producer = self.producer.producer.clone();
        let topic = self.topic.clone();
        async move {
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&topic), timeout).is_ok())
                .await
                .unwrap_or(false)
        }
        .boxed()
    }
}

/// Makes idempotent producers for `kafka.topic`.
pub(super) fn connector(kafka: &KafkaConfig, stats: Arc<Stats>) -> Connect {
    let mut config = base_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", kafka.delivery_timeout_ms.to_string())
        // The pump holds at most kafka.queue_max records in memory (1000 while it delivers the
        // spool): librdkafka's own queue is sized to take them all, so it never refuses one.
        .set("queue.buffering.max.messages", kafka.queue_max.max(1000).saturating_mul(2).min(10_000_000).to_string())
        .set("queue.buffering.max.kbytes", "1048576");
    let topic: Arc<str> = kafka.topic.as_str().into();
    Box::new(move || {
        let reports = Arc::new(Reports::default());
        let context = ProducerCtx { inner: Context { stats: stats.clone() }, reports: reports.clone() };
        let producer: BaseProducer<ProducerCtx> = config.create_with_context(context).map_err(|e| e.to_string())?;
        let topic_handle = TopicHandle::new(&producer, &topic)?;
        Ok(Arc::new(RdTransport { topic_handle, producer: Polled::start(producer)?, reports, topic: topic.clone() })
            as Arc<dyn Transport>)
    })
}

/// Starts the consumer of `kafka.consume` (group `kafka.group`): each record is emitted to its
/// rooms on the main namespace through the adapter (so across the cluster), then its offset is
/// committed. A record whose id was emitted within the dedupe window is skipped; a malformed one
/// is counted, logged and skipped. Offsets are committed either way.
pub(super) fn start_consumer(
    kafka: &KafkaConfig,
    io: SocketIo,
    dedupe: Arc<dyn Dedupe>,
    stats: Arc<Stats>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut config = base_config(kafka);
    config
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        // Some brokers do not answer a waiting fetch early when data arrives: a short wait keeps
        // the delay from producer to clients low.
        .set("fetch.wait.max.ms", "50");
    let consumer: StreamConsumer<Context> =
        config.create_with_context(Context { stats: stats.clone() }).map_err(|e| e.to_string())?;
    let topics = kafka.consume_topics();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|e| e.to_string())?;
    tracing::info!(topics = ?topics, group = %kafka.group, "kafka: consuming");
    Ok(tokio::spawn(async move {
        let ns = io.of("/");
        loop {
            let message = match consumer.recv().await {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "kafka consumer: receive failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            stats.consumed.fetch_add(1, Ordering::Relaxed);
            match InRecord::parse(message.payload()) {
                Err(error) => skip_bad(&stats, &message, &error),
                Ok(record) => {
                    let first = match &record.id {
                        None => true,
                        Some(id) => match dedupe.first_time(id).await {
                            Ok(first) => first,
                            Err(error) => {
                                stats.dedupe_errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%error, id, "kafka consumer: dedupe store unreachable; emitting anyway");
                                true
                            }
                        },
                    };
                    if first {
                        let payload = match record.data {
                            Some(data) => Payload::new(vec![data]),
                            None => Payload::empty(),
                        };
                        ns.broadcast().to_many(record.rooms.iter().map(String::as_str)).emit(&record.event, payload);
                        stats.emitted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(id = record.id.as_deref(), "kafka consumer: id already emitted; skipped");
                    }
                }
            }
            if let Err(error) = consumer.commit_message(&message, CommitMode::Async) {
                tracing::warn!(%error, "kafka consumer: commit failed (the record may be delivered again)");
            }
        }
    }))
}

fn skip_bad(stats: &Stats, message: &impl Message, error: &BadRecord) {
    let total = stats.bad_records.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        %error,
        bad_records_total = total,
        "kafka consumer: malformed record skipped"
    );
}

//! The `history` scenario (docs/HISTORY.md): against a `switchyard` server (built-in events), C
//! clients each in a room of their own send M acked `message`s (one outstanding per client), then
//! read `history`(room, {since, limit}) as fast as their acks come back for S seconds.
//!
//! Reported: messages per second and server CPU per message (run it once with `history.enabled`
//! and once without to get the cost of history), history reads per second, their latency and
//! server CPU per read. Each client's room holds only its own messages, so a `message` is
//! broadcast to one socket: the figure is the cost of the event and of history, not of a fanout.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::task::JoinSet;

use crate::client::SioClient;
use crate::error::{BenchError, Result};
use crate::net::Target;
use crate::procfs::{clock_ticks_per_second, CpuSample};
use crate::scenarios::connect_with_timeout;
use crate::stats::{latency_histogram, latency_summary, per_second, record_micros, round3};

/// Bound for one ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HistoryOptions {
    pub clients: usize,
    pub messages_per_client: usize,
    pub read_seconds: f64,
    pub limit: usize,
    pub payload_bytes: usize,
    pub server_pid: Option<u32>,
}

struct Writer {
    client: SioClient,
    room: String,
    ids: Vec<String>,
    next_ack: u64,
}

async fn call(client: &mut SioClient, next_ack: &mut u64, args: Value) -> Result<Value> {
    *next_ack += 1;
    let id = *next_ack;
    client.emit(&args, Some(id)).await?;
    tokio::time::timeout(ACK_TIMEOUT, client.wait_ack(id)).await?
}

fn first_arg(ack: Value) -> Value {
    match ack {
        Value::Array(mut args) if !args.is_empty() => args.swap_remove(0),
        other => other,
    }
}

async fn join(target: Target, i: usize) -> Result<Writer> {
    let mut client = connect_with_timeout(&target).await?;
    let room = format!("bench-history-{i}");
    let mut next_ack = 0;
    let ack = first_arg(call(&mut client, &mut next_ack, json!(["join", room])).await?);
    if ack.get("ok") != Some(&Value::Bool(true)) {
        return Err(BenchError::new(format!("join refused: {ack}")));
    }
    Ok(Writer { client, room, ids: Vec::new(), next_ack })
}

fn cpu_ns(before: &Option<CpuSample>, after: &Option<CpuSample>) -> Option<u64> {
    match (before, after) {
        (Some(b), Some(a)) => a.since(b).best_ns(clock_ticks_per_second()),
        _ => None,
    }
}

pub async fn history(target: &Target, options: &HistoryOptions) -> Value {
    let mut out = Map::new();
    out.insert("scenario".into(), json!("history"));
    out.insert("clients".into(), json!(options.clients));
    out.insert("messages_per_client".into(), json!(options.messages_per_client));
    out.insert("limit".into(), json!(options.limit));
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut note = |e: &BenchError, errors: &mut u64| {
        *errors += 1;
        first_error.get_or_insert_with(|| e.to_string());
    };

    let mut joining = JoinSet::new();
    for i in 0..options.clients {
        joining.spawn(join(target.clone(), i));
    }
    let mut writers = Vec::new();
    while let Some(joined) = joining.join_next().await {
        match joined.map_err(|e| BenchError::new(e.to_string())).and_then(|r| r) {
            Ok(writer) => writers.push(writer),
            Err(e) => note(&e, &mut errors),
        }
    }

    // Writes: one outstanding acked `message` per client.
    let text = "h".repeat(options.payload_bytes);
    let cpu_before = options.server_pid.map(CpuSample::take);
    let started = Instant::now();
    let mut writing = JoinSet::new();
    for mut writer in writers {
        let text = text.clone();
        let messages = options.messages_per_client;
        writing.spawn(async move {
            let mut histogram = latency_histogram();
            let mut refused = 0u64;
            for _ in 0..messages {
                let sent = Instant::now();
                let args = json!(["message", writer.room, {"text": text}]);
                let ack = first_arg(call(&mut writer.client, &mut writer.next_ack, args).await?);
                record_micros(&mut histogram, sent.elapsed().as_micros() as u64);
                match ack.get("id").and_then(Value::as_str) {
                    Some(id) if ack.get("ok") == Some(&Value::Bool(true)) => writer.ids.push(id.to_string()),
                    _ => refused += 1,
                }
            }
            Ok::<_, BenchError>((writer, histogram, refused))
        });
    }
    let mut writers = Vec::new();
    let mut histogram = latency_histogram();
    let mut refused = 0;
    while let Some(done) = writing.join_next().await {
        match done.map_err(|e| BenchError::new(e.to_string())).and_then(|r| r) {
            Ok((writer, h, r)) => {
                let _ = histogram.add(&h);
                refused += r;
                writers.push(writer);
            }
            Err(e) => note(&e, &mut errors),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = options.server_pid.map(CpuSample::take);
    let acked: u64 = writers.iter().map(|w| w.ids.len() as u64).sum();
    out.insert("messages_acked".into(), json!(acked));
    out.insert("messages_refused".into(), json!(refused));
    out.insert("messages_per_second".into(), json!(round3(per_second(acked, elapsed))));
    out.extend(latency_summary(&histogram, "message_ack_"));
    if let Some(ns) = cpu_ns(&cpu_before, &cpu_after) {
        out.insert("server_cpu_us_per_message".into(), json!(round3(ns as f64 / 1000.0 / acked.max(1) as f64)));
    }

    // Reads: `history` since a random id of the client's room, one outstanding per client.
    if options.read_seconds > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(options.read_seconds);
        let cpu_before = options.server_pid.map(CpuSample::take);
        let started = Instant::now();
        let mut reading = JoinSet::new();
        for (n, mut writer) in writers.into_iter().enumerate() {
            let limit = options.limit;
            reading.spawn(async move {
                let mut histogram = latency_histogram();
                let (mut reads, mut returned, mut failed) = (0u64, 0u64, 0u64);
                let mut x = n as u64 * 2654435761 + 1;
                while Instant::now() < deadline {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let since = writer.ids.get((x >> 33) as usize % writer.ids.len().max(1)).cloned();
                    let args = json!(["history", writer.room, {"since": since, "limit": limit}]);
                    let sent = Instant::now();
                    let ack = first_arg(call(&mut writer.client, &mut writer.next_ack, args).await?);
                    record_micros(&mut histogram, sent.elapsed().as_micros() as u64);
                    match ack.get("messages").and_then(Value::as_array) {
                        Some(messages) if ack.get("ok") == Some(&Value::Bool(true)) => {
                            reads += 1;
                            returned += messages.len() as u64;
                        }
                        _ => {
                            failed += 1;
                            // History off: every read fails the same way; stop at once.
                            if failed == 1 && reads == 0 {
                                return Ok((histogram, reads, returned, failed, Some(ack.to_string())));
                            }
                        }
                    }
                }
                Ok::<_, BenchError>((histogram, reads, returned, failed, None))
            });
        }
        let mut histogram = latency_histogram();
        let (mut reads, mut returned, mut failed) = (0, 0, 0);
        let mut refusal = None;
        while let Some(done) = reading.join_next().await {
            match done.map_err(|e| BenchError::new(e.to_string())).and_then(|r| r) {
                Ok((h, r, m, f, why)) => {
                    let _ = histogram.add(&h);
                    reads += r;
                    returned += m;
                    failed += f;
                    refusal = refusal.or(why);
                }
                Err(e) => note(&e, &mut errors),
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = options.server_pid.map(CpuSample::take);
        out.insert("reads".into(), json!(reads));
        out.insert("reads_failed".into(), json!(failed));
        out.insert("reads_per_second".into(), json!(round3(per_second(reads, elapsed))));
        out.insert("messages_per_read".into(), json!(round3(returned as f64 / reads.max(1) as f64)));
        out.extend(latency_summary(&histogram, "read_"));
        if let Some(ns) = cpu_ns(&cpu_before, &cpu_after).filter(|_| reads > 0) {
            out.insert("server_cpu_us_per_read".into(), json!(round3(ns as f64 / 1000.0 / reads as f64)));
        }
        if let Some(why) = refusal {
            out.insert("read_refusal".into(), json!(why));
        }
    }
    out.insert("errors".into(), json!(errors));
    out.insert("first_error".into(), first_error.map_or(Value::Null, Value::String));
    Value::Object(out)
}

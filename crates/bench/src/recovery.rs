//! The `recovery` scenario: connection state recovery of N missed messages. Each iteration: a receiver
//! joins a room and gets one message (its offset), drops its connection, the sender emits N messages
//! to the room, and a new connection comes back with `{pid, offset}` (to the same server, or to
//! another node of the cluster with `--reconnect-port`). Measured: the time from the reconnect's
//! TCP connect to the N-th replayed message, and the CPU the server(s) used meanwhile.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{decode_packet, EioEvent, SioClient, WsConn};
use crate::error::{BenchError, Result};
use crate::net::Target;
use crate::procfs::{clock_ticks_per_second, CpuSample};
use crate::scenarios::connect_with_timeout;
use crate::stats::round3;
use switchyard_protocol::engine::{PacketData, PacketType};
use switchyard_protocol::socketio;

/// How long one wait (a reply, the replayed messages) may take.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// Messages the receiver misses while away.
    pub missed: usize,
    pub iterations: usize,
    pub payload_bytes: usize,
    /// Servers whose CPU time is summed (the node reconnected to, the sender's node, Redis...).
    pub server_pids: Vec<u32>,
    /// Pause after the burst, so a cluster has stored every message before the reconnect.
    pub settle: Duration,
}

/// A connection made by [`connect_with_auth`]: the client, the CONNECT reply's data, and the events
/// that came before that reply.
type Connected = (SioClient, Value, Vec<Vec<Value>>);

/// A raw connection to `/` with `auth`; returns the client, the CONNECT reply's data and the events
/// received before it, in order. Node's socket.io writes a recovered session's missed packets before
/// its CONNECT reply (socket.io-client buffers them until it is connected), Switchyard after it: both
/// count.
async fn connect_with_auth(target: &Target, auth: Option<&Value>) -> Result<Connected> {
    let ws = WsConn::connect(target, "/socket.io/?EIO=4&transport=websocket").await?;
    let mut client = SioClient { ws, parser: target.parser };
    match client.next_eio().await? {
        EioEvent::Other(packet) if packet.kind == PacketType::Open && matches!(packet.data, PacketData::Text(_)) => {}
        other => return Err(BenchError::new(format!("expected an Engine.IO open packet, got {other:?}"))),
    }
    let connect = match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_string(),
    };
    client.ws.send_text(connect.as_bytes()).await?;
    let mut early = Vec::new();
    loop {
        if let EioEvent::Message(text) = client.next_eio().await? {
            let packet = decode_packet(client.parser, &text)?;
            match packet.kind {
                socketio::PacketType::Connect => return Ok((client, packet.data.unwrap_or(Value::Null), early)),
                socketio::PacketType::ConnectError => {
                    return Err(BenchError::new(format!("connect refused: {}", packet.data.unwrap_or(Value::Null))))
                }
                socketio::PacketType::Event => {
                    if let Some(Value::Array(args)) = packet.data {
                        early.push(args);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The next event's arguments (skipping anything else).
async fn next_event(client: &mut SioClient) -> Result<Vec<Value>> {
    loop {
        if let EioEvent::Message(text) = client.next_eio().await? {
            let packet = decode_packet(client.parser, &text)?;
            if packet.kind == socketio::PacketType::Event {
                if let Some(Value::Array(args)) = packet.data {
                    return Ok(args);
                }
            }
        }
    }
}

fn cpu_now(pids: &[u32]) -> Vec<CpuSample> {
    pids.iter().map(|pid| CpuSample::take(*pid)).collect()
}

fn cpu_ms_since(before: &[CpuSample], pids: &[u32]) -> Option<f64> {
    let ticks = clock_ticks_per_second();
    let after = cpu_now(pids);
    let mut total = 0u64;
    for (a, b) in after.iter().zip(before) {
        total += a.since(b).best_ns(ticks)?;
    }
    (!pids.is_empty()).then(|| total as f64 / 1e6)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs the scenario: `target` hosts the sender and the first connection, `reconnect` takes the
/// recovering connection.
pub async fn recovery(target: &Target, reconnect: &Target, options: &RecoveryOptions) -> Result<Value> {
    let mut sender = connect_with_timeout(target).await?;
    let payload = "x".repeat(options.payload_bytes);
    let mut times_ms = Vec::new();
    let mut cpu_ms = Vec::new();
    let mut ack_id = 1;
    for iteration in 0..options.iterations {
        let room = format!("recovery-{iteration}-{}", std::process::id());
        let (mut receiver, reply, _) = tokio::time::timeout(WAIT, connect_with_auth(target, None)).await??;
        let pid = reply.get("pid").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            BenchError::new(format!("no pid in the CONNECT reply ({reply}): is connection state recovery on?"))
        })?;
        let sid = reply.get("sid").cloned().unwrap_or(Value::Null);
        receiver.emit(&json!(["join", room]), None).await?;
        receiver.emit(&json!(["echo", "joined"]), Some(1)).await?;
        tokio::time::timeout(WAIT, receiver.wait_ack(1)).await??;
        sender.emit(&json!(["msg", room, "first"]), None).await?;
        let first = tokio::time::timeout(WAIT, next_event(&mut receiver)).await??;
        let offset = first.last().and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            BenchError::new(format!("the first message carries no offset: {}", Value::Array(first.clone())))
        })?;
        drop(receiver);
        // Let the server see the drop before the burst.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..options.missed {
            sender.emit(&json!(["msg", room, i, payload]), None).await?;
        }
        ack_id += 1;
        sender.emit(&json!(["echo", "done"]), Some(ack_id)).await?;
        tokio::time::timeout(WAIT, sender.wait_ack(ack_id)).await??;
        tokio::time::sleep(options.settle).await;

        let cpu_before = cpu_now(&options.server_pids);
        let started = Instant::now();
        let auth = json!({"pid": pid, "offset": offset});
        let (mut back, reply, early) = tokio::time::timeout(WAIT, connect_with_auth(reconnect, Some(&auth))).await??;
        if reply.get("sid") != Some(&sid) {
            return Err(BenchError::new(format!("not recovered: CONNECT reply {reply}, expected sid {sid}")));
        }
        let mut early = early.into_iter();
        let mut got = 0;
        while got < options.missed {
            let args = match early.next() {
                Some(args) => args,
                None => tokio::time::timeout(WAIT, next_event(&mut back)).await??,
            };
            if args.get(1) != Some(&json!(got)) {
                // What came instead, for the report.
                let mut seen = vec![args.get(1).cloned().unwrap_or(Value::Null)];
                seen.extend(early.by_ref().map(|more| more.get(1).cloned().unwrap_or(Value::Null)));
                while let Ok(Ok(more)) = tokio::time::timeout(Duration::from_millis(500), next_event(&mut back)).await {
                    seen.push(more.get(1).cloned().unwrap_or(Value::Null));
                }
                return Err(BenchError::new(format!(
                    "replayed message {got} out of order: then {}",
                    Value::Array(seen)
                )));
            }
            got += 1;
        }
        times_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(cpu) = cpu_ms_since(&cpu_before, &options.server_pids) {
            cpu_ms.push(cpu);
        }
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    sort(&mut times_ms);
    sort(&mut cpu_ms);
    Ok(json!({
        "scenario": "recovery",
        "missed": options.missed,
        "iterations": options.iterations,
        "payload_bytes": options.payload_bytes,
        "recover_ms_p50": round3(percentile(&times_ms, 0.5)),
        "recover_ms_max": round3(times_ms.last().copied().unwrap_or(0.0)),
        "server_cpu_ms_p50": (!cpu_ms.is_empty()).then(|| round3(percentile(&cpu_ms, 0.5))),
        "server_cpu_ms_max": cpu_ms.last().map(|v| round3(*v)),
    }))
}

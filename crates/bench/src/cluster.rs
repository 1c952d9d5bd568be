//! The cluster scenario: nodes joined through Redis, receivers of one room split evenly over them, one
//! sender on the first node. A burst of M messages measures deliveries per second and CPU (every node plus
//! redis-server) and counts Redis PUBLISH calls; then paced probe messages carrying their send time measure
//! the latency a delivery on another node pays over one on the sender's node (what Redis adds).

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{encode_event, EioEvent};
use crate::error::{BenchError, Result};
use crate::net::Target;
use crate::procfs::{clock_ticks_per_second, CpuSample};
use crate::scenarios::{
    connect_and_join, connect_with_timeout, gated_join, pad_with_x, progress_bar, shut_down, wait_for_deliveries,
    wait_for_receivers, wait_until, Shared,
};
use crate::stats::{latency_histogram, latency_summary, per_second, record_micros, round3};

pub const CLUSTER_ROOM: &str = "cluster";

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub receivers: usize,
    pub messages: usize,
    pub payload_bytes: usize,
    /// Paced messages sent after the burst to measure latency.
    pub probes: usize,
    pub probe_interval: Duration,
    pub concurrency: usize,
    pub straggler_wait: Duration,
    pub max_wait: Duration,
    /// Process ids of the nodes, whose CPU is summed.
    pub server_pids: Vec<u32>,
    /// The cluster's Redis (none: a single node without Redis, the baseline).
    pub redis: Option<SocketAddrV4>,
    pub redis_pid: Option<u32>,
}

/// Microseconds since the first call in this process: the clock of the send stamps (sender and receivers
/// share the process, so no clock synchronisation is involved).
fn micros_now() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Payload of message `seq` sent at `sent_micros`: `00000042|0000000000001234|xxx`, padded to `bytes`.
pub fn cluster_payload(seq: usize, sent_micros: u64, bytes: usize) -> String {
    pad_with_x(format!("{seq:08}|{sent_micros:016}|"), bytes)
}

/// `(seq, sent_micros)` of a delivery `2["msg","<payload>"]` (after the Engine.IO `4`); `None` otherwise.
pub fn cluster_delivery(text: &[u8]) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(b"2[\"msg\",\"")?;
    let (seq, rest) = leading_number(rest)?;
    let (sent, _) = leading_number(rest.strip_prefix(b"|")?)?;
    Some((seq, sent))
}

/// A run of ASCII digits followed by `|`, and what follows the digits.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || bytes.get(digits) != Some(&b'|') {
        return None;
    }
    let value = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((value, &bytes[digits..]))
}

// ---------------------------------------------------------------------------------------------------
// A minimal RESP2 client for CONFIG RESETSTAT and INFO.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespReply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

/// A command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply from the front of `buf` and the bytes it used; `Ok(None)` when more bytes are needed.
/// Arrays are not needed by the scenario and are an error.
pub fn parse_reply(buf: &[u8]) -> std::result::Result<Option<(RespReply, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..line_end.max(1)]).map_err(|_| "reply line is not UTF-8".to_owned())?;
    let after_line = line_end + 2;
    match buf.first() {
        Some(b'+') => Ok(Some((RespReply::Simple(line.to_owned()), after_line))),
        Some(b'-') => Ok(Some((RespReply::Error(line.to_owned()), after_line))),
        Some(b':') => {
            let n = line.parse().map_err(|_| format!("bad integer reply {line:?}"))?;
            Ok(Some((RespReply::Integer(n), after_line)))
        }
        Some(b'$') => {
            let len: i64 = line.parse().map_err(|_| format!("bad bulk length {line:?}"))?;
            if len < 0 {
                return Ok(Some((RespReply::Bulk(None), after_line)));
            }
            let end = after_line + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk reply without its CRLF".into());
            }
            Ok(Some((RespReply::Bulk(Some(buf[after_line..end].to_vec())), end + 2)))
        }
        Some(other) => Err(format!("unsupported reply type {:?}", *other as char)),
        None => Ok(None),
    }
}

/// The `calls` of `cmdstat_<command>` in `INFO commandstats` output; 0 when the command was not called
/// since the last CONFIG RESETSTAT (INFO leaves it out then), `None` when the line is malformed.
pub fn commandstats_calls(info: &str, command: &str) -> Option<u64> {
    let prefix = format!("cmdstat_{command}:");
    let Some(line) = info.lines().find(|l| l.starts_with(&prefix)) else {
        return Some(0);
    };
    line[prefix.len()..].split(',').find_map(|field| field.strip_prefix("calls="))?.trim().parse().ok()
}

pub struct RespClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespClient {
    pub async fn connect(addr: SocketAddrV4) -> Result<RespClient> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
        Ok(RespClient { stream, buf: Vec::new() })
    }

    pub async fn command(&mut self, args: &[&str]) -> Result<RespReply> {
        self.stream.write_all(&encode_command(args)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf).map_err(BenchError::new)? {
                self.buf.drain(..used);
                return match reply {
                    RespReply::Error(message) => Err(BenchError::new(format!("redis: {message}"))),
                    reply => Ok(reply),
                };
            }
            let mut chunk = [0u8; 16 << 10];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await??;
            if read == 0 {
                return Err(BenchError::closed("redis closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// PUBLISH plus SPUBLISH calls since the last CONFIG RESETSTAT.
    pub async fn publish_calls(&mut self) -> Result<u64> {
        let RespReply::Bulk(Some(info)) = self.command(&["INFO", "commandstats"]).await? else {
            return Err(BenchError::new("INFO commandstats: unexpected reply"));
        };
        let info = String::from_utf8_lossy(&info);
        let calls = |command| {
            commandstats_calls(&info, command).ok_or_else(|| BenchError::new(format!("bad cmdstat_{command} line")))
        };
        Ok(calls("publish")? + calls("spublish")?)
    }
}

// ---------------------------------------------------------------------------------------------------
// The scenario

struct ReceiverTally {
    node: usize,
    received: u64,
    probes: u64,
    latency: Histogram<u64>,
    out_of_order: u64,
    other_events: u64,
}

/// CPU of several processes, sampled together.
fn sample_all(pids: &[u32]) -> Vec<CpuSample> {
    pids.iter().map(|pid| CpuSample::take(*pid)).collect()
}

/// CPU ns of each process between two samples (`None` where /proc could not tell).
fn cpu_deltas(before: &[CpuSample], after: &[CpuSample]) -> Vec<Option<u64>> {
    let ticks = clock_ticks_per_second();
    before.iter().zip(after).map(|(b, a)| a.since(b).best_ns(ticks)).collect()
}

fn ms(ns: Option<u64>) -> Value {
    json!(ns.map(|ns| round3(ns as f64 / 1e6)))
}

fn ns_per(ns: Option<u64>, units: u64) -> Value {
    match ns {
        Some(ns) if units > 0 => json!(round3(ns as f64 / units as f64)),
        _ => Value::Null,
    }
}

/// Runs the scenario; `nodes[0]` hosts the sender. With one node it is the single-node baseline.
pub async fn cluster(nodes: &[Target], options: &ClusterOptions) -> Value {
    let mut result = Map::new();
    result.insert("scenario".into(), json!("cluster"));
    result.insert("nodes".into(), json!(nodes.len()));
    result.insert("receivers".into(), json!(options.receivers));
    result.insert("messages".into(), json!(options.messages));
    result.insert("payload_bytes".into(), json!(options.payload_bytes));
    if nodes.is_empty() {
        result.insert("error".into(), json!("no node given"));
        return Value::Object(result);
    }
    micros_now();
    let shared = Arc::new(Shared::default());
    let ready = Arc::new(AtomicU64::new(0));
    let burst_deliveries = Arc::new(AtomicU64::new(0));
    let probe_deliveries = Arc::new(AtomicU64::new(0));
    let burst_len = options.messages as u64;
    let (stop, stopped) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let bar = progress_bar(options.receivers as u64, "cluster join");
    let mut tasks = JoinSet::new();
    for index in 0..options.receivers {
        let node = index % nodes.len();
        let target = nodes[node].clone();
        let (shared, gate, ready, mut stopped) = (shared.clone(), gate.clone(), ready.clone(), stopped.clone());
        let (burst_deliveries, probe_deliveries) = (burst_deliveries.clone(), probe_deliveries.clone());
        tasks.spawn(async move {
            let mut tally = ReceiverTally {
                node,
                received: 0,
                probes: 0,
                latency: latency_histogram(),
                out_of_order: 0,
                other_events: 0,
            };
            let Some(mut client) = gated_join(gate, &shared, connect_and_join(&target, CLUSTER_ROOM)).await else {
                return tally;
            };
            client.ws.set_read_chunk(16 << 10);
            ready.fetch_add(1, Ordering::Relaxed);
            let mut expected_seq = 0u64;
            loop {
                let (mut burst, mut probes) = (0u64, 0u64);
                let step: Result<()> = async {
                    while let Some(event) = client.try_next_eio().await? {
                        let EioEvent::Message(text) = event else { continue };
                        let Some((seq, sent)) = cluster_delivery(&text) else {
                            tally.other_events += 1;
                            continue;
                        };
                        if seq != expected_seq {
                            tally.out_of_order += 1;
                        }
                        expected_seq = seq + 1;
                        if seq < burst_len {
                            burst += 1;
                        } else {
                            probes += 1;
                            record_micros(&mut tally.latency, micros_now().saturating_sub(sent));
                        }
                    }
                    Ok(())
                }
                .await;
                tally.received += burst;
                tally.probes += probes;
                burst_deliveries.fetch_add(burst, Ordering::Relaxed);
                probe_deliveries.fetch_add(probes, Ordering::Relaxed);
                if let Err(err) = step {
                    shared.count_drop("receiver", &err);
                    return tally;
                }
                tokio::select! {
                    biased;
                    _ = stopped.changed() => return tally,
                    read = client.ws.fill() => if let Err(err) = read {
                        shared.count_drop("receiver", &err);
                        return tally;
                    }
                }
            }
        });
    }
    let all_joined = wait_for_receivers(&ready, &shared, options.receivers as u64, &bar).await;
    let joined = ready.load(Ordering::Relaxed);
    result.insert("receivers_joined".into(), json!(joined));
    result.insert("all_joined".into(), json!(all_joined));

    let mut sender = match connect_with_timeout(&nodes[0]).await {
        Ok(sender) => sender,
        Err(err) => {
            shut_down(&stop, &mut tasks).await;
            result.insert("error".into(), json!(format!("sender could not connect: {err}")));
            return Value::Object(result);
        }
    };
    let mut redis = match options.redis {
        Some(addr) => match RespClient::connect(addr).await {
            Ok(client) => Some(client),
            Err(err) => {
                shared.record_error("redis connect", &err);
                None
            }
        },
        None => None,
    };
    if let Some(client) = redis.as_mut() {
        if let Err(err) = client.command(&["CONFIG", "RESETSTAT"]).await {
            shared.record_error("redis CONFIG RESETSTAT", &err);
            redis = None;
        }
    }

    // The burst: framed before the clock starts, written back to back.
    let mut frames = BytesMut::with_capacity(options.messages * (options.payload_bytes + 60));
    let mut text = BytesMut::with_capacity(options.payload_bytes + 60);
    let stamp = micros_now();
    for seq in 0..options.messages {
        text.clear();
        encode_event(
            &json!(["msg", CLUSTER_ROOM, cluster_payload(seq, stamp, options.payload_bytes)]),
            None,
            &mut text,
        );
        sender.ws.frame_text_into(&text, &mut frames);
    }
    let expected = joined * burst_len;
    let bar = progress_bar(expected, "cluster deliveries");
    let mut pids = options.server_pids.clone();
    pids.extend(options.redis_pid);
    let cpu_before = sample_all(&pids);
    let started = Instant::now();
    if let Err(err) = sender.ws.write_raw(&frames).await {
        shared.record_error("sender", &err);
    }
    let (completed, last_progress) =
        wait_for_deliveries(&burst_deliveries, expected, started, options.straggler_wait, options.max_wait, &bar).await;
    let cpu_after = sample_all(&pids);
    bar.finish_and_clear();
    let delivery_secs = last_progress.duration_since(started).as_secs_f64();
    let publish_calls = match redis.as_mut() {
        Some(client) => match client.publish_calls().await {
            Ok(calls) => Some(calls),
            Err(err) => {
                shared.record_error("redis INFO commandstats", &err);
                None
            }
        },
        None => None,
    };

    // The probes: one at a time, stamped when sent, so the latency is not queueing behind the burst.
    let probe_bar = progress_bar(options.probes as u64, "cluster probes");
    for probe in 0..options.probes {
        text.clear();
        let payload = cluster_payload(options.messages + probe, micros_now(), options.payload_bytes);
        encode_event(&json!(["msg", CLUSTER_ROOM, payload]), None, &mut text);
        if let Err(err) = sender.ws.send_text(&text).await {
            shared.record_error("probe sender", &err);
            break;
        }
        probe_bar.set_position(probe as u64 + 1);
        tokio::time::sleep(options.probe_interval).await;
    }
    probe_bar.finish_and_clear();
    let probe_expected = joined * options.probes as u64;
    let probe_deadline = Instant::now() + options.straggler_wait;
    let waiting = progress_bar(probe_expected, "cluster probe wait");
    wait_until(
        probe_deadline,
        &waiting,
        || probe_deliveries.load(Ordering::Relaxed),
        || probe_deliveries.load(Ordering::Relaxed) >= probe_expected,
    )
    .await;
    waiting.finish_and_clear();
    let tallies = shut_down(&stop, &mut tasks).await;
    drop(sender);

    let delivered: u64 = tallies.iter().map(|t| t.received).sum();
    let lost = expected.saturating_sub(delivered);
    let mut per_node = vec![0u64; nodes.len()];
    let mut latencies: Vec<Histogram<u64>> = (0..nodes.len()).map(|_| latency_histogram()).collect();
    for tally in &tallies {
        per_node[tally.node] += tally.received;
        let _ = latencies[tally.node].add(&tally.latency);
    }
    result.insert("completed".into(), json!(completed));
    result.insert("expected".into(), json!(expected));
    result.insert("delivered".into(), json!(delivered));
    result.insert("delivered_per_node".into(), json!(per_node));
    result.insert("lost".into(), json!(lost));
    result.insert(
        "cluster_loss_pct".into(),
        json!(if expected > 0 { round3(lost as f64 * 100.0 / expected as f64) } else { 0.0 }),
    );
    result.insert("out_of_order".into(), json!(tallies.iter().map(|t| t.out_of_order).sum::<u64>()));
    result.insert("unexpected_events".into(), json!(tallies.iter().map(|t| t.other_events).sum::<u64>()));
    result.insert("receivers_dropped".into(), json!(shared.dropped.load(Ordering::Relaxed)));
    result.insert("delivery_secs".into(), json!(round3(delivery_secs)));
    result.insert("cluster_deliveries_per_sec".into(), json!(per_second(delivered, delivery_secs)));
    let cross_node: u64 = per_node.iter().skip(1).sum();
    result.insert("cross_node_deliveries_per_sec".into(), json!(per_second(cross_node, delivery_secs)));

    let deltas = cpu_deltas(&cpu_before, &cpu_after);
    let (node_deltas, redis_delta) = deltas.split_at(options.server_pids.len());
    let nodes_ns: Option<u64> = node_deltas.iter().copied().sum();
    result.insert("node_cpu_ms".into(), json!(node_deltas.iter().map(|ns| ms(*ns)).collect::<Vec<_>>()));
    result.insert("server_cpu_ms".into(), ms(nodes_ns));
    result.insert("cluster_cpu_ns_per_delivery".into(), ns_per(nodes_ns, delivered));
    let redis_ns = redis_delta.first().copied().flatten();
    result.insert("redis_cpu_ms".into(), ms(redis_ns));
    result.insert("redis_cpu_ns_per_delivery".into(), ns_per(redis_ns, delivered));
    result.insert("redis_publish_calls".into(), json!(publish_calls));
    result.insert(
        "publishes_per_broadcast".into(),
        json!(publish_calls.filter(|_| burst_len > 0).map(|calls| round3(calls as f64 / burst_len as f64))),
    );

    let probes_delivered: u64 = tallies.iter().map(|t| t.probes).sum();
    result.insert("probes".into(), json!(options.probes));
    result.insert("probe_expected".into(), json!(probe_expected));
    result.insert("probe_delivered".into(), json!(probes_delivered));
    result.extend(latency_summary(&latencies[0], "same_node_"));
    if nodes.len() > 1 {
        let mut others = latency_histogram();
        for histogram in &latencies[1..] {
            let _ = others.add(histogram);
        }
        result.extend(latency_summary(&others, "cross_node_"));
        for (quantile, key) in [(0.50, "redis_added_p50_ms"), (0.99, "redis_added_p99_ms")] {
            let added = (!latencies[0].is_empty() && !others.is_empty()).then(|| {
                let diff = others.value_at_quantile(quantile) as f64 - latencies[0].value_at_quantile(quantile) as f64;
                round3(diff / 1000.0)
            });
            result.insert(key.into(), json!(added));
        }
    }
    result.insert("first_error".into(), shared.first_error());
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_sequence_and_send_time() {
        let payload = cluster_payload(42, 1_234_567, 100);
        assert_eq!(payload.len(), 100);
        let text = format!("2[\"msg\",\"{payload}\"]");
        assert_eq!(cluster_delivery(text.as_bytes()), Some((42, 1_234_567)));
        // Smaller than its header: the header is kept whole.
        assert_eq!(cluster_payload(1, 2, 5), "00000001|0000000000000002|");
    }

    #[test]
    fn rejects_other_packets() {
        assert_eq!(cluster_delivery(b"2[\"msg\",\"00000001|x\"]"), None);
        assert_eq!(cluster_delivery(b"2[\"other\",\"00000001|0000000000000002|\"]"), None);
        assert_eq!(cluster_delivery(b"2[\"msg\",\"|0000000000000002|\"]"), None);
        assert_eq!(cluster_delivery(b"2[\"msg\",\"99999999999999999999999|1|\"]"), None);
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode_command(&["CONFIG", "RESETSTAT"]), b"*2\r\n$6\r\nCONFIG\r\n$9\r\nRESETSTAT\r\n".to_vec());
    }

    #[test]
    fn parses_replies_and_waits_for_whole_ones() {
        assert_eq!(parse_reply(b"+OK\r\nrest"), Ok(Some((RespReply::Simple("OK".into()), 5))));
        assert_eq!(parse_reply(b"-ERR no\r\n"), Ok(Some((RespReply::Error("ERR no".into()), 9))));
        assert_eq!(parse_reply(b":12\r\n"), Ok(Some((RespReply::Integer(12), 5))));
        assert_eq!(parse_reply(b"$3\r\nabc\r\n"), Ok(Some((RespReply::Bulk(Some(b"abc".to_vec())), 9))));
        assert_eq!(parse_reply(b"$-1\r\n"), Ok(Some((RespReply::Bulk(None), 5))));
        assert_eq!(parse_reply(b"$3\r\nab"), Ok(None));
        assert_eq!(parse_reply(b"+OK"), Ok(None));
        assert_eq!(parse_reply(b""), Ok(None));
        assert!(parse_reply(b"*1\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcd\r\n").is_err());
        assert!(parse_reply(b":x\r\n").is_err());
    }

    #[test]
    fn reads_publish_calls_from_commandstats() {
        let info = "# Commandstats\r\ncmdstat_publish:calls=500,usec=1200,usec_per_call=2.40,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_info:calls=1,usec=30,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(commandstats_calls(info, "publish"), Some(500));
        assert_eq!(commandstats_calls(info, "info"), Some(1));
        assert_eq!(commandstats_calls(info, "spublish"), Some(0));
        assert_eq!(commandstats_calls("cmdstat_publish:usec=3\r\n", "publish"), None);
        // A longer command name with the same start is not mistaken for it.
        assert_eq!(commandstats_calls("cmdstat_publishx:calls=9\r\n", "publish"), Some(0));
    }
}

//! Pins the exact bytes two Switchyard nodes put on Redis, in both wire formats: broadcasts (JSON and
//! msgpack), requests and their responses. Redis's MONITOR shows every PUBLISH/SPUBLISH without
//! subscribing (so the server counts stay right); node uids and request ids, which are random, are
//! replaced by fixed letters of the same length before comparing.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use switchyard_redis::{Mode, RedisAdapterConfig, RedisTarget};
use switchyard_socketio::{Payload, Room};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A MONITOR connection: yields the publishes it sees as `(command, channel, payload)`.
struct Monitor {
    reader: BufReader<TcpStream>,
}

impl Monitor {
    async fn start(port: u16) -> Monitor {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect for MONITOR");
        stream.write_all(b"MONITOR\r\n").await.expect("send MONITOR");
        let mut monitor = Monitor { reader: BufReader::new(stream) };
        assert_eq!(monitor.line().await, "+OK");
        monitor
    }

    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        within("a MONITOR line", self.reader.read_until(b'\n', &mut line)).await.expect("read MONITOR");
        String::from_utf8(line).expect("MONITOR output is ASCII").trim_end().to_string()
    }

    /// The next `n` PUBLISH or SPUBLISH commands.
    async fn publishes(&mut self, n: usize) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut found = Vec::new();
        while found.len() < n {
            let line = self.line().await;
            let Some(start) = line.find("] ") else { continue };
            let args = unrepr_args(&line[start + 2..]);
            let command = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            if command == "PUBLISH" || command == "SPUBLISH" {
                found.push((command, args[1].clone(), args[2].clone()));
            }
        }
        found
    }
}

/// The arguments of a MONITOR line: `"a" "b\x01"` in Redis's quoted form.
fn unrepr_args(text: &str) -> Vec<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while bytes[i] != b'"' {
            if bytes[i] == b'\\' {
                i += 1;
                match bytes[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                        arg.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                        i += 2;
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(bytes[i]);
            }
            i += 1;
        }
        i += 1;
        args.push(arg);
    }
    args
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: u8) {
    if from.is_empty() {
        return;
    }
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].fill(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
}

/// Request ids in a message: after `requestId` as a msgpack fixstr or a JSON string.
fn request_ids(bytes: &[u8]) -> Vec<Vec<u8>> {
    let key = b"requestId";
    let mut ids = Vec::new();
    for i in 0..bytes.len().saturating_sub(key.len()) {
        if &bytes[i..i + key.len()] != key {
            continue;
        }
        let rest = &bytes[i + key.len()..];
        if let Some(json) = rest.strip_prefix(b"\":\"") {
            let end = json.iter().position(|b| *b == b'"').expect("end of id");
            ids.push(json[..end].to_vec());
        } else if let Some(&header) = rest.first() {
            if (0xa0..=0xbf).contains(&header) {
                let len = usize::from(header & 0x1f);
                ids.push(rest[1..1 + len].to_vec());
            }
        }
    }
    ids
}

/// `COMMAND channel payload`, with uids of nodes A and B and request ids replaced by `A`s, `B`s and
/// `R`s, and the payload escaped.
fn normalize(publishes: Vec<(String, Vec<u8>, Vec<u8>)>, uid_a: &str, uid_b: &str) -> Vec<String> {
    let ids: Vec<Vec<u8>> = publishes.iter().flat_map(|(_, _, payload)| request_ids(payload)).collect();
    publishes
        .into_iter()
        .map(|(command, mut channel, mut payload)| {
            for bytes in [&mut channel, &mut payload] {
                replace_all(bytes, uid_a.as_bytes(), b'A');
                replace_all(bytes, uid_b.as_bytes(), b'B');
                for id in &ids {
                    replace_all(bytes, id, b'R');
                }
            }
            format!("{command} {} {}", channel.escape_ascii(), payload.escape_ascii())
        })
        .collect()
}

fn config(mode: Mode) -> RedisAdapterConfig {
    RedisAdapterConfig { mode, requests_timeout: Duration::from_secs(3), ..Default::default() }
}

/// Every kind of message node A sends (and B's answers), normalized, in order.
async fn capture(mode: Mode) -> Vec<String> {
    let redis = RedisServer::start().await;
    let nodes = cluster(2, RedisTarget::Single(redis.url()), config(mode)).await;
    let (uid_a, uid_b) = (nodes[0].redis.uid().to_string(), nodes[1].redis.uid().to_string());
    let mut monitor = Monitor::start(redis.port).await;
    let ns = nodes[0].ns();
    let mut seen = Vec::new();
    let mut take = |publishes| seen.extend(normalize(publishes, &uid_a, &uid_b));

    // Broadcasts: to everyone (no binary), to one room minus another, with binary and a float.
    ns.emit("plain", json!("x"));
    take(monitor.publishes(1).await);
    let binary = Payload::new(vec![json!({"k": "v"}), json!(1.5)]).push_binary(vec![1u8, 2, 3]);
    ns.to("r").except("x").volatile().emit("bin", binary);
    take(monitor.publishes(1).await);
    ns.to("r").to("s").emit("two-rooms", json!(null));
    take(monitor.publishes(1).await);

    // Broadcast with acks: the request and B's client count.
    let answers = ns.to("r").timeout(Duration::from_secs(2)).emit_with_ack("ask", json!(1)).await;
    assert_eq!(answers.expect("no client: no answer to wait for").len(), 0);
    take(monitor.publishes(2).await);

    // Fetch sockets: the request and B's (empty) answer.
    let sockets = ns.to("r").fetch_sockets().await.expect("fetch sockets");
    assert!(sockets.is_empty());
    take(monitor.publishes(2).await);

    // Server-side emit with an ack (B answers with its uid), then without.
    let acks = ns.server_side_emit("ping", json!("hi"), Some(Duration::from_secs(2))).await.expect("acks");
    assert_eq!(acks.len(), 1);
    take(monitor.publishes(2).await);
    ns.server_side_emit("fire", json!([1, 2]), None).await.expect("no ack");
    take(monitor.publishes(1).await);

    // Remote join, leave and disconnect.
    ns.to("r").sockets_join(&[Room::from("j")]);
    take(monitor.publishes(1).await);
    ns.except("r").sockets_leave(&[Room::from("j")]);
    take(monitor.publishes(1).await);
    ns.to("r").disconnect_sockets(true);
    take(monitor.publishes(1).await);

    // All rooms (classic only: the sharded format has no such request).
    if mode == Mode::Classic {
        let rooms = ns.adapter().all_rooms(&ns).await.expect("rooms");
        assert!(rooms.is_empty());
        take(monitor.publishes(2).await);
    }
    seen
}

fn check(got: Vec<String>, want: &[&str]) {
    for (i, line) in got.iter().enumerate() {
        println!("{i}: {line}");
    }
    assert_eq!(got.len(), want.len(), "number of publishes");
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        assert_eq!(got, want, "publish #{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_bytes_are_pinned() {
    let got = capture(Mode::Classic).await;
    check(got, CLASSIC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_bytes_are_pinned() {
    let got = capture(Mode::Sharded).await;
    check(got, SHARDED);
}

const CLASSIC: &[&str] = &[];

const SHARDED: &[&str] = &[];

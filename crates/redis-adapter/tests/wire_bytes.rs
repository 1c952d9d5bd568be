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

/// `COMMAND channel payload`, with uids of nodes A and B, request ids and the client's socket id
/// replaced by `A`s, `B`s, `R`s and `S`s, and the payload escaped.
fn normalize(publishes: Vec<(String, Vec<u8>, Vec<u8>)>, uid_a: &str, uid_b: &str, sid: &str) -> Vec<String> {
    let ids: Vec<Vec<u8>> = publishes.iter().flat_map(|(_, _, payload)| request_ids(payload)).collect();
    publishes
        .into_iter()
        .map(|(command, mut channel, mut payload)| {
            for bytes in [&mut channel, &mut payload] {
                replace_all(bytes, uid_a.as_bytes(), b'A');
                replace_all(bytes, uid_b.as_bytes(), b'B');
                replace_all(bytes, sid.as_bytes(), b'S');
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
    // A client on B, in room "r", that answers "ask" with ["b"].
    let mut client = Client::connect(&nodes[1], "b").await;
    let sid = client.id.clone();
    nodes[1].socket(&sid).join("r").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reader = tokio::spawn(async move { while client.next_packet().await.is_some() {} });
    let mut monitor = Monitor::start(redis.port).await;
    let ns = nodes[0].ns();
    let mut seen = Vec::new();
    let mut take = |publishes| seen.extend(normalize(publishes, &uid_a, &uid_b, &sid));

    // Broadcasts: to everyone (no binary), to one room minus another, with binary and a float.
    ns.emit("plain", json!("x"));
    take(monitor.publishes(1).await);
    let binary = Payload::new(vec![json!({"k": "v"}), json!(1.5)]).push_binary(vec![1u8, 2, 3]);
    ns.to("r").except("x").volatile().emit("bin", binary);
    take(monitor.publishes(1).await);
    ns.to("r").to("s").emit("two-rooms", json!(null));
    take(monitor.publishes(1).await);

    // Broadcast with acks: the request, B's client count and its client's answer.
    let answers = ns.to("r").timeout(Duration::from_secs(5)).emit_with_ack("ask", json!(1)).await;
    assert_eq!(answers.expect("B's client answers").len(), 1);
    take(monitor.publishes(3).await);
    // From here on B's client is in no room but its own.
    nodes[1].socket(&sid).leave("r");

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
        assert_eq!(rooms, [Room::from(sid.as_str())].into_iter().collect());
        take(monitor.publishes(2).await);
    }
    reader.abort();
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

const CLASSIC: &[&str] = &[
    r##"PUBLISH socket.io#/# \x93\xa6AAAAAA\x83\xa4type\x02\xa4data\x92\xa5plain\xa1x\xa3nsp\xa1/\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80"##,
    r##"PUBLISH socket.io#/#r# \x93\xa6AAAAAA\x83\xa4type\x02\xa4data\x94\xa3bin\x81\xa1k\xa1v\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03\xa3nsp\xa1/\x83\xa5rooms\x91\xa1r\xa6except\x91\xa1x\xa5flags\x81\xa8volatile\xc3"##,
    r##"PUBLISH socket.io#/# \x93\xa6AAAAAA\x83\xa4type\x02\xa4data\x92\xa9two-rooms\xc0\xa3nsp\xa1/\x83\xa5rooms\x92\xa1r\xa1s\xa6except\x90\xa5flags\x80"##,
    r##"PUBLISH socket.io-request#/# \x85\xa3uid\xa6AAAAAA\xa9requestId\xa6RRRRRR\xa4type\x07\xa6packet\x83\xa4type\x02\xa4data\x92\xa3ask\x01\xa3nsp\xa1/\xa4opts\x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80"##,
    r##"PUBLISH socket.io-response#/# {\"clientCount\":1,\"requestId\":\"RRRRRR\",\"type\":8}"##,
    r##"PUBLISH socket.io-response#/# \x83\xa4type\t\xa9requestId\xa6RRRRRR\xa6packet\xa1b"##,
    r##"PUBLISH socket.io-request#/# {\"opts\":{\"except\":[],\"rooms\":[\"r\"]},\"requestId\":\"RRRRRR\",\"type\":5,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-response#/# {\"requestId\":\"RRRRRR\",\"sockets\":[]}"##,
    r##"PUBLISH socket.io-request#/# {\"data\":[\"ping\",\"hi\"],\"requestId\":\"RRRRRR\",\"type\":6,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-response#/# {\"data\":[\"BBBBBB\",\"hi\"],\"requestId\":\"RRRRRR\",\"type\":6}"##,
    r##"PUBLISH socket.io-request#/# {\"data\":[\"fire\",[1,2]],\"type\":6,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-request#/# {\"opts\":{\"except\":[],\"rooms\":[\"r\"]},\"rooms\":[\"j\"],\"type\":2,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-request#/# {\"opts\":{\"except\":[\"r\"],\"rooms\":[]},\"rooms\":[\"j\"],\"type\":3,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-request#/# {\"close\":true,\"opts\":{\"except\":[],\"rooms\":[\"r\"]},\"type\":4,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-request#/# {\"requestId\":\"RRRRRR\",\"type\":1,\"uid\":\"AAAAAA\"}"##,
    r##"PUBLISH socket.io-response#/# {\"requestId\":\"RRRRRR\",\"rooms\":[\"SSSSSSSSSSSSSSSSSSSS\"]}"##,
];

const SHARDED: &[&str] = &[
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[]},\"packet\":{\"data\":[\"plain\",\"x\"],\"nsp\":\"/\",\"type\":2}},\"nsp\":\"/\",\"type\":3,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/#r# \x84\xa4data\x82\xa4opts\x83\xa6except\x91\xa1x\xa5flags\x81\xa8volatile\xc3\xa5rooms\x91\xa1r\xa6packet\x83\xa4data\x94\xa3bin\x81\xa1k\xa1v\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03\xa3nsp\xa1/\xa4type\x02\xa3nsp\xa1/\xa4type\x03\xa3uid\xb0AAAAAAAAAAAAAAAA"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\",\"s\"]},\"packet\":{\"data\":[\"two-rooms\",null],\"nsp\":\"/\",\"type\":2}},\"nsp\":\"/\",\"type\":3,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\"]},\"packet\":{\"data\":[\"ask\",1],\"nsp\":\"/\",\"type\":2},\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":3,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/#AAAAAAAAAAAAAAAA# {\"data\":{\"clientCount\":1,\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":11,\"uid\":\"BBBBBBBBBBBBBBBB\"}"##,
    r##"SPUBLISH socket.io#/#AAAAAAAAAAAAAAAA# {\"data\":{\"packet\":\"b\",\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":12,\"uid\":\"BBBBBBBBBBBBBBBB\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\"]},\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":7,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/#AAAAAAAAAAAAAAAA# {\"data\":{\"requestId\":\"RRRRRRRRRRRRRRRR\",\"sockets\":[]},\"nsp\":\"/\",\"type\":8,\"uid\":\"BBBBBBBBBBBBBBBB\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"packet\":[\"ping\",\"hi\"],\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":9,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/#AAAAAAAAAAAAAAAA# {\"data\":{\"packet\":[\"BBBBBBBBBBBBBBBB\",\"hi\"],\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":10,\"uid\":\"BBBBBBBBBBBBBBBB\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"packet\":[\"fire\",[1,2]]},\"nsp\":\"/\",\"type\":9,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\"]},\"rooms\":[\"j\"]},\"nsp\":\"/\",\"type\":4,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"opts\":{\"except\":[\"r\"],\"flags\":{},\"rooms\":[]},\"rooms\":[\"j\"]},\"nsp\":\"/\",\"type\":5,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
    r##"SPUBLISH socket.io#/# {\"data\":{\"close\":true,\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\"]}},\"nsp\":\"/\",\"type\":6,\"uid\":\"AAAAAAAAAAAAAAAA\"}"##,
];

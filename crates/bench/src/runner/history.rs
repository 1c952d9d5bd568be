//! The runner's `history` scenario (issue 10, docs/HISTORY.md): `switchyard-bench history`
//! (crates/bench/src/history.rs) against the `switchyard` binary, with history off, in the embedded
//! store and in Redis Streams.
//!
//! Switchyard only: message history (the `history` event) is Switchyard's; neither the Node peer nor
//! socketioxide has one, and their rows say so. Once per repeat, one variant after the other, each
//! on a fresh `switchyard` process (the binary: `bench-server` has no history) with
//! `limits.events_per_second = 0` (the default per-socket limit would refuse the writes): history off
//! (the cost of a `message` without history; its reads are refused, which the row shows), the
//! embedded store in a directory of its own, Redis Streams on a redis-server the runner starts.
//! Opt-in (`--scenarios history`).

use super::rows::{cell, VariantRows};
use super::*;
use crate::history::HistoryOptions;

/// Why the peers have no figures.
pub const PEER_SKIP: &str =
    "skipped: no message history (the `history` event and its stores are Switchyard's, docs/HISTORY.md)";

/// The variants, in the order of the first repeat: (name, what history is).
const VARIANTS: [(&str, &str); 3] = [
    ("switchyard-history-off", "off"),
    ("switchyard-embedded", "embedded (redb)"),
    ("switchyard-redis-streams", "Redis Streams"),
];

/// The shell commands that rerun the scenario by hand.
pub fn command(options: &RunOptions) -> String {
    format!(
        "SWITCHYARD_HISTORY_ENABLED=true SWITCHYARD_STORE_DIR=$DIR SWITCHYARD_LIMITS_EVENTS_PER_SECOND=0 switchyard &  \
         # REDIS_URL=...: Redis Streams\n\
         switchyard-bench history --port $PORT --server-pid $PID --clients {} --messages {} --read-seconds {} \
         --limit {} --payload-bytes {}",
        options.history_clients,
        options.history_messages,
        options.history_read_seconds,
        options.history_limit,
        options.payload_bytes
    )
}

/// The `switchyard` binary of the same build as `bench-server` (`spec`), built first if `build`.
fn switchyard_spec(spec: &ServerSpec, options: &RunOptions, logs: &Path, build: bool) -> Result<ServerSpec, String> {
    let program = spec.program.with_file_name("switchyard");
    if build {
        log(format!("building the switchyard binary (profile {})", options.cargo_profile));
        let mut build = Command::new("cargo");
        build
            .args(["build", "--profile", &options.cargo_profile, "-p", "switchyard", "--bin", "switchyard"])
            .current_dir(&options.repo);
        run_bounded(build, Duration::from_secs(1800), &logs.join("build-switchyard-binary.log"))?;
    }
    if !program.exists() {
        return Err(format!("{} does not exist (build it, or leave out --skip-build)", program.display()));
    }
    Ok(ServerSpec {
        name: "switchyard".into(),
        program,
        args: vec![],
        cwd: options.repo.clone(),
        version: spec.version.clone(),
        env: vec![],
        token: None,
    })
}

/// One variant on a fresh server (and redis-server), stopped on return.
fn run_variant(
    spec: &ServerSpec,
    name: &str,
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Value {
    let store = logs.join(format!("store-{name}-{}", repeat + 1));
    let mut env = vec![
        ("SWITCHYARD_HISTORY_ENABLED", (name != "switchyard-history-off").to_string()),
        ("SWITCHYARD_STORE_DIR", store.to_string_lossy().into_owned()),
        ("SWITCHYARD_LIMITS_EVENTS_PER_SECOND", "0".to_owned()),
    ];
    // Declared before the server: dropped after it.
    let redis = if name == "switchyard-redis-streams" {
        match RunningServer::start(&redis_spec(&options.repo), &logs.join(format!("redis-{name}-{}.log", repeat + 1))) {
            Ok(redis) => {
                // `history.store = "auto"` picks Redis Streams when `redis.url` is set.
                env.push(("REDIS_URL", format!("redis://127.0.0.1:{}/", redis.port)));
                Some(redis)
            }
            Err(err) => return json!({"error": format!("redis-server: {err}")}),
        }
    } else {
        None
    };
    let log_path = logs.join(format!("{name}-history-{}.log", repeat + 1));
    let value = match RunningServer::start_with_env(spec, &log_path, &env) {
        Ok(server) => {
            let target =
                Target::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port), sources_for(options.history_clients));
            let history = HistoryOptions {
                clients: options.history_clients,
                messages_per_client: options.history_messages,
                read_seconds: options.history_read_seconds,
                limit: options.history_limit,
                payload_bytes: options.payload_bytes,
                server_pid: Some(server.pid()),
            };
            // Every ack inside is bounded (10 s); this bounds the whole variant.
            let limit = Duration::from_secs_f64(options.history_read_seconds + 600.0);
            let mut value = runtime
                .block_on(async { tokio::time::timeout(limit, crate::history::history(&target, &history)).await })
                .unwrap_or_else(|_| json!({"error": format!("timed out after {limit:?}")}));
            if let (Value::Object(map), Some(redis)) = (&mut value, &redis) {
                map.insert("redis_pid".into(), json!(redis.pid()));
            }
            value
        }
        Err(err) => json!({"error": err}),
    };
    drop(redis);
    let _ = fs::remove_dir_all(&store);
    value
}

/// Runs every variant once (one repeat) and returns (variant, result) pairs; the peers in `--servers`
/// get a row saying they have no history.
pub fn run_repeat(
    specs: &[ServerSpec],
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(bench_server) = specs.iter().find(|s| s.name == "switchyard") {
        // Built once, on the first repeat.
        let prepared = switchyard_spec(bench_server, options, logs, !options.skip_build && repeat == 0);
        out = run_variants(
            "history",
            &VARIANTS,
            |v| v.0,
            repeat,
            options,
            |_| Some(&prepared),
            |&(name, history), prepared| {
                let mut value = match prepared {
                    Ok(spec) => run_variant(spec, name, options, logs, repeat, runtime),
                    Err(err) => json!({"error": err}),
                };
                if let Value::Object(map) = &mut value {
                    map.insert("history".into(), json!(history));
                }
                value
            },
        );
    }
    out.extend(skipped_rows(specs, "history", &[("node", PEER_SKIP), ("socketioxide", PEER_SKIP)]));
    out
}

/// The report's section: medians per variant over the repeats.
pub fn section(records: &[Record]) -> String {
    let rows = VariantRows::of(records, "history");
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("## History scenario: message history reads and writes (issue 10)\n\n");
    let _ = writeln!(
        md,
        "Each repeat runs `switchyard-bench history` (crates/bench/src/history.rs) against the `switchyard` \
         binary with `limits.events_per_second = 0`, once per variant (order rotated per repeat): {} \
         clients, each in a room of its own, send {} acked `message`s each (one outstanding per client), \
         then read `history`(room, {{since: a random id of their room, limit: {}}}) for the run's read \
         seconds, one outstanding per client. Variants: history off (the cost of a `message` without \
         history; its reads are refused), the embedded store (redb, a directory of its own, one fsync \
         per batch), Redis Streams (a redis-server the runner starts; its CPU is not in the figures). \
         Server CPU from /proc. Medians of {} repeats. Switchyard only: Node socket.io and \
         socketioxide have no message history. Only this scenario: `scripts/bench.sh --scenarios \
         history --servers switchyard` (`--history-clients`, `--history-messages`, \
         `--history-read-seconds`, `--history-limit`, `--payload-bytes` set its size).\n",
        rows.first("clients"),
        rows.first("messages_per_client"),
        rows.first("limit"),
        rows.repeats(),
    );
    md.push_str(
        "| variant | messages/s | ack p50 / p99 (ms) | CPU per message (µs) | reads/s | read p50 / p99 (ms) | \
         CPU per read (µs) | messages per read | refused, failed, errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, _) in VARIANTS {
        if !rows.has(name) {
            continue;
        }
        let reads = rows.median(name, "reads_per_second");
        let read_latency = match reads {
            Some(r) if r > 0.0 => {
                format!("{} / {}", cell(rows.median(name, "read_p50_ms")), cell(rows.median(name, "read_p99_ms")))
            }
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} / {} | {} | {} | {read_latency} | {} | {} | {}, {}, {} |",
            cell(rows.median(name, "messages_per_second")),
            cell(rows.median(name, "message_ack_p50_ms")),
            cell(rows.median(name, "message_ack_p99_ms")),
            cell(rows.median(name, "server_cpu_us_per_message")),
            cell(reads),
            cell(rows.median(name, "server_cpu_us_per_read")),
            cell(rows.median(name, "messages_per_read")),
            rows.sum(name, "messages_refused"),
            rows.sum(name, "reads_failed"),
            rows.sum(name, "errors") + rows.failed(name) as u64,
        );
    }
    for peer in ["node", "socketioxide"] {
        if let Some(why) = rows.error_of(peer) {
            let _ = writeln!(md, "| {} | {why} | | | | | | | |", report::display_name(peer));
        }
    }
    md.push('\n');
    md.push_str(&rows.error_list(|r| r.server.starts_with("switchyard")));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(variant: &str, repeat: usize, value: Value) -> Record {
        super::super::rows::record("history", variant, repeat, value)
    }

    #[test]
    fn the_section_reports_medians_and_the_peers_without_history() {
        let run = |messages: f64, reads: f64| {
            json!({"clients": 20, "messages_per_client": 250, "limit": 50, "messages_per_second": messages,
                   "message_ack_p50_ms": 1.0, "message_ack_p99_ms": 4.0, "server_cpu_us_per_message": 30.0,
                   "reads_per_second": reads, "read_p50_ms": 10.0, "read_p99_ms": 80.0,
                   "server_cpu_us_per_read": 350.0, "messages_per_read": 45.0, "messages_refused": 0,
                   "reads_failed": 0, "errors": 0})
        };
        let records = vec![
            record("switchyard-embedded", 0, run(900.0, 1000.0)),
            record("switchyard-embedded", 1, run(1100.0, 1200.0)),
            record("switchyard-history-off", 0, {
                let mut off = run(21000.0, 0.0);
                off["reads_failed"] = json!(20);
                off["read_refusal"] = json!("{\"ok\":false}");
                off
            }),
            record("node", 0, json!({"error": PEER_SKIP})),
        ];
        let md = section(&records);
        assert!(md.contains("20 clients, each in a room of its own, send 250 acked"), "{md}");
        assert!(
            md.contains(
                "| switchyard-embedded | 1000 | 1.00 / 4.00 | 30.0 | 1100 | 10.0 / 80.0 | 350 | 45.0 | 0, 0, 0 |"
            ),
            "{md}"
        );
        assert!(md.contains("| switchyard-history-off | 21000 | 1.00 / 4.00 | 30.0 | 0 | – |"), "{md}");
        assert!(md.contains("| 0, 20, 0 |"), "{md}");
        assert!(md.contains("| Node socket.io | skipped: no message history"), "{md}");
        assert!(!md.contains("switchyard-redis-streams"), "variants not run are left out: {md}");
        assert_eq!(section(&[]), "");
    }
}

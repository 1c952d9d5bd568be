//! The `run` subcommand: builds and starts each server in turn, runs the same scenarios against each,
//! repeats them, and writes BENCHMARKS.md and the chart.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cluster::{self, ClusterOptions};
use crate::net::{raise_nofile_limit, sources_for, Target};
use crate::report::{self, Record};
use crate::scenarios::{self, ClientTransport, ConnectOptions, EchoOptions, FanoutOptions, IdleOptions};

mod history;
mod kafka;
mod recovery;
mod rows;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub repo: PathBuf,
    pub servers: Vec<String>,
    pub scenarios: Vec<String>,
    pub repeats: usize,
    pub idle_connections: usize,
    pub fanout_receivers: usize,
    pub fanout_messages: usize,
    pub payload_bytes: usize,
    pub echo_clients: usize,
    pub echo_rate: f64,
    pub echo_seconds: f64,
    /// Clients of the `echo-1000` scenario: the echo's second load point, at the same rate per client.
    pub echo_high_clients: usize,
    /// Echoes per second per client of `echo-1000`.
    pub echo_high_rate: f64,
    pub connect_count: usize,
    pub cluster_receivers: usize,
    pub cluster_probes: usize,
    pub cluster_probe_interval: Duration,
    pub connect_concurrency: usize,
    pub concurrency: usize,
    /// Messages the receiver misses in the `recovery` scenario.
    pub recovery_missed: usize,
    /// Recoveries per variant and repeat in the `recovery` scenario.
    pub recovery_iterations: usize,
    /// Clients of the `history` scenario, each in a room of its own.
    pub history_clients: usize,
    /// Acked `message`s each client of the `history` scenario sends before it reads.
    pub history_messages: usize,
    /// Seconds of `history` reads.
    pub history_read_seconds: f64,
    /// Messages per `history` read.
    pub history_limit: usize,
    /// The cargo profile Switchyard's servers are built with and run from: `perf` (thin LTO, the
    /// default) or `release` (what the test command builds, so a run can reuse it). Not the
    /// baseline's, which is always `perf`.
    pub cargo_profile: String,
    pub skip_build: bool,
    /// The git revision `switchyard-baseline` is built from.
    pub baseline_ref: String,
    pub report: PathBuf,
    pub chart: PathBuf,
    pub results_dir: PathBuf,
    /// The command line as typed, for the report.
    pub command_line: String,
}

/// How to start one server under test.
struct ServerSpec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    version: String,
    /// Extra environment of the server process.
    env: Vec<(String, String)>,
    /// The token every client sends (servers with JWT auth).
    token: Option<String>,
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

/// Runs `command` to completion within `limit`, its output going to `log_path`.
fn run_bounded(mut command: Command, limit: Duration, log_path: &Path) -> Result<(), String> {
    let log_file = fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(err_file))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{command:?} failed with {status}; see {}", log_path.display())),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} took longer than {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn command_output(program: &str, args: &[&str], cwd: &Path) -> Option<String> {
    let output =
        Command::new(program).args(args).current_dir(cwd).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The cargo target directory for `manifest` (honours CARGO_TARGET_DIR and workspace settings).
fn cargo_target_dir(manifest: &Path, cwd: &Path) -> Result<PathBuf, String> {
    let manifest = manifest.to_string_lossy().into_owned();
    let text =
        command_output("cargo", &["metadata", "--no-deps", "--format-version", "1", "--manifest-path", &manifest], cwd)
            .ok_or_else(|| format!("cargo metadata failed for {manifest}"))?;
    let metadata: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata without target_directory".to_owned())
}

/// The version of `package` in a Cargo.lock text.
pub fn locked_version(lock: &str, package: &str) -> Option<String> {
    let needle = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            let version = lines.next()?.trim();
            return version.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned);
        }
    }
    None
}

/// Switchyard's bench-server built from `options.baseline_ref` in a work tree of its own under
/// `target/bench-baseline`, so one run compares a change with what came before it.
fn prepare_baseline(name: &str, options: &RunOptions, logs: &Path) -> Result<ServerSpec, String> {
    let repo = &options.repo;
    let base = cargo_target_dir(&repo.join("Cargo.toml"), repo)?.join("bench-baseline");
    let tree = base.join("src");
    let rev = command_output("git", &["rev-parse", "--short", &format!("{}^{{commit}}", options.baseline_ref)], repo)
        .ok_or_else(|| format!("unknown baseline revision {:?}", options.baseline_ref))?;
    if !options.skip_build {
        let _ = fs::create_dir_all(&base);
        if command_output("git", &["rev-parse", "--short", "HEAD"], &tree).as_deref() != Some(rev.as_str()) {
            log(format!("checking out the baseline {rev} in {}", tree.display()));
            let _ = Command::new("git").args(["worktree", "remove", "--force"]).arg(&tree).current_dir(repo).status();
            let mut add = Command::new("git");
            add.args(["worktree", "add", "--detach"]).arg(&tree).arg(&rev).current_dir(repo);
            run_bounded(add, Duration::from_secs(120), &logs.join("checkout-baseline.log"))?;
        }
    }
    // Earlier layouts built the bench server as an example of the `switchyard` package.
    let (build_args, binary): (&[&str], &str) = if tree.join("crates/fixtures/src/bin/bench-server.rs").exists() {
        (&["-p", "switchyard-fixtures", "--bin", "bench-server"], "perf/bench-server")
    } else {
        (&["-p", "switchyard", "--example", "bench-server"], "perf/examples/bench-server")
    };
    let target = base.join("target");
    if !options.skip_build {
        log(format!("building the baseline bench-server ({rev})"));
        let mut build = Command::new("cargo");
        build.args(["build", "--profile", "perf"]).args(build_args).env("CARGO_TARGET_DIR", &target).current_dir(&tree);
        run_bounded(build, Duration::from_secs(1800), &logs.join("build-switchyard-baseline.log"))?;
    }
    Ok(ServerSpec {
        name: name.into(),
        program: target.join(binary),
        args: vec![],
        cwd: tree,
        version: format!("Switchyard baseline (git {rev})"),
        env: vec![],
        token: None,
    })
}

fn prepare_server(name: &str, options: &RunOptions, logs: &Path) -> Result<ServerSpec, String> {
    let repo = &options.repo;
    match name {
        "switchyard" => {
            if !repo.join("crates/fixtures/src/bin/bench-server.rs").exists() {
                return Err("crates/fixtures/src/bin/bench-server.rs does not exist yet".into());
            }
            if !options.skip_build {
                log(format!("building Switchyard's bench-server (profile {})", options.cargo_profile));
                let mut build = Command::new("cargo");
                build
                    .args(["build", "--profile", &options.cargo_profile])
                    .args(["-p", "switchyard-fixtures", "--bin", "bench-server"])
                    .current_dir(repo);
                run_bounded(build, Duration::from_secs(1800), &logs.join("build-switchyard.log"))?;
            }
            let target = cargo_target_dir(&repo.join("Cargo.toml"), repo)?;
            // Marks a build from a work tree with uncommitted changes.
            let rev = command_output("git", &["describe", "--always", "--dirty=+uncommitted"], repo)
                .unwrap_or_else(|| "unknown".into());
            Ok(ServerSpec {
                name: name.into(),
                program: target.join(&options.cargo_profile).join("bench-server"),
                args: vec![],
                cwd: repo.clone(),
                version: format!("Switchyard {} (git {rev})", env!("CARGO_PKG_VERSION")),
                env: vec![],
                token: None,
            })
        }
        "switchyard-metrics" => {
            // The same build with the application's Prometheus metrics observing every event.
            let mut spec = prepare_server("switchyard", options, logs)?;
            spec.name = name.into();
            spec.version.push_str(", metrics on (BENCH_METRICS=1)");
            spec.env.push(("BENCH_METRICS".into(), "1".into()));
            Ok(spec)
        }
        "switchyard-auth-hs256" | "switchyard-auth-es256" => {
            // The same build with JWT auth on every connection; clients send a token made here.
            let alg = name.rsplit('-').next().unwrap_or_default();
            let mut spec = prepare_server("switchyard", options, logs)?;
            let setup = crate::auth::setup(alg, logs)?;
            spec.name = name.into();
            spec.version.push_str(&format!(", JWT auth ({})", alg.to_uppercase()));
            spec.env.extend(setup.env);
            spec.token = Some(setup.token);
            Ok(spec)
        }
        "switchyard-baseline" => prepare_baseline(name, options, logs),
        "node" => {
            let dir = repo.join("bench/node");
            // The Redis adapter came later than socket.io: an older install lacks it.
            let installed = ["socket.io", "@socket.io/redis-adapter", "redis"]
                .iter()
                .all(|package| dir.join("node_modules").join(package).join("package.json").exists());
            if !options.skip_build && !installed {
                log("installing the Node peer (npm ci)");
                let mut install = Command::new("npm");
                install.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
                run_bounded(install, Duration::from_secs(600), &logs.join("build-node.log"))?;
            }
            let package: Value = fs::read_to_string(dir.join("node_modules/socket.io/package.json"))
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(Value::Null);
            let node = command_output("node", &["--version"], &dir).unwrap_or_else(|| "node ?".into());
            Ok(ServerSpec {
                name: name.into(),
                program: PathBuf::from("node"),
                args: vec!["server.js".into()],
                cwd: dir,
                version: format!(
                    "socket.io {} on Node.js {node}",
                    package.get("version").and_then(Value::as_str).unwrap_or("?")
                ),
                env: vec![],
                token: None,
            })
        }
        "socketioxide" => {
            let dir = repo.join("bench/peers/socketioxide");
            let manifest = dir.join("Cargo.toml");
            if !options.skip_build {
                log("building the socketioxide peer (release)");
                let mut build = Command::new("cargo");
                build.args(["build", "--release", "--locked", "--manifest-path"]).arg(&manifest).current_dir(&dir);
                run_bounded(build, Duration::from_secs(1800), &logs.join("build-socketioxide.log"))?;
            }
            let target = cargo_target_dir(&manifest, &dir)?;
            let lock = fs::read_to_string(dir.join("Cargo.lock")).unwrap_or_default();
            Ok(ServerSpec {
                name: name.into(),
                program: target.join("release/socketioxide-peer"),
                args: vec![],
                cwd: dir,
                version: format!(
                    "socketioxide {} (axum {}, tokio {})",
                    locked_version(&lock, "socketioxide").unwrap_or_else(|| "?".into()),
                    locked_version(&lock, "axum").unwrap_or_else(|| "?".into()),
                    locked_version(&lock, "tokio").unwrap_or_else(|| "?".into()),
                ),
                env: vec![],
                token: None,
            })
        }
        other => Err(format!("unknown server {other:?}")),
    }
}

/// A started server, stopped (SIGTERM, then SIGKILL) when dropped.
struct RunningServer {
    child: Child,
    port: u16,
}

impl RunningServer {
    fn start(spec: &ServerSpec, log_path: &Path) -> Result<RunningServer, String> {
        Self::start_with_env(spec, log_path, &[])
    }

    /// Starts `spec` with extra environment variables (a cluster node gets `REDIS_URL`).
    fn start_with_env(spec: &ServerSpec, log_path: &Path, env: &[(&str, String)]) -> Result<RunningServer, String> {
        let port = free_port()?;
        let mut args = spec.args.clone();
        if spec.name == "redis" {
            // redis-server takes its port as an argument rather than from the environment.
            args.extend(["--port".to_owned(), port.to_string()]);
        }
        let log_file = fs::File::create(log_path).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&spec.program);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the server if the runner
        // dies (a timeout or Ctrl-C must never leave a server running).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(&args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        let mut server = RunningServer { child, port };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{} exited with {status} before listening; see {}", spec.name, log_path.display()));
            }
            let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                // Give the process a moment to finish starting before its baseline is read.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("{} did not listen on port {port} within 60 s", spec.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The shell command that reruns one scenario by hand against a server on `port` with pid `pid`.
fn scenario_command(scenario: &str, options: &RunOptions) -> String {
    let base = "switchyard-bench";
    match scenario {
        "idle" => format!("{base} idle --port $PORT --server-pid $PID --connections {}", options.idle_connections),
        "fanout" | "fanout-polling" => format!(
            "{base} fanout --port $PORT --server-pid $PID --receivers {} --messages {} --payload-bytes {}{}",
            options.fanout_receivers,
            options.fanout_messages,
            options.payload_bytes,
            if scenario == "fanout-polling" { " --transport polling" } else { "" }
        ),
        "echo" | "echo-polling" | "echo-1000" => format!(
            "{base} echo --port $PORT --server-pid $PID --clients {} --rate {} --seconds {} --payload-bytes {}{}",
            echo_load_for(scenario, options).0,
            echo_load_for(scenario, options).1,
            options.echo_seconds,
            options.payload_bytes,
            if scenario == "echo-polling" { " --transport polling" } else { "" }
        ),
        "connect" => format!(
            "{base} connect --port $PORT --server-pid $PID --count {} --concurrency {}",
            options.connect_count, options.connect_concurrency
        ),
        "cluster" => format!(
            "{base} cluster --ports $PORT_A,$PORT_B --server-pids $PID_A,$PID_B --redis-port $REDIS_PORT \\\n  \
             --redis-pid $REDIS_PID --receivers {} --messages {} --payload-bytes {} --probes {} \\\n  \
             --probe-interval-ms {}",
            options.cluster_receivers,
            options.fanout_messages,
            options.payload_bytes,
            options.cluster_probes,
            options.cluster_probe_interval.as_millis()
        ),
        other => variant_scenario(other).map_or_else(|| format!("{base} {other}"), |s| (s.command)(options)),
    }
}

/// Clients and rate per client of an echo scenario: `echo-1000` is the second load point
/// (`--echo-high-clients`, 1,000, at `--echo-high-rate`, 5/s, by default); the others use
/// `--echo-clients` and `--echo-rate`.
fn echo_load_for(scenario: &str, options: &RunOptions) -> (usize, f64) {
    if scenario == "echo-1000" {
        (options.echo_high_clients, options.echo_high_rate)
    } else {
        (options.echo_clients, options.echo_rate)
    }
}

async fn run_scenario(scenario: &str, port: u16, pid: u32, token: Option<&str>, options: &RunOptions) -> Value {
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let pid = Some(pid);
    match scenario {
        "idle" => {
            let target = Target::new(server, sources_for(options.idle_connections)).with_token(token);
            let idle = IdleOptions {
                connections: options.idle_connections,
                concurrency: options.concurrency,
                settle: Duration::from_secs(2),
                server_pid: pid,
            };
            tokio::time::timeout(Duration::from_secs(900), scenarios::idle(&target, &idle))
                .await
                .unwrap_or_else(|_| json!({"scenario": "idle", "error": "timed out"}))
        }
        "fanout" | "fanout-polling" => {
            let target = Target::new(server, sources_for(options.fanout_receivers)).with_token(token);
            let fanout = FanoutOptions {
                receivers: options.fanout_receivers,
                messages: options.fanout_messages,
                payload_bytes: options.payload_bytes,
                binary: false,
                words: false,
                concurrency: options.concurrency,
                straggler_wait: Duration::from_secs(3),
                max_wait: Duration::from_secs(120),
                server_pid: pid,
                event: Default::default(),
                ack: false,
                transport: if scenario == "fanout-polling" {
                    ClientTransport::Polling
                } else {
                    ClientTransport::Websocket
                },
            };
            tokio::time::timeout(Duration::from_secs(600), scenarios::fanout(&target, &fanout))
                .await
                .unwrap_or_else(|_| json!({"scenario": "fanout", "error": "timed out"}))
        }
        "echo" | "echo-polling" | "echo-1000" => {
            let (clients, rate_per_client) = echo_load_for(scenario, options);
            let target = Target::new(server, sources_for(clients)).with_token(token);
            let echo = EchoOptions {
                clients,
                rate_per_client,
                seconds: options.echo_seconds,
                payload_bytes: options.payload_bytes,
                concurrency: options.concurrency,
                server_pid: pid,
                transport: if scenario == "echo-polling" {
                    ClientTransport::Polling
                } else {
                    ClientTransport::Websocket
                },
            };
            let limit = Duration::from_secs_f64(options.echo_seconds.max(0.0) + 300.0);
            tokio::time::timeout(limit, scenarios::echo(&target, &echo))
                .await
                .unwrap_or_else(|_| json!({"scenario": "echo", "error": "timed out"}))
        }
        "connect" => {
            let target = Target::new(server, sources_for(options.connect_count * 3)).with_token(token);
            let connect = ConnectOptions {
                count: options.connect_count,
                concurrency: options.connect_concurrency,
                server_pid: pid,
            };
            tokio::time::timeout(Duration::from_secs(900), scenarios::connect(&target, &connect))
                .await
                .unwrap_or_else(|_| json!({"scenario": "connect", "error": "timed out"}))
        }
        other => json!({"scenario": other, "error": "unknown scenario"}),
    }
}

/// (variant, result) pairs of one repeat of a [`VariantScenario`].
type VariantResults = Vec<(String, Value)>;

/// A scenario whose rows are variants rather than servers (`kafka`, `recovery`, `history`): opt-in,
/// it runs once per repeat over the prepared servers, starts and stops its own helper processes
/// (a broker, a redis-server, stores) and writes a report section of its own.
struct VariantScenario {
    name: &'static str,
    /// One repeat: (variant, result) pairs.
    run_repeat: fn(&[ServerSpec], &RunOptions, &Path, usize, &tokio::runtime::Runtime) -> VariantResults,
    /// The shell commands that rerun it by hand.
    command: fn(&RunOptions) -> String,
    /// Its section of the report ("" when it did not run).
    section: fn(&[Record]) -> String,
}

const VARIANT_SCENARIOS: [VariantScenario; 3] = [
    VariantScenario { name: "kafka", run_repeat: kafka::run_repeat, command: kafka::command, section: kafka::section },
    VariantScenario {
        name: "recovery",
        run_repeat: recovery::run_repeat,
        command: recovery::command,
        section: recovery::section,
    },
    VariantScenario {
        name: "history",
        run_repeat: history::run_repeat,
        command: history::command,
        section: history::section,
    },
];

fn variant_scenario(name: &str) -> Option<&'static VariantScenario> {
    VARIANT_SCENARIOS.iter().find(|s| s.name == name)
}

/// Rows for the servers in `--servers` that `scenario` cannot measure: (server, reason) pairs.
fn skipped_rows(specs: &[ServerSpec], scenario: &str, reasons: &[(&str, &str)]) -> Vec<(String, Value)> {
    reasons
        .iter()
        .filter(|(server, _)| specs.iter().any(|s| s.name == *server))
        .map(|(server, why)| ((*server).to_owned(), json!({"scenario": scenario, "error": why})))
        .collect()
}

/// One repeat of a scenario whose rows are variants (kafka, recovery, history): each variant that
/// `select` finds what it needs for (its server, when that is in `--servers`) is measured by
/// `measure`, in an order rotated by `repeat` (so none always runs first), a second apart (the
/// stopped servers' sockets drain); each result gets the keys `scenario` and `variant` (`name_of`).
fn run_variants<V, S>(
    scenario: &str,
    variants: &[V],
    name_of: impl Fn(&V) -> &'static str,
    repeat: usize,
    options: &RunOptions,
    select: impl Fn(&V) -> Option<S>,
    mut measure: impl FnMut(&V, S) -> Value,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for offset in 0..variants.len() {
        let variant = &variants[(offset + repeat) % variants.len()];
        let Some(selected) = select(variant) else { continue };
        let name = name_of(variant);
        log(format!("{scenario}: {name} (repeat {}/{})", repeat + 1, options.repeats));
        let mut value = measure(variant, selected);
        if let Value::Object(map) = &mut value {
            map.insert("scenario".into(), json!(scenario));
            map.insert("variant".into(), json!(name));
        }
        out.push((name.to_owned(), value));
        std::thread::sleep(Duration::from_secs(1));
    }
    out
}

/// Why socketioxide sits out the cluster scenario.
const SOCKETIOXIDE_CLUSTER_SKIP: &str =
    "skipped: socketioxide has no Redis adapter wire-compatible with @socket.io/redis-adapter";

/// redis-server for the cluster scenario: in memory only, loopback only.
fn redis_spec(repo: &Path) -> ServerSpec {
    let version = command_output("redis-server", &["--version"], repo).unwrap_or_else(|| "redis-server ?".into());
    ServerSpec {
        name: "redis".into(),
        program: PathBuf::from("redis-server"),
        args: ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].iter().map(|s| s.to_string()).collect(),
        cwd: repo.to_path_buf(),
        version,
        env: vec![],
        token: None,
    }
}

fn cluster_options(options: &RunOptions, server_pids: Vec<u32>, redis: Option<(u16, u32)>) -> ClusterOptions {
    ClusterOptions {
        receivers: options.cluster_receivers,
        messages: options.fanout_messages,
        payload_bytes: options.payload_bytes,
        probes: options.cluster_probes,
        probe_interval: options.cluster_probe_interval,
        concurrency: options.concurrency,
        straggler_wait: Duration::from_secs(3),
        max_wait: Duration::from_secs(120),
        server_pids,
        redis: redis.map(|(port, _)| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        redis_pid: redis.map(|(_, pid)| pid),
    }
}

fn node_target(port: u16, receivers: usize) -> Target {
    Target::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), sources_for(receivers + 1))
}

/// The cluster scenario for one server kind: first the same load on one node without Redis (the baseline
/// CPU per delivery), then a fresh redis-server and two nodes joined through it.
fn run_cluster(
    spec: &ServerSpec,
    options: &RunOptions,
    logs: &Path,
    repeat: usize,
    runtime: &tokio::runtime::Runtime,
) -> Value {
    if spec.name == "socketioxide" {
        return json!({"scenario": "cluster", "error": SOCKETIOXIDE_CLUSTER_SKIP});
    }
    let limit = Duration::from_secs(600);
    let name = &spec.name;
    let single = match RunningServer::start(spec, &logs.join(format!("{name}-cluster-single-{}.log", repeat + 1))) {
        Ok(server) => {
            let nodes = [node_target(server.port, options.cluster_receivers)];
            let load = cluster_options(options, vec![server.pid()], None);
            let run = cluster::cluster(&nodes, &load);
            runtime
                .block_on(async { tokio::time::timeout(limit, run).await })
                .unwrap_or_else(|_| json!({"error": "single-node baseline timed out"}))
        }
        Err(err) => json!({"error": err}),
    };
    std::thread::sleep(Duration::from_secs(1));
    let redis = match RunningServer::start(
        &redis_spec(&options.repo),
        &logs.join(format!("redis-{name}-{}.log", repeat + 1)),
    ) {
        Ok(redis) => redis,
        Err(err) => return json!({"scenario": "cluster", "error": format!("redis-server: {err}")}),
    };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let mut started = Vec::new();
    for node in ["a", "b"] {
        let log_path = logs.join(format!("{name}-cluster-{node}-{}.log", repeat + 1));
        match RunningServer::start_with_env(spec, &log_path, &[("REDIS_URL", url.clone())]) {
            Ok(server) => started.push(server),
            Err(err) => return json!({"scenario": "cluster", "error": err}),
        }
    }
    let per_node = options.cluster_receivers.div_ceil(started.len());
    let nodes: Vec<Target> = started.iter().map(|server| node_target(server.port, per_node)).collect();
    let pids = started.iter().map(RunningServer::pid).collect();
    let load = cluster_options(options, pids, Some((redis.port, redis.pid())));
    let run = cluster::cluster(&nodes, &load);
    let mut value = runtime
        .block_on(async { tokio::time::timeout(limit, run).await })
        .unwrap_or_else(|_| json!({"scenario": "cluster", "error": "timed out"}));
    drop(started);
    drop(redis);
    if let Value::Object(map) = &mut value {
        let single_cpu = single.get("cluster_cpu_ns_per_delivery").and_then(Value::as_f64);
        map.insert("single_node_cpu_ns_per_delivery".into(), json!(single_cpu));
        map.insert(
            "single_node_deliveries_per_sec".into(),
            single.get("cluster_deliveries_per_sec").cloned().unwrap_or(Value::Null),
        );
        map.insert("single_node_lost".into(), single.get("lost").cloned().unwrap_or(Value::Null));
        if let Some(err) = single.get("error").or_else(|| single.get("first_error")).filter(|e| !e.is_null()) {
            map.insert("single_node_error".into(), err.clone());
        }
        let ratio = crate::stats::ratio(map.get("cluster_cpu_ns_per_delivery").and_then(Value::as_f64), single_cpu);
        map.insert("cpu_ratio_to_single_node".into(), json!(ratio.map(crate::stats::round3)));
    }
    value
}

fn machine_description() -> Vec<(String, String)> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get().to_string()).unwrap_or_else(|_| "unknown".into());
    let nofile = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, hard)| format!("{soft} (hard {hard})"))
        .unwrap_or_else(|_| "unknown".into());
    vec![
        ("nproc".into(), cores),
        ("CPU".into(), cpu),
        ("Kernel".into(), kernel),
        ("Memory".into(), memory),
        ("Open-file limit".into(), nofile),
    ]
}

/// The scenarios `run` knows: the default ones, then the opt-in ones that start helper processes of
/// their own (`kafka`: a broker; `recovery`: a redis-server; `history`: a redis-server and stores).
pub const SCENARIOS: &[&str] = &[
    "idle",
    "fanout",
    "echo",
    "echo-1000",
    "fanout-polling",
    "echo-polling",
    "connect",
    "cluster",
    "kafka",
    "recovery",
    "history",
];

/// The cargo profiles `--cargo-profile` accepts (their output directories have the same names).
const CARGO_PROFILES: &[&str] = &["perf", "release"];

/// Checks the options before anything is built or started, so a typo is one clear error rather than a
/// run that reports "unknown scenario" for every server.
pub fn check_options(options: &RunOptions) -> Result<(), String> {
    if options.scenarios.is_empty() {
        return Err("no scenario given (--scenarios)".into());
    }
    if let Some(unknown) = options.scenarios.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        return Err(format!("unknown scenario {unknown:?} (known: {})", SCENARIOS.join(", ")));
    }
    if !CARGO_PROFILES.contains(&options.cargo_profile.as_str()) {
        return Err(format!(
            "unknown --cargo-profile {:?} (known: {})",
            options.cargo_profile,
            CARGO_PROFILES.join(", ")
        ));
    }
    let at_least_one = [
        ("--recovery-missed", options.recovery_missed),
        ("--recovery-iterations", options.recovery_iterations),
        ("--history-clients", options.history_clients),
        ("--history-messages", options.history_messages),
        ("--history-limit", options.history_limit),
    ];
    if let Some((flag, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
        return Err(format!("{flag} must be at least 1"));
    }
    if !(options.history_read_seconds.is_finite() && options.history_read_seconds > 0.0) {
        return Err(format!("--history-read-seconds must be above 0, not {}", options.history_read_seconds));
    }
    Ok(())
}

/// Runs everything and writes the report. Returns an error only when nothing could be measured.
pub fn run(options: &RunOptions, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    check_options(options)?;
    let nofile = raise_nofile_limit();
    // The load generator and the server are separate processes: each holds one descriptor per connection.
    let needed = options.idle_connections + 200;
    if (nofile as usize) < needed {
        log(format!(
            "warning: open-file limit {nofile} is below the {needed} descriptors that {} idle connections need \
             in each of the load generator and the server; expect connect failures",
            options.idle_connections
        ));
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let results_dir = options.repo.join(&options.results_dir);
    let logs = results_dir.join(format!("logs-{stamp}"));
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let jsonl_path = results_dir.join(format!("run-{stamp}.jsonl"));
    let mut jsonl = fs::File::create(&jsonl_path).map_err(|e| e.to_string())?;

    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for name in &options.servers {
        match prepare_server(name, options, &logs) {
            Ok(spec) => specs.push(spec),
            Err(err) => {
                log(format!("skipping {name}: {err}"));
                skipped.push((name.clone(), err));
            }
        }
    }
    if specs.is_empty() {
        return Err("no server could be prepared".into());
    }

    let started = Instant::now();
    let mut records = Vec::new();
    for repeat in 0..options.repeats {
        for scenario in &options.scenarios {
            // Once per repeat, over the prepared servers (their variants are the rows).
            if let Some(sectioned) = variant_scenario(scenario) {
                for (variant, mut value) in (sectioned.run_repeat)(&specs, options, &logs, repeat, runtime) {
                    if let Value::Object(map) = &mut value {
                        map.insert("server".into(), json!(variant));
                        map.insert("repeat".into(), json!(repeat + 1));
                    }
                    let line = value.to_string();
                    println!("{line}");
                    let _ = writeln!(jsonl, "{line}");
                    records.push(Record { server: variant, scenario: scenario.clone(), repeat, value });
                }
                continue;
            }
            // Rotate the server order each repeat so no server always runs first (or last).
            let count = specs.len();
            for offset in 0..count {
                let spec = &specs[(offset + repeat) % count];
                log(format!("{scenario} on {} (repeat {}/{})", spec.name, repeat + 1, options.repeats));
                let log_path = logs.join(format!("{}-{scenario}-{}.log", spec.name, repeat + 1));
                let mut value = if scenario == "cluster" {
                    run_cluster(spec, options, &logs, repeat, runtime)
                } else {
                    match RunningServer::start(spec, &log_path) {
                        Ok(server) => {
                            let value = runtime.block_on(run_scenario(
                                scenario,
                                server.port,
                                server.pid(),
                                spec.token.as_deref(),
                                options,
                            ));
                            drop(server);
                            value
                        }
                        Err(err) => json!({"scenario": scenario, "error": err}),
                    }
                };
                if let Value::Object(map) = &mut value {
                    map.insert("server".into(), json!(spec.name));
                    map.insert("repeat".into(), json!(repeat + 1));
                }
                let line = value.to_string();
                println!("{line}");
                let _ = writeln!(jsonl, "{line}");
                records.push(Record { server: spec.name.clone(), scenario: scenario.clone(), repeat, value });
                // Let sockets of the stopped server drain before the next start.
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let elapsed = started.elapsed();
    log(format!("all runs done in {:.0} s; results in {}", elapsed.as_secs_f64(), jsonl_path.display()));

    let servers: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let subtitle = format!(
        "median of {} repeats; idle {} conns, fanout {}x{}x{} B, echo {}x{}/s x {} s, connect {}",
        options.repeats,
        options.idle_connections,
        options.fanout_receivers,
        options.fanout_messages,
        options.payload_bytes,
        options.echo_clients,
        options.echo_rate,
        options.echo_seconds,
        options.connect_count
    );
    let svg = report::chart_svg(&records, &servers, &subtitle);
    let chart_path = options.repo.join(&options.chart);
    if let Some(parent) = chart_path.parent() {
        let _ = fs::create_dir_all(parent);
    }
    fs::write(&chart_path, svg).map_err(|e| format!("{}: {e}", chart_path.display()))?;

    let mut markdown = render_markdown(options, &specs, &skipped, &records, &servers, elapsed);
    let report_path = options.repo.join(&options.report);
    if let Ok(previous) = fs::read_to_string(&report_path) {
        markdown.push_str(hand_kept_part(&previous));
    }
    fs::write(&report_path, markdown).map_err(|e| format!("{}: {e}", report_path.display()))?;
    log(format!("wrote {} and {}", report_path.display(), chart_path.display()));
    Ok(())
}

/// The line after which a report holds sections measured by hand (issue by issue: Kafka, history,
/// recovery, ...), which a new run must not erase.
pub const HAND_KEPT_MARKER: &str =
    "<!-- Measured by hand below this line: `switchyard-bench run` keeps it as it is. -->";

/// The hand-kept part of a previous report, marker line included ("" when it has none), so a run
/// regenerates its own sections and keeps the rest.
fn hand_kept_part(previous: &str) -> &str {
    match previous.find(HAND_KEPT_MARKER) {
        Some(at) => &previous[at..],
        None => "",
    }
}

/// How the echo scenarios' second load point and tail rows are measured.
fn echo_tail_section(options: &RunOptions) -> String {
    format!(
        "## Echo: the second load point and where the tail comes from\n\n\
         `echo-1000` is `echo` with {clients} clients at {rate}/s each ({total:.0} acked echoes per second in \
         all), the goal's second load point: ten times the connections of `echo` at the same total rate (the \
         load generator, one thread on the same two cores, cannot send 1,000 x 50/s: it fell to 32-68% of \
         the planned sends in trials). The `Echo:` rows of `echo` read /proc during the \
         echo run, divided by the acks:\n\n\
         - *run-queue wait* is the time the server's threads were runnable but waiting for a core \
         (`/proc/<pid>/task/*/schedstat`, second field): time the load generator or anything else on the two \
         cores took from the server;\n\
         - *sleeps and wakeups* and *preemptions* are the server's voluntary and nonvoluntary context switches \
         (`/proc/<pid>/task/*/status`): a voluntary switch is a thread that went to sleep and had to be woken \
         again, so fewer than one per echo means echoes share wakeups (batching), more than one means a hop \
         between threads per echo;\n\
         - *the load generator's send delay* is how late its sends left against their schedule: when it is \
         late, it was itself waiting for a core, and its receive side waits as well.\n\n\
         The JSON lines also hold the load generator's own figures (`loadgen_*`) and the number of times the \
         server's threads were put on a core per echo (`server_slices_per_echo`).\n\n",
        clients = options.echo_high_clients,
        rate = options.echo_high_rate,
        total = options.echo_high_clients as f64 * options.echo_high_rate,
    )
}

fn polling_section() -> String {
    "## Polling scenarios (long-polling clients, no upgrade)\n\n\
     `fanout-polling` and `echo-polling` are the fanout and echo scenarios with clients that stay on HTTP \
     long-polling (`transport=polling`, never upgraded), as users behind proxies that block WebSocket are. \
     Each client holds two keep-alive HTTP/1.1 connections, as a browser does: one for its long-polling \
     GETs, one for its POSTs. Pings are answered with a POST of `3`.\n\n\
     - *Fanout*: the same room, receivers, messages and payloads as `fanout`; the sender POSTs its messages \
     in bodies of at most 32 KiB, one POST after the other (as socket.io-client sends what is queued when \
     its previous POST completes), and each receiver counts what its polls bring. Server CPU per delivery \
     includes the HTTP request and response of every poll, so it is per delivery of a burst: a poll \
     carries every packet queued since the previous one.\n\
     - *Echo*: the same clients and rate as `echo`; each echo is one POST, and the round trip runs from \
     the start of that POST to the poll that brings the ack back.\n\n\
     Only these scenarios: `scripts/bench.sh --scenarios fanout-polling,echo-polling`.\n\n"
        .to_owned()
}

fn cluster_section(options: &RunOptions) -> String {
    format!(
        "## Cluster scenario (two nodes over Redis)\n\n\
         For each server kind the runner starts its own `redis-server` (`--bind 127.0.0.1 --save \"\" \
         --appendonly no`, a free port) and two nodes of that server with `REDIS_URL` set: Switchyard's \
         `bench-server` in classic mode, and the Node peer with `@socket.io/redis-adapter` (`createAdapter`). \
         {receivers} receivers join room `cluster`, split evenly over the two nodes; one sender on node A emits \
         {messages} messages of {bytes} bytes back to back, then {probes} paced probes (one every {interval} ms, a rate \
         no server is saturated by) that carry their send time.\n\n\
         - *Deliveries per second* counts both nodes; *cross-node* only those on node B, which arrive through \
         Redis.\n\
         - *CPU per delivery* is the CPU time of both node processes together over the burst, divided by the \
         deliveries; redis-server's CPU is reported separately. *Same load on one node* is the same scenario \
         against a single node without Redis, run just before in the same repeat; the ratio of the two is the \
         goal's figure.\n\
         - *Latency Redis adds* is the probe latency percentile of receivers on node B minus the same percentile \
         on node A (the sender's node): both see the same sender and load generator, so the difference is the \
         trip through Redis and the second node. It is a difference of two noisy percentiles, so it can come out \
         slightly negative.\n\
         - *Redis publishes per broadcast* is PUBLISH plus SPUBLISH calls from `INFO commandstats` (after \
         `CONFIG RESETSTAT`) over the burst, divided by the messages sent.\n\
         - socketioxide is not part of this scenario: it has no Redis adapter wire-compatible with \
         `@socket.io/redis-adapter`, so its column stays empty and its runs read \"skipped\".\n\n\
         Only this scenario: `scripts/bench.sh --scenarios cluster --servers switchyard,node` \
         (`--cluster-receivers`, `--fanout-messages`, `--payload-bytes`, `--cluster-probes`, `--cluster-probe-interval-ms` set its size).\n\n",
        receivers = options.cluster_receivers,
        messages = options.fanout_messages,
        bytes = options.payload_bytes,
        probes = options.cluster_probes,
        interval = options.cluster_probe_interval.as_millis(),
    )
}

fn render_markdown(
    options: &RunOptions,
    specs: &[ServerSpec],
    skipped: &[(String, String)],
    records: &[Record],
    servers: &[String],
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Generated by `switchyard-bench run` (crate `crates/bench`). Every server runs the same handlers on \
         namespace `/`: `join`(room), `leave`(room), `msg`(room, payload) to the room except the sender, \
         `echo`(payload, ack). Each scenario starts a fresh server process; the load generator speaks \
         Engine.IO v4 / Socket.IO v5 itself over WebSocket (and over HTTP long-polling for the connect, \
         fanout-polling and echo-polling scenarios).\n\n",
    );
    md.push_str(
        "The machine is shared and the load generator runs on the same 2 cores as the server, so compare the \
         **ratios within one run**, not absolute figures across runs. Server CPU comes from /proc (per-thread \
         `schedstat`, cross-checked with `utime+stime` of `/proc/<pid>/stat`), not from wall time.\n\n",
    );

    md.push_str("## How to run\n\n```sh\n");
    let _ = writeln!(md, "{}", options.command_line);
    md.push_str("```\n\n");
    md.push_str(
        "`scripts/bench.sh` builds `switchyard-bench` in release mode and calls its `run` subcommand with the \
         arguments given (see `scripts/bench.sh --help`). It builds Switchyard's `bench-server` example \
         (`cargo build --profile perf -p switchyard-fixtures --bin bench-server`; `--cargo-profile release` \
         builds and runs the release build instead), the socketioxide peer \
         (`cargo build --release --locked --manifest-path bench/peers/socketioxide/Cargo.toml`) and installs \
         the Node peer (`npm ci` in `bench/node`), then starts each with `PORT` set. Raw JSON lines and server \
         logs go to `bench/results/` (not committed).\n\n",
    );
    md.push_str(
        "One scenario by hand, against a server already listening on `$PORT` with process id `$PID`:\n\n```sh\n",
    );
    for scenario in &options.scenarios {
        let _ = writeln!(md, "{}", scenario_command(scenario, options));
    }
    md.push_str("```\n\n");

    md.push_str("## Machine and versions\n\n| | |\n|---|---|\n");
    for (key, value) in machine_description() {
        let _ = writeln!(md, "| {key} | {value} |");
    }
    if let Some(rustc) = command_output("rustc", &["--version"], &options.repo) {
        let _ = writeln!(md, "| Rust | {rustc} |");
    }
    for spec in specs {
        let _ = writeln!(md, "| {} | {} |", report::display_name(&spec.name), spec.version);
    }
    let with_redis: Vec<&str> = options
        .scenarios
        .iter()
        .map(String::as_str)
        .filter(|s| ["cluster", "recovery", "history"].contains(s))
        .collect();
    if !with_redis.is_empty() {
        let _ = writeln!(
            md,
            "| Redis ({} scenario{}) | {} |",
            with_redis.join(", "),
            if with_redis.len() > 1 { "s" } else { "" },
            redis_spec(&options.repo).version
        );
    }
    let _ = writeln!(md, "| Run time | {:.0} s for {} repeats |", elapsed.as_secs_f64(), options.repeats);
    md.push('\n');
    for (name, reason) in skipped {
        let _ = writeln!(md, "> {} was not measured in this run: {reason}.\n", report::display_name(name));
    }

    md.push_str("## Results (medians)\n\n");
    if records.iter().any(|r| report::METRICS.iter().any(|m| m.scenario == r.scenario)) {
        md.push_str(&report::results_table(records, servers));
        md.push_str(
            "\nA ratio below 1 is better for \"lower\" metrics, above 1 for \"higher\" ones.\n\n\
             ![Benchmark chart](bench/chart.svg)\n\n",
        );
    } else {
        // Only scenarios whose rows are variants (kafka, recovery, history): an empty table and chart
        // would say nothing.
        md.push_str("No figures per server in this run: each of its scenarios has a section of its own below.\n\n");
    }

    md.push_str("## Goals\n\n");
    md.push_str(&report::goals_table(&report::check_goals(records, options.idle_connections)));
    md.push('\n');
    md.push_str(
        "The goal's idle run is `scripts/bench.sh --scenarios idle --idle-connections 19000` (the default): the \
         load generator and the server each hold one descriptor per connection and raise their soft open-file \
         limit to the hard limit, which is 20,000 on this machine, so 19,000 connections (and the runner's \
         spare descriptors) is the largest count it allows; past the limit connections fail and are counted as \
         `failed`. The hard limit is in the table above (an unprivileged sandbox cannot raise it).\n\n",
    );
    if records.iter().any(|r| r.scenario == "cluster") {
        md.push_str(&cluster_section(options));
    }
    if options.scenarios.iter().any(|s| s.ends_with("-polling")) {
        md.push_str(&polling_section());
    }
    if options.scenarios.iter().any(|s| s == "echo" || s == "echo-1000") {
        md.push_str(&echo_tail_section(options));
    }
    for sectioned in &VARIANT_SCENARIOS {
        md.push_str(&(sectioned.section)(records));
    }
    // The hand-kept log of what each engine change bought survives regeneration.
    if let Ok(changes) = std::fs::read_to_string(options.repo.join("bench/CHANGES.md")) {
        md.push_str(changes.trim_end());
        md.push_str("\n\n");
    }
    md.push_str("## Reference figures measured earlier on this machine\n\n");
    md.push_str(
        "| Server | Idle memory | Fanout CPU per delivery | Fanout loss | Echo p99 (100 clients × 50/s) |\n\
         |---|---:|---:|---:|---:|\n\
         | Node socket.io 4.8.4 | 16.1 KB/conn | ~5,000 ns | none | 2.6 ms |\n\
         | socketioxide 0.18.9 | 29.2 KB/conn | 720–1,200 ns | ~70% with its default buffer | 1.4 ms |\n\n",
    );
    md.push_str(
        "socketioxide runs with its defaults: a full per-socket send buffer makes its broadcast skip that \
         recipient, which is the loss the fanout scenario counts.\n\n",
    );

    md.push_str(
        "## Reading the figures\n\n\
         - *Fanout CPU per delivery* is the server's CPU time from just before the sender's first message until \
         the last delivery (or until no delivery arrived for 3 s), divided by the deliveries counted by the \
         receivers. The JSON lines also give it per *expected* delivery (`server_cpu_ns_per_expected_delivery`), \
         which is the fairer figure for a server that drops messages.\n\
         - *Echo server CPU per ack* is dominated by waking up for each small message at this low rate; it is a \
         relative figure, not the cost of the echo handler.\n\
         - Echo round trips are measured by the load generator, which shares the two cores with the server (and \
         with whatever else runs on this machine), so the tail (p99, max) is noisy; compare servers within one \
         run. `planned_sends` versus `sent` in the JSON lines shows whether the generator fell behind.\n\
         - Every scenario counts failures (`failed`, `dropped_*`, `missing`, `lost`) rather than hiding them; the \
         table below lists them per run.\n\n",
    );
    md.push_str("## Every run\n\n");
    md.push_str(&report::raw_table(records));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_a_cargo_lock() {
        let lock = "[[package]]\nname = \"axum\"\nversion = \"0.8.9\"\n\n[[package]]\nname = \"socketioxide\"\nversion = \"0.18.9\"\nsource = \"registry\"\n";
        assert_eq!(locked_version(lock, "socketioxide").as_deref(), Some("0.18.9"));
        assert_eq!(locked_version(lock, "axum").as_deref(), Some("0.8.9"));
        assert_eq!(locked_version(lock, "tokio"), None);
    }

    #[test]
    fn a_new_report_keeps_the_hand_measured_sections() {
        let previous = format!("# Benchmarks\n\nold generated table\n\n{HAND_KEPT_MARKER}\n\n## Kafka\n\nby hand\n");
        assert_eq!(hand_kept_part(&previous), format!("{HAND_KEPT_MARKER}\n\n## Kafka\n\nby hand\n"));
        assert_eq!(hand_kept_part("# Benchmarks\n\nno marker\n"), "");
    }

    /// Options with a distinct size everywhere, for the tests here and in the scenario modules.
    pub(super) fn options() -> RunOptions {
        RunOptions {
            repo: PathBuf::from("."),
            servers: vec![],
            scenarios: vec![],
            repeats: 2,
            idle_connections: 12_345,
            fanout_receivers: 10,
            fanout_messages: 20,
            payload_bytes: 30,
            echo_clients: 4,
            echo_rate: 5.0,
            echo_seconds: 6.0,
            echo_high_clients: 40,
            echo_high_rate: 3.0,
            connect_count: 7,
            cluster_receivers: 11,
            cluster_probes: 12,
            cluster_probe_interval: Duration::from_millis(13),
            connect_concurrency: 8,
            concurrency: 9,
            recovery_missed: 1000,
            recovery_iterations: 10,
            history_clients: 14,
            history_messages: 15,
            history_read_seconds: 1.5,
            history_limit: 16,
            cargo_profile: "perf".into(),
            skip_build: true,
            baseline_ref: "HEAD~1".into(),
            report: PathBuf::from("BENCHMARKS.md"),
            chart: PathBuf::from("bench/chart.svg"),
            results_dir: PathBuf::from("bench/results"),
            command_line: String::new(),
        }
    }

    #[test]
    fn scenario_commands_carry_the_run_sizes() {
        let options = options();
        assert!(scenario_command("idle", &options).contains("--connections 12345"));
        assert!(scenario_command("fanout", &options).contains("--receivers 10 --messages 20 --payload-bytes 30"));
        assert!(!scenario_command("fanout", &options).contains("--transport"));
        assert!(scenario_command("fanout-polling", &options).ends_with("--payload-bytes 30 --transport polling"));
        assert!(scenario_command("echo-polling", &options).ends_with("--transport polling"));
        assert!(scenario_command("echo", &options).contains("--clients 4 --rate 5"));
        assert!(scenario_command("echo-1000", &options).contains("--clients 40 --rate 3 "));
        assert!(!scenario_command("echo-1000", &options).contains("--transport"));
        assert!(scenario_command("connect", &options).contains("--count 7 --concurrency 8"));
        let cluster = scenario_command("cluster", &options);
        assert!(cluster.contains("--receivers 11 --messages 20 --payload-bytes 30 --probes 12"), "{cluster}");
        assert!(cluster.contains("--ports $PORT_A,$PORT_B"), "{cluster}");
        let history = scenario_command("history", &options);
        assert!(
            history.contains("--clients 14 --messages 15 --read-seconds 1.5 --limit 16 --payload-bytes 30"),
            "{history}"
        );
        assert!(scenario_command("recovery", &options).contains("--missed 1000 --iterations 10"));
    }

    #[test]
    fn variants_run_rotated_and_tagged_and_the_unselected_are_left_out() {
        let variants = [("a", 1), ("b", 2), ("c", 3)];
        let mut measured = Vec::new();
        let out = run_variants(
            "recovery",
            &variants,
            |v| v.0,
            1,
            &options(),
            |v| (v.1 != 2).then_some(v.1 * 10),
            |v, selected| {
                measured.push(v.0);
                json!({"selected": selected})
            },
        );
        assert_eq!(measured, ["c", "a"], "repeat 1 starts at the second variant; b is left out");
        let names: Vec<&str> = out.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
        assert_eq!(out[0].1, json!({"selected": 30, "scenario": "recovery", "variant": "c"}));
    }

    #[test]
    fn the_variant_scenarios_are_known_and_the_peers_they_cannot_measure_get_a_reason() {
        for sectioned in &VARIANT_SCENARIOS {
            assert!(SCENARIOS.contains(&sectioned.name), "{}", sectioned.name);
            // Its own hand commands, not the generic fallback.
            assert_ne!(scenario_command(sectioned.name, &options()), format!("switchyard-bench {}", sectioned.name));
        }
        assert!(variant_scenario("fanout").is_none());
        let spec = |name: &str| ServerSpec {
            name: name.into(),
            program: PathBuf::new(),
            args: vec![],
            cwd: PathBuf::new(),
            version: String::new(),
            env: vec![],
            token: None,
        };
        let specs = [spec("switchyard"), spec("socketioxide")];
        let rows = skipped_rows(&specs, "history", &[("node", "no history"), ("socketioxide", "none either")]);
        assert_eq!(rows, [("socketioxide".to_owned(), json!({"scenario": "history", "error": "none either"}))]);
    }

    #[test]
    fn options_are_checked_before_a_run() {
        let mut bad = options();
        bad.scenarios = vec!["fanout".into(), "recovery".into(), "history".into(), "kafka".into()];
        assert_eq!(check_options(&bad), Ok(()));
        bad.scenarios.push("recover".into());
        assert!(check_options(&bad).unwrap_err().starts_with("unknown scenario \"recover\" (known: idle, fanout"));
        bad.scenarios.clear();
        assert_eq!(check_options(&bad).unwrap_err(), "no scenario given (--scenarios)");
        let mut bad = options();
        bad.scenarios = vec!["history".into()];
        bad.history_limit = 0;
        assert_eq!(check_options(&bad).unwrap_err(), "--history-limit must be at least 1");
        bad.history_limit = 1;
        bad.history_read_seconds = f64::NAN;
        assert!(check_options(&bad).unwrap_err().contains("--history-read-seconds"));
    }
}

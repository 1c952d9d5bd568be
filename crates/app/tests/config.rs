//! The configuration as users meet it: docs/CONFIG.md and the sample file kept in step with the code,
//! and the `switchyard` binary's precedence (flags > environment > file > defaults) and refusals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use switchyard::config::{documented_keys, env_name, Config, Loader};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `| `key` | `ENV` | `default` | meaning |` rows of docs/CONFIG.md.
fn documented_rows() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(repo_root().join("docs/CONFIG.md")).expect("docs/CONFIG.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").map(|c| c.trim_matches(|ch| ch == '|' || ch == ' ')).collect();
        assert!(cells.len() >= 4, "malformed row in docs/CONFIG.md: {line}");
        let strip = |cell: &str| cell.trim_matches('`').to_string();
        let previous = rows.insert(strip(cells[0]), (strip(cells[1]), strip(cells[2])));
        assert!(previous.is_none(), "key documented twice: {}", cells[0]);
    }
    rows
}

#[test]
fn docs_list_every_key_with_its_variable_and_default() {
    let rows = documented_rows();
    let keys = documented_keys();
    for (key, default) in &keys {
        let Some((env, doc_default)) = rows.get(key) else { panic!("docs/CONFIG.md does not document {key}") };
        assert_eq!(env, &env_name(key), "environment variable of {key}");
        assert_eq!(doc_default, &default.to_string(), "default of {key}");
    }
    for key in rows.keys() {
        assert!(keys.iter().any(|(k, _)| k == key), "docs/CONFIG.md documents {key}, which the code does not have");
    }
}

#[test]
fn sample_file_has_every_section_and_loads() {
    let path = repo_root().join("switchyard.toml");
    let text = std::fs::read_to_string(&path).expect("switchyard.toml");
    let table: toml::Table = text.parse().expect("sample parses");
    let sections: std::collections::BTreeSet<String> =
        documented_keys().into_iter().map(|(k, _)| k.split_once('.').unwrap().0.to_string()).collect();
    for section in &sections {
        assert!(table.contains_key(section), "switchyard.toml lacks [{section}]");
    }
    let config = Loader::new().file(Some(&path)).load().expect("sample loads");
    assert_eq!(config, Config::default(), "the sample shows the defaults");
}

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Only what the test sets: the machine's own PORT or REDIS_URL must not leak in.
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start switchyard");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchyard {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn printed(output: &Output) -> Config {
    assert!(output.status.success(), "exit {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("switchyard config prints TOML")
}

#[test]
fn binary_applies_flags_over_environment_over_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    std::fs::write(
        &file,
        "[server]\nport = 4000\nhost = \"127.0.0.1\"\n[engine]\nping_interval_ms = 1000\nping_timeout_ms = 900\n[limits]\nrooms_per_socket = 7\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let config = printed(&switchyard(
        &["--config", file, "--port", "6000", "--set", "limits.rooms_per_socket=9", "config"],
        &[
            ("SWITCHYARD_SERVER_PORT", "5000"),
            ("SWITCHYARD_ENGINE_PING_TIMEOUT_MS", "800"),
            ("SWITCHYARD_LOG_FORMAT", "json"),
        ],
    ));
    assert_eq!(config.server.port, 6000, "flag over environment and file");
    assert_eq!(config.limits.rooms_per_socket, 9, "--set over file");
    assert_eq!(config.engine.ping_timeout_ms, 800, "environment over file");
    assert_eq!(config.engine.ping_interval_ms, 1000, "file over default");
    assert_eq!(config.server.host, "127.0.0.1", "file over default");
    assert_eq!(config.log.format, switchyard::config::LogFormat::Json, "environment over default");
    assert_eq!(config.engine.max_payload, 1_000_000, "default");
    // SWITCHYARD_CONFIG names the file when --config is absent; legacy PORT sits below the new name.
    let config = printed(&switchyard(&["config"], &[("SWITCHYARD_CONFIG", file), ("PORT", "3100")]));
    assert_eq!(config.server.port, 3100, "legacy PORT over file");
    assert_eq!(config.engine.ping_interval_ms, 1000);
    let config = printed(&switchyard(&["config"], &[("PORT", "3100"), ("SWITCHYARD_SERVER_PORT", "3200")]));
    assert_eq!(config.server.port, 3200);
}

#[test]
fn binary_mints_tokens_with_the_secret() {
    let secret = "a secret for switchyard token, 32 bytes or more";
    let output = switchyard(
        &["token", "--sub", "alice", "--rooms", "chat:*,lobby", "--ttl", "2m"],
        &[("SWITCHYARD_AUTH_JWT_SECRET", secret)],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let mut config = Config::default();
    config.auth.jwt.secret = secret.into();
    let verifier = switchyard::auth::Verifier::from_config(&config.auth, &config.rooms).unwrap().unwrap();
    let identity = verifier.verify(&token).expect("a valid token");
    assert_eq!(&*identity.user, "alice");
    assert_eq!(identity.rooms.as_deref().map(<[_]>::len), Some(2));
    let ttl = identity.expires_at.unwrap() - switchyard::auth::unix_now();
    assert!((100..=120).contains(&ttl), "{ttl}");
    let output = switchyard(&["token", "--sub", "alice"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("switchyard token: auth.jwt.secret: not set"));
}

#[test]
fn binary_redacts_secrets_in_the_printed_configuration() {
    let output = switchyard(
        &["config"],
        &[
            ("REDIS_URL", "redis://app:hunter2@127.0.0.1:6379/"),
            ("SWITCHYARD_AUTH_JWT_SECRET", "hunter3-hunter3-hunter3-hunter3-hunter3"),
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("hunter3"), "{text}");
    assert!(text.contains("[auth.jwt]") && text.contains("secret = \"<redacted>\""), "{text}");
    assert!(text.contains("redis://app:<redacted>@127.0.0.1:6379/"), "{text}");
}

/// Arguments, environment, and the message expected on stderr.
type Refusal<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn binary_refuses_invalid_configurations_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "[server]\nprot = 3000\n").unwrap();
    let bad_file = bad_file.to_str().unwrap();
    let cases: Vec<Refusal> = vec![
        (
            vec![],
            vec![("SWITCHYARD_SERVER_PORT", "eighty")],
            "server.port: expected a whole number, got \"eighty\" (from environment)",
        ),
        (vec!["--set", "engine.ping_interval_ms=0"], vec![], "engine.ping_interval_ms: must be greater than 0"),
        (vec!["--set", "server.prot=1"], vec![], "unknown key server.prot (from flags)"),
        (vec!["--set", "log.format=xml"], vec![], "log.format: unknown variant `xml`"),
        (
            vec![],
            vec![("SWITCHYARD_CORS_ORIGINS", "*"), ("SWITCHYARD_CORS_CREDENTIALS", "true")],
            "cors.credentials: any origin",
        ),
        (
            vec![],
            vec![("SWITCHYARD_TLS_CERT_FILE", "cert.pem")],
            "tls.key_file: tls.cert_file and tls.key_file must be set together",
        ),
        (vec![], vec![("REDIS_MODE", "cluster")], "redis.mode: must be \"classic\" or \"sharded\""),
        (vec!["--config", bad_file], vec![], "unknown key server.prot (from file"),
        (
            vec!["--config", "/nonexistent/switchyard.toml"],
            vec![],
            "cannot read configuration file /nonexistent/switchyard.toml",
        ),
        // Key files are read while building, and still refused as configuration.
        (
            vec![],
            vec![("SWITCHYARD_AUTH_JWT_PUBLIC_KEY_FILE", "/nonexistent/jwt.pem")],
            "auth.jwt.public_key_file: /nonexistent/jwt.pem: ",
        ),
        (vec!["--set", "auth.jwt.jwks_file=Cargo.toml"], vec![], "auth.jwt.jwks_file: Cargo.toml: not a JWKS"),
        (vec!["--set", "auth.jwt.secret=short"], vec![], "auth.jwt.secret: must be at least 32 bytes"),
        // The development token endpoint mints with the shared secret: none, no start.
        (
            vec![],
            vec![("SWITCHYARD_AUTH_DEV_TOKEN_ENDPOINT", "true")],
            "auth.dev_token_endpoint: needs auth.jwt.secret",
        ),
    ];
    for (mut args, env, expected) in cases {
        // On port 0 of loopback: a server that wrongly starts collides with nothing, and fails the wait.
        args.extend(["--host", "127.0.0.1", "--port", "0"]);
        let output = switchyard(&args, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(&format!("switchyard: invalid configuration: {expected}")),
            "{args:?} {env:?}: expected {expected:?} in {stderr}"
        );
    }
}

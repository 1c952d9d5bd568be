//! The application's integration tests, built as one test binary: each file of `tests/` is a module
//! here. Twelve binaries each linked the whole server and compiled their own copy of the same generic
//! code (tokio, axum, the fixtures); one binary does that once, which shortens the release build of the
//! test command. nextest still runs every test in its own process.
//!
//! A new test file goes in the list below; [`every_test_file_is_listed`] fails for one that is not
//! (Cargo no longer finds test files by itself: `autotests = false` in Cargo.toml).

macro_rules! test_modules {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*
        /// The modules above, by file name.
        const MODULES: &[&str] = &[$(stringify!($module)),*];
    };
}

// One per line (braces: rustfmt leaves the list as written), so that added files merge cleanly.
test_modules! {
    admin,
    api,
    auth,
    config,
    eio3,
    events,
    history_redis,
    limits,
    metrics,
    presence_redis,
    shutdown,
    tls,
}

#[test]
fn every_test_file_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::path::Path::new(file!()).file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/ is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        let is_module = path.extension().is_some_and(|e| e == "rs") || path.join("mod.rs").is_file();
        if is_module && stem != this && !MODULES.contains(&stem) {
            missing.push(stem.to_string());
        }
    }
    assert!(missing.is_empty(), "test files not in tests/{this}.rs, so never built nor run: {missing:?}");
}

use std::time::Duration;

/// Engine.IO server options; the defaults are those of the Node implementation.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Largest accepted message or polling body (`maxHttpBufferSize`).
    pub max_payload: usize,
    /// Bytes queued for one connection before it is disconnected as too slow.
    pub max_queue_bytes: usize,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    pub allow_upgrades: bool,
    pub cors: Option<CorsConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_queue_bytes: 4 * 1024 * 1024,
            allow_polling: true,
            allow_websocket: true,
            allow_upgrades: true,
            cors: None,
        }
    }
}

/// Cross-origin settings for the polling transport.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Allowed origins; `*` allows any.
    pub origins: Vec<String>,
    pub credentials: bool,
}

impl CorsConfig {
    pub fn any() -> Self {
        Self { origins: vec!["*".into()], credentials: false }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        if self.origins.iter().any(|o| o == "*") {
            return Some(match (self.credentials, origin) {
                (true, Some(o)) => o.to_string(),
                _ => "*".to_string(),
            });
        }
        let origin = origin?;
        self.origins.iter().any(|o| o == origin).then(|| origin.to_string())
    }
}

use crate::recovery::RecoveryConfig;
use std::time::Duration;
use switchyard_engine::EngineConfig;

/// Socket.IO server options; the defaults are those of the Node implementation.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    pub engine: EngineConfig,
    /// Close connections that join no namespace within this time.
    pub connect_timeout: Duration,
    /// Largest number of binary attachments in one packet.
    pub max_attachments: usize,
    /// Connection state recovery; off by default, as in Node.
    pub recovery: Option<RecoveryConfig>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 10,
            recovery: None,
        }
    }
}

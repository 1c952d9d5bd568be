//! A lazily connected Redis link for stores that query Redis now and then (history, presence, admin
//! sessions, Kafka's seen ids): connects on first use, keeps one multiplexed connection, drops it after
//! a connection error so the next call reconnects, and for a while after a failed connect fails calls
//! at once instead of letting each wait for a connect timeout while Redis is away.

use crate::connection::is_connection_error;
use crate::RedisTarget;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError};
use std::time::{Duration, Instant};

/// How long a connect and a reply may take.
#[derive(Debug, Clone, Copy)]
pub struct LinkTimeouts {
    pub connect: Duration,
    pub response: Duration,
    /// After a failed connect, how long calls fail at once before the next attempt.
    pub retry_after: Duration,
}

impl Default for LinkTimeouts {
    fn default() -> Self {
        LinkTimeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(3),
            retry_after: Duration::from_millis(500),
        }
    }
}

/// Why a call on a [`RedisLink`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// Redis cannot be reached (refused, timed out, the connection dropped); the next call reconnects.
    #[error("{0}")]
    Unavailable(String),
    /// Redis answered with an error (a script error, a wrong type): the connection is kept.
    #[error("{0}")]
    Backend(String),
}

impl LinkError {
    fn of(err: &RedisError) -> LinkError {
        if is_connection_error(err) {
            LinkError::Unavailable(err.to_string())
        } else {
            LinkError::Backend(err.to_string())
        }
    }
}

/// A live connection of a [`RedisLink`]; cheap to clone (both kinds multiplex).
#[derive(Clone)]
pub enum LinkConn {
    /// One Redis server.
    Single(MultiplexedConnection),
    /// A Redis Cluster: a pipeline's commands must share a slot.
    Cluster(ClusterConnection),
}

/// See the module docs.
pub struct RedisLink {
    target: RedisTarget,
    timeouts: LinkTimeouts,
    conn: tokio::sync::Mutex<Option<LinkConn>>,
    failed_at: Mutex<Option<Instant>>,
}

impl RedisLink {
    /// A link to `target`; nothing connects until the first call.
    pub fn new(target: RedisTarget, timeouts: LinkTimeouts) -> RedisLink {
        RedisLink { target, timeouts, conn: tokio::sync::Mutex::new(None), failed_at: Mutex::new(None) }
    }

    /// The live connection, connecting first if there is none.
    pub async fn connection(&self) -> Result<LinkConn, LinkError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = &*slot {
            return Ok(conn.clone());
        }
        if self.failed_at.lock().is_some_and(|at| at.elapsed() < self.timeouts.retry_after) {
            return Err(LinkError::Unavailable("Redis unreachable (retrying shortly)".into()));
        }
        let conn = self.connect().await;
        *self.failed_at.lock() = conn.is_err().then(Instant::now);
        let conn = conn.map_err(|e| LinkError::Unavailable(e.to_string()))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<LinkConn, RedisError> {
        let LinkTimeouts { connect, response, .. } = self.timeouts;
        Ok(match &self.target {
            RedisTarget::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response));
                LinkConn::Single(
                    Client::open(url.as_str())?.get_multiplexed_async_connection_with_config(&config).await?,
                )
            }
            RedisTarget::Cluster(nodes) => LinkConn::Cluster(
                ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response)
                    .retries(2)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
        })
    }

    /// Classifies a failed call's error; a connection error drops the connection (the next call
    /// reconnects).
    pub fn failed(&self, err: &RedisError) -> LinkError {
        let error = LinkError::of(err);
        if matches!(error, LinkError::Unavailable(_)) {
            // A call that finds the slot busy is connecting anew already.
            if let Ok(mut slot) = self.conn.try_lock() {
                *slot = None;
            }
        }
        error
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, LinkError> {
        let mut conn = self.connection().await?;
        self.query_on(&mut conn, cmd).await
    }

    /// Runs a pipeline on `conn` (from [`RedisLink::connection`]).
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        conn: &mut LinkConn,
        pipe: &Pipeline,
    ) -> Result<T, LinkError> {
        let reply = match conn {
            LinkConn::Single(c) => pipe.query_async(c).await,
            LinkConn::Cluster(c) => pipe.query_async(c).await,
        };
        reply.map_err(|e| self.failed(&e))
    }

    /// Runs one command on `conn` (from [`RedisLink::connection`]), e.g. one of several sent at once.
    pub async fn query_on<T: FromRedisValue>(&self, conn: &mut LinkConn, cmd: &Cmd) -> Result<T, LinkError> {
        let reply = match conn {
            LinkConn::Single(c) => cmd.query_async(c).await,
            LinkConn::Cluster(c) => cmd.query_async(c).await,
        };
        reply.map_err(|e| self.failed(&e))
    }
}

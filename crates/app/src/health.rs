//! Liveness and readiness: `/healthz` answers while the process serves at all; `/readyz` answers 200
//! only while this node should get new traffic (not while shutting down, not while a configured Redis
//! is unreachable), so a load balancer moves clients elsewhere. `/health` is kept for older probes.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchyard_redis::RedisNode;

/// A part of the server that reports to `/readyz`: whether it lets the node take traffic, and
/// what it shows under its name in the answer (Kafka: its state and spool).
pub type ReadinessPart = Arc<dyn Fn() -> (Result<(), &'static str>, serde_json::Value) + Send + Sync>;

/// What readiness depends on.
#[derive(Default)]
pub struct Health {
    shutting_down: AtomicBool,
    redis: Option<RedisNode>,
    parts: parking_lot::RwLock<Vec<(&'static str, ReadinessPart)>>,
}

impl Health {
    /// Readiness that also follows the link to the cluster's Redis, when there is one.
    pub fn new(redis: Option<RedisNode>) -> Arc<Self> {
        Arc::new(Health { shutting_down: AtomicBool::new(false), redis, parts: Default::default() })
    }

    /// Adds a part reported under `name` in `/readyz`'s answer.
    pub fn add_part(&self, name: &'static str, part: ReadinessPart) {
        self.parts.write().push((name, part));
    }

    /// From now on `/readyz` answers 503.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down() {
            return Err("shutting down");
        }
        if self.redis.as_ref().is_some_and(|node| !node.is_connected()) {
            return Err("redis unreachable");
        }
        for (_, part) in self.parts.read().iter() {
            part().0?;
        }
        Ok(())
    }

    /// The `/readyz` answer: `ready`, `reason` when not, and each part's details under its name.
    pub fn answer(&self) -> (bool, serde_json::Value) {
        let mut body = serde_json::Map::new();
        let ready = self.readiness();
        body.insert("ready".into(), ready.is_ok().into());
        if let Err(reason) = ready {
            body.insert("reason".into(), reason.into());
        }
        for (name, part) in self.parts.read().iter() {
            body.insert((*name).into(), part().1);
        }
        (ready.is_ok(), body.into())
    }

    /// `/healthz`, `/readyz` and `/health`.
    pub fn routes(self: &Arc<Self>) -> Router {
        let health = self.clone();
        Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let (ready, body) = health.answer();
                    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    std::future::ready((status, Json(body)).into_response())
                }),
            )
    }
}

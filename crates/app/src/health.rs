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

/// What readiness depends on.
#[derive(Default)]
pub struct Health {
    shutting_down: AtomicBool,
    redis: Option<RedisNode>,
}

impl Health {
    /// Readiness that also follows the link to the cluster's Redis, when there is one.
    pub fn new(redis: Option<RedisNode>) -> Arc<Self> {
        Arc::new(Health { shutting_down: AtomicBool::new(false), redis })
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
        Ok(())
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
                    let answer = match health.readiness() {
                        Ok(()) => (StatusCode::OK, Json(json!({"ready": true}))),
                        Err(reason) => {
                            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason})))
                        }
                    };
                    std::future::ready(answer.into_response())
                }),
            )
    }
}

//! The web chat served at `/`: the page (assets/, with its own small Socket.IO client). It is a
//! client of the built-in events only (docs/EVENTS.md, [`crate::events`]); the server has no chat
//! code of its own.
//!
//! A token pasted into the page is sent as the handshake's `auth.token`; a development-mode
//! token-minting endpoint, when one is served, is named by the page's `data-token-endpoint`
//! attribute (on `<body>`), and the page then offers to fetch a token from it.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const CHAT_JS: &str = include_str!("../assets/chat.js");
const CHAT_CSS: &str = include_str!("../assets/chat.css");

/// Routes for the page and its assets.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response() }),
        )
        .route(
            "/chat.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHAT_JS).into_response() }),
        )
        .route(
            "/chat.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CHAT_CSS).into_response() }),
        )
}

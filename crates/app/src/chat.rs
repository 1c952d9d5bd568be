//! The web chat served at `/`: the page (assets/, with its own small Socket.IO client). It is a
//! client of the built-in events only (docs/EVENTS.md, [`crate::events`]); the server has no chat
//! code of its own.
//!
//! A token pasted into the page is sent as the handshake's `auth.token`. With
//! `auth.dev_token_endpoint` on, the server also serves the development-mode endpoint
//! [`DEV_TOKEN_PATH`] ([`dev_token_routes`]), which mints a token for any name with
//! `auth.jwt.secret`; the page names it in its `data-token-endpoint` attribute (on `<body>`, set
//! once when the routes are built, empty otherwise), and then offers "Get a token".

use crate::access::is_user_name;
use crate::auth::{mint, TokenRequest, MAX_ROOM_CHARS};
use crate::config::Config;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const CHAT_JS: &str = include_str!("../assets/chat.js");
const CHAT_CSS: &str = include_str!("../assets/chat.css");

/// The attribute of the page's `<body>` that names the token endpoint (empty: none).
const TOKEN_ENDPOINT_ATTRIBUTE: &str = r#"data-token-endpoint="""#;

/// Where the development token endpoint is served, when `auth.dev_token_endpoint` is on.
pub const DEV_TOKEN_PATH: &str = "/dev/token";
/// The lifetime of a token from the development endpoint.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The room patterns of a development token when the request names none: every room (but other
/// users' `user:` rooms, which only their user may join).
pub const DEV_TOKEN_DEFAULT_ROOMS: &[&str] = &["*"];
/// The most room patterns a development token request may list.
pub const MAX_DEV_TOKEN_ROOMS: usize = 32;
/// The largest development token request body, in bytes.
const MAX_DEV_TOKEN_BODY: usize = 8 * 1024;

/// The page's HTML: `index.html` with `token_endpoint`, if any, in its `data-token-endpoint`.
pub fn index_html(token_endpoint: Option<&str>) -> String {
    match token_endpoint {
        Some(path) => INDEX_HTML.replacen(TOKEN_ENDPOINT_ATTRIBUTE, &format!(r#"data-token-endpoint="{path}""#), 1),
        None => INDEX_HTML.to_string(),
    }
}

/// Routes for the page and its assets. `token_endpoint` is the path of the development token
/// endpoint when it is served; the page is built once, here.
pub fn routes(token_endpoint: Option<&str>) -> Router {
    let page = Bytes::from(index_html(token_endpoint));
    Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response() }
            }),
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

/// The body of `POST /dev/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenRequest {
    sub: String,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// `POST /dev/token` (development only, `auth.dev_token_endpoint`): `{"sub": name, "rooms": [...]}`
/// → `{"token": "..."}`, an HS256 token from [`mint`] valid for [`DEV_TOKEN_TTL`]. Anyone who can
/// reach the server can mint a token for any user with it.
pub fn dev_token_routes(config: &Config) -> Router {
    let config = Arc::new(config.clone());
    Router::new().route(
        DEV_TOKEN_PATH,
        post(move |request: Request| {
            let config = config.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = match axum::body::to_bytes(body, MAX_DEV_TOKEN_BODY).await {
                    Ok(body) => body,
                    Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large (at most 8 KiB)"),
                };
                dev_token(&config, &parts.headers, &body)
            }
        }),
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(json!({"error": message}))).into_response()
}

fn dev_token(config: &Config, headers: &HeaderMap, body: &[u8]) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return error(StatusCode::BAD_REQUEST, "content-type must be application/json");
    }
    let request: DevTokenRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid json: {e}")),
    };
    if !is_user_name(&request.sub) {
        return error(
            StatusCode::BAD_REQUEST,
            "sub: must be 1 to 64 bytes, without control characters or leading or trailing spaces",
        );
    }
    let rooms = match request.rooms {
        None => DEV_TOKEN_DEFAULT_ROOMS.iter().map(|r| r.to_string()).collect(),
        Some(rooms) => {
            if rooms.is_empty() || rooms.len() > MAX_DEV_TOKEN_ROOMS {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("rooms: must list 1 to {MAX_DEV_TOKEN_ROOMS} room patterns"),
                );
            }
            let usable =
                |r: &String| !r.is_empty() && r.chars().count() <= MAX_ROOM_CHARS && !r.chars().any(char::is_control);
            if !rooms.iter().all(usable) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "rooms: each pattern must be 1 to {MAX_ROOM_CHARS} characters, without control characters"
                    ),
                );
            }
            rooms
        }
    };
    let request = TokenRequest { sub: request.sub, rooms, publish: Vec::new(), ttl: DEV_TOKEN_TTL };
    match mint(config, &request) {
        Ok(token) => {
            tracing::info!(user = %request.sub, "development token minted");
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(json!({"token": token}))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "development token not minted");
            error(StatusCode::INTERNAL_SERVER_ERROR, "cannot mint a token")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_token_endpoint_only_when_given_one() {
        assert_eq!(INDEX_HTML.matches(TOKEN_ENDPOINT_ATTRIBUTE).count(), 1, "the page has one empty attribute");
        assert_eq!(index_html(None), INDEX_HTML);
        let page = index_html(Some(DEV_TOKEN_PATH));
        assert!(page.contains(r#"<body data-token-endpoint="/dev/token">"#), "{page}");
        assert!(!page.contains(TOKEN_ENDPOINT_ATTRIBUTE));
    }
}

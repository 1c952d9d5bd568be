//! The admin UI's built files (`ui/dist` of the npm package `@socket.io/admin-ui`), served from
//! `admin.ui_dir` at `/admin/` on the server's own port, so the UI needs no CORS. The repository ships
//! no copy: docs/ADMIN.md says how to get them.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where the UI is served.
pub const UI_PATH: &str = "/admin/";

/// Why `admin.ui_dir` cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("admin.ui_dir: {dir}: {reason}")]
pub struct UiDirError {
    dir: String,
    reason: String,
}

/// Checks that `dir` holds the UI (an `index.html`).
pub fn check_dir(dir: &str) -> Result<PathBuf, UiDirError> {
    let root = PathBuf::from(dir);
    let index = root.join("index.html");
    if !index.is_file() {
        return Err(UiDirError {
            dir: dir.to_string(),
            reason: "no index.html there (point it at the ui/dist directory of @socket.io/admin-ui)".into(),
        });
    }
    Ok(root)
}

/// The routes `/admin`, `/admin/` and `/admin/{file}` over the files of `root`.
pub fn routes(root: PathBuf) -> Router {
    let root = Arc::new(root);
    Router::new()
        // The UI's assets are relative (`./js/...`): the page must end with a slash.
        .route("/admin", get(|| async { Redirect::permanent(UI_PATH) }))
        .route("/admin/", get(|State(root): State<Arc<PathBuf>>| async move { serve(&root, "index.html").await }))
        .route(
            "/admin/{*file}",
            get(|State(root): State<Arc<PathBuf>>, UrlPath(file): UrlPath<String>| async move {
                serve(&root, &file).await
            }),
        )
        .with_state(root)
}

/// A file below `root`, or 404. Only plain path segments are accepted (no `..`, no absolute path).
async fn serve(root: &Path, file: &str) -> Response {
    let relative = Path::new(file);
    if file.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(root.join(relative)).await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
            response
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_files_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>ui</html>").unwrap();
        std::fs::create_dir(dir.path().join("js")).unwrap();
        std::fs::write(dir.path().join("js/app.js"), "1").unwrap();
        assert!(check_dir("/nonexistent-ui-dir").is_err());
        let root = check_dir(dir.path().to_str().unwrap()).unwrap();
        let app = routes(root);
        let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(get("/admin/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let res = app.clone().oneshot(get("/admin/js/app.js")).await.unwrap();
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        let res = app.clone().oneshot(get("/admin")).await.unwrap();
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        for uri in ["/admin/../Cargo.toml", "/admin/%2e%2e/x", "/admin/missing.js"] {
            let res = app.clone().oneshot(get(uri)).await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{uri}");
        }
    }
}

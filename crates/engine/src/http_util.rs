//! Small HTTP helpers: the Engine.IO error bodies, CORS headers and query parsing.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// Engine.IO's documented HTTP errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EngineError {
    pub fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

pub fn error_response(error: EngineError, cors: Option<&str>) -> Response<Body> {
    let status = if error == EngineError::Forbidden { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
    let body = format!("{{\"code\":{},\"message\":\"{}\"}}", error as u8, error.message());
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_cors(&mut res, cors);
    res
}

/// A handshake refused by the per-IP handshake rate.
pub fn too_many_handshakes(cors: Option<&str>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(br#"{"code":3,"message":"Too many handshakes"}"#)));
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    add_cors(&mut res, cors);
    res
}

pub fn status_response(status: StatusCode, cors: Option<&str>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    add_cors(&mut res, cors);
    res
}

pub fn text_response(body: Bytes, content_type: &'static str, cors: Option<&str>) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    add_cors(&mut res, cors);
    res
}

pub fn add_cors(res: &mut Response<Body>, allow_origin: Option<&str>) {
    let Some(origin) = allow_origin else { return };
    if let Ok(value) = HeaderValue::from_str(origin) {
        let headers = res.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if origin != "*" {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// The three query parameters the engine reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EngineQuery<'a> {
    pub eio: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub sid: Option<&'a str>,
    /// `b64` with a value (Engine.IO v3): the client cannot read binary polling responses.
    pub b64: bool,
}

impl<'a> EngineQuery<'a> {
    pub fn parse(query: Option<&'a str>) -> Self {
        let mut out = EngineQuery::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => out.eio = Some(value),
                "transport" => out.transport = Some(value),
                "sid" => out.sid = Some(value),
                "b64" => out.b64 = !value.is_empty(),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_query() {
        let q = EngineQuery::parse(Some("EIO=4&transport=polling&t=abc&sid=xyz"));
        assert_eq!(q, EngineQuery { eio: Some("4"), transport: Some("polling"), sid: Some("xyz"), b64: false });
        assert!(EngineQuery::parse(Some("EIO=3&transport=polling&b64=1")).b64);
        assert_eq!(EngineQuery::parse(None), EngineQuery::default());
    }

    #[test]
    fn error_bodies_match_engine_io() {
        let res = error_response(EngineError::UnknownSid, Some("*"));
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let res = error_response(EngineError::Forbidden, None);
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
}

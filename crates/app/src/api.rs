//! The HTTP API on the server's own port (`/api/...`, docs/API.md): backends push events to clients
//! and manage rooms and sockets across the whole cluster, without writing a Socket.IO handler.
//!
//! # Layout
//! - [`ENDPOINTS`]: one typed descriptor per route (method, path, parameters, request and response
//!   schemas, the errors it can answer, its handler). [`Api::routes`] registers exactly these, and
//!   [`openapi`] builds the OpenAPI 3 document (`GET /api/openapi.json`) from the same table, so the
//!   document cannot list a route, parameter or error the code does not have.
//! - [`ErrorKind`]: every error the API answers, with its fixed string and status (`{"error": ...}`).
//! - The request pipeline ([`Api::call`]): rate limit per client IP (429), the bearer key compared in
//!   constant time (401), the body bounded by `api.max_body_bytes` (413), then the handler; every
//!   answer is counted in `switchyard_api_requests_total{route, method, status}`.
//!
//! Every operation goes through the namespace's adapter, so with Redis it reaches every node of the
//! cluster, Node socket.io servers with `@socket.io/redis-adapter` included: `emit` is a broadcast,
//! `rooms` and `sockets` are fetch-sockets requests, `join`/`leave`/`disconnect` are the remote
//! `socketsJoin`/`socketsLeave`/`disconnectSockets`. The API acts as the server itself: the room
//! access policy of [`crate::access`] applies to clients, not to it.
//!
//! Without `api.key` the API is off: every `/api` path answers 404 and nothing here runs.

use crate::config::ApiConfig;
use crate::history::{History, ReadOptions};
use crate::presence::Presence;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, on, MethodFilter, MethodRouter};
use axum::Router;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use switchyard_engine::limits::{monotonic_nanos, LogThrottle};
use switchyard_engine::{HandshakeLimiter, RemoteAddr};
use switchyard_socketio::{Namespace, Payload, Room, SocketInfo, SocketIo};

/// Event names a client library reserves for itself; `POST /api/emit` refuses them (as Node's
/// `socket.emit` throws on them).
pub const RESERVED_EVENTS: &[&str] =
    &["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// The namespace an operation addresses when the request names none.
pub const DEFAULT_NAMESPACE: &str = "/";

/// The `route` label of requests that matched no route.
pub const OTHER_ROUTE: &str = "other";

// ---- errors ------------------------------------------------------------------------------------------

/// Every error the API answers: a fixed string (`{"error": "<string>"}`) and a status. Some add a
/// `detail` with the underlying reason (the JSON parser's message, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// 400: the body is not JSON, or not the shape the operation takes (a field of the wrong type,
    /// an unknown field).
    InvalidJson,
    /// 400: the query string cannot be decoded.
    InvalidQuery,
    /// 400: a path segment is not valid percent-encoded UTF-8.
    InvalidPath,
    /// 400: `event` is absent or empty.
    MissingEvent,
    /// 400: `event` is one of [`RESERVED_EVENTS`].
    ReservedEvent,
    /// 400: `room` is absent or empty.
    MissingRoom,
    /// 400: an empty room name in `rooms` or `except`.
    InvalidRoom,
    /// 400: a namespace that does not start with `/`.
    InvalidNamespace,
    /// 401: no `Authorization: Bearer` header, or not the configured key.
    Unauthorized,
    /// 404: no such route (also every `/api` path while the API is off).
    NotFound,
    /// 404: the namespace does not exist on this server.
    NamespaceNotFound,
    /// 404: no socket with that id in the namespace, on any node.
    SocketNotFound,
    /// 405: the route exists, not with this method (the `Allow` header lists the one it has).
    MethodNotAllowed,
    /// 413: the body is larger than `api.max_body_bytes`.
    BodyTooLarge,
    /// 429: more requests from this client IP than `api.requests_per_second` (`Retry-After: 1`).
    RateLimited,
    /// 501: presence is off on this server (`events.enabled` or `presence.enabled` is false).
    PresenceUnavailable,
    /// 503: a cluster request failed (Redis unreachable, or a node did not answer in time).
    ClusterUnavailable,
    /// 501: message history is off on this server (`history.enabled` is false).
    HistoryUnavailable,
    /// 503: the history store could not be read (Redis unreachable, a disk error).
    StoreUnavailable,
}

impl ErrorKind {
    /// Every kind, in the order docs/API.md lists them.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidJson,
        ErrorKind::InvalidQuery,
        ErrorKind::InvalidPath,
        ErrorKind::MissingEvent,
        ErrorKind::ReservedEvent,
        ErrorKind::MissingRoom,
        ErrorKind::InvalidRoom,
        ErrorKind::InvalidNamespace,
        ErrorKind::Unauthorized,
        ErrorKind::NotFound,
        ErrorKind::NamespaceNotFound,
        ErrorKind::SocketNotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::BodyTooLarge,
        ErrorKind::RateLimited,
        ErrorKind::PresenceUnavailable,
        ErrorKind::ClusterUnavailable,
        ErrorKind::HistoryUnavailable,
        ErrorKind::StoreUnavailable,
    ];

    /// The `error` string of the answer.
    pub fn message(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid json",
            ErrorKind::InvalidQuery => "invalid query",
            ErrorKind::InvalidPath => "invalid path",
            ErrorKind::MissingEvent => "missing event",
            ErrorKind::ReservedEvent => "reserved event",
            ErrorKind::MissingRoom => "missing room",
            ErrorKind::InvalidRoom => "invalid room",
            ErrorKind::InvalidNamespace => "invalid namespace",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not found",
            ErrorKind::NamespaceNotFound => "namespace not found",
            ErrorKind::SocketNotFound => "socket not found",
            ErrorKind::MethodNotAllowed => "method not allowed",
            ErrorKind::BodyTooLarge => "body too large",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::PresenceUnavailable => "presence not available",
            ErrorKind::ClusterUnavailable => "cluster unavailable",
            ErrorKind::HistoryUnavailable => "history not available",
            ErrorKind::StoreUnavailable => "store unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidJson
            | ErrorKind::InvalidQuery
            | ErrorKind::InvalidPath
            | ErrorKind::MissingEvent
            | ErrorKind::ReservedEvent
            | ErrorKind::MissingRoom
            | ErrorKind::InvalidRoom
            | ErrorKind::InvalidNamespace => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound | ErrorKind::NamespaceNotFound | ErrorKind::SocketNotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::PresenceUnavailable | ErrorKind::HistoryUnavailable => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::ClusterUnavailable | ErrorKind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answer: its kind and, for some kinds, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind) -> Self {
        ApiError { kind, detail: None }
    }

    pub fn with_detail(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ApiError { kind, detail: Some(detail.into()) }
    }

    /// `{"error": "...", "detail": "..."}` (no `detail` when there is none).
    pub fn body(&self) -> Value {
        match &self.detail {
            Some(detail) => json!({"error": self.kind.message(), "detail": detail}),
            None => json!({"error": self.kind.message()}),
        }
    }
}

impl From<ErrorKind> for ApiError {
    fn from(kind: ErrorKind) -> Self {
        ApiError::new(kind)
    }
}

// ---- endpoint descriptors ----------------------------------------------------------------------------

/// Where a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    Path,
    Query,
}

/// A path or query parameter of an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub location: ParamIn,
    pub description: &'static str,
    /// The parameter's JSON schema in the OpenAPI document.
    pub schema: fn() -> Value,
}

/// What a handler gets: the decoded path parameters, the `namespace` query parameter and the body.
#[derive(Debug, Default)]
pub struct Call {
    pub params: HashMap<String, String>,
    pub namespace: Option<String>,
    pub body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or_default()
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send>>;
type Handler = fn(Arc<Api>, Call) -> Reply;

/// One route of the API, as registered and as documented.
pub struct Endpoint {
    pub method: Method,
    /// The route, with `{name}` for path parameters (the syntax of both axum and OpenAPI).
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    /// The JSON schema of the body, and whether a body is required.
    pub body: Option<(fn() -> Value, bool)>,
    /// The JSON schema of the 200 answer.
    pub response: fn() -> Value,
    /// What this endpoint can answer besides 200 and the errors every endpoint can give
    /// ([`COMMON_ERRORS`], and [`BODY_ERRORS`] when it takes a body).
    pub errors: &'static [ErrorKind],
    /// Operations whose parameter comes from this one's answer (OpenAPI links, which property-based
    /// testers follow to reach real rooms and sockets).
    pub links: &'static [Link],
    handler: Handler,
}

/// An OpenAPI link: `operation_id`'s path parameter `parameter` is `expression` of this answer.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub operation_id: &'static str,
    pub parameter: &'static str,
    pub expression: &'static str,
}

const FIRST_ROOM: &str = "$response.body#/rooms/0/room";
const FIRST_SOCKET: &str = "$response.body#/sockets/0/id";

/// Errors every endpoint can answer.
pub const COMMON_ERRORS: &[ErrorKind] = &[ErrorKind::Unauthorized, ErrorKind::RateLimited];
/// Errors every endpoint with a body can answer.
pub const BODY_ERRORS: &[ErrorKind] = &[ErrorKind::InvalidJson, ErrorKind::BodyTooLarge];
/// What a read about one room of a namespace, gathered across the cluster, can answer.
const ROOM_QUERY_ERRORS: &[ErrorKind] = &[
    ErrorKind::InvalidQuery,
    ErrorKind::InvalidPath,
    ErrorKind::InvalidNamespace,
    ErrorKind::NotFound,
    ErrorKind::NamespaceNotFound,
    ErrorKind::ClusterUnavailable,
];
const PRESENCE_ERRORS: [ErrorKind; 7] = with(ROOM_QUERY_ERRORS, ErrorKind::PresenceUnavailable);
/// What an operation on one socket, wherever it is, can answer.
const SOCKET_ERRORS: &[ErrorKind] = &[
    ErrorKind::InvalidPath,
    ErrorKind::InvalidNamespace,
    ErrorKind::NotFound,
    ErrorKind::NamespaceNotFound,
    ErrorKind::SocketNotFound,
    ErrorKind::ClusterUnavailable,
];
/// `join` and `leave`: a socket operation whose body names a room.
const ROOM_CHANGE_ERRORS: [ErrorKind; 7] = with(SOCKET_ERRORS, ErrorKind::MissingRoom);

/// `errors` and `extra` (`N` is one more than `errors` holds; order does not matter, see
/// [`Endpoint::all_errors`]).
const fn with<const N: usize>(errors: &[ErrorKind], extra: ErrorKind) -> [ErrorKind; N] {
    assert!(errors.len() + 1 == N);
    let mut all = [extra; N];
    let mut i = 0;
    while i < errors.len() {
        all[i] = errors[i];
        i += 1;
    }
    all
}

const NAMESPACE_QUERY: Param = Param {
    name: "namespace",
    location: ParamIn::Query,
    description: "The namespace, `/` when absent.",
    schema: namespace_schema,
};
const ROOM_PATH: Param =
    Param { name: "room", location: ParamIn::Path, description: "The room's name.", schema: path_schema };
const SOCKET_PATH: Param =
    Param { name: "id", location: ParamIn::Path, description: "The socket's id.", schema: path_schema };
const SINCE_QUERY: Param = Param {
    name: "since",
    location: ParamIn::Query,
    description: "A message id: only the messages after it (absent, or an id the room no longer holds: from the \
                  oldest kept).",
    schema: since_schema,
};
const LIMIT_QUERY: Param = Param {
    name: "limit",
    location: ParamIn::Query,
    description: "The most messages to return (default 50).",
    schema: limit_schema,
};

/// Every route of the API.
pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::POST,
        path: "/api/emit",
        operation_id: "emit",
        summary: "Emit an event to clients on every node",
        description: "Broadcasts `event` with `data` as its one argument (no argument without `data`) to the \
                      sockets of `namespace` in any of `rooms` (every socket when empty), except those in any of \
                      `except`, on every node of the cluster.",
        params: &[],
        body: Some((emit_schema, true)),
        response: ok_schema,
        errors: &[
            ErrorKind::MissingEvent,
            ErrorKind::ReservedEvent,
            ErrorKind::InvalidRoom,
            ErrorKind::InvalidNamespace,
            ErrorKind::NamespaceNotFound,
        ],
        links: &[],
        handler: emit,
    },
    Endpoint {
        method: Method::GET,
        path: "/api/rooms",
        operation_id: "listRooms",
        summary: "Rooms across the cluster, with their member counts",
        description: "Every room with at least one socket on any node (not counting each socket's own room), \
                      sorted by name.",
        params: &[NAMESPACE_QUERY],
        body: None,
        response: rooms_schema,
        errors: &[
            ErrorKind::InvalidQuery,
            ErrorKind::InvalidNamespace,
            ErrorKind::NamespaceNotFound,
            ErrorKind::ClusterUnavailable,
        ],
        links: &[Link { operation_id: "roomSockets", parameter: "room", expression: FIRST_ROOM }],
        handler: list_rooms,
    },
    Endpoint {
        method: Method::GET,
        path: "/api/rooms/{room}/sockets",
        operation_id: "roomSockets",
        summary: "Sockets in a room across the cluster",
        description: "Every socket in the room on any node, sorted by id: its id, its rooms (without its own) and \
                      its `data`.",
        params: &[ROOM_PATH, NAMESPACE_QUERY],
        body: None,
        response: sockets_schema,
        errors: ROOM_QUERY_ERRORS,
        links: &[
            Link { operation_id: "disconnectSocket", parameter: "id", expression: FIRST_SOCKET },
            Link { operation_id: "joinRoom", parameter: "id", expression: FIRST_SOCKET },
            Link { operation_id: "leaveRoom", parameter: "id", expression: FIRST_SOCKET },
        ],
        handler: room_sockets,
    },
    Endpoint {
        method: Method::GET,
        path: "/api/presence/{room}",
        operation_id: "presence",
        summary: "Users present in a room across the cluster",
        description: "The users (token `sub`, or the handshake's `auth.user` without auth) with at least one \
                      socket in the room on any node, as the `presence` event answers them (docs/EVENTS.md). \
                      501 when presence is off.",
        params: &[ROOM_PATH, NAMESPACE_QUERY],
        body: None,
        response: presence_schema,
        errors: &PRESENCE_ERRORS,
        links: &[],
        handler: presence,
    },
    Endpoint {
        method: Method::GET,
        path: "/api/rooms/{room}/history",
        operation_id: "roomHistory",
        summary: "A room's message history",
        description: "The `message`s the room kept (docs/HISTORY.md), oldest first: at most `limit` after \
                      `since`, and `more` when there are others after them, as the `history` event answers them. \
                      Rooms are those of the main namespace `/`. 501 when history is off.",
        params: &[ROOM_PATH, SINCE_QUERY, LIMIT_QUERY],
        body: None,
        response: history_schema,
        errors: &[
            ErrorKind::InvalidQuery,
            ErrorKind::InvalidPath,
            ErrorKind::NotFound,
            ErrorKind::HistoryUnavailable,
            ErrorKind::StoreUnavailable,
        ],
        links: &[],
        handler: room_history,
    },
    Endpoint {
        method: Method::POST,
        path: "/api/sockets/{id}/disconnect",
        operation_id: "disconnectSocket",
        summary: "Disconnect a socket, on whichever node it is",
        description: "Disconnects the socket from its namespace (the client sees `io server disconnect`); with \
                      `close: true`, closes its whole connection. The body is optional.",
        params: &[SOCKET_PATH],
        body: Some((disconnect_schema, false)),
        response: ok_schema,
        errors: SOCKET_ERRORS,
        links: &[],
        handler: disconnect_socket,
    },
    Endpoint {
        method: Method::POST,
        path: "/api/sockets/{id}/join",
        operation_id: "joinRoom",
        summary: "Make a socket join a room, on whichever node it is",
        description: "The socket joins `room` (skipped when it is in `limits.rooms_per_socket` rooms already).",
        params: &[SOCKET_PATH],
        body: Some((room_schema, true)),
        response: ok_schema,
        errors: &ROOM_CHANGE_ERRORS,
        links: &[],
        handler: join_room,
    },
    Endpoint {
        method: Method::POST,
        path: "/api/sockets/{id}/leave",
        operation_id: "leaveRoom",
        summary: "Make a socket leave a room, on whichever node it is",
        description: "The socket leaves `room`.",
        params: &[SOCKET_PATH],
        body: Some((room_schema, true)),
        response: ok_schema,
        errors: &ROOM_CHANGE_ERRORS,
        links: &[],
        handler: leave_room,
    },
];

impl Endpoint {
    /// Every error this endpoint can answer, sorted.
    pub fn all_errors(&self) -> Vec<ErrorKind> {
        let mut all: Vec<ErrorKind> = COMMON_ERRORS.to_vec();
        if self.body.is_some() {
            all.extend_from_slice(BODY_ERRORS);
        }
        all.extend_from_slice(self.errors);
        all.sort();
        all.dedup();
        all
    }
}

// ---- request bodies and their schemas ---------------------------------------------------------------

/// `POST /api/emit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitRequest {
    #[serde(default)]
    pub rooms: Vec<String>,
    #[serde(default)]
    pub event: Option<String>,
    /// The event's one argument; absent: no argument (`null` is an argument).
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Value>,
    #[serde(default)]
    pub except: Vec<String>,
    #[serde(default, deserialize_with = "string")]
    pub namespace: Option<String>,
}

/// `POST /api/sockets/{id}/join` and `/leave`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default, deserialize_with = "string")]
    pub namespace: Option<String>,
}

/// `POST /api/sockets/{id}/disconnect` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    #[serde(default, deserialize_with = "string")]
    pub namespace: Option<String>,
    /// Close the client's whole connection, not only this namespace.
    #[serde(default)]
    pub close: bool,
}

/// `{"namespace": ...}` in the query string.
#[derive(Debug, Default, Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
    since: Option<String>,
    limit: Option<u64>,
}

/// A field that, when present, must be a string (`null` is refused, as the schema says).
fn string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// A field that is present (even as `null`) deserializes to `Some`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

fn namespace_schema() -> Value {
    json!({"type": "string", "pattern": "^/", "description": "The namespace, `/` when absent.", "example": "/"})
}

fn path_schema() -> Value {
    json!({"type": "string", "minLength": 1})
}

fn since_schema() -> Value {
    json!({"type": "string", "format": "uuid", "description": "A message id.", "example": "01938a5e-7c1a-7f3e-9d2b-5c6f0e1a2b3c"})
}

fn limit_schema() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": crate::history::MAX_LIMIT, "default": crate::history::DEFAULT_LIMIT})
}

fn history_schema() -> Value {
    json!({
        "type": "object",
        "required": ["room", "messages", "more"],
        "properties": {
            "room": {"type": "string"},
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "room", "user", "data", "ts"],
                    "properties": {
                        "id": {"type": "string"},
                        "room": {"type": "string"},
                        "user": {"type": "string"},
                        "data": {"description": "The message's data, as its sender sent it."},
                        "ts": {"type": "integer"},
                    },
                },
            },
            "more": {"type": "boolean", "description": "More messages follow the last one returned."},
        },
    })
}

fn room_name_schema() -> Value {
    json!({"type": "string", "minLength": 1})
}

fn emit_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["event"],
        "properties": {
            "event": {"type": "string", "minLength": 1, "not": {"enum": RESERVED_EVENTS}, "example": "news"},
            "data": {"description": "The event's one argument, any JSON value; absent: no argument."},
            "rooms": {
                "type": "array",
                "items": room_name_schema(),
                "description": "Rooms to reach; empty or absent: every socket.",
            },
            "except": {
                "type": "array",
                "items": room_name_schema(),
                "description": "Sockets in any of these rooms are skipped.",
            },
            "namespace": namespace_schema(),
        },
    })
}

fn room_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["room"],
        "properties": {"room": room_name_schema(), "namespace": namespace_schema()},
    })
}

fn disconnect_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "namespace": namespace_schema(),
            "close": {"type": "boolean", "default": false, "description": "Close the client's whole connection."},
        },
    })
}

fn ok_schema() -> Value {
    json!({
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean", "enum": [true]}},
    })
}

fn rooms_schema() -> Value {
    json!({
        "type": "object",
        "required": ["namespace", "rooms"],
        "properties": {
            "namespace": {"type": "string"},
            "rooms": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["room", "sockets"],
                    "properties": {"room": {"type": "string"}, "sockets": {"type": "integer", "minimum": 1}},
                },
            },
        },
    })
}

/// `{namespace, room, <list>: [items]}`: the answer about one room of a namespace.
fn room_list_schema(list: &str, items: Value) -> Value {
    json!({
        "type": "object",
        "required": ["namespace", "room", list],
        "properties": {
            "namespace": {"type": "string"},
            "room": {"type": "string"},
            list: {"type": "array", "items": items},
        },
    })
}

fn sockets_schema() -> Value {
    room_list_schema(
        "sockets",
        json!({
            "type": "object",
            "required": ["id", "rooms", "data"],
            "properties": {
                "id": {"type": "string"},
                "rooms": {"type": "array", "items": {"type": "string"}},
                "data": {"description": "The socket's `data` (any JSON value)."},
            },
        }),
    )
}

fn presence_schema() -> Value {
    room_list_schema("users", json!({"type": "string"}))
}

/// Parses a JSON body into `T`; an empty body is `{}`.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::with_detail(ErrorKind::InvalidJson, e.to_string()))
}

// ---- the server side ---------------------------------------------------------------------------------

/// The HTTP API of one server.
pub struct Api {
    io: SocketIo,
    key: Box<[u8]>,
    max_body_bytes: usize,
    limiter: Option<HandshakeLimiter>,
    requests: IntCounterVec,
    refusals_log: LogThrottle,
    openapi: Bytes,
    /// Who is in which room (`GET /api/presence/{room}`), when presence is on.
    presence: Option<Arc<Presence>>,
    /// Message history (`GET /api/rooms/{room}/history`), when it is on.
    history: Option<Arc<History>>,
}

impl Api {
    /// The API of `io` as `config` sets it up; `None` when `api.key` is empty (the API is off).
    /// `presence` answers `GET /api/presence/{room}` and `history` `GET /api/rooms/{room}/history`
    /// (501 without them).
    pub fn new(
        io: SocketIo,
        config: &ApiConfig,
        presence: Option<Arc<Presence>>,
        history: Option<Arc<History>>,
    ) -> Option<Arc<Api>> {
        if !config.enabled() {
            return None;
        }
        let requests = IntCounterVec::new(
            Opts::new("switchyard_api_requests_total", "HTTP API requests answered, by route, method and status."),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let limiter = (config.requests_per_second > 0)
            .then(|| HandshakeLimiter::new(config.requests_per_second, HandshakeLimiter::DEFAULT_MAX_ENTRIES));
        let openapi = Bytes::from(serde_json::to_vec_pretty(&openapi()).unwrap_or_default());
        Some(Arc::new(Api {
            io,
            key: config.key.as_bytes().into(),
            max_body_bytes: config.max_body_bytes,
            limiter,
            requests,
            refusals_log: LogThrottle::default(),
            openapi,
            presence,
            history,
        }))
    }

    /// Registers `switchyard_api_requests_total{route, method, status}`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))
    }

    /// Every `/api` route: [`ENDPOINTS`], `/api/openapi.json` and a JSON 404 for any other `/api` path.
    pub fn routes(self: &Arc<Self>) -> Router {
        let mut routes: BTreeMap<&'static str, MethodRouter> = BTreeMap::new();
        for endpoint in ENDPOINTS {
            let handler = self.handler(move |api, request| api.call(Some(endpoint), request));
            let filter = if endpoint.method == Method::POST { MethodFilter::POST } else { MethodFilter::GET };
            let method_router = routes.remove(endpoint.path).unwrap_or_else(MethodRouter::new).on(filter, handler);
            routes.insert(endpoint.path, method_router);
        }
        let mut router = Router::new();
        for (path, method_router) in routes {
            let wrong_method = self.handler(move |api, request| api.wrong_method(path, request));
            router = router.route(path, method_router.fallback(wrong_method));
        }
        let openapi = self.handler(|api, request| async move { api.openapi_document(request) });
        let wrong_openapi_method = self.handler(|api, request| api.wrong_method("/api/openapi.json", request));
        let not_found = self.handler(|api, request| api.call(None, request));
        router
            .route("/api/openapi.json", on(MethodFilter::GET, openapi).fallback(wrong_openapi_method))
            .route("/api", any(not_found.clone()))
            .route("/api/", any(not_found.clone()))
            .route("/api/{*rest}", any(not_found))
    }

    /// An axum handler that gives `answer` this API and the request.
    fn handler<F, Fut>(self: &Arc<Self>, answer: F) -> impl Fn(Request) -> Fut + Clone + Send + Sync + 'static
    where
        F: Fn(Arc<Api>, Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let api = self.clone();
        move |request| answer(api.clone(), request)
    }

    /// One request to `endpoint` (`None`: a path no route matched).
    async fn call(self: Arc<Self>, endpoint: Option<&'static Endpoint>, request: Request) -> Response {
        let route = endpoint.map_or(OTHER_ROUTE, |e| e.path);
        let method = request.method().clone();
        let answer = match self.admit(&request) {
            Err(e) => Err(e),
            Ok(()) => match endpoint {
                None => Err(ApiError::new(ErrorKind::NotFound)),
                Some(endpoint) => match self.prepare(endpoint, request).await {
                    Ok(call) => (endpoint.handler)(self.clone(), call).await,
                    Err(e) => Err(e),
                },
            },
        };
        self.answer(route, &method, answer)
    }

    /// A known route with a method it does not have.
    async fn wrong_method(self: Arc<Self>, path: &'static str, request: Request) -> Response {
        let method = request.method().clone();
        let answer = self.admit(&request).and(Err(ApiError::new(ErrorKind::MethodNotAllowed)));
        let mut response = self.answer(path, &method, answer);
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            let mut allowed: Vec<&str> =
                ENDPOINTS.iter().filter(|e| e.path == path).map(|e| e.method.as_str()).collect();
            if allowed.is_empty() {
                // `/api/openapi.json`, the one route outside the table.
                allowed.push("GET");
            }
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(ALLOW, value);
            }
        }
        response
    }

    /// `GET /api/openapi.json`: rate limited, not authenticated (it holds no secret).
    fn openapi_document(&self, request: Request) -> Response {
        if let Err(e) = self.rate_limit(&request) {
            return self.answer("/api/openapi.json", &Method::GET, Err(e));
        }
        self.count("/api/openapi.json", &Method::GET, StatusCode::OK);
        ([(CONTENT_TYPE, "application/json")], self.openapi.clone()).into_response()
    }

    /// The rate limit, then the key.
    fn admit(&self, request: &Request) -> Result<(), ApiError> {
        self.rate_limit(request)?;
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim().as_bytes())
            .unwrap_or_default();
        if constant_time_eq(&self.key, given) {
            Ok(())
        } else {
            tracing::debug!(address = ?client_ip(request), "api request refused: unauthorized");
            Err(ApiError::new(ErrorKind::Unauthorized))
        }
    }

    fn rate_limit(&self, request: &Request) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let ip = client_ip(request);
        if limiter.check(ip, monotonic_nanos()) {
            return Ok(());
        }
        if self.refusals_log.ready() {
            tracing::info!(address = %ip, "api requests refused: rate limited (further ones for 10 s at debug)");
        } else {
            tracing::debug!(address = %ip, "api request refused: rate limited");
        }
        Err(ApiError::new(ErrorKind::RateLimited))
    }

    /// Decodes the path parameters, the query and (for a POST) the bounded body.
    async fn prepare(&self, endpoint: &Endpoint, request: Request) -> Result<Call, ApiError> {
        let (mut parts, body) = request.into_parts();
        let mut call = Call::default();
        if endpoint.params.iter().any(|p| p.location == ParamIn::Path) {
            let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(&mut parts, &())
                .await
                .map_err(|e| ApiError::with_detail(ErrorKind::InvalidPath, e.body_text()))?;
            call.params = params.into_iter().collect();
        }
        if endpoint.params.iter().any(|p| p.location == ParamIn::Query) {
            let Query(query) = Query::<NamespaceQuery>::try_from_uri(&parts.uri)
                .map_err(|e| ApiError::with_detail(ErrorKind::InvalidQuery, e.body_text()))?;
            call.namespace = query.namespace;
            if let Some(since) = query.since {
                call.params.insert("since".into(), since);
            }
            if let Some(limit) = query.limit {
                call.params.insert("limit".into(), limit.to_string());
            }
        }
        if endpoint.body.is_some() {
            let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
                return Err(ApiError::new(ErrorKind::BodyTooLarge));
            }
            call.body = read_body(body, self.max_body_bytes).await?;
        }
        Ok(call)
    }

    fn answer(&self, route: &str, method: &Method, answer: Result<Value, ApiError>) -> Response {
        let (status, body) = match answer {
            Ok(value) => (StatusCode::OK, value),
            Err(e) => (e.kind.status(), e.body()),
        };
        self.count(route, method, status);
        let mut response = (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        match status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }

    fn count(&self, route: &str, method: &Method, status: StatusCode) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::HEAD => "HEAD",
            _ => "other",
        };
        self.requests.with_label_values(&[route, method, status.as_str()]).inc();
    }

    /// The namespace `name` (default `/`) if it exists on this server. It is never created here:
    /// a request must not make namespaces appear.
    fn namespace(&self, name: Option<&str>) -> Result<Arc<Namespace>, ApiError> {
        let name = name.unwrap_or(DEFAULT_NAMESPACE);
        if !name.starts_with('/') {
            return Err(ApiError::new(ErrorKind::InvalidNamespace));
        }
        self.io
            .namespaces()
            .into_iter()
            .find(|ns| ns.name() == name)
            .ok_or_else(|| ApiError::new(ErrorKind::NamespaceNotFound))
    }
}

/// Reads at most `limit` bytes of `body`.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
            let mut too_large = false;
            while let Some(cause) = source {
                too_large |= cause.is::<http_body_util::LengthLimitError>();
                source = cause.source();
            }
            if too_large {
                Err(ApiError::new(ErrorKind::BodyTooLarge))
            } else {
                Err(ApiError::with_detail(ErrorKind::InvalidJson, format!("reading the body: {e}")))
            }
        }
    }
}

/// The client's IP as the accept loop saw it (the TCP peer; behind a proxy, the proxy's).
fn client_ip(request: &Request) -> IpAddr {
    request.extensions().get::<RemoteAddr>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip())
}

/// Compares the configured key with a given one in time that depends only on the configured key's
/// length (not on where the two differ, nor on the given one's length).
pub fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let mut same = (expected.len() as u64).ct_eq(&(given.len() as u64));
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        same &= byte.ct_eq(&other);
    }
    bool::from(same)
}

/// The `/api` routes of a server whose API is off: 404 for every `/api` path.
pub fn disabled_routes() -> Router {
    let not_found = || async { (StatusCode::NOT_FOUND, axum::Json(ApiError::new(ErrorKind::NotFound).body())) };
    Router::new().route("/api", any(not_found)).route("/api/", any(not_found)).route("/api/{*rest}", any(not_found))
}

// ---- handlers ----------------------------------------------------------------------------------------

fn non_empty(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.is_empty())
}

/// Sockets in `room` (a socket id is a room too) across the cluster.
async fn fetch(ns: &Arc<Namespace>, room: Option<&str>) -> Result<Vec<SocketInfo>, ApiError> {
    let operator = match room {
        Some(room) => ns.to(room),
        None => ns.broadcast(),
    };
    operator.fetch_sockets().await.map_err(|e| ApiError::with_detail(ErrorKind::ClusterUnavailable, e.to_string()))
}

/// The socket `id` exists in `ns` on some node.
async fn find_socket(ns: &Arc<Namespace>, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::new(ErrorKind::SocketNotFound));
    }
    // The socket's own room holds it alone; the id check keeps a room that is not a socket's id
    // (`lobby`, say) from passing for one.
    let found = fetch(ns, Some(id)).await?.iter().any(|s| s.id == id);
    if found {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::SocketNotFound))
    }
}

fn emit(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let request: EmitRequest = parse_body(&call.body)?;
        let event = non_empty(request.event).ok_or_else(|| ApiError::new(ErrorKind::MissingEvent))?;
        if RESERVED_EVENTS.contains(&event.as_str()) {
            return Err(ApiError::new(ErrorKind::ReservedEvent));
        }
        if request.rooms.iter().chain(&request.except).any(String::is_empty) {
            return Err(ApiError::new(ErrorKind::InvalidRoom));
        }
        let ns = api.namespace(request.namespace.as_deref())?;
        let mut operator = ns.broadcast().to_many(request.rooms.iter().map(|r| Room::from(r.as_str())));
        for room in &request.except {
            operator = operator.except(room.as_str());
        }
        let payload = match request.data {
            Some(data) => Payload::new(vec![data]),
            None => Payload::empty(),
        };
        operator.emit(&event, payload);
        Ok(json!({"ok": true}))
    })
}

fn list_rooms(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let ns = api.namespace(call.namespace.as_deref())?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for socket in fetch(&ns, None).await? {
            for room in socket.rooms.into_iter().filter(|r| *r != socket.id) {
                *counts.entry(room).or_default() += 1;
            }
        }
        let rooms: Vec<Value> = counts.into_iter().map(|(room, n)| json!({"room": room, "sockets": n})).collect();
        Ok(json!({"namespace": ns.name(), "rooms": rooms}))
    })
}

fn room_sockets(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let ns = api.namespace(call.namespace.as_deref())?;
        let room = call.param("room").to_string();
        let mut sockets = fetch(&ns, Some(&room)).await?;
        sockets.sort_by(|a, b| a.id.cmp(&b.id));
        let sockets: Vec<Value> = sockets
            .into_iter()
            .map(|s| {
                let rooms: Vec<&String> = s.rooms.iter().filter(|r| **r != s.id).collect();
                json!({"id": s.id, "rooms": rooms, "data": s.data})
            })
            .collect();
        Ok(json!({"namespace": ns.name(), "room": room, "sockets": sockets}))
    })
}

fn presence(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let presence = api.presence.clone().ok_or_else(|| ApiError::new(ErrorKind::PresenceUnavailable))?;
        let ns = api.namespace(call.namespace.as_deref())?;
        let room = call.param("room").to_string();
        let mut users = presence
            .users(ns.name(), &room)
            .await
            .map_err(|e| ApiError::with_detail(ErrorKind::ClusterUnavailable, e.to_string()))?;
        users.sort();
        Ok(json!({"namespace": ns.name(), "room": room, "users": users}))
    })
}

fn room_history(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let history = api.history.clone().ok_or_else(|| ApiError::new(ErrorKind::HistoryUnavailable))?;
        let room = call.param("room").to_string();
        let since = call.params.get("since").map(String::as_str);
        let limit = call.params.get("limit").and_then(|l| l.parse().ok());
        let options =
            ReadOptions::parse(since, limit).map_err(|e| ApiError::with_detail(ErrorKind::InvalidQuery, e))?;
        let page = history
            .read(&room, options.since, options.limit)
            .await
            .map_err(|e| ApiError::with_detail(ErrorKind::StoreUnavailable, e.to_string()))?;
        Ok(json!({"room": room, "messages": page.messages, "more": page.more}))
    })
}

fn disconnect_socket(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(async move {
        let request: DisconnectRequest = parse_body(&call.body)?;
        let ns = api.namespace(request.namespace.as_deref())?;
        let id = call.param("id");
        find_socket(&ns, id).await?;
        ns.to(id).disconnect_sockets(request.close);
        Ok(json!({"ok": true}))
    })
}

/// `join` or `leave`: the socket `id` (wherever it is) joins or leaves the body's room.
async fn change_room(api: Arc<Api>, call: Call, join: bool) -> Result<Value, ApiError> {
    let request: RoomRequest = parse_body(&call.body)?;
    let room = non_empty(request.room).ok_or_else(|| ApiError::new(ErrorKind::MissingRoom))?;
    let ns = api.namespace(request.namespace.as_deref())?;
    let id = call.param("id");
    find_socket(&ns, id).await?;
    let rooms = [Room::from(room.as_str())];
    if join {
        ns.to(id).sockets_join(&rooms);
    } else {
        ns.to(id).sockets_leave(&rooms);
    }
    Ok(json!({"ok": true}))
}

fn join_room(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(change_room(api, call, true))
}

fn leave_room(api: Arc<Api>, call: Call) -> Reply {
    Box::pin(change_room(api, call, false))
}

// ---- the OpenAPI document ----------------------------------------------------------------------------

/// The OpenAPI 3 document of [`ENDPOINTS`] (served at `/api/openapi.json`).
pub fn openapi() -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for endpoint in ENDPOINTS {
        let parameters: Vec<Value> = endpoint
            .params
            .iter()
            .map(|p| {
                let (location, required) = match p.location {
                    ParamIn::Path => ("path", true),
                    ParamIn::Query => ("query", false),
                };
                json!({
                    "name": p.name, "in": location, "required": required, "description": p.description,
                    "schema": (p.schema)(),
                })
            })
            .collect();
        let mut responses = Map::new();
        let mut ok =
            json!({"description": "Done.", "content": {"application/json": {"schema": (endpoint.response)()}}});
        for link in endpoint.links {
            ok["links"][link.operation_id] =
                json!({"operationId": link.operation_id, "parameters": {link.parameter: link.expression}});
        }
        responses.insert("200".into(), ok);
        let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
        for kind in endpoint.all_errors() {
            by_status.entry(kind.status().as_u16()).or_default().push(kind.message());
        }
        for (status, messages) in by_status {
            let description = messages.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
            let mut response = json!({
                "description": description,
                "content": {"application/json": {"schema": error_schema(&messages)}},
            });
            if status == 401 {
                response["headers"] = json!({"WWW-Authenticate": {"schema": {"type": "string"}}});
            }
            if status == 429 {
                response["headers"] = json!({"Retry-After": {"schema": {"type": "string"}}});
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "description": endpoint.description,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some((schema, required)) = endpoint.body {
            operation["requestBody"] =
                json!({"required": required, "content": {"application/json": {"schema": schema()}}});
        }
        paths.entry(endpoint.path).or_default().insert(endpoint.method.as_str().to_ascii_lowercase(), operation);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Switchyard HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Push events to Socket.IO clients and manage rooms and sockets across the cluster. \
                            Every operation needs `Authorization: Bearer <api.key>`. See docs/API.md.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

/// `{"error": one of messages, "detail"?: string}`.
fn error_schema(messages: &[&str]) -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "enum": messages}, "detail": {"type": "string"}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdef0"));
        assert!(!constant_time_eq(b"0123456789abcdef", b""));
        // A given key that is a prefix padded with the complement must not pass either.
        assert!(!constant_time_eq(b"ab", b"a"));
    }

    #[test]
    fn every_error_string_is_distinct_and_listed_once() {
        let mut messages: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.message()).collect();
        let count = messages.len();
        messages.sort();
        messages.dedup();
        assert_eq!(messages.len(), count);
        for kind in ENDPOINTS.iter().flat_map(|e| e.all_errors()) {
            assert!(ErrorKind::ALL.contains(&kind), "{kind:?} missing from ErrorKind::ALL");
        }
    }

    /// The body schemas and the structs the handlers parse must agree: an object with every
    /// documented property parses (no property the struct lacks, with `deny_unknown_fields`), and one
    /// with only the required ones parses (no field the struct needs that the schema calls optional).
    #[test]
    fn body_schemas_match_the_request_structs() {
        fn sample(schema: &Value, all: bool) -> Value {
            let required: Vec<&str> =
                schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let mut object = Map::new();
            for (name, property) in schema["properties"].as_object().unwrap() {
                if !all && !required.contains(&name.as_str()) {
                    continue;
                }
                let value = match property["type"].as_str() {
                    Some("string") if name == "namespace" => json!("/"),
                    Some("string") => json!("x"),
                    Some("boolean") => json!(true),
                    Some("array") => json!(["x"]),
                    _ => json!({"any": 1}),
                };
                object.insert(name.clone(), value);
            }
            Value::Object(object)
        }
        let parse = |operation: &str, body: &Value| -> Result<(), String> {
            let bytes = body.to_string();
            let result = match operation {
                "emit" => parse_body::<EmitRequest>(bytes.as_bytes()).map(drop),
                "joinRoom" | "leaveRoom" => parse_body::<RoomRequest>(bytes.as_bytes()).map(drop),
                "disconnectSocket" => parse_body::<DisconnectRequest>(bytes.as_bytes()).map(drop),
                other => panic!("no request struct for {other}"),
            };
            result.map_err(|e| format!("{operation} {body}: {:?}", e.detail))
        };
        for endpoint in ENDPOINTS {
            let Some((schema, _)) = endpoint.body else { continue };
            let schema = schema();
            assert_eq!(schema["additionalProperties"], json!(false), "{}", endpoint.operation_id);
            parse(endpoint.operation_id, &sample(&schema, true)).unwrap();
            parse(endpoint.operation_id, &sample(&schema, false)).unwrap();
            let mut extra = sample(&schema, true);
            extra["not_a_field"] = json!(1);
            assert!(parse(endpoint.operation_id, &extra).is_err(), "{} takes unknown fields", endpoint.operation_id);
        }
    }

    #[test]
    fn the_document_lists_every_endpoint_with_its_errors() {
        let doc = openapi();
        for endpoint in ENDPOINTS {
            let operation = &doc["paths"][endpoint.path][endpoint.method.as_str().to_ascii_lowercase()];
            assert_eq!(operation["operationId"], endpoint.operation_id);
            for kind in endpoint.all_errors() {
                let listed = &operation["responses"][kind.status().as_str()]["content"]["application/json"]["schema"]
                    ["properties"]["error"]["enum"];
                assert!(
                    listed.as_array().is_some_and(|l| l.contains(&json!(kind.message()))),
                    "{} does not document {kind:?}",
                    endpoint.path
                );
            }
            for link in endpoint.links {
                let target = ENDPOINTS.iter().find(|e| e.operation_id == link.operation_id).expect("linked operation");
                assert!(target.params.iter().any(|p| p.name == link.parameter), "{link:?}");
            }
            for param in endpoint.params.iter().filter(|p| p.location == ParamIn::Path) {
                assert!(
                    endpoint.path.contains(&format!("{{{}}}", param.name)),
                    "{} lacks {}",
                    endpoint.path,
                    param.name
                );
            }
        }
    }

    #[test]
    fn data_null_is_an_argument_and_absent_data_is_none() {
        let with_null: EmitRequest = parse_body(br#"{"event":"e","data":null}"#).unwrap();
        assert_eq!(with_null.data, Some(Value::Null));
        let without: EmitRequest = parse_body(br#"{"event":"e"}"#).unwrap();
        assert_eq!(without.data, None);
        let empty: DisconnectRequest = parse_body(b"").unwrap();
        assert!(!empty.close);
    }
}

//! JWT authentication (`[auth]`) and the rooms a socket is put in at connect (`[rooms]`).
//!
//! # How it works
//! - [`Verifier`] holds the key of `[auth.jwt]` (a secret, a PEM public key, or a local JWKS by
//!   `kid`) and checks one token: signature with an algorithm of the key's family only (so `alg:
//!   none`, and HS256 "signed" with an RSA public key as the secret, are refused), `exp`
//!   (required), `nbf`, `iss`, `aud`, and a non-empty `sub`. It gives the socket's [`Identity`].
//!   It runs on every handshake, so it parses the token once and allocates little: HMAC keys are
//!   prepared at start (ring), and the claims are read in one pass that keeps only what it needs;
//!   the rules are those of `jsonwebtoken::decode` (a test compares the two decisions).
//! - [`Auth::install`] adds server-wide connect middleware to the Socket.IO builder, so every
//!   namespace (static, dynamic, made later) is covered, except `auth.exempt_namespaces`. The
//!   middleware takes the token from the handshake's `auth.token`, else `Authorization: Bearer`,
//!   else the `auth.cookie` cookie (only when `limits.allowed_origins` is set), and leaves the
//!   [`Identity`] in the socket's extensions. A refusal is CONNECT_ERROR `Auth error` with
//!   `{"reason": "missing" | "invalid" | "expired"}`, counted and logged (never the token).
//!   With `rooms.from_handshake`, it also takes the room from `auth.room` (else the `room` header)
//!   and refuses with CONNECT_ERROR `Invalid room id` when there is none or the policy forbids it.
//! - An [`Observer`] joins each connected socket to `user:<sub>` and its handshake room (before the
//!   CONNECT reply and the connection handler), and enters the token's expiry in the
//!   [`ExpiryTracker`]: one ordered map for the server, swept every 250 ms by one task, so a socket
//!   costs one map entry and nothing per delivery. At `exp` + `auth.jwt.leeway_seconds` the socket
//!   gets the event [`EXPIRED_EVENT`] `{"reason": "expired"}` and is then disconnected from its
//!   namespace (the client sees `io server disconnect` and does not reconnect by itself: it fetches
//!   a fresh token, sets `socket.auth`, and calls `socket.connect()`).
//! - [`mint`] makes an HS256 token with the configured secret (`switchyard token`).

use crate::access::{Access, Identity, RoomPattern};
use crate::config::{AuthConfig, Config, KeySource, RoomsConfig};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::de::DeserializeSeed as _;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchyard_engine::limits::LogThrottle;
use switchyard_socketio::{ConnectError, DisconnectReason, Observer, Socket, SocketIoBuilder};

/// The CONNECT_ERROR message of a refused token.
pub const AUTH_ERROR: &str = "Auth error";
/// The CONNECT_ERROR message when `rooms.from_handshake` finds no usable room.
pub const INVALID_ROOM: &str = "Invalid room id";
/// The event a socket gets just before it is disconnected because its token expired.
pub const EXPIRED_EVENT: &str = "auth_expired";
/// The reason logged when a socket is disconnected because its token expired.
pub const EXPIRED_REASON: &str = "token expired";
/// Tokens longer than this are refused unread (no key is this large).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest room name `rooms.from_handshake` accepts, in characters.
pub const MAX_ROOM_CHARS: usize = 256;
/// The longest `sub` accepted, in bytes.
pub const MAX_SUB_BYTES: usize = 256;
/// How often the expiry tracker looks for expired tokens.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// A key that cannot be used: names the configuration key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct AuthError {
    pub key: &'static str,
    pub reason: String,
}

impl AuthError {
    fn new(key: &'static str, reason: impl Into<String>) -> Self {
        AuthError { key, reason: reason.into() }
    }
}

/// Why a token was refused, as the client is told (`data.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No token in any of the places looked at.
    Missing,
    /// Malformed, bad signature, wrong algorithm, not yet valid, wrong issuer or audience, bad claims.
    Invalid,
    /// Past its `exp` (and the leeway).
    Expired,
}

impl Failure {
    pub const ALL: [Failure; 3] = [Failure::Missing, Failure::Invalid, Failure::Expired];

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid => "invalid",
            Failure::Expired => "expired",
        }
    }
}

/// A refusal with the detail that goes to the log (never to the client, never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub failure: Failure,
    pub detail: &'static str,
}

impl Refusal {
    const fn new(failure: Failure, detail: &'static str) -> Self {
        Refusal { failure, detail }
    }

    const fn invalid(detail: &'static str) -> Self {
        Refusal::new(Failure::Invalid, detail)
    }

    /// The CONNECT_ERROR the client gets.
    pub fn connect_error(&self) -> ConnectError {
        ConnectError::new(AUTH_ERROR).with_data(json!({"reason": self.failure.reason()}))
    }
}

/// One key and the algorithms it verifies (one family: a header naming another is refused).
struct KeyEntry {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    /// A shared secret's HMAC keys, prepared once: an HS token then costs one HMAC over its first
    /// two parts, with no key set up per token (`jsonwebtoken` rebuilds it for every token).
    hmac: Option<HmacKeys>,
}

impl KeyEntry {
    fn public(key: DecodingKey, algorithms: Vec<Algorithm>) -> Self {
        KeyEntry { key, algorithms, hmac: None }
    }

    fn secret(secret: &[u8], algorithms: Vec<Algorithm>) -> Self {
        KeyEntry { key: DecodingKey::from_secret(secret), algorithms, hmac: Some(HmacKeys::new(secret)) }
    }
}

/// One ring HMAC key per HS algorithm, from the same secret.
struct HmacKeys([ring::hmac::Key; 3]);

impl HmacKeys {
    fn new(secret: &[u8]) -> Self {
        use ring::hmac::{Key, HMAC_SHA256, HMAC_SHA384, HMAC_SHA512};
        HmacKeys([Key::new(HMAC_SHA256, secret), Key::new(HMAC_SHA384, secret), Key::new(HMAC_SHA512, secret)])
    }

    fn key(&self, alg: Algorithm) -> Option<&ring::hmac::Key> {
        match alg {
            Algorithm::HS256 => Some(&self.0[0]),
            Algorithm::HS384 => Some(&self.0[1]),
            Algorithm::HS512 => Some(&self.0[2]),
            _ => None,
        }
    }
}

enum Keys {
    One(KeyEntry),
    /// A JWKS: keys by `kid`, and the key to use for tokens without `kid` when the set has one key.
    Set {
        by_kid: HashMap<String, KeyEntry>,
        single: Option<KeyEntry>,
    },
}

/// Claims up to this size (decoded) are decoded into a stack buffer; larger ones into a `Vec`.
const CLAIMS_ON_STACK: usize = 512;

/// How many distinct token headers the verifier remembers.
const HEADER_CACHE: usize = 8;

/// A header segment seen under a good signature, and what it says.
struct KnownHeader {
    segment: Box<str>,
    alg: Algorithm,
    kid: Option<Box<str>>,
}

/// The claim checks of `[auth.jwt]`: `exp` (required), `nbf`, `iss`, `aud`, with the leeway.
#[derive(Debug)]
struct Rules {
    leeway: u64,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
}

/// Checks tokens against the key of `[auth.jwt]` and turns their claims into an [`Identity`].
///
/// The token is parsed here, once: split in three, the header read for `alg` (and `kid` with a
/// JWKS), the algorithm checked against the key's family, the signature checked (ring's HMAC with
/// keys prepared at start for a secret; `jsonwebtoken`'s `crypto::verify` for public keys), then
/// the claims read in one pass that keeps only what the rules and the [`Identity`] need.
pub struct Verifier {
    keys: Keys,
    /// Header segments (as sent, base64url) of tokens whose signature verified, with their `alg`
    /// and `kid`: an issuer repeats its header in every token, so it is decoded once. Only a header
    /// under a good signature is added, and at most [`HEADER_CACHE`] of them (then no more).
    headers: parking_lot::RwLock<Vec<KnownHeader>>,
    rules: Rules,
    rooms_claim: Box<str>,
    publish_claim: Box<str>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("rooms_claim", &self.rooms_claim).finish_non_exhaustive()
    }
}

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

impl Verifier {
    /// The verifier of `config`'s key, or `None` when no key is set (no authentication). Reads the
    /// key file, if any.
    pub fn from_config(auth: &AuthConfig, rooms: &RoomsConfig) -> Result<Option<Verifier>, AuthError> {
        let jwt = &auth.jwt;
        let Some(source) = jwt.key_source() else { return Ok(None) };
        let keys = match source {
            KeySource::Secret => Keys::One(KeyEntry::secret(jwt.secret.as_bytes(), HMAC.to_vec())),
            KeySource::PublicKeyFile => {
                let key_name = source.key();
                let path = &jwt.public_key_file;
                let pem = std::fs::read(path).map_err(|e| AuthError::new(key_name, format!("{path}: {e}")))?;
                let (key, algorithms) = pem_public_key(&pem).ok_or_else(|| {
                    AuthError::new(key_name, format!("{path}: not a PEM public key (RSA, EC or Ed25519)"))
                })?;
                Keys::One(KeyEntry::public(key, algorithms.to_vec()))
            }
            KeySource::JwksFile => {
                let key_name = source.key();
                let path = &jwt.jwks_file;
                let text = std::fs::read(path).map_err(|e| AuthError::new(key_name, format!("{path}: {e}")))?;
                let set: JwkSet = serde_json::from_slice(&text)
                    .map_err(|e| AuthError::new(key_name, format!("{path}: not a JWKS ({e})")))?;
                if set.keys.is_empty() {
                    return Err(AuthError::new(key_name, format!("{path}: the set has no keys")));
                }
                let mut by_kid = HashMap::new();
                let mut single = None;
                let count = set.keys.len();
                for (i, jwk) in set.keys.iter().enumerate() {
                    let entry = jwk_key(jwk)
                        .map_err(|reason| AuthError::new(key_name, format!("{path}: key {}: {reason}", i + 1)))?;
                    match &jwk.common.key_id {
                        Some(kid) => {
                            if count == 1 {
                                single = Some(jwk_key(jwk).map_err(|reason| AuthError::new(key_name, reason))?);
                            }
                            if by_kid.insert(kid.clone(), entry).is_some() {
                                return Err(AuthError::new(key_name, format!("{path}: two keys with kid {kid:?}")));
                            }
                        }
                        None if count == 1 => single = Some(entry),
                        None => {
                            return Err(AuthError::new(
                                key_name,
                                format!("{path}: key {} has no kid (required when the set has several keys)", i + 1),
                            ))
                        }
                    }
                }
                Keys::Set { by_kid, single }
            }
        };
        let configured = |value: &str| (!value.is_empty()).then(|| value.into());
        Ok(Some(Verifier {
            keys,
            headers: parking_lot::RwLock::default(),
            rules: Rules {
                leeway: jwt.leeway_seconds,
                issuer: configured(&jwt.issuer),
                audience: configured(&jwt.audience),
            },
            rooms_claim: rooms.claim.as_str().into(),
            publish_claim: rooms.publish_claim.as_str().into(),
        }))
    }

    /// Checks `token` and returns who it is for.
    pub fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        self.verify_at(token, unix_now())
    }

    /// [`Verifier::verify`] with `now` (seconds since the Unix epoch) as the time.
    fn verify_at(&self, token: &str, now: u64) -> Result<Identity, Refusal> {
        if token.is_empty() {
            return Err(Refusal::new(Failure::Missing, "empty token"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::invalid("token too long"));
        }
        let malformed = Refusal::invalid("malformed");
        let mut parts = token.splitn(4, '.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let message = &token[..header.len() + 1 + payload.len()];
        let (alg, entry, new_header) = match self.known_header(header) {
            Some((alg, entry)) => (alg, entry, None),
            None => {
                let header_json = B64.decode(header).map_err(|_| malformed)?;
                let parsed: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| malformed)?;
                // An unknown name (`none` among them) is a malformed header, as in `jsonwebtoken`.
                let alg: Algorithm = parsed.alg.parse().map_err(|_| malformed)?;
                let entry = self.entry(parsed.kid.as_deref())?;
                (alg, entry, Some(parsed.kid.map(Box::<str>::from)))
            }
        };
        // The key's family only: `alg: none` never gets here, and HS256 "signed" with an RSA or EC
        // public key as the secret is refused before any HMAC is computed.
        if !entry.algorithms.contains(&alg) {
            return Err(Refusal::invalid("algorithm not allowed for the key"));
        }
        let bad_signature = Refusal::invalid("bad signature");
        match entry.hmac.as_ref().and_then(|keys| keys.key(alg)) {
            Some(key) => {
                // The longest HMAC (SHA-512) is 64 bytes; a longer signature cannot be right.
                let mut tag = [0u8; 64];
                let len = B64.decode_slice(signature, &mut tag).map_err(|_| bad_signature)?;
                ring::hmac::verify(key, message.as_bytes(), &tag[..len]).map_err(|_| bad_signature)?;
            }
            None => match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &entry.key, alg) {
                Ok(true) => {}
                Ok(false) => return Err(bad_signature),
                Err(e) => return Err(refusal_of(e.kind())),
            },
        }
        if let Some(kid) = new_header {
            self.remember(header, alg, kid);
        }
        // Claims of the usual size are decoded on the stack: no allocation for them.
        let mut stack = [0u8; CLAIMS_ON_STACK];
        let heap;
        let claims_json: &[u8] = match B64.decode_slice(payload, &mut stack) {
            Ok(len) => &stack[..len],
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                heap = B64.decode(payload).map_err(|_| malformed)?;
                &heap
            }
            Err(_) => return Err(malformed),
        };
        let seed = ClaimsSeed { rooms: &self.rooms_claim, publish: &self.publish_claim };
        let mut deserializer = serde_json::Deserializer::from_slice(claims_json);
        let claims = seed.deserialize(&mut deserializer).map_err(|_| malformed)?;
        deserializer.end().map_err(|_| malformed)?;
        claims.check(&self.rules, now)?;
        claims.identity()
    }
}

impl Verifier {
    /// The key for a token with `kid` (only a JWKS looks at it).
    fn entry(&self, kid: Option<&str>) -> Result<&KeyEntry, Refusal> {
        match &self.keys {
            Keys::One(entry) => Ok(entry),
            Keys::Set { by_kid, single } => match kid {
                Some(kid) => by_kid.get(kid).ok_or(Refusal::invalid("unknown kid")),
                None => single.as_ref().ok_or(Refusal::invalid("no kid")),
            },
        }
    }

    /// The algorithm and key of a header segment seen before under a good signature.
    fn known_header(&self, segment: &str) -> Option<(Algorithm, &KeyEntry)> {
        let known = self.headers.read();
        let header = known.iter().find(|h| *h.segment == *segment)?;
        Some((header.alg, self.entry(header.kid.as_deref()).ok()?))
    }

    fn remember(&self, segment: &str, alg: Algorithm, kid: Option<Box<str>>) {
        let mut known = self.headers.write();
        if known.len() < HEADER_CACHE && !known.iter().any(|h| *h.segment == *segment) {
            known.push(KnownHeader { segment: segment.into(), alg, kid });
        }
    }

    /// Header segments remembered (for tests).
    #[cfg(test)]
    fn known_headers(&self) -> usize {
        self.headers.read().len()
    }
}

/// The base64url alphabet without padding, as JWTs use it (non-canonical trailing bits refused).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The JOSE header fields read: the algorithm, and the key id for a JWKS; the others are ignored.
#[derive(serde::Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
}

/// A claim's value as far as the rules look at it. Any other JSON is [`Claim::Other`], which a rule
/// treats as a claim that could not be read (as `jsonwebtoken` does: `exp` then counts as missing).
#[derive(Debug, Clone, Default, PartialEq)]
enum Claim<'a> {
    #[default]
    Absent,
    Null,
    /// A number; `None` unless it reads as seconds (a non-negative integer, or a float rounded).
    Number(Option<u64>),
    Str(Cow<'a, str>),
    /// An array of strings only.
    Strings(Vec<Cow<'a, str>>),
    Other,
}

impl<'a> Claim<'a> {
    fn number(&self) -> Option<u64> {
        match self {
            Claim::Number(n) => *n,
            _ => None,
        }
    }

    /// A string or a list of strings (`iss`, `aud`).
    fn names(&self) -> Option<&[Cow<'a, str>]> {
        match self {
            Claim::Str(one) => Some(std::slice::from_ref(one)),
            Claim::Strings(list) => Some(list),
            _ => None,
        }
    }

    /// A room claim: absent or null (`Some(None)`), one string or a list of strings; `None` when malformed.
    fn patterns(&self) -> Option<Option<Arc<[RoomPattern]>>> {
        match self {
            Claim::Absent | Claim::Null => Some(None),
            Claim::Str(one) => Some(Some(Arc::from([RoomPattern::new(one)]))),
            Claim::Strings(list) => Some(Some(list.iter().map(|p| RoomPattern::new(p)).collect())),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Claim<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClaimVisitor)
    }
}

struct ClaimVisitor;

impl<'de> serde::de::Visitor<'de> for ClaimVisitor {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(u64::try_from(v).ok()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(Some(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Claim<'de>, E> {
        let seconds = (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then(|| v.round() as u64);
        Ok(Claim::Number(seconds))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Null)
    }

    fn visit_none<E>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'de>, A::Error> {
        let mut strings = Some(Vec::new());
        while let Some(item) = seq.next_element::<Claim<'de>>()? {
            match (item, &mut strings) {
                (Claim::Str(s), Some(list)) => list.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Claim::Other, Claim::Strings))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Claim<'de>, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(Claim::Other)
    }
}

/// What is read of a token's claims; everything else is skipped unread.
#[derive(Debug, Default)]
struct Claims<'a> {
    exp: Claim<'a>,
    nbf: Claim<'a>,
    sub: Claim<'a>,
    iss: Claim<'a>,
    aud: Claim<'a>,
    rooms: Claim<'a>,
    publish: Claim<'a>,
}

impl<'a> Claims<'a> {
    /// The rules, in `jsonwebtoken`'s order: required claims, `exp`, `nbf`, `iss`, `aud`.
    fn check(&self, rules: &Rules, now: u64) -> Result<(), Refusal> {
        let missing = Refusal::invalid("missing a required claim");
        let exp = self.exp.number().ok_or(missing)?;
        if !matches!(self.sub, Claim::Str(_))
            || (rules.issuer.is_some() && self.iss.names().is_none())
            || (rules.audience.is_some() && self.aud.names().is_none())
        {
            return Err(missing);
        }
        if exp.saturating_add(rules.leeway) < now {
            return Err(Refusal::new(Failure::Expired, "expired"));
        }
        if self.nbf.number().is_some_and(|nbf| nbf > now.saturating_add(rules.leeway)) {
            return Err(Refusal::invalid("not yet valid (nbf)"));
        }
        if let (Some(issuer), Some(names)) = (&rules.issuer, self.iss.names()) {
            if !names.iter().any(|name| **name == **issuer) {
                return Err(Refusal::invalid("wrong issuer"));
            }
        }
        // Without a configured audience, a token naming one is refused: it was meant for another service.
        match (&rules.audience, self.aud.names()) {
            (None, Some(_)) => return Err(Refusal::invalid("wrong audience")),
            (Some(audience), Some(names)) if !names.iter().any(|name| **name == **audience) => {
                return Err(Refusal::invalid("wrong audience"))
            }
            _ => {}
        }
        Ok(())
    }

    fn identity(&self) -> Result<Identity, Refusal> {
        let user = match &self.sub {
            Claim::Str(sub) if !sub.is_empty() && sub.len() <= MAX_SUB_BYTES => Arc::<str>::from(&**sub),
            _ => return Err(Refusal::invalid("sub must be a non-empty string")),
        };
        let rooms = self.rooms.patterns().ok_or(Refusal::invalid("rooms claim"))?;
        let publish = self.publish.patterns().ok_or(Refusal::invalid("publish claim"))?;
        Ok(Identity::new(user, rooms, publish, self.exp.number()))
    }
}

/// Reads [`Claims`] from a JSON object, with the configured names of the room claims. A claim given
/// twice makes the token malformed (no guessing which one counts).
struct ClaimsSeed<'s> {
    rooms: &'s str,
    publish: &'s str,
}

/// A claim name, borrowed from the token when it has no escapes.
#[derive(serde::Deserialize)]
struct ClaimName<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> serde::de::DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Claims<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Claims<'de>, A::Error> {
        let mut claims = Claims::default();
        while let Some(ClaimName(name)) = map.next_key()? {
            let spec = match &*name {
                "exp" => Some(&mut claims.exp),
                "nbf" => Some(&mut claims.nbf),
                "sub" => Some(&mut claims.sub),
                "iss" => Some(&mut claims.iss),
                "aud" => Some(&mut claims.aud),
                _ => None,
            };
            let is_rooms = *name == *self.rooms;
            let is_publish = *name == *self.publish;
            if spec.is_none() && !is_rooms && !is_publish {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let value: Claim<'de> = map.next_value()?;
            // A configured room claim may share a name with a spec claim: both read the value.
            let slots = [spec, is_rooms.then_some(&mut claims.rooms), is_publish.then_some(&mut claims.publish)];
            if slots.iter().flatten().any(|slot| **slot != Claim::Absent) {
                return Err(serde::de::Error::custom(format_args!("claim {name} given twice")));
            }
            // The value moves to its last slot; only a name with two roles pays for a copy.
            let count = slots.iter().flatten().count();
            let mut value = Some(value);
            for (i, slot) in slots.into_iter().flatten().enumerate() {
                *slot = if i + 1 == count { value.take() } else { value.clone() }.unwrap_or_default();
            }
        }
        Ok(claims)
    }
}

fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => Refusal::invalid("bad signature"),
        ErrorKind::Base64(_) => Refusal::invalid("malformed"),
        _ => Refusal::invalid("invalid"),
    }
}

/// A PEM public key and the algorithms of its family.
fn pem_public_key(pem: &[u8]) -> Option<(DecodingKey, &'static [Algorithm])> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Some((key, RSA));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Some((key, EC));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Some((key, ED));
    }
    None
}

/// A JWK's key and its algorithms: the key's `alg` alone when set, else every algorithm of its family.
fn jwk_key(jwk: &Jwk) -> Result<KeyEntry, String> {
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key ({e})"))?;
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA,
        AlgorithmParameters::EllipticCurve(_) => EC,
        AlgorithmParameters::OctetKeyPair(_) => ED,
        AlgorithmParameters::OctetKey(_) => HMAC,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(alg) => {
            let alg = alg
                .to_string()
                .parse::<Algorithm>()
                .ok()
                .filter(|a| family.contains(a))
                .ok_or_else(|| format!("alg {alg} does not fit the key type"))?;
            vec![alg]
        }
    };
    match &jwk.algorithm {
        // The secret as `from_jwk` read it (base64url), for the prepared HMAC keys.
        AlgorithmParameters::OctetKey(oct) => {
            let secret = B64.decode(&oct.value).map_err(|e| format!("unusable key ({e})"))?;
            Ok(KeyEntry::secret(&secret, algorithms))
        }
        _ => Ok(KeyEntry::public(key, algorithms)),
    }
}

// ---- the connect middleware, the observer and the expiry tracker ------------------------------

/// What the middleware leaves for the observer: the room from the handshake.
#[derive(Clone, Debug)]
struct HandshakeRoom(Arc<str>);

/// The counters of authentication.
struct Counters {
    failures: IntCounterVec,
    accepted: IntCounter,
    expired_disconnects: IntCounter,
    room_refusals: IntCounter,
}

/// Authentication and handshake rooms for one server.
pub struct Auth {
    verifier: Option<Verifier>,
    /// The cookie to read a token from; `None` unless `limits.allowed_origins` is set.
    cookie: Option<Box<str>>,
    exempt: Box<[Box<str>]>,
    from_handshake: bool,
    access: Arc<Access>,
    counters: Arc<Counters>,
    expiry: Arc<ExpiryTracker>,
    log: LogThrottle,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enabled", &self.enabled()).field("from_handshake", &self.from_handshake).finish()
    }
}

impl Auth {
    /// Authentication as `config` asks (reading its key file), checking handshake rooms against `access`.
    pub fn new(config: &Config, access: Arc<Access>) -> Result<Arc<Auth>, AuthError> {
        let verifier = Verifier::from_config(&config.auth, &config.rooms)?;
        let cookie = (!config.limits.allowed_origins.is_empty() && !config.auth.cookie.is_empty())
            .then(|| config.auth.cookie.as_str().into());
        let counters = Arc::new(Counters {
            failures: IntCounterVec::new(
                Opts::new("switchyard_auth_failures_total", "Connections refused for their token, by reason."),
                &["reason"],
            )
            .expect("valid metric"),
            accepted: IntCounter::new("switchyard_auth_accepted_total", "Connections whose token was accepted.")
                .expect("valid metric"),
            expired_disconnects: IntCounter::new(
                "switchyard_auth_expired_disconnects_total",
                "Sockets disconnected because their token expired.",
            )
            .expect("valid metric"),
            room_refusals: IntCounter::new(
                "switchyard_handshake_room_refusals_total",
                "Connections refused with \"Invalid room id\" (rooms.from_handshake).",
            )
            .expect("valid metric"),
        });
        for failure in Failure::ALL {
            counters.failures.with_label_values(&[failure.reason()]);
        }
        let leeway = config.auth.jwt.leeway_seconds;
        Ok(Arc::new(Auth {
            verifier,
            cookie,
            // The admin UI's namespace has its own login (admin.username / admin.password_hash).
            exempt: config
                .auth
                .exempt_namespaces
                .iter()
                .chain(config.admin.enabled.then_some(&config.admin.namespace))
                .map(|ns| ns.as_str().into())
                .collect(),
            from_handshake: config.rooms.from_handshake,
            access,
            expiry: ExpiryTracker::new(leeway, counters.clone()),
            counters,
            log: LogThrottle::default(),
        }))
    }

    /// True when a key is configured (every connection needs a token).
    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The expiry tracker (tokens of connected sockets).
    pub fn expiry(&self) -> &Arc<ExpiryTracker> {
        &self.expiry
    }

    /// Adds the connect middleware and the observer to `builder`; nothing when there is neither a
    /// key nor `rooms.from_handshake`.
    pub fn install(self: &Arc<Self>, builder: SocketIoBuilder) -> SocketIoBuilder {
        if !self.enabled() && !self.from_handshake {
            return builder;
        }
        let auth = self.clone();
        builder
            .connect_middleware(move |socket: Arc<Socket>| std::future::ready(auth.check(&socket)))
            .observer(Arc::new(AuthObserver(self.clone())))
    }

    /// Registers `switchyard_auth_failures_total{reason}`, `switchyard_auth_accepted_total`,
    /// `switchyard_auth_expired_disconnects_total` and `switchyard_handshake_room_refusals_total`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        let c = &self.counters;
        let collectors: [Box<dyn Collector>; 4] = [
            Box::new(c.failures.clone()),
            Box::new(c.accepted.clone()),
            Box::new(c.expired_disconnects.clone()),
            Box::new(c.room_refusals.clone()),
        ];
        collectors.into_iter().try_for_each(|c| registry.register(c))
    }

    /// Refusals so far with `failure` (for tests and the admin UI).
    pub fn failures(&self, failure: Failure) -> u64 {
        self.counters.failures.with_label_values(&[failure.reason()]).get()
    }

    fn exempt(&self, nsp: &str) -> bool {
        self.exempt.iter().any(|ns| &**ns == nsp)
    }

    /// The connect middleware: the token, then the handshake room.
    fn check(&self, socket: &Socket) -> Result<(), ConnectError> {
        if self.exempt(socket.ns().name()) {
            return Ok(());
        }
        if let Some(verifier) = &self.verifier {
            let identity = token_of(socket, self.cookie.as_deref()).and_then(|token| match token {
                Some(token) => verifier.verify(token),
                None => Err(Refusal::new(Failure::Missing, "no token")),
            });
            match identity {
                Ok(identity) => {
                    self.counters.accepted.inc();
                    socket.extensions().insert(identity);
                }
                Err(refusal) => {
                    self.counters.failures.with_label_values(&[refusal.failure.reason()]).inc();
                    self.log_refusal(socket, refusal.failure.reason(), refusal.detail);
                    return Err(refusal.connect_error());
                }
            }
        }
        if self.from_handshake {
            match handshake_room(socket) {
                Some(room) if self.access.may_join(socket, room) => {
                    socket.extensions().insert(HandshakeRoom(room.into()));
                }
                room => {
                    self.counters.room_refusals.inc();
                    let detail = if room.is_some() { "room not allowed" } else { "no valid room" };
                    self.log_refusal(socket, "room", detail);
                    return Err(ConnectError::new(INVALID_ROOM));
                }
            }
        }
        Ok(())
    }

    fn log_refusal(&self, socket: &Socket, reason: &str, detail: &str) {
        let nsp = socket.ns().name();
        let address = socket.handshake().address();
        if self.log.ready() {
            tracing::info!(nsp, %address, reason, detail, "connection refused (further ones for 10 s at debug)");
        } else {
            tracing::debug!(nsp, %address, reason, detail, "connection refused");
        }
    }
}

/// The token of a CONNECT: the handshake's `auth.token`, else `Authorization: Bearer`, else the cookie.
/// A token that is present but unusable is refused, never skipped for the next place.
fn token_of<'a>(socket: &'a Socket, cookie: Option<&str>) -> Result<Option<&'a str>, Refusal> {
    match socket.auth().get("token") {
        Some(Value::String(token)) => return Ok(Some(token)),
        None | Some(Value::Null) => {}
        Some(_) => return Err(Refusal::invalid("auth.token is not a string")),
    }
    let headers = socket.handshake().headers();
    if let Some(value) = headers.get("authorization") {
        if let Some((scheme, token)) = value.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Ok(Some(token.trim()));
            }
        }
    }
    if let Some(name) = cookie {
        for (header, value) in headers.iter() {
            if !header.eq_ignore_ascii_case("cookie") {
                continue;
            }
            let found = value.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name);
            if let Some((_, token)) = found {
                return Ok(Some(token.trim().trim_matches('"')));
            }
        }
    }
    Ok(None)
}

/// The room named by the handshake's `auth.room`, else its `room` header, if it is a usable name.
fn handshake_room(socket: &Socket) -> Option<&str> {
    let room = match socket.auth().get("room") {
        Some(Value::String(room)) => room.as_str(),
        Some(_) => return None,
        None => socket.handshake().header("room")?.trim(),
    };
    let chars = room.chars().count();
    (chars > 0 && chars <= MAX_ROOM_CHARS && !room.chars().any(char::is_control)).then_some(room)
}

/// Joins connected sockets to their user room and handshake room; tracks and forgets expiries.
struct AuthObserver(Arc<Auth>);

impl Observer for AuthObserver {
    fn on_connect(&self, socket: &Socket) {
        // Read in place: the user room (made once, at verification) and the expiry, no clone.
        let identity = socket.extensions().with_mut::<Identity, _>(|i| i.map(|i| (i.room.clone(), i.expires_at)));
        let room = if self.0.from_handshake { socket.extensions().get::<HandshakeRoom>() } else { None };
        if identity.is_none() && room.is_none() {
            return;
        }
        // The observer sees `&Socket`; joining needs the shared handle, which the namespace holds now.
        let Some(socket) = socket.ns().get_socket(&socket.id()) else { return };
        if let Some((user_room, expires_at)) = identity {
            if let Err(e) = socket.join(user_room) {
                tracing::debug!(socket = %socket.id(), error = %e, "could not join the user room");
            }
            if let Some(exp) = expires_at {
                self.0.expiry.track(&socket, exp);
            }
        }
        if let Some(HandshakeRoom(room)) = room {
            if let Err(e) = socket.join(&*room) {
                tracing::debug!(socket = %socket.id(), error = %e, "could not join the handshake room");
            }
        }
    }

    fn on_disconnect(&self, socket: &Socket, _reason: DisconnectReason) {
        self.0.expiry.forget(socket);
    }
}

/// The tokens of connected sockets, ordered by when they run out; one task sweeps it every 250 ms.
/// An entry is keyed by (deadline, the socket's address): the `Weak` in it keeps that address from
/// being reused while the entry exists, and the deadline is found again from the socket's
/// [`Identity`], so nothing else is stored per socket.
pub struct ExpiryTracker {
    entries: Mutex<BTreeMap<(u64, usize), Weak<Socket>>>,
    sweeping: AtomicBool,
    leeway: u64,
    counters: Arc<Counters>,
}

impl ExpiryTracker {
    fn new(leeway: u64, counters: Arc<Counters>) -> Arc<ExpiryTracker> {
        Arc::new(ExpiryTracker { entries: Mutex::default(), sweeping: AtomicBool::new(false), leeway, counters })
    }

    /// Sockets tracked now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, socket: &Socket, exp: u64) -> (u64, usize) {
        (exp.saturating_add(self.leeway), socket as *const Socket as usize)
    }

    /// Disconnects `socket` once `exp` (seconds since the Unix epoch) plus the leeway has passed.
    fn track(self: &Arc<Self>, socket: &Arc<Socket>, exp: u64) {
        self.entries.lock().insert(self.key(socket, exp), Arc::downgrade(socket));
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            self.start();
        }
    }

    fn forget(&self, socket: &Socket) {
        let exp = socket.extensions().with_mut::<Identity, _>(|i| i.and_then(|i| i.expires_at));
        if let Some(exp) = exp {
            self.entries.lock().remove(&self.key(socket, exp));
        }
    }

    fn start(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let tracker = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tracker) = tracker.upgrade() else { return };
                tracker.sweep(unix_now());
            }
        });
    }

    /// Disconnects every socket whose deadline is before `now` (seconds); returns how many.
    pub fn sweep(&self, now: u64) -> usize {
        let due = {
            let mut entries = self.entries.lock();
            let later = entries.split_off(&(now, 0));
            std::mem::replace(&mut *entries, later)
        };
        let mut count = 0;
        for socket in due.into_values().filter_map(|s| s.upgrade()) {
            if !socket.connected() {
                continue;
            }
            let _ = socket.emit(EXPIRED_EVENT, json!({"reason": "expired"}));
            tracing::debug!(socket = %socket.id(), nsp = %socket.ns().name(), reason = EXPIRED_REASON, "socket disconnected");
            socket.disconnect(false);
            self.counters.expired_disconnects.inc();
            count += 1;
        }
        count
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

// ---- minting -----------------------------------------------------------------------------------

/// What `switchyard token` puts in a token.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub sub: String,
    /// Room patterns (the `rooms.claim` claim); empty: no claim.
    pub rooms: Vec<String>,
    /// Publish patterns (the `rooms.publish_claim` claim); empty: no claim.
    pub publish: Vec<String>,
    pub ttl: Duration,
}

/// An HS256 token signed with `auth.jwt.secret`, with `iss` and `aud` when configured.
pub fn mint(config: &Config, request: &TokenRequest) -> Result<String, AuthError> {
    let jwt = &config.auth.jwt;
    if jwt.secret.is_empty() {
        return Err(AuthError::new("auth.jwt.secret", "not set: tokens are minted with the shared secret"));
    }
    if request.sub.is_empty() || request.sub.len() > MAX_SUB_BYTES {
        return Err(AuthError::new("sub", format!("must be 1 to {MAX_SUB_BYTES} bytes")));
    }
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("sub".into(), request.sub.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(request.ttl.as_secs()).into());
    if !request.rooms.is_empty() {
        claims.insert(config.rooms.claim.clone(), request.rooms.clone().into());
    }
    if !request.publish.is_empty() {
        claims.insert(config.rooms.publish_claim.clone(), request.publish.clone().into());
    }
    if !jwt.issuer.is_empty() {
        claims.insert("iss".into(), jwt.issuer.clone().into());
    }
    if !jwt.audience.is_empty() {
        claims.insert("aud".into(), jwt.audience.clone().into());
    }
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(jwt.secret.as_bytes()))
        .map_err(|e| AuthError::new("auth.jwt.secret", e.to_string()))
}

/// `90`, `90s`, `15m`, `1h`, `7d` as a duration (at least one second).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a number and a unit (s, m, h, d)"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err(format!("{text:?}: must be at least 1 s")),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("{text:?}: too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::encode;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims(sub: &str, exp_in: i64) -> Value {
        json!({"sub": sub, "exp": (unix_now() as i64 + exp_in) as u64, "rooms": ["chat:*"]})
    }

    fn config(set: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config::default();
        config.auth.jwt.leeway_seconds = 0;
        set(&mut config);
        config
    }

    fn verifier(config: &Config) -> Verifier {
        Verifier::from_config(&config.auth, &config.rooms).expect("usable key").expect("a key is set")
    }

    fn hs(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
        encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn refused(verifier: &Verifier, token: &str) -> Refusal {
        verifier.verify(token).expect_err("refused")
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// A PEM key pair (private PKCS#8, public SPKI) made now by rcgen.
    fn generated(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        (pair.serialize_pem(), pair.public_key_pem())
    }

    /// An RSA key pair made now by the openssl command (ring cannot generate RSA keys).
    fn generated_rsa(dir: &tempfile::TempDir) -> (String, String) {
        let private = dir.path().join("rsa.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("the openssl command (Debian package openssl, installed by scripts/install-deps.sh)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let private_path = private.to_str().unwrap();
        run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private_path]);
        let public = run(&["pkey", "-in", private_path, "-pubout"]);
        (std::fs::read_to_string(&private).unwrap(), String::from_utf8(public).unwrap())
    }

    #[test]
    fn hmac_tokens_give_the_identity() {
        let v = verifier(&config(|c| c.auth.jwt.secret = SECRET.into()));
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let identity = v.verify(&hs(alg, &claims("alice", 60), SECRET.as_bytes())).expect("valid");
            assert_eq!(&*identity.user, "alice");
            assert_eq!(identity.rooms.as_deref(), Some(&[RoomPattern::new("chat:*")][..]));
            assert!(identity.publish.is_none());
            assert!(identity.expires_at.unwrap() > unix_now());
        }
        // Configured claim names; one string is one pattern.
        let v = verifier(&config(|c| {
            c.auth.jwt.secret = SECRET.into();
            c.rooms.claim = "chans".into();
            c.rooms.publish_claim = "say".into();
        }));
        let token = hs(
            Algorithm::HS256,
            &json!({"sub": "bob", "exp": unix_now() + 60, "chans": "lobby", "say": []}),
            SECRET.as_bytes(),
        );
        let identity = v.verify(&token).unwrap();
        assert_eq!(identity.rooms.as_deref(), Some(&[RoomPattern::new("lobby")][..]));
        assert_eq!(identity.publish.as_deref(), Some(&[][..]));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let v = verifier(&config(|c| {
            c.auth.jwt.secret = SECRET.into();
            c.auth.jwt.issuer = "https://issuer.test".into();
            c.auth.jwt.audience = "switchyard".into();
        }));
        let good = json!({"sub": "alice", "exp": unix_now() + 60, "iss": "https://issuer.test", "aud": "switchyard"});
        assert!(v.verify(&hs(Algorithm::HS256, &good, SECRET.as_bytes())).is_ok());
        let with = |key: &str, value: Value| {
            let mut c = good.clone();
            match value {
                Value::Null => {
                    c.as_object_mut().unwrap().remove(key);
                }
                value => c[key] = value,
            }
            hs(Algorithm::HS256, &c, SECRET.as_bytes())
        };
        let invalid = |token: &str, detail: &str| {
            let r = refused(&v, token);
            assert_eq!((r.failure, r.detail), (Failure::Invalid, detail), "{token}");
        };
        assert_eq!(refused(&v, "").failure, Failure::Missing);
        invalid("not-a-token", "malformed");
        invalid("a.b.c", "malformed");
        invalid(&"x".repeat(MAX_TOKEN_BYTES + 1), "token too long");
        invalid(&hs(Algorithm::HS256, &good, b"another secret, 32 bytes or more!"), "bad signature");
        // A signature from the right key on a changed payload.
        let token = hs(Algorithm::HS256, &good, SECRET.as_bytes());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(serde_json::to_string(&with_sub(&good, "admin")).unwrap().as_bytes());
        invalid(&format!("{}.{forged}.{}", parts[0], parts[2]), "bad signature");
        // alg: none, with or without a signature.
        let none = b64(br#"{"alg":"none","typ":"JWT"}"#);
        invalid(&format!("{none}.{}.", parts[1]), "malformed");
        invalid(&format!("{none}.{}.{}", parts[1], parts[2]), "malformed");
        let expired = refused(&v, &with("exp", json!(unix_now() - 10)));
        assert_eq!(expired.failure, Failure::Expired);
        invalid(&with("nbf", json!(unix_now() + 3600)), "not yet valid (nbf)");
        invalid(&with("iss", json!("https://evil.test")), "wrong issuer");
        invalid(&with("iss", Value::Null), "missing a required claim");
        invalid(&with("aud", json!("another-service")), "wrong audience");
        invalid(&with("aud", Value::Null), "missing a required claim");
        invalid(&with("exp", Value::Null), "missing a required claim");
        invalid(&with("exp", json!("tomorrow")), "missing a required claim");
        invalid(&with("sub", Value::Null), "missing a required claim");
        invalid(&with("sub", json!("")), "sub must be a non-empty string");
        invalid(&with("sub", json!(42)), "missing a required claim");
        invalid(&with("rooms", json!([1, 2])), "rooms claim");
        invalid(&with("publish", json!({"a": 1})), "publish claim");
        // Without a configured audience, a token meant for some audience is refused.
        let v = verifier(&config(|c| c.auth.jwt.secret = SECRET.into()));
        let r = refused(
            &v,
            &hs(Algorithm::HS256, &json!({"sub": "a", "exp": unix_now() + 60, "aud": "x"}), SECRET.as_bytes()),
        );
        assert_eq!((r.failure, r.detail), (Failure::Invalid, "wrong audience"));
        // A leeway lets a just-expired token in.
        let v = verifier(&config(|c| {
            c.auth.jwt.secret = SECRET.into();
            c.auth.jwt.leeway_seconds = 30;
        }));
        assert!(v.verify(&hs(Algorithm::HS256, &claims("a", -10), SECRET.as_bytes())).is_ok());
        assert_eq!(refused(&v, &hs(Algorithm::HS256, &claims("a", -40), SECRET.as_bytes())).failure, Failure::Expired);
    }

    fn with_sub(claims: &Value, sub: &str) -> Value {
        let mut c = claims.clone();
        c["sub"] = json!(sub);
        c
    }

    #[test]
    fn public_keys_verify_their_own_algorithms_only() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &'static rcgen::SignatureAlgorithm, Algorithm, Algorithm); 3] = [
            ("p256", &rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256, Algorithm::ES384),
            ("p384", &rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384, Algorithm::ES256),
            ("ed25519", &rcgen::PKCS_ED25519, Algorithm::EdDSA, Algorithm::ES256),
        ];
        for (name, kind, alg, wrong_alg) in cases {
            let (private, public) = generated(kind);
            let path = write(&dir, &format!("{name}.pem"), &public);
            let v = verifier(&config(|c| c.auth.jwt.public_key_file = path.clone()));
            let signing = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            };
            let token = encode(&Header::new(alg), &claims("alice", 60), &signing).unwrap();
            assert_eq!(&*v.verify(&token).expect(name).user, "alice", "{name}");
            // The same key under another algorithm's name.
            let parts: Vec<&str> = token.split('.').collect();
            let header = b64(format!(r#"{{"alg":"{wrong_alg:?}","typ":"JWT"}}"#).as_bytes());
            assert_eq!(refused(&v, &format!("{header}.{}.{}", parts[1], parts[2])).failure, Failure::Invalid, "{name}");
            // HS256 with the public key's PEM as the shared secret (the classic confusion attack).
            let confused = hs(Algorithm::HS256, &claims("admin", 60), public.as_bytes());
            let r = refused(&v, &confused);
            assert_eq!((r.failure, r.detail), (Failure::Invalid, "algorithm not allowed for the key"), "{name}");
            // Another key of the same kind.
            let (other, _) = generated(kind);
            let other = match alg {
                Algorithm::EdDSA => EncodingKey::from_ed_pem(other.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(other.as_bytes()).unwrap(),
            };
            let token = encode(&Header::new(alg), &claims("alice", 60), &other).unwrap();
            assert_eq!(refused(&v, &token).detail, "bad signature", "{name}");
        }
    }

    #[test]
    fn rsa_keys_verify_rs_and_ps_and_refuse_the_hmac_confusion() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generated_rsa(&dir);
        let path = write(&dir, "rsa-public.pem", &public);
        let v = verifier(&config(|c| c.auth.jwt.public_key_file = path));
        let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
            let token = encode(&Header::new(alg), &claims("alice", 60), &key).unwrap();
            assert_eq!(&*v.verify(&token).unwrap().user, "alice", "{alg:?}");
        }
        let confused = hs(Algorithm::HS256, &claims("admin", 60), public.as_bytes());
        let r = refused(&v, &confused);
        assert_eq!((r.failure, r.detail), (Failure::Invalid, "algorithm not allowed for the key"));
        let expired = encode(&Header::new(Algorithm::RS256), &claims("alice", -5), &key).unwrap();
        assert_eq!(refused(&v, &expired).failure, Failure::Expired);
    }

    #[test]
    fn jwks_picks_the_key_by_kid() {
        let dir = tempfile::tempdir().unwrap();
        let (ec_private, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ec_signing = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
        // The public JWK of the EC key, from the x and y of its uncompressed point.
        let pair = rcgen::KeyPair::from_pem(&ec_private).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65);
        let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
                            "x": b64(&point[1..33]), "y": b64(&point[33..])});
        let oct_jwk = json!({"kty": "oct", "kid": "hmac-1", "k": b64(SECRET.as_bytes())});
        let path = write(&dir, "keys.json", &json!({"keys": [ec_jwk, oct_jwk]}).to_string());
        let v = verifier(&config(|c| c.auth.jwt.jwks_file = path));
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        assert_eq!(&*v.verify(&encode(&header, &claims("ec", 60), &ec_signing).unwrap()).unwrap().user, "ec");
        let mut header = Header::new(Algorithm::HS512);
        header.kid = Some("hmac-1".into());
        let token = encode(&header, &claims("oct", 60), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert_eq!(&*v.verify(&token).unwrap().user, "oct");
        // The HMAC key under the EC key's kid, an unknown kid, no kid among several keys.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ec-1".into());
        let token = encode(&header, &claims("x", 60), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert_eq!(refused(&v, &token).detail, "algorithm not allowed for the key");
        header.kid = Some("nope".into());
        let token = encode(&header, &claims("x", 60), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert_eq!(refused(&v, &token).detail, "unknown kid");
        let token = hs(Algorithm::HS256, &claims("x", 60), SECRET.as_bytes());
        assert_eq!(refused(&v, &token).detail, "no kid");
        // The key's alg is the only one it verifies: ES384 under an ES256 key.
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("ec-1".into());
        let parts: Vec<String> = encode(&Header::new(Algorithm::ES256), &claims("x", 60), &ec_signing)
            .unwrap()
            .split('.')
            .map(String::from)
            .collect();
        let forged = format!("{}.{}.{}", b64(br#"{"alg":"ES384","kid":"ec-1"}"#), parts[1], parts[2]);
        assert_eq!(refused(&v, &forged).detail, "algorithm not allowed for the key");
        // A single key without kid serves tokens without kid.
        let one = write(&dir, "one.json", &json!({"keys": [{"kty": "oct", "k": b64(SECRET.as_bytes())}]}).to_string());
        let v = verifier(&config(|c| c.auth.jwt.jwks_file = one));
        assert!(v.verify(&hs(Algorithm::HS256, &claims("x", 60), SECRET.as_bytes())).is_ok());
    }

    #[test]
    fn unusable_key_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let error = |set: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            set(&mut config);
            Verifier::from_config(&config.auth, &config.rooms).expect_err("refused")
        };
        let e = error(&|c| c.auth.jwt.public_key_file = "/nonexistent/key.pem".into());
        assert_eq!(e.key, "auth.jwt.public_key_file");
        assert!(e.to_string().starts_with("auth.jwt.public_key_file: /nonexistent/key.pem: "), "{e}");
        let garbage = write(&dir, "garbage.pem", "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n");
        let e = error(&|c| c.auth.jwt.public_key_file = garbage.clone());
        assert!(e.reason.ends_with("not a PEM public key (RSA, EC or Ed25519)"), "{e}");
        let (private, _) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let private = write(&dir, "private.pem", &private);
        let e = error(&|c| c.auth.jwt.public_key_file = private.clone());
        assert!(
            e.reason.ends_with("not a PEM public key (RSA, EC or Ed25519)"),
            "a private key is not a public key: {e}"
        );
        let bad_json = write(&dir, "bad.json", "{\"keys\": 1}");
        let e = error(&|c| c.auth.jwt.jwks_file = bad_json.clone());
        assert_eq!(e.key, "auth.jwt.jwks_file");
        assert!(e.reason.contains("not a JWKS"), "{e}");
        let empty = write(&dir, "empty.json", "{\"keys\": []}");
        assert!(error(&|c| c.auth.jwt.jwks_file = empty.clone()).reason.ends_with("the set has no keys"));
        let two = json!({"keys": [{"kty": "oct", "k": "YQ"}, {"kty": "oct", "k": "Yg"}]}).to_string();
        let two = write(&dir, "two.json", &two);
        assert!(error(&|c| c.auth.jwt.jwks_file = two.clone()).reason.contains("has no kid"));
        let wrong_alg = json!({"keys": [{"kty": "oct", "k": "YQ", "alg": "RS256"}]}).to_string();
        let wrong_alg = write(&dir, "wrong-alg.json", &wrong_alg);
        assert!(error(&|c| c.auth.jwt.jwks_file = wrong_alg.clone()).reason.contains("does not fit the key type"));
        assert!(Verifier::from_config(&Config::default().auth, &Config::default().rooms).unwrap().is_none());
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_claims() {
        let config = config(|c| {
            c.auth.jwt.secret = SECRET.into();
            c.auth.jwt.issuer = "me".into();
            c.auth.jwt.audience = "us".into();
        });
        let request = TokenRequest {
            sub: "alice".into(),
            rooms: vec!["chat:*".into()],
            publish: vec!["chat:general".into()],
            ttl: Duration::from_secs(3600),
        };
        let identity = verifier(&config).verify(&mint(&config, &request).unwrap()).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert_eq!(identity.rooms.as_deref(), Some(&[RoomPattern::new("chat:*")][..]));
        assert_eq!(identity.publish.as_deref(), Some(&[RoomPattern::new("chat:general")][..]));
        let exp = identity.expires_at.unwrap();
        assert!((unix_now() + 3590..=unix_now() + 3600).contains(&exp));
        let e = mint(&Config::default(), &request).unwrap_err();
        assert_eq!(e.key, "auth.jwt.secret");
        assert!(mint(&config, &TokenRequest { sub: String::new(), ..request }).is_err());
    }

    /// The verifier decides as `jsonwebtoken::decode` with the same rules did (the path it replaced
    /// for secrets), over every combination of header, signing secret and claim values below.
    #[test]
    fn hs_tokens_are_decided_as_jsonwebtoken_decides() {
        use jsonwebtoken::Validation;
        let now = unix_now();
        for (issuer, audience, leeway) in [("", "", 0), ("https://issuer.test", "switchyard", 30)] {
            let v = verifier(&config(|c| {
                c.auth.jwt.secret = SECRET.into();
                c.auth.jwt.issuer = issuer.into();
                c.auth.jwt.audience = audience.into();
                c.auth.jwt.leeway_seconds = leeway;
            }));
            let mut validation = Validation::new(Algorithm::HS256);
            validation.algorithms = HMAC.to_vec();
            validation.leeway = leeway;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            if !issuer.is_empty() {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
            if !audience.is_empty() {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            let key = DecodingKey::from_secret(SECRET.as_bytes());
            let exps = [
                json!(now + 60),
                json!(now - 10),
                json!(now - 100),
                json!((now + 60) as f64 + 0.4),
                json!(-5),
                json!("x"),
                Value::Null,
            ];
            let nbfs = [Value::Null, json!(now + 10), json!(now + 3600), json!("soon")];
            let names = |right: &str| {
                [Value::Null, json!(right), json!("other"), json!([right, "other"]), json!(["other"]), json!(7)]
            };
            let (mut cases, mut accepted) = (0, 0);
            for exp in &exps {
                for nbf in &nbfs {
                    for iss in names("https://issuer.test") {
                        for aud in names("switchyard") {
                            let mut claims = json!({"sub": "alice", "rooms": ["chat:*"]});
                            for (name, value) in [("exp", exp), ("nbf", nbf), ("iss", &iss), ("aud", &aud)] {
                                if !value.is_null() {
                                    claims[name] = value.clone();
                                }
                            }
                            for (alg, secret) in [
                                (Algorithm::HS256, SECRET.as_bytes()),
                                (Algorithm::HS512, SECRET.as_bytes()),
                                (Algorithm::HS384, b"not the secret".as_slice()),
                            ] {
                                let token = hs(alg, &claims, secret);
                                let ours =
                                    v.verify_at(&token, now).map(|identity| identity.user).map_err(|r| r.failure);
                                let theirs = jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &validation)
                                    .map(|_| Arc::<str>::from("alice"))
                                    .map_err(|e| match e.kind() {
                                        ErrorKind::ExpiredSignature => Failure::Expired,
                                        _ => Failure::Invalid,
                                    });
                                assert_eq!(ours, theirs, "{claims} {alg:?}");
                                cases += 1;
                                accepted += usize::from(ours.is_ok());
                            }
                        }
                    }
                }
            }
            assert!(accepted > 10 && accepted < cases / 2, "{accepted} of {cases}: the cases cover both answers");
        }
    }

    #[test]
    fn headers_are_remembered_only_under_good_signatures_and_boundedly() {
        let v = verifier(&config(|c| c.auth.jwt.secret = SECRET.into()));
        let good = hs(Algorithm::HS256, &claims("alice", 60), SECRET.as_bytes());
        assert_eq!(refused(&v, &hs(Algorithm::HS256, &claims("a", 60), b"wrong secret")).detail, "bad signature");
        assert_eq!(v.known_headers(), 0, "a bad signature teaches nothing");
        assert!(v.verify(&good).is_ok());
        assert!(v.verify(&good).is_ok(), "the remembered header");
        assert_eq!(v.known_headers(), 1);
        // The same header: every later check still applies.
        assert_eq!(refused(&v, &hs(Algorithm::HS256, &claims("a", 60), b"wrong secret")).detail, "bad signature");
        assert_eq!(refused(&v, &hs(Algorithm::HS256, &claims("a", -60), SECRET.as_bytes())).failure, Failure::Expired);
        // Many distinct headers, all signed: the cache stops growing, the tokens still verify.
        for i in 0..3 * HEADER_CACHE {
            let mut header = Header::new(Algorithm::HS384);
            header.cty = Some(format!("t{i}"));
            let token = encode(&header, &claims("bob", 60), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
            assert_eq!(&*v.verify(&token).unwrap().user, "bob");
            assert_eq!(&*v.verify(&token).unwrap().user, "bob");
        }
        assert_eq!(v.known_headers(), HEADER_CACHE);
    }

    #[test]
    fn claims_are_read_once_and_strictly() {
        let v = verifier(&config(|c| c.auth.jwt.secret = SECRET.into()));
        let now = unix_now();
        let token = |payload: &str| {
            let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
            let body = b64(payload.as_bytes());
            let tag = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
                format!("{header}.{body}").as_bytes(),
            );
            format!("{header}.{body}.{}", b64(tag.as_ref()))
        };
        // A claim given twice is malformed, whichever copy would be the good one.
        let twice = format!(r#"{{"sub":"alice","exp":{},"sub":"admin"}}"#, now + 60);
        assert_eq!(refused(&v, &token(&twice)).detail, "malformed");
        let rooms_twice = format!(r#"{{"sub":"a","exp":{},"rooms":["x"],"rooms":["*"]}}"#, now + 60);
        assert_eq!(refused(&v, &token(&rooms_twice)).detail, "malformed");
        // Not an object; bytes after the object.
        assert_eq!(refused(&v, &token("[1,2]")).detail, "malformed");
        assert_eq!(refused(&v, &token(&format!(r#"{{"sub":"a","exp":{}}} x"#, now + 60))).detail, "malformed");
        // Escaped names and values are read as their text; unknown claims of any shape are skipped.
        let escaped = format!(
            r#"{{"s\u0075b":"al\u0069ce","exp":{},"extra":{{"deep":[1,{{"a":null}}]}},"rooms":["chat:*","user:\u0061"]}}"#,
            now + 60
        );
        let identity = v.verify(&token(&escaped)).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert_eq!(identity.rooms.as_deref(), Some(&[RoomPattern::new("chat:*"), RoomPattern::new("user:a")][..]));
        // Claims larger than the stack buffer are read the same way.
        let big =
            format!(r#"{{"sub":"big","exp":{},"pad":"{}","rooms":["r"]}}"#, now + 60, "p".repeat(CLAIMS_ON_STACK));
        let identity = v.verify(&token(&big)).unwrap();
        assert_eq!((&*identity.user, identity.rooms.as_deref()), ("big", Some(&[RoomPattern::new("r")][..])));
        assert_eq!(refused(&v, &format!("{}x", token(&big))).detail, "bad signature");
        // A float `exp` is rounded (and tracked for the expiry disconnect).
        let float = format!(r#"{{"sub":"a","exp":{}.4}}"#, now + 60);
        assert_eq!(v.verify(&token(&float)).unwrap().expires_at, Some(now + 60));
        // Four parts, a signature longer than any HMAC, a header without alg.
        let good = token(&format!(r#"{{"sub":"a","exp":{}}}"#, now + 60));
        assert!(v.verify(&good).is_ok());
        assert_eq!(refused(&v, &format!("{good}.x")).detail, "malformed");
        assert_eq!(refused(&v, &format!("{good}{}", "A".repeat(100))).detail, "bad signature");
        let parts: Vec<&str> = good.split('.').collect();
        let no_alg = format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), parts[1], parts[2]);
        assert_eq!(refused(&v, &no_alg).detail, "malformed");
        // A room claim configured with a spec claim's name reads the same value.
        let v = verifier(&config(|c| {
            c.auth.jwt.secret = SECRET.into();
            c.rooms.claim = "aud".into();
        }));
        let r = refused(&v, &token(&format!(r#"{{"sub":"a","exp":{},"aud":"x"}}"#, now + 60)));
        assert_eq!(r.detail, "wrong audience");
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1w", "0", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}

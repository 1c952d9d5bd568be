//! Who a socket is and what it may do: the [`Identity`] authentication leaves in a socket's
//! node-local extensions, and the [`Access`] policy every join and publish is checked against.
//!
//! The built-in events, the HTTP API and the admin UI ask this module, never the token: auth
//! (`auth.rs`) is the only writer of [`Identity`].

use std::sync::Arc;
use switchyard_socketio::Socket;

/// A room pattern from a token's `rooms` or `publish` claim: an exact name, or a prefix when it
/// ends with `*` (`chat:*` matches `chat:general`; `*` alone matches every room).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPattern {
    text: Box<str>,
    prefix: bool,
}

impl RoomPattern {
    pub fn new(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => RoomPattern { text: prefix.into(), prefix: true },
            None => RoomPattern { text: pattern.into(), prefix: false },
        }
    }

    /// Whether `room` is one this pattern names.
    pub fn matches(&self, room: &str) -> bool {
        if self.prefix {
            room.starts_with(&*self.text)
        } else {
            *self.text == *room
        }
    }
}

/// The authenticated user of a socket, kept in [`Socket::extensions`] (it never leaves the node).
#[derive(Clone, Debug)]
pub struct Identity {
    /// The token's `sub`: the user id. Every socket of the user is in the room `user:<sub>`.
    pub user: Arc<str>,
    /// Rooms the user may join (the `rooms` claim); `None` when the token has no such claim, and
    /// the default policy decides.
    pub rooms: Option<Arc<[RoomPattern]>>,
    /// Rooms the user may publish to (the `publish` claim); `None` falls back to `rooms`.
    pub publish: Option<Arc<[RoomPattern]>>,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// The user's room, `user:<sub>`, made once: every socket of the user joins it at connect.
    pub room: Arc<str>,
}

impl Identity {
    /// The identity of `user` with these claims (and its user room).
    pub fn new(
        user: Arc<str>,
        rooms: Option<Arc<[RoomPattern]>>,
        publish: Option<Arc<[RoomPattern]>>,
        expires_at: Option<u64>,
    ) -> Identity {
        let room = user_room(&user).into();
        Identity { user, rooms, publish, expires_at, room }
    }
}

/// The prefix of user rooms (`user:<sub>`).
pub const USER_ROOM_PREFIX: &str = "user:";

/// The room every socket of `user` joins, so `io.to("user:alice")` reaches all of Alice's tabs.
pub fn user_room(user: &str) -> String {
    format!("{USER_ROOM_PREFIX}{user}")
}

/// The access policy: the `rooms` claim of a socket's [`Identity`], else the default policy.
#[derive(Clone, Debug)]
pub struct Access {
    /// Whether a socket with no identity, or a token without the claim, may join and publish.
    default_allow: bool,
}

impl Access {
    /// A policy that allows what no claim restricts when `default_allow`, and denies it otherwise.
    pub fn new(default_allow: bool) -> Self {
        Access { default_allow }
    }

    /// Every join and publish allowed (no auth configured, default policy `allow`).
    pub fn allow_all() -> Self {
        Access::new(true)
    }

    /// Whether `socket` may join `room`. A user room (`user:<sub>`) is its user's alone: only a
    /// socket authenticated as that user may join it, whatever the patterns or the default policy
    /// say (otherwise anyone could read another user's private messages).
    pub fn may_join(&self, socket: &Socket, room: &str) -> bool {
        self.may_join_as(identity(socket).as_ref(), room)
    }

    /// [`Access::may_join`] for a socket with `identity`.
    pub fn may_join_as(&self, identity: Option<&Identity>, room: &str) -> bool {
        if let Some(owner) = room.strip_prefix(USER_ROOM_PREFIX) {
            return identity.is_some_and(|identity| *identity.user == *owner);
        }
        match identity {
            Some(Identity { rooms: Some(patterns), .. }) => patterns.iter().any(|p| p.matches(room)),
            _ => self.default_allow,
        }
    }

    /// Whether `socket` may publish (`message`, `typing`) to `room`; whether it has joined is the
    /// caller's check.
    pub fn may_publish(&self, socket: &Socket, room: &str) -> bool {
        self.may_publish_as(identity(socket).as_ref(), room)
    }

    /// [`Access::may_publish`] for a socket with `identity`.
    pub fn may_publish_as(&self, identity: Option<&Identity>, room: &str) -> bool {
        match identity {
            Some(Identity { publish: Some(patterns), .. }) => patterns.iter().any(|p| p.matches(room)),
            Some(Identity { publish: None, rooms: Some(patterns), .. }) => patterns.iter().any(|p| p.matches(room)),
            _ => self.default_allow,
        }
    }
}

impl Access {
    /// Whether `socket` may `signal` the user `target`: always its own user (its other tabs), else
    /// when it may publish to the target's room `user:<target>` ([`Access::may_publish`]: the
    /// `publish` patterns, else `rooms`, must match it, as `user:*` or `*` do; without a claim the
    /// default policy decides, so everything is allowed when no auth is configured).
    pub fn may_signal(&self, socket: &Socket, target: &str) -> bool {
        let identity = identity(socket);
        match &identity {
            Some(identity) => self.may_signal_as(Some(identity), &identity.user, target),
            None => self.may_signal_as(None, &user_of(socket), target),
        }
    }

    /// [`Access::may_signal`] for a socket speaking as `sender` with `identity`.
    pub fn may_signal_as(&self, identity: Option<&Identity>, sender: &str, target: &str) -> bool {
        sender == target || self.may_publish_as(identity, &user_room(target))
    }
}

/// The socket's authenticated identity, if auth is on and it connected with a valid token.
pub fn identity(socket: &Socket) -> Option<Identity> {
    socket.extensions().get::<Identity>()
}

/// The room of the user a socket speaks as ([`user_of`]): `user:<user>`, without an allocation when
/// the socket has an [`Identity`].
pub fn user_room_of(socket: &Socket) -> Arc<str> {
    match socket.extensions().with_mut::<Identity, _>(|identity| identity.map(|i| i.room.clone())) {
        Some(room) => room,
        None => user_room(&user_of(socket)).into(),
    }
}

/// The user a socket speaks as in built-in events: its token's `sub`; else (no [`Identity`], which
/// means no auth is configured: with auth every socket has one) the `user` string of the handshake's
/// `auth` object when it is a usable name ([`handshake_user`]); else the socket id.
pub fn user_of(socket: &Socket) -> Arc<str> {
    // The user alone, not a clone of the whole identity: this runs on every join and event.
    match socket.extensions().with_mut::<Identity, _>(|identity| identity.map(|i| i.user.clone())) {
        Some(user) => user,
        None => match handshake_user(socket.auth()) {
            Some(user) => user.into(),
            None => socket.id().as_str().into(),
        },
    }
}

/// The longest user name taken from the handshake's `auth.user` (bytes).
pub const MAX_HANDSHAKE_USER_BYTES: usize = 64;

/// `auth.user` from a handshake when it is a name ([`is_user_name`]). Only used when no auth is
/// configured.
pub fn handshake_user(auth: &serde_json::Value) -> Option<&str> {
    let user = auth.get("user")?.as_str()?;
    is_user_name(user).then_some(user)
}

/// Whether `name` is usable as a user name: 1 to [`MAX_HANDSHAKE_USER_BYTES`] bytes, no control
/// characters, no leading or trailing spaces (the handshake's `auth.user`, the development token
/// endpoint's `sub`).
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HANDSHAKE_USER_BYTES
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        assert!(RoomPattern::new("lobby").matches("lobby"));
        assert!(!RoomPattern::new("lobby").matches("lobby2"));
        assert!(RoomPattern::new("chat:*").matches("chat:general"));
        assert!(RoomPattern::new("chat:*").matches("chat:"));
        assert!(!RoomPattern::new("chat:*").matches("chatx"));
        assert!(RoomPattern::new("*").matches("anything"));
    }

    #[test]
    fn handshake_users_are_names() {
        use serde_json::json;
        assert_eq!(handshake_user(&json!({"user": "alice"})), Some("alice"));
        assert_eq!(handshake_user(&json!({"user": "Ada Lovelace"})), Some("Ada Lovelace"));
        assert_eq!(handshake_user(&json!({})), None);
        assert_eq!(handshake_user(&json!({"user": ""})), None);
        assert_eq!(handshake_user(&json!({"user": " padded"})), None);
        assert_eq!(handshake_user(&json!({"user": "a\nb"})), None);
        assert_eq!(handshake_user(&json!({"user": 7})), None);
        assert_eq!(handshake_user(&json!({"user": "x".repeat(65)})), None);
    }

    fn alice(rooms: Option<&[&str]>, publish: Option<&[&str]>) -> Identity {
        let list = |l: &[&str]| -> Arc<[RoomPattern]> { l.iter().map(|p| RoomPattern::new(p)).collect() };
        Identity::new("alice".into(), rooms.map(list), publish.map(list), None)
    }

    #[test]
    fn claims_decide_and_the_default_policy_fills_in() {
        let deny = Access::new(false);
        let allow = Access::allow_all();
        let chat = alice(Some(&["chat:*", "lobby"]), None);
        assert!(deny.may_join_as(Some(&chat), "chat:general"));
        assert!(deny.may_join_as(Some(&chat), "lobby"));
        assert!(!allow.may_join_as(Some(&chat), "ops"), "the claim restricts even under allow");
        assert!(deny.may_publish_as(Some(&chat), "lobby"), "publish falls back to rooms");
        let readonly = alice(Some(&["news"]), Some(&[]));
        assert!(deny.may_join_as(Some(&readonly), "news"));
        assert!(!allow.may_publish_as(Some(&readonly), "news"), "an empty publish claim allows nothing");
        let no_claim = alice(None, None);
        assert!(!deny.may_join_as(Some(&no_claim), "lobby"));
        assert!(allow.may_join_as(Some(&no_claim), "lobby"));
        assert!(!deny.may_publish_as(None, "lobby"));
        assert!(allow.may_publish_as(None, "lobby"));
    }

    #[test]
    fn signals_need_the_right_to_publish_to_the_target_users_room() {
        let deny = Access::new(false);
        let allow = Access::allow_all();
        // Without a claim: the default policy (allow when no auth is configured).
        assert!(allow.may_signal_as(None, "anon", "bob"));
        assert!(!deny.may_signal_as(None, "anon", "bob"));
        assert!(deny.may_signal_as(None, "bob", "bob"), "one's own tabs, always");
        // Patterns: publish, else rooms, must match user:<target>.
        let chat_only = alice(Some(&["chat:*"]), None);
        assert!(!allow.may_signal_as(Some(&chat_only), "alice", "bob"));
        assert!(deny.may_signal_as(Some(&chat_only), "alice", "alice"));
        let everyone = alice(Some(&["chat:*"]), Some(&["chat:*", "user:*"]));
        assert!(deny.may_signal_as(Some(&everyone), "alice", "bob"));
        let one_friend = alice(Some(&["chat:*", "user:bob"]), None);
        assert!(deny.may_signal_as(Some(&one_friend), "alice", "bob"));
        assert!(!deny.may_signal_as(Some(&one_friend), "alice", "bobby"));
        assert!(deny.may_signal_as(Some(&alice(Some(&["*"]), None)), "alice", "carol"), "\"*\" matches every user");
        assert!(!allow.may_signal_as(Some(&alice(Some(&["*"]), Some(&[]))), "alice", "carol"));
    }

    #[test]
    fn user_rooms_belong_to_their_user() {
        let allow = Access::allow_all();
        let everything = alice(Some(&["*"]), None);
        assert!(allow.may_join_as(Some(&everything), "user:alice"));
        assert!(!allow.may_join_as(Some(&everything), "user:bob"), "\"*\" does not open other users' rooms");
        assert!(!allow.may_join_as(Some(&alice(None, None)), "user:bob"));
        assert!(!allow.may_join_as(None, "user:bob"), "nor does the default policy");
        assert!(allow.may_join_as(None, "users"), "only the exact prefix is reserved");
    }
}

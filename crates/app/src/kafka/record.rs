//! The two record formats (docs/KAFKA.md is the contract): what Switchyard produces for every
//! accepted `message` and every event of `kafka.produce_events`, and what it consumes from the
//! topics of `kafka.consume`. Pure code: no Kafka client here, so it builds and is tested without
//! the `kafka` feature.

use crate::events::MAX_ROOM_BYTES;
use crate::pipeline::AcceptedMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest `id` a consumed record may carry (bytes).
pub const MAX_ID_BYTES: usize = 256;
/// The longest event name a consumed record may carry (bytes).
pub const MAX_EVENT_BYTES: usize = 256;
/// Events a server may not emit (Socket.IO reserves them).
pub const RESERVED_EVENTS: &[&str] =
    &["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// One record on its way to Kafka: the key and the JSON value, encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// The room (`message`) or the sender's own room `user:<name>` (other events): Kafka keeps the
    /// order of records with one key.
    pub key: Vec<u8>,
    /// The JSON value ([`OutValue`]).
    pub value: Vec<u8>,
}

/// The value of a produced record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutValue {
    /// The message id: UUIDv7 (unique across the cluster, ordered by time).
    pub id: String,
    /// `message`, or the name of an event of `kafka.produce_events`.
    pub event: String,
    /// The room of a `message`; `null` for other events.
    pub room: Option<String>,
    /// The sender's user name.
    pub user: String,
    /// A `message`'s data; for other events the array of the event's arguments.
    pub data: Value,
    /// Milliseconds since the Unix epoch (the time part of `id`).
    pub ts: u64,
}

impl OutRecord {
    /// The record of an accepted `message`: key = its room.
    ///
    /// Made from the message's JSON as its room receives it (encoded once,
    /// [`AcceptedMessage::json`]): `{"event":"message",` then its fields `id`, `room`, `user`, `data`
    /// and `ts`; the same value as serde_json writes for [`OutValue`], fields in another order.
    pub fn message(message: &AcceptedMessage) -> OutRecord {
        const EVENT: &[u8] = b"{\"event\":\"message\",";
        let fields = message.json.strip_prefix(b"{").unwrap_or(&message.json);
        let mut value = Vec::with_capacity(EVENT.len() + fields.len());
        value.extend_from_slice(EVENT);
        value.extend_from_slice(fields);
        OutRecord { key: message.room.as_bytes().to_vec(), value }
    }

    /// The record of an event of `kafka.produce_events`: key = the sender's room `user:<name>`.
    pub fn event(id: &str, event: &str, user: &str, args: &[Value], ts: u64) -> OutRecord {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            id: &'a str,
            event: &'a str,
            room: Option<&'a str>,
            user: &'a str,
            data: &'a [Value],
            ts: u64,
        }
        let value = serde_json::to_vec(&Borrowed { id, event, room: None, user, data: args, ts })
            .expect("JSON values serialize");
        OutRecord { key: crate::access::user_room(user).into_bytes(), value }
    }
}

/// A consumed record, checked: emit `event` with `data` to `rooms`.
#[derive(Debug, Clone, PartialEq)]
pub struct InRecord {
    /// The rooms (at least one) of the main namespace, across the cluster.
    pub rooms: Vec<String>,
    /// The event name.
    pub event: String,
    /// The single argument of the event; `None`: emitted without arguments.
    pub data: Option<Value>,
    /// The producer's id: a record whose id was emitted within `kafka.dedupe_window_ms` is skipped.
    pub id: Option<String>,
}

/// Why a consumed record was skipped (counted and logged, its offset committed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    #[error("the value is not a JSON object: {0}")]
    NotJson(String),
    #[error("the record has no value")]
    Empty,
    #[error("`rooms` must be a non-empty array of room names (1-{MAX_ROOM_BYTES} bytes each)")]
    Rooms,
    #[error("`event` must be a non-empty string of at most {MAX_EVENT_BYTES} bytes, not a reserved event")]
    Event,
    #[error("`id`, when present, must be a non-empty string of at most {MAX_ID_BYTES} bytes")]
    Id,
}

impl InRecord {
    /// Parses and checks a consumed value.
    pub fn parse(value: Option<&[u8]>) -> Result<InRecord, BadRecord> {
        #[derive(Deserialize)]
        struct Raw {
            rooms: Option<Value>,
            event: Option<Value>,
            data: Option<Value>,
            id: Option<Value>,
        }
        let value = value.ok_or(BadRecord::Empty)?;
        let raw: Raw = serde_json::from_slice(value).map_err(|e| BadRecord::NotJson(e.to_string()))?;
        let rooms = match raw.rooms {
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|room| match room {
                    Value::String(room) if !room.is_empty() && room.len() <= MAX_ROOM_BYTES => Ok(room),
                    _ => Err(BadRecord::Rooms),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(BadRecord::Rooms),
        };
        let event = match raw.event {
            Some(Value::String(event))
                if !event.is_empty()
                    && event.len() <= MAX_EVENT_BYTES
                    && !RESERVED_EVENTS.contains(&event.as_str()) =>
            {
                event
            }
            _ => return Err(BadRecord::Event),
        };
        let id = match raw.id {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Some(id),
            Some(_) => return Err(BadRecord::Id),
        };
        Ok(InRecord { rooms, event, data: raw.data, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_message_record_is_keyed_by_its_room_and_carries_every_field() {
        let message = AcceptedMessage::new(
            "0190-abc".into(),
            "lobby".into(),
            "ada".into(),
            json!({"text": "hi"}),
            1_700_000_000_000,
        );
        let record = OutRecord::message(&message);
        assert_eq!(record.key, b"lobby");
        let value: OutValue = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(
            value,
            OutValue {
                id: "0190-abc".into(),
                event: "message".into(),
                room: Some("lobby".into()),
                user: "ada".into(),
                data: json!({"text": "hi"}),
                ts: 1_700_000_000_000,
            }
        );
    }

    #[test]
    fn a_message_record_is_the_value_serde_json_writes_with_event_first() {
        let datas = [
            json!("00000042|xxxxxxxx"),
            json!({"text": "hi \"there\"\n\u{1}\\", "n": [1, -2, 3.5, 1e300, null, true, false], "emoji": "héllo ✓"}),
            json!(null),
            json!(u64::MAX),
        ];
        for data in datas {
            let message = AcceptedMessage::new(
                "0190-abc".into(),
                "lobby \"quoted\" \t".into(),
                "adà\\".into(),
                data.clone(),
                1_700_000_000_000,
            );
            let expected = OutValue {
                id: message.id.clone(),
                event: "message".into(),
                room: Some(message.room.clone()),
                user: message.user.clone(),
                data,
                ts: message.ts,
            };
            let record = OutRecord::message(&message);
            let text = String::from_utf8(record.value).unwrap();
            assert!(text.starts_with(r#"{"event":"message","id":"0190-abc","room":"#), "{text}");
            assert_eq!(serde_json::from_str::<OutValue>(&text).unwrap(), expected);
            // Exactly the fields of OutValue, nothing twice.
            let fields: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            assert_eq!(fields.len(), 6);
            assert_eq!(text.matches(r#""event":"#).count(), 1);
        }
    }

    #[test]
    fn an_event_record_is_keyed_by_the_users_room_with_every_argument() {
        let record = OutRecord::event("id1", "order", "bob", &[json!(1), json!("two")], 5);
        assert_eq!(record.key, b"user:bob");
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(
            value,
            json!({"id": "id1", "event": "order", "room": null, "user": "bob", "data": [1, "two"], "ts": 5})
        );
    }

    #[test]
    fn consumed_records_are_checked() {
        let ok = InRecord::parse(Some(br#"{"rooms":["a","b"],"event":"news","data":{"x":1},"id":"k1"}"#)).unwrap();
        assert_eq!(ok.rooms, vec!["a", "b"]);
        assert_eq!(ok.event, "news");
        assert_eq!(ok.data, Some(json!({"x": 1})));
        assert_eq!(ok.id.as_deref(), Some("k1"));
        let bare = InRecord::parse(Some(br#"{"rooms":["a"],"event":"ping"}"#)).unwrap();
        assert_eq!((bare.data, bare.id), (None, None));
        let cases: &[(&[u8], BadRecord)] = &[
            (br#"{"rooms":[],"event":"x"}"#, BadRecord::Rooms),
            (br#"{"rooms":"a","event":"x"}"#, BadRecord::Rooms),
            (br#"{"rooms":[""],"event":"x"}"#, BadRecord::Rooms),
            (br#"{"rooms":[1],"event":"x"}"#, BadRecord::Rooms),
            (br#"{"event":"x"}"#, BadRecord::Rooms),
            (br#"{"rooms":["a"]}"#, BadRecord::Event),
            (br#"{"rooms":["a"],"event":""}"#, BadRecord::Event),
            (br#"{"rooms":["a"],"event":"disconnect"}"#, BadRecord::Event),
            (br#"{"rooms":["a"],"event":"x","id":5}"#, BadRecord::Id),
            (br#"{"rooms":["a"],"event":"x","id":""}"#, BadRecord::Id),
        ];
        for (input, error) in cases {
            assert_eq!(&InRecord::parse(Some(input)).unwrap_err(), error, "{}", String::from_utf8_lossy(input));
        }
        assert!(matches!(InRecord::parse(Some(b"not json")), Err(BadRecord::NotJson(_))));
        assert!(matches!(InRecord::parse(Some(b"[1,2]")), Err(BadRecord::NotJson(_))));
        assert_eq!(InRecord::parse(None), Err(BadRecord::Empty));
        let long_room = format!(r#"{{"rooms":["{}"],"event":"x"}}"#, "r".repeat(MAX_ROOM_BYTES + 1));
        assert_eq!(InRecord::parse(Some(long_room.as_bytes())), Err(BadRecord::Rooms));
    }
}

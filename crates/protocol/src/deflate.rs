//! WebSocket per-message compression (RFC 7692, `permessage-deflate`), the server side: negotiation of
//! the `Sec-WebSocket-Extensions` offer, compression of one outgoing message, and bounded inflation of
//! one incoming message.
//!
//! The server never keeps a compression context between messages: its answer always carries
//! `server_no_context_takeover` (RFC 7692 7.1.1.1 lets a server add it to any offer). So a message is
//! compressed the same way for every connection, and a broadcast is compressed once for all of them;
//! the compressor is a per-thread scratch, never part of a connection. The client keeps its context
//! only when the server allows it ([`DeflatePolicy::client_context_takeover`]); then the server keeps
//! an inflater for that connection, created by its first compressed message. Otherwise incoming
//! messages inflate through a per-thread scratch inflater too.
//!
//! The window is always 2^15 bytes (the pure-Rust deflate backend cannot use a smaller one): an offer
//! that asks the server for a smaller `server_max_window_bits` is declined, and the next offer (or no
//! compression) is used. `client_max_window_bits` is accepted as offered and never answered, so the
//! client may use any window up to 2^15, which the inflater always supports.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with; removed from each message on the wire (RFC 7692 7.2.1) and
/// appended again before inflating (7.2.2).
const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compression level of outgoing messages (1 fastest .. 9 smallest; Node's `ws` uses zlib's
/// default, 6). 3 is a middle ground: a broadcast is compressed once, but a message to one socket is
/// compressed for that socket alone.
pub const LEVEL: u32 = 3;

/// What the server accepts in a negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflatePolicy {
    /// Let a client keep its compression context between messages (better compression of what clients
    /// send, at the cost of an inflater kept for each such connection). Otherwise the server's answer
    /// carries `client_no_context_takeover`.
    pub client_context_takeover: bool,
}

/// The parameters agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The client compresses each message with the context of the previous ones.
    pub client_context_takeover: bool,
}

/// The server's `Sec-WebSocket-Extensions` answer for the client's offers (every value of the header,
/// in order), or `None` when no offer is acceptable (the connection then runs uncompressed).
///
/// The first acceptable `permessage-deflate` offer wins. An offer is declined (RFC 7692 5) when a
/// parameter is unknown, repeated or has an invalid value, or when it asks for a server window under
/// 2^15. A header that does not parse declines every offer.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>, policy: DeflatePolicy) -> Option<(Agreed, String)> {
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else { return None };
        let offers = parse_extensions(text)?;
        for offer in offers.iter().filter(|o| o.name.eq_ignore_ascii_case(EXTENSION_NAME)) {
            if let Some(answer) = accept(offer, policy) {
                return Some(answer);
            }
        }
    }
    None
}

/// One parsed extension of a `Sec-WebSocket-Extensions` header: its name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 9.1): `name *(";" param[=value])`, extensions
/// separated by commas, values as tokens or quoted strings. `None` if it does not follow the grammar.
pub fn parse_extensions(text: &str) -> Option<Vec<ExtensionOffer>> {
    let mut lexer = Lexer { rest: text };
    let mut offers = Vec::new();
    loop {
        lexer.skip_ws();
        if lexer.rest.is_empty() {
            // An empty list element (RFC 7230 7: `a, , b`) is allowed; a header of only commas parses to nothing.
            return Some(offers);
        }
        if lexer.eat(',') {
            continue;
        }
        let name = lexer.token()?;
        let mut params = Vec::new();
        loop {
            lexer.skip_ws();
            if lexer.rest.is_empty() || lexer.eat(',') {
                break;
            }
            if !lexer.eat(';') {
                return None;
            }
            lexer.skip_ws();
            let param = lexer.token()?;
            lexer.skip_ws();
            let value = if lexer.eat('=') {
                lexer.skip_ws();
                Some(if lexer.rest.starts_with('"') { lexer.quoted()? } else { lexer.token()?.to_string() })
            } else {
                None
            };
            params.push((param.to_ascii_lowercase(), value));
        }
        offers.push(ExtensionOffer { name: name.to_string(), params });
    }
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// An RFC 7230 token: one or more visible characters other than separators.
    fn token(&mut self) -> Option<&'a str> {
        let end = self.rest.find(|c: char| !is_token_char(c)).unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }

    /// A quoted string; its content must be a token once unescaped (RFC 6455 9.1).
    fn quoted(&mut self) -> Option<String> {
        let mut chars = self.rest.char_indices();
        chars.next(); // the opening quote
        let mut value = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return (!value.is_empty() && value.chars().all(is_token_char)).then_some(value);
                }
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c)
}

/// A window-bits value: `8` to `15`, digits only, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))
}

/// The answer to one `permessage-deflate` offer, or `None` to decline it.
fn accept(offer: &ExtensionOffer, policy: DeflatePolicy) -> Option<(Agreed, String)> {
    let mut client_no_context_takeover = false;
    let mut server_window = None;
    let mut seen: Vec<&str> = Vec::with_capacity(offer.params.len());
    for (name, value) in &offer.params {
        if seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name);
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => client_no_context_takeover = true,
            ("server_max_window_bits", Some(value)) => server_window = Some(window_bits(value)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
    }
    if server_window.is_some_and(|bits| bits < 15) {
        return None;
    }
    let client_context_takeover = policy.client_context_takeover && !client_no_context_takeover;
    let mut answer = String::from("permessage-deflate; server_no_context_takeover");
    if !client_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    if server_window.is_some() {
        // The offer asked for a limit; the answer must state one no larger (RFC 7692 7.1.2.1).
        answer.push_str("; server_max_window_bits=15");
    }
    Some((Agreed { client_context_takeover }, answer))
}

thread_local! {
    /// Each thread's compressor, reset after every message (the server never takes over context).
    static COMPRESSOR: RefCell<Option<Box<Compress>>> = const { RefCell::new(None) };
    /// Each thread's inflater for messages from clients without context takeover.
    static INFLATER: RefCell<Option<Box<Decompress>>> = const { RefCell::new(None) };
}

/// Appends the compressed payload of one message to `out` (raw deflate, sync flush, without the
/// trailing `00 00 ff ff`). Returns false, with `out` as it was, if compression fails (it does not
/// with a well-formed compressor; the caller then sends the message uncompressed).
pub fn compress(payload: &[u8], out: &mut BytesMut) -> bool {
    let start = out.len();
    let ok = COMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let compressor = slot.get_or_insert_with(|| Box::new(Compress::new(Compression::new(LEVEL), false)));
            let ok = compress_with(compressor, payload, out);
            compressor.reset();
            ok
        }
        // Not reentrant in practice; a fresh compressor keeps this correct regardless.
        Err(_) => compress_with(&mut Compress::new(Compression::new(LEVEL), false), payload, out),
    });
    if !ok {
        out.truncate(start);
    }
    ok
}

fn compress_with(compressor: &mut Compress, mut input: &[u8], out: &mut BytesMut) -> bool {
    let start = out.len();
    // Compressed text is usually well under half its size; the loop grows the buffer otherwise.
    out.reserve(input.len() / 2 + 64);
    loop {
        let spare_len = out.capacity() - out.len();
        let before_in = compressor.total_in();
        let before_out = compressor.total_out();
        let len = out.len();
        out.resize(len + spare_len, 0);
        let status = compressor.compress(input, &mut out[len..], FlushCompress::Sync);
        let consumed = (compressor.total_in() - before_in) as usize;
        let produced = (compressor.total_out() - before_out) as usize;
        out.truncate(len + produced);
        input = &input[consumed.min(input.len())..];
        match status {
            Ok(Status::Ok) | Ok(Status::BufError) => {}
            Ok(Status::StreamEnd) | Err(_) => return false,
        }
        // Done once all input is in and the flush fit in the space offered.
        if input.is_empty() && produced < spare_len {
            break;
        }
        if consumed == 0 && produced == 0 && spare_len > 0 {
            return false;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.len() < start + SYNC_TRAILER.len() || out[out.len() - 4..] != SYNC_TRAILER {
        return false;
    }
    out.truncate(out.len() - SYNC_TRAILER.len());
    true
}

/// Why an incoming compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooBig,
    /// It is not valid deflate data.
    Corrupt,
}

/// The inflater of one connection whose client takes over its context: created by the first
/// compressed message and kept for the connection's life. Without context takeover none is kept.
#[derive(Default)]
pub struct Inflater {
    state: Option<Box<Decompress>>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("allocated", &self.state.is_some()).finish()
    }
}

impl Inflater {
    /// True once a compressed message has been inflated with context takeover.
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Inflates one message whose compressed payload is the concatenation of `parts`, keeping the
    /// context for the next one. On error the context is dropped (the connection is closed anyway).
    pub fn inflate(&mut self, parts: &[&[u8]], limit: usize) -> Result<BytesMut, InflateError> {
        let state = self.state.get_or_insert_with(|| Box::new(Decompress::new(false)));
        let result = inflate_with(state, parts, limit);
        match result {
            Ok((_, true)) => state.reset(false),
            Ok((_, false)) => {}
            Err(_) => self.state = None,
        }
        result.map(|(out, _)| out)
    }
}

/// Inflates one message of a client without context takeover (through this thread's scratch inflater).
pub fn inflate_message(parts: &[&[u8]], limit: usize) -> Result<BytesMut, InflateError> {
    INFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            // A reset zeroes the whole state (the window included): once per message, before it.
            let inflater = slot.get_or_insert_with(|| Box::new(Decompress::new(false)));
            inflater.reset(false);
            inflate_with(inflater, parts, limit).map(|(out, _)| out)
        }
        Err(_) => inflate_with(&mut Decompress::new(false), parts, limit).map(|(out, _)| out),
    })
}

/// Inflates `parts` then the sync trailer into a buffer that never grows past `limit + 1` bytes:
/// a message that inflates to more stops there with [`InflateError::TooBig`], whatever its ratio.
/// Returns the message and whether the stream ended (a final block: the context must not be reused).
fn inflate_with(d: &mut Decompress, parts: &[&[u8]], limit: usize) -> Result<(BytesMut, bool), InflateError> {
    let compressed: usize = parts.iter().map(|p| p.len()).sum();
    let cap = limit.saturating_add(1);
    let mut out = BytesMut::with_capacity(compressed.saturating_mul(4).max(64).min(cap));
    for part in parts.iter().copied().chain(std::iter::once(&SYNC_TRAILER[..])) {
        let mut input = part;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(InflateError::TooBig);
                }
                let grow = out.capacity().max(64).min(cap - out.len());
                out.reserve(grow);
            }
            let len = out.len();
            // Offer at most up to the cap, even if the allocator gave more.
            let room = (out.capacity() - len).min(cap - len);
            out.resize(len + room, 0);
            let before_in = d.total_in();
            let before_out = d.total_out();
            let status = d.decompress(input, &mut out[len..], FlushDecompress::Sync);
            let consumed = (d.total_in() - before_in) as usize;
            let produced = (d.total_out() - before_out) as usize;
            out.truncate(len + produced);
            input = &input[consumed.min(input.len())..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                Ok(Status::StreamEnd) => return Ok((out, true)),
                Ok(Status::Ok) | Ok(Status::BufError) => {}
                Err(_) => return Err(InflateError::Corrupt),
            }
            if produced < room {
                if input.is_empty() {
                    break;
                }
                if consumed == 0 && produced == 0 {
                    return Err(InflateError::Corrupt);
                }
            }
            if out.len() == cap {
                return Err(InflateError::TooBig);
            }
        }
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(offer: &str, policy: DeflatePolicy) -> Option<String> {
        negotiate([offer.as_bytes()], policy).map(|(_, a)| a)
    }

    #[test]
    fn negotiates_the_common_offers() {
        let p = DeflatePolicy::default();
        // What browsers and Node's `ws` send.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", p).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let takeover = DeflatePolicy { client_context_takeover: true };
        let (agreed, text) = negotiate([&b"permessage-deflate; client_max_window_bits"[..]], takeover).unwrap();
        assert!(agreed.client_context_takeover);
        assert_eq!(text, "permessage-deflate; server_no_context_takeover");
        // The client's own no-takeover wins over the policy.
        let (agreed, _) = negotiate([&b"permessage-deflate; client_no_context_takeover"[..]], takeover).unwrap();
        assert!(!agreed.client_context_takeover);
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=15", p).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"
            )
        );
        assert_eq!(
            answer("PerMessage-Deflate;Server_No_Context_Takeover ;client_max_window_bits=\"10\"", p).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn declines_what_it_cannot_accept() {
        let p = DeflatePolicy::default();
        for offer in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
            // Malformed headers decline everything.
            "permessage-deflate;",
            "permessage-deflate; =15",
            "permessage-deflate; server_max_window_bits=\"15",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; a=b=c",
            "permessage-deflate, ;",
        ] {
            assert_eq!(answer(offer, p), None, "{offer:?}");
        }
        // Not UTF-8.
        assert!(negotiate([&b"permessage-deflate\xff"[..]], p).is_none());
    }

    #[test]
    fn takes_the_first_acceptable_offer() {
        let p = DeflatePolicy::default();
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=9, permessage-deflate; server_max_window_bits=15", p)
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"
            )
        );
        assert!(answer("foo; bar=1, , permessage-deflate", p).is_some());
        // Across header lines.
        assert!(negotiate([&b"foo"[..], &b"permessage-deflate"[..]], p).is_some());
    }

    #[test]
    fn parses_quoted_values() {
        let offers = parse_extensions("a; b=\"1\\5\", c;d").unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].params, vec![("b".to_string(), Some("15".to_string()))]);
        assert_eq!(offers[1].params, vec![("d".to_string(), None)]);
    }

    #[test]
    fn compresses_and_inflates() {
        let text = br#"42["message",{"user":"alice","text":"hello hello hello hello hello"}]"#.repeat(20);
        let mut out = BytesMut::new();
        assert!(compress(&text, &mut out));
        assert!(out.len() < text.len() / 4, "{} of {}", out.len(), text.len());
        assert_ne!(&out[out.len() - 4..], &SYNC_TRAILER);
        let inflated = inflate_message(&[&out[..]], text.len()).unwrap();
        assert_eq!(&inflated[..], &text[..]);
        // In any split.
        let (a, b) = out.split_at(out.len() / 3);
        assert_eq!(&inflate_message(&[a, b], text.len()).unwrap()[..], &text[..]);
        // The same bytes every time: no context is carried from one message to the next.
        let mut again = BytesMut::new();
        assert!(compress(&text, &mut again));
        assert_eq!(out, again);
        // Empty and incompressible payloads.
        let mut empty = BytesMut::new();
        assert!(compress(b"", &mut empty));
        assert_eq!(&inflate_message(&[&empty[..]], 10).unwrap()[..], b"");
        let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut packed = BytesMut::new();
        assert!(compress(&noise, &mut packed));
        assert_eq!(&inflate_message(&[&packed[..]], noise.len()).unwrap()[..], &noise[..]);
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let bomb = vec![b'a'; 10_000_000];
        let mut packed = BytesMut::new();
        assert!(compress(&bomb, &mut packed));
        assert!(packed.len() < 20_000, "{}", packed.len());
        assert_eq!(inflate_message(&[&packed[..]], 1_000_000), Err(InflateError::TooBig));
        assert_eq!(inflate_message(&[&packed[..]], bomb.len() - 1), Err(InflateError::TooBig));
        assert_eq!(inflate_message(&[&packed[..]], bomb.len()).map(|b| b.len()), Ok(bomb.len()));
        let mut inflater = Inflater::default();
        assert_eq!(inflater.inflate(&[&packed[..]], 1000), Err(InflateError::TooBig));
        assert!(!inflater.is_allocated(), "a failed inflater is dropped");
    }

    #[test]
    fn corrupt_data_is_refused() {
        assert_eq!(inflate_message(&[&[0xff, 0xff, 0xff][..]], 1000), Err(InflateError::Corrupt));
        assert_eq!(inflate_message(&[&[0x07][..]], 1000), Err(InflateError::Corrupt));
    }

    #[test]
    fn context_takeover_inflates_messages_that_refer_to_earlier_ones() {
        // A client with context takeover: one compressor across messages.
        let mut client = Compress::new(Compression::new(6), false);
        let mut inflater = Inflater::default();
        let message = b"the same sentence, again and again and again".repeat(3);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut out = BytesMut::new();
            assert!(compress_with(&mut client, &message, &mut out));
            sizes.push(out.len());
            assert_eq!(&inflater.inflate(&[&out[..]], 10_000).unwrap()[..], &message[..]);
        }
        assert!(inflater.is_allocated());
        assert!(sizes[1] < sizes[0] / 2, "{sizes:?}: later messages refer to the first");
    }
}

//! Bytes of a client connection arriving in chunks of arbitrary sizes: the decoder never panics, and the
//! messages it yields do not depend on how the bytes were split. The first byte also picks the decoder:
//! plain, or with permessage-deflate negotiated (with or without client context takeover), so that
//! compressed messages and compression bombs are fuzzed too.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_protocol::websocket::{FrameDecoder, FrameError, Message};

/// Small, so that TooBig is reached too.
const MAX_MESSAGE_SIZE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };

    let mode = (chunking >> 4) % 3;
    // All at once.
    let whole = run(stream, &[], mode);
    // In chunks whose sizes come from the stream itself, cycling.
    let sizes: Vec<usize> = stream
        .iter()
        .take(16)
        .map(|&b| usize::from(b % 32) + usize::from(chunking % 4))
        .collect();
    let chunked = run(stream, &sizes, mode);
    assert_eq!(whole, chunked, "the result does not depend on chunking");
});

/// Feeds `stream` in chunks (`sizes` cycled; empty = all at once) and collects messages until the first error.
fn run(stream: &[u8], sizes: &[usize], mode: u8) -> (Vec<Message>, Option<FrameError>) {
    let mut decoder = match mode {
        0 => FrameDecoder::new(MAX_MESSAGE_SIZE),
        takeover => FrameDecoder::with_deflate(MAX_MESSAGE_SIZE, takeover == 2),
    };
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut offset = 0;
    let mut chunk = 0;
    while offset < stream.len() {
        let size = if sizes.is_empty() {
            stream.len()
        } else {
            sizes[chunk % sizes.len()].max(1)
        };
        chunk += 1;
        let end = (offset + size).min(stream.len());
        buf.extend_from_slice(&stream[offset..end]);
        offset = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    check_message(&message);
                    messages.push(message);
                }
                // Complete frames of an unfinished fragmented message may have been consumed.
                Ok(None) => {
                    assert!(buf.len() <= before);
                    break;
                }
                Err(error) => return (messages, Some(error)),
            }
        }
    }
    (messages, None)
}

fn check_message(message: &Message) {
    match message {
        Message::Text(text) => {
            assert!(text.len() <= MAX_MESSAGE_SIZE);
            assert!(std::str::from_utf8(text).is_ok());
        }
        Message::Binary(data) => assert!(data.len() <= MAX_MESSAGE_SIZE),
        Message::Ping(data) | Message::Pong(data) => assert!(data.len() <= 125),
        Message::Close(_) => {}
    }
}

//! A message from another node as the Redis adapter reads it (JSON when it starts with `{`, else
//! MessagePack), through every reader of the cluster wire: event packets, broadcast options, room
//! lists, fetch-sockets entries, and the answers forwarded to Node peers.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_protocol::cluster::msgpack;
use switchyard_protocol::cluster::wire::{
    first_arg, parse_options, parse_packet, rooms, server_side_data, socket_from_json, write_options, write_packet,
    OptionsRef,
};
use switchyard_protocol::socketio::count_placeholders;

fuzz_target!(|data: &[u8]| {
    let (value, binary): (Value, Vec<Bytes>) = if data.first() == Some(&b'{') {
        match serde_json::from_slice(data) {
            Ok(value) => (value, Vec::new()),
            Err(_) => return,
        }
    } else {
        match msgpack::decode(data) {
            Ok(decoded) => (decoded.value, decoded.binary),
            Err(_) => return,
        }
    };

    // Every field a message may carry, read wherever it sits (classic broadcasts are arrays
    // `[uid, packet, opts]`, requests and sharded messages maps).
    let mut candidates: Vec<&Value> = vec![&value];
    match &value {
        Value::Array(items) => candidates.extend(items.iter()),
        Value::Object(map) => candidates.extend(map.values()),
        _ => {}
    }
    for candidate in candidates {
        if let Some(packet) = parse_packet(candidate.clone(), &binary) {
            // Only attachments that a placeholder of the arguments points at are kept.
            assert!(packet.binary.len() <= packet.args.iter().map(count_placeholders).sum::<usize>());
            // A packet read from the wire can be written back, and reads the same.
            let opts = parse_options::<String>(candidate.get("opts"));
            let mut w = msgpack::Writer::default();
            write_packet(&mut w, &packet.nsp, &packet.event, &packet.args, &packet.binary);
            let back = msgpack::decode(&w.finish()).expect("written back, it decodes");
            let again = parse_packet(back.value, &back.binary).expect("written back, it is an event");
            assert_eq!((&again.nsp, &again.event), (&packet.nsp, &packet.event));
            let mut w = msgpack::Writer::default();
            write_options(&mut w, OptionsRef { rooms: &opts.rooms, except: &opts.except, flags: opts.flags });
            let back = msgpack::decode(&w.finish()).expect("options written back decode");
            assert_eq!(parse_options::<String>(Some(&back.value)), opts);
            let _ = server_side_data(&packet.event, &packet.args, &packet.binary);
            let _ = first_arg(&packet.args, &packet.binary);
        }
        let opts = parse_options::<String>(Some(candidate));
        let _ = (opts.rooms.len(), opts.except.len());
        let _ = rooms(candidate.get("rooms")).count();
        if let Some(entry) = socket_from_json(candidate) {
            assert_eq!(Some(entry.id.as_str()), candidate.get("id").and_then(Value::as_str));
        }
        if let Value::Array(items) = candidate {
            items.iter().filter_map(socket_from_json).for_each(drop);
            let _ = first_arg(items, &binary);
        }
    }
});

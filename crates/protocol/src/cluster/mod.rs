//! The Redis cluster wire of Node's `@socket.io/redis-adapter` and `@socket.io/redis-emitter`: MessagePack
//! as notepack writes it, and the message pieces both wire formats (classic and sharded) share.
//! Pure codecs: the Redis adapter (`switchyard-redis`) does the I/O and the Socket.IO conversions.

pub mod msgpack;
pub mod wire;

pub use switchyard_protocol as protocol;

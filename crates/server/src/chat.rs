//! The web chat served at `/`.

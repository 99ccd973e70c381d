//! fleetup's built-in TFTP server (and the client the device simulator uses).
//!
//! `packet` is the wire format, `session` the sans-IO transfer state machines, `client` a thin
//! tokio driver around the receiving machine.

pub mod client;
pub mod netascii;
pub mod packet;
pub mod session;

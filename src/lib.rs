//! fleetup: upgrade the operating system of a fleet of network devices.
//!
//! See `ARCHITECTURE.md` for the map of this crate.
//!
//! Modules and items are `pub` only where the binary, the integration tests or the benches use
//! them, so that the compiler reports dead code; read these docs with
//! `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub(crate) mod configs;
pub mod demo;
pub mod device;
pub mod ftp;
#[doc(hidden)]
pub mod fuzzing;
pub mod golden;
pub mod grants;
pub mod http_client;
pub mod image_http;
pub mod image_ssh;
pub mod images;
pub mod inventory;
pub(crate) mod metrics;
pub mod notify;
pub mod playbook;
pub(crate) mod rcp;
pub mod rollout;
pub mod serve;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod sync;
pub mod tftp;
pub mod transfers;
pub(crate) mod yaml;

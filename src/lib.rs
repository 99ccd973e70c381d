//! fleetup: upgrade the operating system of a fleet of network devices.
//!
//! See `ARCHITECTURE.md` for the map of this crate.

pub mod api;
pub mod client;
pub mod config;
pub mod demo;
pub mod device;
pub mod ftp;
pub mod images;
pub mod inventory;
pub mod playbook;
pub mod rollout;
pub mod serve;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod tftp;
pub mod transfers;
pub(crate) mod yaml;

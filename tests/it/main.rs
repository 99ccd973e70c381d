//! All integration tests live in this one binary, so the stack is linked once.
//! Each area has its own module; tests pick free ports and fresh data directories.

mod support;
mod sync;

mod access;
mod agents;
mod api;
mod cli;
mod compare;
mod configs;
mod conformance;
mod contract;
mod demo;
mod device_view;
mod docs;
mod drivers;
mod ftp;
mod fuzz;
mod golden;
mod http;
mod image_http;
mod image_ssh;
mod lab;
mod metrics;
mod nautobot;
mod nautobot_api;
mod nodes;
mod notify;
mod postgres;
mod rollback;
mod rollout;
mod safety;
mod samples;
mod stacks;
mod store;
mod tftp;
mod transfer_paths;

//! Device drivers: speak to one device over SSH and run one upgrade step at a time.
pub mod cli;
pub mod parse;

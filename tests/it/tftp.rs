//! TFTP: fleetup's server against real clients (curl, tftp-hpa, atftp), and fleetup's client
//! against fleetup's server and atftpd.

mod support;

mod bad_input;
mod client;
mod real_clients;
mod server;

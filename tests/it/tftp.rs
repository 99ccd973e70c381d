//! TFTP: fleetup's server against real clients (curl, tftp-hpa, atftp), and fleetup's client
//! against fleetup's server and atftpd.

mod support;

mod client;

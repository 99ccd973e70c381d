//! What can go wrong talking to a device, and how its texts lose a secret.

use super::parse::{CopyError, Md5Error, ParseError};
use super::transcript;

/// What went wrong talking to a device. Messages name the device and say what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "{device}: cannot connect to {addr}: {reason}; check the address, the port and that SSH is enabled"
    )]
    Connect {
        device: String,
        addr: String,
        reason: String,
    },
    #[error(
        "{device}: no SSH answer from {addr} within {secs} s; check that the device is up and reachable"
    )]
    ConnectTimeout {
        device: String,
        addr: String,
        secs: u64,
    },
    #[error(
        "{device}: the SSH host key changed: the inventory pins `{pinned}`, the device presents `{seen}`; if the device was replaced on purpose, re-trust it with `fleetup device trust {device}`"
    )]
    HostKeyChanged {
        device: String,
        pinned: String,
        seen: String,
    },
    #[error(
        "{device}: login refused for user {user:?} ({detail}); check the credentials in the inventory"
    )]
    AuthFailed {
        device: String,
        user: String,
        detail: String,
    },
    #[error("{device}: login did not complete within {secs} s")]
    AuthTimeout { device: String, secs: u64 },
    #[error("{device}: cannot read private key {path}: {reason}")]
    PrivateKey {
        device: String,
        path: String,
        reason: String,
    },
    #[error(
        "{device}: `enable` did not reach privileged mode ({output}); check the enable secret in the inventory"
    )]
    EnableFailed { device: String, output: String },
    #[error("{device}: `{command}` did not finish in time; last output: {tail:?}")]
    CommandTimeout {
        device: String,
        command: String,
        tail: String,
    },
    #[error("{device}: connection lost{}", match command { Some(c) => format!(" during `{c}`"), None => String::new() })]
    ConnectionLost {
        device: String,
        command: Option<String>,
    },
    #[error("{device}: `{command}` was refused: {message}")]
    Rejected {
        device: String,
        command: String,
        message: String,
    },
    #[error("{device}: cannot read the output of `{command}`: {source}")]
    Parse {
        device: String,
        command: String,
        source: ParseError,
    },
    #[error("{device}: copy failed: {source}")]
    Copy { device: String, source: CopyError },
    #[error("{device}: {source}")]
    Md5 { device: String, source: Md5Error },
    #[error("{device}: the boot variable reads {actual:?} after setting {wanted:?}")]
    BootNotSet {
        device: String,
        wanted: Vec<String>,
        actual: Vec<String>,
    },
    #[error("{device}: saving the configuration failed: {output:?}")]
    SaveFailed { device: String, output: String },
    #[error("{device}: the reload was refused: {output:?}")]
    ReloadRefused { device: String, output: String },
    #[error("{device}: did not come back within {secs} s after the reload ({detail})")]
    NeverCameBack {
        device: String,
        secs: u64,
        detail: String,
    },
    #[error("{device}: ssh error while {what}: {reason}")]
    Ssh {
        device: String,
        what: &'static str,
        reason: String,
    },
    #[error("{device}: {message}")]
    Session { device: String, message: String },
    #[error("{device}: cancelled")]
    Cancelled { device: String },
}

impl DeviceError {
    /// The same error with `secret` replaced by `***` in every text it carries.
    pub(crate) fn redact(self, secret: &str) -> DeviceError {
        if secret.is_empty() {
            return self;
        }
        let r = |s: String| transcript::redact(&s, [secret]);
        match self {
            DeviceError::CommandTimeout {
                device,
                command,
                tail,
            } => DeviceError::CommandTimeout {
                device,
                command: r(command),
                tail: r(tail),
            },
            DeviceError::ConnectionLost { device, command } => DeviceError::ConnectionLost {
                device,
                command: command.map(r),
            },
            DeviceError::Rejected {
                device,
                command,
                message,
            } => DeviceError::Rejected {
                device,
                command: r(command),
                message: r(message),
            },
            DeviceError::Copy { device, source } => {
                let source = match source {
                    CopyError::Timeout(m) => CopyError::Timeout(r(m)),
                    CopyError::SourceNotFound(m) => CopyError::SourceNotFound(r(m)),
                    CopyError::FlashFull(m) => CopyError::FlashFull(r(m)),
                    CopyError::Refused(m) => CopyError::Refused(r(m)),
                    CopyError::Unreachable(m) => CopyError::Unreachable(r(m)),
                    CopyError::WriteFailed(m) => CopyError::WriteFailed(r(m)),
                    CopyError::Other(m) => CopyError::Other(r(m)),
                    CopyError::Parse(ParseError::Missing {
                        command,
                        what,
                        first_line,
                    }) => CopyError::Parse(ParseError::Missing {
                        command,
                        what,
                        first_line: r(first_line),
                    }),
                };
                DeviceError::Copy { device, source }
            }
            DeviceError::Session { device, message } => DeviceError::Session {
                device,
                message: r(message),
            },
            other => other,
        }
    }

    pub(crate) fn ssh(device: &str, what: &'static str, e: russh::Error) -> Self {
        DeviceError::Ssh {
            device: device.to_string(),
            what,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_ftp_password_everywhere() {
        let e = DeviceError::CommandTimeout {
            device: "sw1".into(),
            command: "copy ftp://u:s3cret@10.0.0.5/a.bin flash:a.bin".into(),
            tail: "copy ftp://u:s3cret@10.0.0.5/a.bin flash:a.bin\nLoading !!!".into(),
        }
        .redact("s3cret");
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("ftp://u:***@10.0.0.5/a.bin"), "{text}");
        let e = DeviceError::Copy {
            device: "sw1".into(),
            source: CopyError::Refused(
                "%Error opening ftp://u:s3cret@h/a (Permission denied)".into(),
            ),
        }
        .redact("s3cret");
        assert!(!e.to_string().contains("s3cret"));
    }
}

//! How a device gets the image: the copy sources a job may try in order, the `copy` command
//! and the configuration lines each one needs on each platform, and which failures are the
//! transport's (worth trying the next source) rather than the image's or the flash's. Pure:
//! no I/O.

use std::path::PathBuf;
use std::sync::Arc;

use super::parse::CopyError;
use super::{DeviceError, Driver};
use crate::inventory::{Platform, Secret};

/// The longest CLI line fleetup sends: IOS-XE cuts lines longer than about 253 characters,
/// and a cut copy command fetches another file or none.
pub(crate) const MAX_LINE: usize = 253;

/// How the image reaches the device.
#[derive(Debug, Clone)]
pub enum Transfer {
    Tftp,
    /// FTP with the credentials in the URL (`ftp://user:pass@host/file`).
    Ftp {
        username: String,
        password: Secret,
    },
    /// HTTP or HTTPS from fleetup's image server; the job's path token is the source's
    /// directory (`j/TOKEN`).
    Http {
        tls: bool,
    },
    /// SCP or SFTP pull from fleetup's SSH file server, with a one-time account. IOS and
    /// IOS-XE take the password in the URL; NX-OS asks for it at a prompt.
    Ssh {
        sftp: bool,
        username: String,
        password: Secret,
    },
    /// fleetup copies the image over its own SSH session into the device's SCP server
    /// (`ip scp server enable`), for devices that cannot reach fleetup. The file pushed is
    /// `store/IMAGE`.
    ScpPush {
        store: PathBuf,
        progress: Option<PushProgress>,
    },
}

/// Told how a push goes: the file, the bytes sent so far and the file's size, after each
/// chunk the device took.
#[derive(Clone)]
pub struct PushProgress(pub Arc<PushWatcher>);

/// `(file, bytes sent, file size)`.
pub type PushWatcher = dyn Fn(&str, u64, u64) + Send + Sync;

impl std::fmt::Debug for PushProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushProgress")
    }
}

impl Transfer {
    /// The protocol's name as the playbook spells it.
    pub fn protocol(&self) -> &'static str {
        match self {
            Transfer::Tftp => "tftp",
            Transfer::Ftp { .. } => "ftp",
            Transfer::Http { tls: false } => "http",
            Transfer::Http { tls: true } => "https",
            Transfer::Ssh { sftp: false, .. } => "scp",
            Transfer::Ssh { sftp: true, .. } => "sftp",
            Transfer::ScpPush { .. } => "scp-push",
        }
    }

    /// The secret the copy command or its dialog carries, to be redacted everywhere.
    pub(crate) fn password(&self) -> Option<&Secret> {
        match self {
            Transfer::Ftp { password, .. } | Transfer::Ssh { password, .. } => Some(password),
            _ => None,
        }
    }

    /// The global line that picks the interface (and so the VRF) this protocol's client
    /// leaves from on IOS and IOS-XE; `None` for a push, where the device is the server.
    pub(crate) fn source_interface_command(&self) -> Option<&'static str> {
        match self {
            Transfer::Tftp => Some("ip tftp source-interface"),
            Transfer::Ftp { .. } => Some("ip ftp source-interface"),
            Transfer::Http { .. } => Some("ip http client source-interface"),
            Transfer::Ssh { .. } => Some("ip ssh source-interface"),
            Transfer::ScpPush { .. } => None,
        }
    }
}

/// Where the device finds the image: fleetup's address *as seen from that device* (per site),
/// and the VRF or source interface its copy must leave from.
#[derive(Debug, Clone)]
pub struct CopySource {
    pub transfer: Transfer,
    /// Host or IP address of fleetup's file server reachable from the device.
    pub server: String,
    /// A non-standard port (IOS accepts none in `tftp://` URLs; the lab maps it per device).
    pub port: Option<u16>,
    /// Directory on the server, without leading or trailing slash; empty for the root.
    pub directory: String,
    /// The VRF the copy runs in: `vrf NAME` at the end of the copy command on NX-OS (where
    /// fleetup defaults it to `management`) and IOS-XE.
    pub vrf: Option<String>,
    /// IOS and IOS-XE: the interface the protocol's client leaves from, set for the copy
    /// (`ip tftp source-interface X`, …) and put back as it was right after it.
    pub source_interface: Option<String>,
}

impl CopySource {
    /// A source that copies from `server` by `transfer`, in the global routing table.
    pub fn new(transfer: Transfer, server: impl Into<String>) -> CopySource {
        CopySource {
            transfer,
            server: server.into(),
            port: None,
            directory: String::new(),
            vrf: None,
            source_interface: None,
        }
    }

    /// Credentials IOS cannot take in a URL: it splits at the first `/` after the scheme and
    /// does not decode `%XX`, so a `/` anywhere or a `:` or `@` in the user name would be read
    /// as part of the host or path.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Transfer::Ftp { username, password }
        | Transfer::Ssh {
            username, password, ..
        } = &self.transfer
        {
            let what = self.transfer.protocol().to_ascii_uppercase();
            if username.is_empty() || username.contains([':', '@', '/']) {
                return Err(format!(
                    "{what} user name {username:?} cannot be put in a copy URL (empty, or contains : @ /)"
                ));
            }
            if password.0.contains('/') {
                return Err(format!(
                    "the {what} password contains `/`, which IOS cannot take in a copy URL; choose another password"
                ));
            }
        }
        Ok(())
    }

    /// The URL for `copy URL flash:` on this platform.
    #[cfg(test)]
    fn url(&self, image: &str, platform: Platform) -> String {
        self.build(image, platform, false)
    }

    /// The URL with the password masked.
    #[cfg(test)]
    fn display_url(&self, image: &str, platform: Platform) -> String {
        self.build(image, platform, true)
    }

    fn build(&self, image: &str, platform: Platform, mask: bool) -> String {
        let masked = |p: &Secret| {
            if mask { "***".to_string() } else { p.0.clone() }
        };
        let (scheme, auth) = match &self.transfer {
            Transfer::Tftp => ("tftp", String::new()),
            Transfer::Ftp { username, password } => {
                ("ftp", format!("{username}:{}@", masked(password)))
            }
            Transfer::Http { tls } => (if *tls { "https" } else { "http" }, String::new()),
            Transfer::Ssh {
                sftp,
                username,
                password,
            } => {
                let scheme = if *sftp { "sftp" } else { "scp" };
                // NX-OS takes no password in the URL: it asks for it.
                if platform == Platform::Nxos {
                    (scheme, format!("{username}@"))
                } else {
                    (scheme, format!("{username}:{}@", masked(password)))
                }
            }
            Transfer::ScpPush { .. } => return format!("scp-push://{}", image),
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let dir = self.directory.trim_matches('/');
        let path = if dir.is_empty() {
            image.to_string()
        } else {
            format!("{dir}/{image}")
        };
        format!("{scheme}://{auth}{}{port}/{path}", self.server)
    }

    /// The VRF the copy command names on this platform: NX-OS always names one (`management`
    /// unless told), IOS-XE when one is set and no source interface picks it; classic IOS's
    /// copy takes none.
    pub(crate) fn copy_vrf(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Nxos => Some(self.vrf.as_deref().unwrap_or("management")),
            Platform::Iosxe if self.source_interface.is_none() => self.vrf.as_deref(),
            _ => None,
        }
    }

    /// The `copy` command (`None` for a push, which sends no copy command).
    pub(crate) fn command(
        &self,
        driver: Driver,
        platform: Platform,
        image: &str,
    ) -> Option<String> {
        self.command_with(driver, platform, image, false)
    }

    /// [`CopySource::command`] with the password masked.
    pub(crate) fn display_command(
        &self,
        driver: Driver,
        platform: Platform,
        image: &str,
    ) -> Option<String> {
        self.command_with(driver, platform, image, true)
    }

    fn command_with(
        &self,
        driver: Driver,
        platform: Platform,
        image: &str,
        mask: bool,
    ) -> Option<String> {
        if matches!(self.transfer, Transfer::ScpPush { .. }) {
            return None;
        }
        let url = self.build(image, platform, mask);
        let mut command = driver.copy_command(&url, image);
        if let Some(vrf) = self.copy_vrf(platform) {
            command.push_str(&format!(" vrf {vrf}"));
        }
        Some(command)
    }

    /// Whether the commands this source sends fit on one CLI line, and the VRF setting makes
    /// sense on the platform; checked before anything is sent.
    pub(crate) fn fits(
        &self,
        driver: Driver,
        platform: Platform,
        image: &str,
    ) -> Result<(), String> {
        if platform == Platform::Ios && self.vrf.is_some() && self.source_interface.is_none() {
            return Err(format!(
                "transfer.vrf {:?}: classic IOS names no VRF in a copy command; set transfer.source_interface to an interface in that VRF instead",
                self.vrf.as_deref().unwrap_or_default()
            ));
        }
        let mut lines: Vec<String> = self.command(driver, platform, image).into_iter().collect();
        if let (Some(head), Some(iface)) = (
            self.transfer.source_interface_command(),
            self.source_interface.as_deref(),
        ) && platform != Platform::Nxos
        {
            lines.push(format!("{head} {iface}"));
        }
        for line in lines {
            if line.chars().count() > MAX_LINE {
                return Err(format!(
                    "the {} copy command would be {} characters long, and IOS-XE cuts CLI lines after {MAX_LINE}: use a shorter image file name or server name (transfer.server)",
                    self.transfer.protocol(),
                    line.chars().count()
                ));
            }
        }
        Ok(())
    }

    /// What the events say of the path the copy took: the protocol, and the VRF or source
    /// interface when one was used.
    pub(crate) fn describe(&self, platform: Platform) -> String {
        let mut s = self.transfer.protocol().to_string();
        if let Some(vrf) = self.copy_vrf(platform) {
            s.push_str(&format!(" in vrf {vrf}"));
        }
        if platform != Platform::Nxos
            && let Some(i) = &self.source_interface
            && self.transfer.source_interface_command().is_some()
        {
            s.push_str(&format!(" from {i}"));
            if let Some(vrf) = &self.vrf {
                s.push_str(&format!(" (vrf {vrf})"));
            }
        }
        s
    }
}

/// Whether a failed copy failed for a transport reason, so the next source may be tried: the
/// server did not answer, refused, or the device does not speak the protocol. A corrupt image,
/// a full flash, a lost session or a copy that outlived its timeout (it may still run) are
/// never the transport's.
pub(crate) fn is_transport_failure(e: &DeviceError) -> bool {
    match e {
        DeviceError::Copy { source, .. } => match source {
            CopyError::Timeout(_)
            | CopyError::Refused(_)
            | CopyError::Unreachable(_)
            | CopyError::SourceNotFound(_) => true,
            CopyError::Other(line) => {
                let l = line.to_ascii_lowercase();
                [
                    "ssl",
                    "tls",
                    "certificate",
                    "handshake",
                    "protocol",
                    "not supported",
                ]
                .iter()
                .any(|w| l.contains(w))
            }
            _ => false,
        },
        // The device does not know the URL's scheme (`% Invalid input detected`).
        DeviceError::Rejected { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(transfer: Transfer) -> CopySource {
        CopySource::new(transfer, "10.0.0.5")
    }

    fn ssh(sftp: bool) -> Transfer {
        Transfer::Ssh {
            sftp,
            username: "abc".into(),
            password: Secret("pw1".into()),
        }
    }

    #[test]
    fn copy_urls() {
        assert_eq!(
            source(Transfer::Tftp).url("c2960x.bin", Platform::Ios),
            "tftp://10.0.0.5/c2960x.bin"
        );
        let mut s = source(Transfer::Ftp {
            username: "fleetup".into(),
            password: Secret("p@ss:wd".into()),
        });
        assert!(s.check().is_ok());
        assert_eq!(
            s.url("c2960x.bin", Platform::Ios),
            "ftp://fleetup:p@ss:wd@10.0.0.5/c2960x.bin"
        );
        assert_eq!(
            s.display_url("c2960x.bin", Platform::Ios),
            "ftp://fleetup:***@10.0.0.5/c2960x.bin"
        );
        s.port = Some(2121);
        s.directory = "/images/".into();
        assert_eq!(
            s.display_url("a.bin", Platform::Ios),
            "ftp://fleetup:***@10.0.0.5:2121/images/a.bin"
        );
        let bad = |username: &str, password: &str| {
            source(Transfer::Ftp {
                username: username.into(),
                password: Secret(password.into()),
            })
            .check()
        };
        assert!(bad("a:b", "pw").is_err());
        assert!(bad("", "pw").is_err());
        assert!(bad("user", "pw/x").is_err());
        assert!(source(Transfer::Tftp).check().is_ok());

        let mut h = source(Transfer::Http { tls: true });
        h.directory = "j/tok123".into();
        assert_eq!(
            h.url("a.bin", Platform::Iosxe),
            "https://10.0.0.5/j/tok123/a.bin"
        );
        // The password goes in the URL on IOS, at the prompt on NX-OS.
        assert_eq!(
            source(ssh(false)).url("a.bin", Platform::Iosxe),
            "scp://abc:pw1@10.0.0.5/a.bin"
        );
        assert_eq!(
            source(ssh(true)).display_url("a.bin", Platform::Ios),
            "sftp://abc:***@10.0.0.5/a.bin"
        );
        assert_eq!(
            source(ssh(false)).url("a.bin", Platform::Nxos),
            "scp://abc@10.0.0.5/a.bin"
        );
    }

    #[test]
    fn commands_name_the_vrf_where_the_platform_takes_one() {
        let mut s = source(Transfer::Tftp);
        let cmd = |s: &CopySource, d, p| s.command(d, p, "a.bin").unwrap_or_default();
        assert_eq!(
            cmd(&s, Driver::Nxos, Platform::Nxos),
            "copy tftp://10.0.0.5/a.bin bootflash:a.bin vrf management"
        );
        assert_eq!(
            cmd(&s, Driver::IosXeInstall, Platform::Iosxe),
            "copy tftp://10.0.0.5/a.bin flash:a.bin"
        );
        s.vrf = Some("Mgmt-vrf".into());
        assert_eq!(
            cmd(&s, Driver::IosXeInstall, Platform::Iosxe),
            "copy tftp://10.0.0.5/a.bin flash:a.bin vrf Mgmt-vrf"
        );
        assert_eq!(s.describe(Platform::Iosxe), "tftp in vrf Mgmt-vrf");
        // Classic IOS takes no VRF in a copy: told before anything is sent.
        let e = s
            .fits(Driver::IosBundle, Platform::Ios, "a.bin")
            .unwrap_err();
        assert!(e.contains("transfer.source_interface"), "{e}");
        // With a source interface, the interface picks the VRF and the copy names none.
        s.source_interface = Some("GigabitEthernet0/0".into());
        assert_eq!(
            cmd(&s, Driver::IosXeInstall, Platform::Iosxe),
            "copy tftp://10.0.0.5/a.bin flash:a.bin"
        );
        assert!(s.fits(Driver::IosBundle, Platform::Ios, "a.bin").is_ok());
        assert_eq!(
            s.describe(Platform::Ios),
            "tftp from GigabitEthernet0/0 (vrf Mgmt-vrf)"
        );
        s.vrf = Some("mgmt".into());
        assert_eq!(
            cmd(&s, Driver::Nxos, Platform::Nxos),
            "copy tftp://10.0.0.5/a.bin bootflash:a.bin vrf mgmt"
        );
        assert!(
            source(Transfer::ScpPush {
                store: "/x".into(),
                progress: None,
            })
            .command(Driver::IosBundle, Platform::Ios, "a.bin")
            .is_none()
        );
    }

    #[test]
    fn an_over_long_copy_line_is_refused_before_it_is_sent() {
        let mut s = source(Transfer::Http { tls: false });
        s.directory = "j/abcdefghijkl".into();
        let image = "cat9k_iosxe.17.09.04a.SPA.bin";
        assert!(s.fits(Driver::IosXeInstall, Platform::Iosxe, image).is_ok());
        s.server = format!("{}.example.net", "images-server-of-the-campus".repeat(8));
        let e = s
            .fits(Driver::IosXeInstall, Platform::Iosxe, image)
            .unwrap_err();
        assert!(e.contains("253"), "{e}");
        assert!(e.contains("characters long"), "{e}");
        // The image appears twice in the command: n characters fit, n + 1 do not.
        s.server = "10.0.0.5".into();
        let base = s
            .command(Driver::IosBundle, Platform::Ios, "")
            .unwrap_or_default()
            .chars()
            .count();
        let n = (MAX_LINE - base) / 2;
        assert!(
            s.fits(Driver::IosBundle, Platform::Ios, &"a".repeat(n))
                .is_ok()
        );
        assert!(
            s.fits(Driver::IosBundle, Platform::Ios, &"a".repeat(n + 1))
                .is_err()
        );
    }

    #[test]
    fn transport_failures_are_told_from_image_and_flash_failures() {
        let copy = |source| DeviceError::Copy {
            device: "sw1".into(),
            source,
        };
        assert!(is_transport_failure(&copy(CopyError::Timeout("t".into()))));
        assert!(is_transport_failure(&copy(CopyError::Refused("r".into()))));
        assert!(is_transport_failure(&copy(CopyError::Unreachable(
            "u".into()
        ))));
        assert!(is_transport_failure(&copy(CopyError::Other(
            "%Error opening https://10.0.0.5/j/x/a.bin (SSL handshake failed)".into()
        ))));
        assert!(!is_transport_failure(&copy(CopyError::FlashFull(
            "f".into()
        ))));
        assert!(!is_transport_failure(&copy(CopyError::WriteFailed(
            "w".into()
        ))));
        assert!(!is_transport_failure(&DeviceError::CommandTimeout {
            device: "sw1".into(),
            command: "copy".into(),
            tail: String::new(),
        }));
    }
}

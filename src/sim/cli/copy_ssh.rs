//! The dialog of `copy scp://…` and `copy sftp://…` as IOS-XE prints it (captures in
//! tests/fixtures/cisco/, see SOURCES.txt): the destination prompt, `Password: ` when the URL
//! carries none, ` Sending file modes: C0644 SIZE NAME`, the `!` marks and `N bytes copied
//! in S secs (R bytes/sec)`; no `Accessing` line and no `[OK - …]`. NX-OS asks for the
//! password as OpenSSH does and ends with `Copy complete.`.

use super::*;
use crate::sim::copy_ssh::{self, Kind, Login};

/// A received file's temporary name in flash, removed unless renamed into place.
struct Partial(std::path::PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl<O: Output> Cli<O> {
    pub(super) async fn copy_ssh(
        &mut self,
        source: Source,
        dst_name: &str,
        vrf: Option<&str>,
    ) -> Result<Flow, ()> {
        let (kind, user, password, host, port, path) = match source.clone() {
            Source::Scp {
                user,
                password,
                host,
                port,
                path,
            } => (Kind::Scp, user, password, host, port, path),
            Source::Sftp {
                user,
                password,
                host,
                port,
                path,
            } => (Kind::Sftp, user, password, host, port, path),
            _ => return Ok(Flow::Continue),
        };
        let nxos = self.nxos();
        let user = user.unwrap_or_else(|| self.user.clone());
        let default = if dst_name.is_empty() {
            source.file_name().to_string()
        } else {
            dst_name.to_string()
        };
        let name = if nxos {
            default
        } else {
            match self.ask_destination(&default).await? {
                Some(n) => n,
                None => return Ok(Flow::Continue),
            }
        };
        let password = match password {
            Some(p) => p,
            None => {
                let prompt = if nxos {
                    format!("{user}@{host}'s password: ")
                } else {
                    "Password: ".to_string()
                };
                self.write(&prompt).await?;
                let p = self.read_text(false).await.ok_or(())?;
                self.write("\r\n").await?;
                if p == "\u{3}" {
                    return Ok(Flow::Continue);
                }
                p
            }
        };
        let display = source.display();
        let dev = self.dev.clone();
        // A server out of reach (the wrong VRF) looks like one that does not answer.
        if !self.reaches_server(&source, vrf) {
            tokio::time::sleep(self.lab.fault_delay).await;
            let text = if nxos {
                format!(
                    "{} get operation failed:{}\r\n",
                    source.protocol(),
                    FetchError::Timeout
                )
            } else {
                format!("%Error opening {display} ({})\r\n", FetchError::Timeout)
            };
            self.write(&text).await?;
            return Ok(Flow::Continue);
        }
        let flash = dev.flash();
        let existing = flash
            .files
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.size);
        let limit = flash.free + existing;
        let partial =
            Partial(dev.flash_path(&format!(".{name}.{:08x}.partial", rand::random::<u32>())));
        let Ok(file) = tokio::fs::File::create(&partial.0).await else {
            self.write(&format!("%Error opening {display} (I/O error)\r\n"))
                .await?;
            return Ok(Flow::Continue);
        };
        let rate = if dev.has_fault(Fault::SlowTransfer) {
            Some(self.lab.slow_rate)
        } else {
            self.lab.rate
        };
        let (ptx, mut prx) = mpsc::unbounded_channel();
        let mut sink = FlashSink::new(file, limit, rate, ptx);
        if dev.has_fault(Fault::CorruptDownload) {
            sink = sink.corrupt();
        }
        if dev.has_fault(Fault::DropMidCopy) {
            sink = sink.drop_after(1);
        }
        let s = dev.state();
        let opts = FetchOptions {
            local_ip: IpAddr::V4(dev.ip),
            tftp_port: self.lab.tftp_port,
            ftp_port: self.lab.ftp_port,
            scp_port: self.lab.scp_port,
            tftp_blocksize: s.running.tftp_blocksize,
            tftp_timeout: self.lab.tftp_timeout,
            ftp_passive: s.running.ftp_passive,
            ftp_username: None,
            ftp_password: None,
        };
        let server = std::net::SocketAddr::new(host, port.unwrap_or(self.lab.scp_port));
        let login = Login { user, password };
        let (atx, mut arx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let mut marks = 0u64;
        let result = {
            let fut = copy_ssh::fetch(kind, server, &login, &path, &opts, &mut sink, Some(&atx));
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    Some(size) = arx.recv() => {
                        if !nxos {
                            let file = source.file_name().to_string();
                            self.write(&format!(" Sending file modes: C0644 {size} {file}\r\n")).await?;
                        }
                    }
                    Some(n) = prx.recv() => {
                        if nxos {
                            continue;
                        }
                        let want = n / COPY_MARK + 1;
                        let mut text = String::new();
                        while marks < want {
                            text.push('!');
                            marks += 1;
                        }
                        if !text.is_empty() {
                            self.write(&text).await?;
                        }
                    }
                }
            }
        };
        let result = match result {
            Ok(_) => sink
                .finish()
                .await
                .map_err(|e| FetchError::Other(e.to_string())),
            Err(e) => Err(e),
        };
        match result {
            Ok(n) => {
                if tokio::fs::rename(&partial.0, dev.flash_path(&name))
                    .await
                    .is_err()
                {
                    self.write(&format!("\r\n%Error copying {display} (I/O error)\r\n"))
                        .await?;
                    return Ok(Flow::Continue);
                }
                dev.mark_corrupt(&name, dev.has_fault(Fault::CorruptDownload));
                if nxos {
                    self.write(
                        "Copy complete, now saving to disk (please wait)...\r\nCopy complete.\r\n",
                    )
                    .await?;
                    return Ok(Flow::Continue);
                }
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let lead = if marks == 0 { "!\r\n" } else { "\r\n" };
                self.write(&format!(
                    "{lead}{n} bytes copied in {secs:.3} secs ({} bytes/sec)\r\n",
                    (n as f64 / secs) as u64
                ))
                .await?;
                Ok(Flow::Continue)
            }
            Err(e) => {
                drop(partial);
                if e == FetchError::Dropped {
                    return Ok(Flow::Drop);
                }
                if nxos {
                    let proto = if kind == Kind::Scp { "SCP" } else { "SFTP" };
                    self.write(&format!("{proto} get operation failed:{e}\r\n"))
                        .await?;
                    return Ok(Flow::Continue);
                }
                let lead = if marks > 0 { "\r\n" } else { "" };
                self.write(&format!(
                    "{lead}%Error {} {display} ({e})\r\n",
                    e.verb(marks > 0)
                ))
                .await?;
                Ok(Flow::Continue)
            }
        }
    }
}

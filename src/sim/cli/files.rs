//! Flash and transfers: `dir`, `delete`, `verify /md5`, `copy` (config, flash, TFTP, FTP).

use super::*;

impl<O: Output> Cli<O> {
    pub(super) fn dir_listing(&self, arg: Option<&str>) -> Result<String, String> {
        let fs = self.dev.persona.filesystem.clone();
        let only = match arg {
            None => None,
            Some(a) => {
                let Some(rest) = a.strip_prefix(&format!("{fs}:")) else {
                    return Err(format!("%Error opening {a} (No such device)\r\n"));
                };
                let rest = rest.trim_start_matches('/');
                if rest.is_empty() {
                    None
                } else {
                    Some(rest.to_string())
                }
            }
        };
        let flash = self.dev.flash();
        let files: Vec<_> = flash
            .files
            .iter()
            .filter(|f| only.as_deref().is_none_or(|o| o == f.name))
            .collect();
        if let Some(o) = &only
            && files.is_empty()
        {
            return Err(format!(
                "%Error opening {fs}:/{o} (No such file or directory)\r\n"
            ));
        }
        if self.nxos() {
            let mut out = String::new();
            for f in &files {
                let when = f
                    .modified
                    .and_then(|m| jiff::Timestamp::try_from(m).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .strftime("%b %d %H:%M:%S %Y")
                    .to_string();
                out.push_str(&format!("{:>11}    {when}  {}\n", f.size, f.name));
            }
            out.push_str(&format!(
                "\nUsage for {fs}://sup-local\n{:>11} bytes used\n{:>11} bytes free\n{:>11} bytes total\n",
                flash.size - flash.free,
                flash.free,
                flash.size
            ));
            return Ok(out);
        }
        let mut out = format!("Directory of {fs}:/{}\n\n", only.as_deref().unwrap_or(""));
        if files.is_empty() {
            out.push_str("No files in directory\n");
        }
        for f in files {
            let when = f
                .modified
                .and_then(|m| jiff::Timestamp::try_from(m).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .strftime("%b %-d %Y %H:%M:%S +00:00")
                .to_string();
            out.push_str(&format!(
                "{:>6}  {}  {:>10}  {when}  {}\n",
                f.inode, self.dev.persona.dir_attributes, f.size, f.name
            ));
        }
        out.push_str(&format!(
            "\n{} bytes total ({} bytes free)\n",
            flash.size, flash.free
        ));
        Ok(out)
    }

    /// A flash path of this device (`flash:x`, `flash:/x`) to a file name.
    pub(super) fn flash_name(&self, path: &str) -> Option<String> {
        self.dev.flash_file_name(path).map(String::from)
    }

    pub(super) async fn delete(&mut self, path: &str, force: bool) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let Some(mut name) = self.flash_name(path) else {
            return self
                .write(&format!(
                    "%Error deleting {path} (No such file or directory)\r\n"
                ))
                .await;
        };
        if !force {
            self.write(&format!("Delete filename [{name}]? ")).await?;
            let answer = self.read_text(true).await.ok_or(())?;
            let answer = answer.trim();
            if answer == "\u{3}" {
                return Ok(());
            }
            if !answer.is_empty() {
                name = self
                    .flash_name(answer)
                    .unwrap_or_else(|| answer.trim_start_matches('/').to_string());
            }
            self.write(&format!("Delete {fs}:/{name}? [confirm]"))
                .await?;
            if !self.confirm().await.ok_or(())? {
                return Ok(());
            }
        }
        let file = self.dev.flash_path(&name);
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {
                self.dev.mark_corrupt(&name, false);
                Ok(())
            }
            Err(_) => {
                self.write(&format!(
                    "%Error deleting {fs}:/{name} (No such file or directory)\r\n"
                ))
                .await
            }
        }
    }

    pub(super) async fn verify(&mut self, path: &str, expected: Option<&str>) -> Result<(), ()> {
        let file = self.flash_name(path).map(|n| self.dev.flash_path(&n));
        let opened = match file {
            Some(f) => tokio::fs::File::open(f).await.ok(),
            None => None,
        };
        let Some(mut f) = opened else {
            return self
                .write(&format!(
                    "%Error opening {path} (No such file or directory)\r\n"
                ))
                .await;
        };
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut since_dot = 0u64;
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => {
                    return self
                        .write(&format!("\r\n%Error reading {path} (I/O error)\r\n"))
                        .await;
                }
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            since_dot += n as u64;
            if since_dot >= VERIFY_DOT {
                since_dot = 0;
                self.write(".").await?;
            }
        }
        let digest = hex::encode(hasher.finalize());
        self.write(".Done!\r\n").await?;
        match expected {
            None => {
                self.write(&format!("verify /md5 ({path}) = {digest}\r\n\r\n"))
                    .await
            }
            Some(want) if want.eq_ignore_ascii_case(&digest) => {
                self.write(&format!("Verified ({path}) = {digest}\r\n\r\n"))
                    .await
            }
            Some(want) => {
                self.write(&format!(
                    "%Error verifying {path}\r\nComputed signature = {digest}\r\nSubmitted signature = {want}\r\n\r\n"
                ))
                .await
            }
        }
    }

    /// `copy SRC DST [vrf NAME]`.
    pub(super) async fn copy(
        &mut self,
        src: &str,
        dst: &str,
        vrf: Option<&str>,
        dst_caret: &str,
    ) -> Result<Flow, ()> {
        let src_l = src.to_ascii_lowercase();
        let dst_l = dst.to_ascii_lowercase();
        if is_running(&src_l) && is_startup(&dst_l) && self.nxos() {
            self.store_config();
            self.write("[########################################] 100%\r\nCopy complete, now saving to disk (please wait)...\r\nCopy complete.\r\n").await?;
            return Ok(Flow::Continue);
        }
        if is_running(&src_l) && is_startup(&dst_l) {
            if self.dev.state().running.file_prompt != "quiet" {
                self.write("Destination filename [startup-config]? ")
                    .await?;
                let a = self.read_text(true).await.ok_or(())?;
                if a == "\u{3}" {
                    return Ok(Flow::Continue);
                }
            }
            self.save_config().await?;
            self.write("[OK]\r\n").await?;
            return Ok(Flow::Continue);
        }
        if is_startup(&src_l) && is_running(&dst_l) {
            self.write("Destination filename [running-config]? ")
                .await?;
            let a = self.read_text(true).await.ok_or(())?;
            if a == "\u{3}" {
                return Ok(Flow::Continue);
            }
            let s = self.dev.state();
            let size = self.config_text(&s.startup, &s.version).len();
            self.dev.update(|s| s.running = s.startup.clone());
            self.write(&format!(
                "{size} bytes copied in 0.104 secs ({} bytes/sec)\r\n",
                size * 10
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        let fs = self.dev.persona.filesystem.clone();
        let url = if src_l == "tftp:" || src_l == "ftp:" {
            self.write("Address or name of remote host []? ").await?;
            let host = self.read_text(true).await.ok_or(())?;
            self.write("Source filename []? ").await?;
            let file = self.read_text(true).await.ok_or(())?;
            if host.contains('\u{3}') || file.contains('\u{3}') {
                return Ok(Flow::Continue);
            }
            format!(
                "{}//{}/{}",
                src_l,
                host.trim(),
                file.trim().trim_start_matches('/')
            )
        } else {
            src.to_string()
        };
        let lower = url.to_ascii_lowercase();
        if [
            "tftp://", "ftp://", "http://", "https://", "scp://", "sftp://",
        ]
        .iter()
        .any(|s| lower.starts_with(s))
        {
            let source = match copy::parse_url(&url) {
                Ok(s) => s,
                Err(e) => {
                    self.write(&format!("%Error opening {url} ({e})\r\n"))
                        .await?;
                    return Ok(Flow::Continue);
                }
            };
            let dst_name = match dst_l.strip_prefix(&format!("{fs}:")) {
                Some(rest) => rest.trim_start_matches('/').to_string(),
                None => {
                    self.write(dst_caret).await?;
                    return Ok(Flow::Continue);
                }
            };
            let dst_name = &dst[dst.len() - dst_name.len()..];
            if matches!(source, Source::Scp { .. } | Source::Sftp { .. }) {
                return self.copy_ssh(source, dst_name, vrf).await;
            }
            return self.copy_url(source, dst_name, vrf).await;
        }
        if let (Some(from), Some(_)) = (self.flash_name(src), dst_l.strip_prefix(&format!("{fs}:")))
        {
            return self.copy_flash(&from, dst).await.map(|()| Flow::Continue);
        }
        self.write(&format!(
            "%Error opening {src} (No such file or directory)\r\n"
        ))
        .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn ask_destination(&mut self, default: &str) -> Result<Option<String>, ()> {
        let fs = self.dev.persona.filesystem.clone();
        let mut name = default.to_string();
        if self.dev.state().running.file_prompt != "quiet" {
            self.write(&format!("Destination filename [{default}]? "))
                .await?;
            let answer = self.read_text(true).await.ok_or(())?;
            let answer = answer.trim();
            if answer == "\u{3}" {
                return Ok(None);
            }
            if !answer.is_empty() {
                name = answer
                    .strip_prefix(&format!("{fs}:"))
                    .unwrap_or(answer)
                    .trim_start_matches('/')
                    .to_string();
            }
        }
        if crate::images::validate_file_name(&name).is_err() {
            self.write(&format!(
                "%Error opening {fs}:{name} (Invalid argument)\r\n"
            ))
            .await?;
            return Ok(None);
        }
        if tokio::fs::metadata(self.dev.flash_path(&name))
            .await
            .is_ok()
            && self.dev.state().running.file_prompt != "quiet"
        {
            self.write("%Warning:There is a file already existing with this name \r\nDo you want to over write? [confirm]")
                .await?;
            if !self.confirm().await.ok_or(())? {
                return Ok(None);
            }
        }
        Ok(Some(name))
    }

    pub(super) async fn copy_flash(&mut self, from: &str, dst: &str) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let default = self.flash_name(dst).unwrap_or_else(|| from.to_string());
        let Some(to) = self.ask_destination(&default).await? else {
            return Ok(());
        };
        let flash = self.dev.flash();
        let Some(size) = flash.files.iter().find(|f| f.name == from).map(|f| f.size) else {
            return self
                .write(&format!(
                    "%Error opening {fs}:/{from} (No such file or directory)\r\n"
                ))
                .await;
        };
        if size > flash.free {
            return self
                .write(&format!(
                    "%Error copying {fs}:/{from} (Not enough space on device)\r\n"
                ))
                .await;
        }
        let started = Instant::now();
        self.write("Copy in progress...").await?;
        match tokio::fs::copy(self.dev.flash_path(from), self.dev.flash_path(&to)).await {
            Ok(n) => {
                let marks = "C".repeat((n / COPY_MARK + 1).min(400) as usize);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                self.write(&format!(
                    "{marks}\r\n{n} bytes copied in {secs:.3} secs ({} bytes/sec)\r\n",
                    (n as f64 / secs) as u64
                ))
                .await
            }
            Err(_) => {
                self.write(&format!("\r\n%Error copying {fs}:/{from} (I/O error)\r\n"))
                    .await
            }
        }
    }

    /// Whether a copy from `source` reaches its server: always, unless the persona puts the
    /// management port in a VRF (`mgmt_vrf`); then only when the copy names that VRF or (IOS,
    /// IOS-XE) the protocol's client leaves from the management interface.
    pub(super) fn reaches_server(&self, source: &Source, vrf: Option<&str>) -> bool {
        let persona = &self.dev.persona;
        let Some(mgmt) = &persona.mgmt_vrf else {
            return true;
        };
        if vrf == Some(mgmt.as_str()) {
            return true;
        }
        if self.nxos() {
            return false;
        }
        let wanted = format!(
            "{} {}",
            source.source_interface_command(),
            persona.mgmt_interface
        );
        self.dev
            .state()
            .running
            .lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&wanted))
    }

    pub(super) async fn copy_url(
        &mut self,
        source: Source,
        dst_name: &str,
        vrf: Option<&str>,
    ) -> Result<Flow, ()> {
        let default = if dst_name.is_empty() {
            source.file_name().to_string()
        } else {
            dst_name.to_string()
        };
        let nxos = self.nxos();
        let proto = source.protocol();
        let name = if nxos {
            if crate::images::validate_file_name(&default).is_err() {
                self.write(&format!("% Invalid destination file name {default}\r\n"))
                    .await?;
                return Ok(Flow::Continue);
            }
            if tokio::fs::metadata(self.dev.flash_path(&default)).await.is_ok()
                && !self
                    .nxos_yes("Warning: There is already a file existing with this name. Do you want to overwrite (y/n)?[n] ")
                    .await?
            {
                return Ok(Flow::Continue);
            }
            default
        } else {
            match self.ask_destination(&default).await? {
                Some(n) => n,
                None => return Ok(Flow::Continue),
            }
        };
        let display = source.display();
        if nxos {
            self.write(&format!(
                "Trying to connect to {} server......\r\n",
                proto.to_ascii_lowercase()
            ))
            .await?;
        } else {
            self.write(&format!("Accessing {display}...\r\n")).await?;
        }
        let dev = self.dev.clone();
        // A server out of reach (the wrong VRF) looks like one that does not answer.
        if dev.has_fault(Fault::TftpTimeout) || !self.reaches_server(&source, vrf) {
            tokio::time::sleep(self.lab.fault_delay).await;
            let text = if nxos {
                format!("{proto} get operation failed:{}\r\n", FetchError::Timeout)
            } else {
                format!("%Error opening {display} (Timed out)\r\n")
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
        // Each copy writes its own temporary file: a copy left running by a session that went
        // away must never touch the file of the copy that replaced it.
        let partial =
            Partial(dev.flash_path(&format!(".{name}.{:08x}.partial", rand::random::<u32>())));
        let file = match tokio::fs::File::create(&partial.0).await {
            Ok(f) => f,
            Err(_) => {
                self.write(&format!("%Error opening {display} (I/O error)\r\n"))
                    .await?;
                return Ok(Flow::Continue);
            }
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
            ftp_username: s.running.ftp_username.clone(),
            ftp_password: s.running.ftp_password.clone(),
        };
        let is_ftp = matches!(source, Source::Ftp { .. });
        let loading = if matches!(source, Source::Http { .. }) {
            format!("Loading {display} ")
        } else if is_ftp {
            format!("Loading {} ", source.path())
        } else {
            format!(
                "Loading {} from {} (via {}): ",
                source.path(),
                source.host(),
                dev.persona.mgmt_interface
            )
        };
        let started = Instant::now();
        let mut marks = 0u64;
        let result = {
            let fut = copy::fetch(&source, &opts, &mut sink);
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    Some(n) = prx.recv() => {
                        if nxos {
                            continue;
                        }
                        let mut text = String::new();
                        if marks == 0 {
                            text.push_str(&loading);
                        }
                        let want = n / COPY_MARK + 1;
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
                    self.write(&format!("Connection to Server Established.\r\n{proto} get operation was successful\r\nCopy complete, now saving to disk (please wait)...\r\nCopy complete.\r\n"))
                        .await?;
                    return Ok(Flow::Continue);
                }
                let mut text = String::new();
                if marks == 0 {
                    text.push_str(&loading);
                    text.push('!');
                }
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let ok = if is_ftp {
                    format!("[OK - {n}/4096 bytes]")
                } else {
                    format!("[OK - {n} bytes]")
                };
                text.push_str(&format!(
                    "\r\n{ok}\r\n\r\n{n} bytes copied in {secs:.3} secs ({} bytes/sec)\r\n",
                    (n as f64 / secs) as u64
                ));
                self.write(&text).await?;
                Ok(Flow::Continue)
            }
            Err(e) => {
                drop(partial);
                if e == FetchError::Dropped {
                    return Ok(Flow::Drop);
                }
                if nxos {
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

/// A copy's temporary file, removed when the copy ends without renaming it (a failure, or the
/// session going away mid-copy).
struct Partial(std::path::PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        // After a successful rename the path no longer exists: nothing to remove.
        let _ = std::fs::remove_file(&self.0);
    }
}

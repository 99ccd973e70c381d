//! The SFTP subsystem, read-only (russh-sftp speaks the wire protocol, version 3): open,
//! read, stat, fstat, close and realpath of the files an account's grant names. Nothing is
//! listed; every change is refused.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::Shared;
use super::files::{self, Served};
use crate::transfers::{Protocol, TransferHandle};

/// Largest read answered at once; OpenSSH asks for 32 KiB (up to 255 KiB with `-B`).
const MAX_READ: u32 = 256 * 1024;
/// Files open at once in one session.
const MAX_OPEN: usize = 4;

/// One SFTP session of a logged-in account.
pub(super) struct SftpSession {
    shared: Arc<Shared>,
    user: String,
    peer: SocketAddr,
    open: HashMap<String, OpenFile>,
    next_handle: u64,
}

struct OpenFile {
    served: Served,
    transfer: Option<TransferHandle>,
    /// The furthest byte sent: the progress shown.
    sent: u64,
    /// Where the file's cursor is, so that sequential reads need no seek.
    position: u64,
}

impl Drop for OpenFile {
    /// A file left open when the session ends: fetched if every byte went out.
    fn drop(&mut self) {
        if let Some(t) = self.transfer.take() {
            if self.sent >= self.served.size {
                t.complete();
            } else {
                t.fail(format!(
                    "the session ended after {} of {} bytes",
                    self.sent, self.served.size
                ));
            }
        }
    }
}

impl SftpSession {
    pub(super) fn new(shared: Arc<Shared>, user: String, peer: SocketAddr) -> Self {
        SftpSession {
            shared,
            user,
            peer,
            open: HashMap::new(),
            next_handle: 0,
        }
    }
}

fn denied(what: &str) -> StatusReply {
    StatusCode::PermissionDenied.with_message(format!(
        "fleetup's image server is read-only and lists nothing: {what} is refused"
    ))
}

fn no_such_file() -> StatusReply {
    StatusCode::NoSuchFile.with_message("No such file")
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn file_attrs(size: u64, mtime: u64) -> FileAttributes {
    FileAttributes {
        size: Some(size),
        permissions: Some(0o100_444),
        atime: Some(mtime as u32),
        mtime: Some(mtime as u32),
        ..Default::default()
    }
}

/// The root, which exists but cannot be listed.
fn root_attrs() -> FileAttributes {
    FileAttributes {
        size: Some(0),
        permissions: Some(0o040_555),
        ..Default::default()
    }
}

fn is_root(path: &str) -> bool {
    matches!(path, "" | "." | "/" | "./" | "/.")
}

impl SftpSession {
    fn stat_path(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        if is_root(path) {
            return Ok(root_attrs());
        }
        let (_, file) = files::check(
            &self.shared.root,
            &self.shared.grants,
            &self.user,
            path,
            self.peer,
        )
        .ok_or_else(no_such_file)?;
        let meta = std::fs::metadata(file).map_err(|_| no_such_file())?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Ok(file_attrs(meta.len(), mtime))
    }
}

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let changes =
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::APPEND;
        if pflags.intersects(changes) {
            tracing::info!(peer = %self.peer, user = %self.user, file = ?filename, "image SSH: refused an SFTP upload");
            return Err(denied("writing"));
        }
        if self.open.len() >= MAX_OPEN {
            return Err(StatusCode::Failure.with_message("too many open files"));
        }
        let served = files::open(
            &self.shared.root,
            &self.shared.grants,
            &self.user,
            &filename,
            self.peer,
        )
        .await
        .ok_or_else(no_such_file)?;
        let transfer = self.shared.transfers.start_as(
            Protocol::Sftp,
            self.peer,
            Some(&self.user),
            &served.name,
            "download",
            Some(served.size),
        );
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.open.insert(
            handle.clone(),
            OpenFile {
                served,
                transfer: Some(transfer),
                sent: 0,
                position: 0,
            },
        );
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let f = self
            .open
            .get_mut(&handle)
            .ok_or_else(|| StatusReply::from(StatusCode::Failure).with_message("no such handle"))?;
        if offset >= f.served.size {
            return Err(StatusCode::Eof.into());
        }
        let want = u64::from(len.min(MAX_READ)).min(f.served.size - offset) as usize;
        let io = |e: std::io::Error| StatusCode::Failure.with_message(format!("reading: {e}"));
        if f.position != offset {
            f.served
                .file
                .seek(SeekFrom::Start(offset))
                .await
                .map_err(io)?;
        }
        let mut data = vec![0u8; want];
        f.served.file.read_exact(&mut data).await.map_err(io)?;
        f.position = offset + want as u64;
        if f.position > f.sent {
            f.sent = f.position;
            if let Some(t) = &f.transfer {
                t.set_bytes(f.sent);
            }
        }
        Ok(Data { id, data })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        let Some(mut f) = self.open.remove(&handle) else {
            return Err(StatusCode::Failure.with_message("no such handle"));
        };
        if let Some(t) = f.transfer.take() {
            if f.sent >= f.served.size {
                tracing::info!(peer = %self.peer, user = %self.user, file = %f.served.name, bytes = f.sent, "image SSH: sftp download complete");
                t.complete();
            } else {
                t.fail(format!(
                    "closed after {} of {} bytes",
                    f.sent, f.served.size
                ));
            }
        }
        Ok(ok(id))
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let f = self
            .open
            .get(&handle)
            .ok_or_else(|| StatusReply::from(StatusCode::Failure).with_message("no such handle"))?;
        Ok(Attrs {
            id,
            attrs: file_attrs(f.served.size, f.served.mtime),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs {
            id,
            attrs: self.stat_path(&path)?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        // One flat directory: every name is just under the root.
        let name = files::store_name(&path);
        let real = if is_root(&path) || is_root(name) {
            "/".to_string()
        } else {
            format!("/{name}")
        };
        Ok(Name {
            id,
            files: vec![File::dummy(real)],
        })
    }

    async fn opendir(&mut self, _id: u32, path: String) -> Result<Handle, Self::Error> {
        tracing::info!(peer = %self.peer, user = %self.user, path = ?path, "image SSH: refused an SFTP listing");
        Err(denied("listing"))
    }

    async fn readdir(&mut self, _id: u32, _handle: String) -> Result<Name, Self::Error> {
        Err(denied("listing"))
    }

    async fn write(
        &mut self,
        _id: u32,
        _handle: String,
        _offset: u64,
        _data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        Err(denied("writing"))
    }

    async fn remove(&mut self, _id: u32, _filename: String) -> Result<Status, Self::Error> {
        Err(denied("removing"))
    }

    async fn rename(
        &mut self,
        _id: u32,
        _oldpath: String,
        _newpath: String,
    ) -> Result<Status, Self::Error> {
        Err(denied("renaming"))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("making a directory"))
    }

    async fn rmdir(&mut self, _id: u32, _path: String) -> Result<Status, Self::Error> {
        Err(denied("removing a directory"))
    }

    async fn setstat(
        &mut self,
        _id: u32,
        _path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("changing attributes"))
    }

    async fn fsetstat(
        &mut self,
        _id: u32,
        _handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        Err(denied("changing attributes"))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        _linkpath: String,
        _targetpath: String,
    ) -> Result<Status, Self::Error> {
        Err(denied("making a link"))
    }
}

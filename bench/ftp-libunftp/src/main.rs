//! Throwaway: libunftp with unftp-sbe-fs (4 KiB reads) or a 1 MiB-buffer get_into, for the bench.
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use async_trait::async_trait;
use libunftp::ServerBuilder;
use unftp_core::auth::DefaultUser;
use unftp_core::storage::{Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};
use tokio::io::{AsyncReadExt, AsyncWriteExt, AsyncSeekExt};

#[derive(Debug)]
struct Big { fs: Filesystem, root: PathBuf }

#[async_trait]
impl StorageBackend<DefaultUser> for Big {
    type Metadata = Meta;
    fn supported_features(&self) -> u32 { StorageBackend::<DefaultUser>::supported_features(&self.fs) }
    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<Meta> { self.fs.metadata(u, p).await }
    async fn list<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<Vec<Fileinfo<PathBuf, Meta>>> { self.fs.list(u, p).await }
    async fn get<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P, s: u64) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> { self.fs.get(u, p, s).await }
    async fn get_into<'a, P, W: ?Sized>(&self, _u: &DefaultUser, p: P, s: u64, out: &'a mut W) -> Result<u64>
    where W: tokio::io::AsyncWrite + Unpin + Sync + Send, P: AsRef<Path> + Send + Debug {
        let rel = p.as_ref().strip_prefix("/").unwrap_or(p.as_ref());
        let mut f = tokio::fs::File::open(self.root.join(rel)).await?;
        f.seek(std::io::SeekFrom::Start(s)).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = f.read(&mut buf).await?;
            if r == 0 { break; }
            out.write_all(&buf[..r]).await?;
            n += r as u64;
        }
        Ok(n)
    }
    async fn put<P: AsRef<Path> + Send + Debug, R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static>(&self, u: &DefaultUser, i: R, p: P, s: u64) -> Result<u64> { self.fs.put(u, i, p, s).await }
    async fn del<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> { self.fs.del(u, p).await }
    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> { self.fs.mkd(u, p).await }
    async fn rename<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, a: P, b: P) -> Result<()> { self.fs.rename(u, a, b).await }
    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> { self.fs.rmd(u, p).await }
    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, u: &DefaultUser, p: P) -> Result<()> { self.fs.cwd(u, p).await }
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (mode, root, addr) = (a[1].clone(), PathBuf::from(&a[2]), a[3].clone());
    if mode == "big" {
        let r = root.clone();
        let s = ServerBuilder::new(Box::new(move || Big { fs: Filesystem::new(r.clone()).unwrap(), root: r.clone() }))
            .passive_ports(41000..=41999).build().unwrap();
        s.listen(addr).await.unwrap();
    } else {
        let r = root.clone();
        let s = ServerBuilder::new(Box::new(move || Filesystem::new(r.clone()).unwrap()))
            .passive_ports(42000..=42999).build().unwrap();
        s.listen(addr).await.unwrap();
    }
}

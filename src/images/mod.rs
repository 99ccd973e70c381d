//! The image store: OS image files on disk (`DATA_DIR/images/<file name>`) and their checksums
//! in the database.
//!
//! Files keep their Cisco file name, because the device copies them to flash under that name.
//! An upload is streamed to `images/.incoming/` while MD5 and SHA-256 are computed, and is moved
//! into place and registered only once complete: an interrupted upload leaves nothing behind
//! that a device could be pointed at.

pub mod cache;
mod naming;
pub(crate) mod sendfile;

pub use naming::FILE_NAME_PATTERN;
pub(crate) use naming::{guess_platform, guess_version, validate_file_name};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::{Digest as _, Md5};
use serde::Serialize;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::inventory::Platform;
use crate::store::{Db, StoreError};

/// An image's file name, as it is named in the store and on the device's flash
/// (`c2960x-universalk9-mz.152-7.E8.bin`): what the playbook names, the store keeps, the file
/// servers serve and the driver copies and boots.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ImageName(String);

impl ImageName {
    /// A name as stored or given; the store checks new names with its file-name rules.
    pub fn new(name: impl Into<String>) -> ImageName {
        ImageName(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ImageName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ImageName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ImageName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ImageName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<ImageName> for str {
    fn eq(&self, other: &ImageName) -> bool {
        self == other.0
    }
}

impl PartialEq<ImageName> for &str {
    fn eq(&self, other: &ImageName) -> bool {
        *self == other.0
    }
}

impl PartialEq<ImageName> for String {
    fn eq(&self, other: &ImageName) -> bool {
        *self == other.0
    }
}

impl From<&str> for ImageName {
    fn from(s: &str) -> ImageName {
        ImageName(s.to_string())
    }
}

impl From<String> for ImageName {
    fn from(s: String) -> ImageName {
        ImageName(s)
    }
}

impl AsRef<std::path::Path> for ImageName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

/// An image's MD5 as lower-case hex: what `verify /md5` on the device must print. Computed by
/// the store while it streams the file in; the driver compares the device's answer with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ImageMd5(String);

impl ImageMd5 {
    /// 32 hexadecimal digits, in either case; None otherwise.
    pub fn parse(text: &str) -> Option<ImageMd5> {
        let t = text.trim();
        (t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| ImageMd5(t.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageMd5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ImageMd5 {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// An image as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ImageRecord {
    pub id: i64,
    pub file_name: ImageName,
    pub size: u64,
    /// What `verify /md5` on the device must print.
    pub md5: ImageMd5,
    pub sha256: String,
    pub platform: Option<String>,
    pub version: Option<String>,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image file name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("image is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "image {0} already exists with different content; delete it first or upload under another name"
    )]
    NameTaken(String),
    #[error("the same content is already stored as {0}")]
    DuplicateContent(String),
    #[error("image {0} not found")]
    NotFound(String),
    #[error(
        "image {name} is used by rollout {rollout}; it can be deleted once that rollout has ended"
    )]
    InUse { name: String, rollout: String },
    #[error("unknown platform {0:?} (expected ios, iosxe or nxos)")]
    BadPlatform(String),
    #[error("image store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a file server refused a requested name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("access violation: {0}")]
    Forbidden(&'static str),
    #[error("file not found")]
    NotFound,
}

/// Description given with an upload.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageMeta {
    pub file_name: String,
    pub platform: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone)]
pub(crate) struct ImageStore {
    dir: PathBuf,
    db: Db,
    max_size: u64,
    /// Serialises the final check-rename-register step of uploads.
    finish_lock: Arc<Mutex<()>>,
    /// The files, checked by SHA-256, and those fetched from other nodes.
    cache: Arc<cache::Cache>,
    /// This process's name (what it fetches for) and the token it presents to other nodes.
    fetching: Arc<std::sync::RwLock<(String, Option<String>)>>,
    /// Images being fetched ahead of their jobs by [`ImageStore::warm`].
    warming: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The default bound on images fetched from other nodes (`--image-cache-max`), in bytes.
pub const DEFAULT_CACHE_MAX: u64 = 20 << 30;

impl ImageStore {
    /// Open the store rooted at `dir`, removing leftovers of interrupted uploads.
    pub(crate) async fn open(dir: PathBuf, db: Db, max_size: u64) -> Result<Self, ImageError> {
        let incoming = dir.join(".incoming");
        if incoming.exists() {
            tokio::fs::remove_dir_all(&incoming)
                .await
                .map_err(io_err(&incoming))?;
        }
        tokio::fs::create_dir_all(&incoming)
            .await
            .map_err(io_err(&incoming))?;
        Ok(Self {
            cache: Arc::new(cache::Cache::open(dir.clone(), DEFAULT_CACHE_MAX)),
            dir,
            db,
            max_size,
            finish_lock: Arc::new(Mutex::new(())),
            fetching: Arc::new(std::sync::RwLock::new(("fleetup".into(), None))),
            warming: Arc::default(),
        })
    }

    /// Fetch missing images from the other nodes as `node`, presenting `token`, and keep at
    /// most `cache_max` bytes of fetched images. Called once at start, before any use.
    pub(crate) fn configure_fetch(&mut self, node: &str, token: Option<String>, cache_max: u64) {
        self.cache = Arc::new(cache::Cache::open(self.dir.clone(), cache_max));
        *self
            .fetching
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (node.to_string(), token);
    }

    /// Fetch, in the background, every image a rollout that has not ended uses and this node
    /// lacks: when the node that received the upload dies, the one that takes its rollouts
    /// over has them already.
    pub(crate) async fn warm(&self) {
        let in_use = match self.db.images_in_use().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the images of running rollouts");
                return;
            }
        };
        let names: std::collections::BTreeSet<String> =
            in_use.into_iter().flat_map(|(_, images)| images).collect();
        for name in names {
            let fresh = self
                .warming
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.clone());
            if !fresh {
                continue;
            }
            let store = self.clone();
            tokio::spawn(async move {
                match store.get(&name).await {
                    Ok(img) => {
                        if let Err(e) = store.ensure_local(&img, true).await {
                            tracing::warn!(image = %name, error = %e, "cannot fetch an image ahead of its jobs");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(image = %name, error = %e, "cannot read an image record")
                    }
                }
                store
                    .warming
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&name);
            });
        }
    }

    /// The path of `img`'s file once it is on this node and matches its SHA-256: checked
    /// (once per version of the file), else fetched by SHA-256 from another live node when
    /// `from_peers`.
    pub(crate) async fn ensure_local(
        &self,
        img: &ImageRecord,
        from_peers: bool,
    ) -> Result<PathBuf, ImageError> {
        let (node, token) = self
            .fetching
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut sources = Vec::new();
        if from_peers && let Ok(nodes) = self.db.nodes().await {
            sources = nodes
                .into_iter()
                .filter(|n| {
                    n.kind == crate::store::leases::NodeKind::Node
                        && n.name != node
                        && n.heartbeat_age_ms < PEER_FRESH_MS
                })
                .filter_map(|n| n.url)
                .map(|url| cache::Source {
                    url: blob_url(&url, &img.sha256),
                    token: token.clone(),
                })
                .collect();
        }
        let want = cache::Wanted {
            file_name: img.file_name.to_string(),
            sha256: img.sha256.clone(),
            size: img.size,
        };
        Ok(self.cache.ensure(&want, &sources, &node).await?.0)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start a streamed upload into a temporary file.
    pub(crate) async fn begin_upload(&self) -> Result<Upload, ImageError> {
        let name = format!("{:016x}.part", rand::random::<u64>());
        let path = self.dir.join(".incoming").join(name);
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        Ok(Upload {
            store: self.clone(),
            file: Some(file),
            path,
            size: 0,
            md5: Md5::new(),
            sha256: Sha256::new(),
        })
    }

    pub(crate) async fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.db.list_images().await?)
    }

    pub(crate) async fn get(&self, file_name: &str) -> Result<ImageRecord, ImageError> {
        self.db.image_by_name(file_name).await.map_err(|e| match e {
            StoreError::NotFound => ImageError::NotFound(file_name.to_string()),
            e => e.into(),
        })
    }

    /// Delete an image unless a rollout that has not ended uses it.
    pub(crate) async fn delete(&self, file_name: &str) -> Result<(), ImageError> {
        let img = self.get(file_name).await?;
        if let Some(rollout) = self.db.rollout_using_image(&img.file_name).await? {
            return Err(ImageError::InUse {
                name: img.file_name.to_string(),
                rollout,
            });
        }
        self.db.delete_image(&img.file_name).await?;
        self.cache.forget(&img.file_name);
        let path = self.dir.join(&img.file_name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

/// How recent a node's heartbeat must be for it to be asked for an image.
const PEER_FRESH_MS: i64 = 60_000;

/// Where the process at `base` (an API's URL) serves the image whose SHA-256 is `sha256`.
pub(crate) fn blob_url(base: &str, sha256: &str) -> String {
    format!(
        "{}/api/v1/blobs/sha256/{sha256}",
        base.trim_end_matches('/')
    )
}

/// Map a name requested by a file-server client to a file under `root`.
///
/// Accepts `name` and `/name`; refuses anything that could leave the root (`..`, separators,
/// NUL, hidden names, symlinks pointing outside) with `Forbidden`.
pub(crate) fn resolve_in(root: &Path, requested: &str) -> Result<PathBuf, ResolveError> {
    let name = requested.strip_prefix('/').unwrap_or(requested);
    if name.contains('\0') {
        return Err(ResolveError::Forbidden("NUL byte in file name"));
    }
    if name.chars().any(char::is_control) {
        // Escape sequences and line breaks in a stored name end up in listings and logs.
        return Err(ResolveError::Forbidden("control character in file name"));
    }
    if name.is_empty() {
        return Err(ResolveError::Forbidden("empty file name"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(ResolveError::Forbidden("directories are not served"));
    }
    if name == ".." || name == "." || name.starts_with('.') {
        return Err(ResolveError::Forbidden(
            "hidden or relative names are not served",
        ));
    }
    let path = root.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => return Err(ResolveError::NotFound),
    };
    if meta.file_type().is_symlink() {
        // A link is served only when it stays inside the root.
        let (Ok(target), Ok(root_real)) =
            (std::fs::canonicalize(&path), std::fs::canonicalize(root))
        else {
            return Err(ResolveError::NotFound);
        };
        let Ok(inside) = target.strip_prefix(&root_real) else {
            return Err(ResolveError::Forbidden(
                "symbolic link leads outside the image store",
            ));
        };
        // A link may name another served file, never what the name rules keep hidden: a
        // partial upload under `.incoming/`, a hidden file, a subdirectory's file.
        let mut parts = inside.components();
        let served = match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(file)), None) => {
                !file.to_string_lossy().starts_with('.')
            }
            _ => false,
        };
        if !served {
            return Err(ResolveError::Forbidden(
                "symbolic link leads to a file that is not served (hidden, partial or in a subdirectory)",
            ));
        }
        if !target.is_file() {
            return Err(ResolveError::NotFound);
        }
        return Ok(target);
    }
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    Ok(path)
}

/// The name an upload is stored under: the form's `file_name` field when given, else the last
/// component of the file name the client sent with the file (browsers and curl send a bare
/// name, some clients a whole path, with either separator).
pub(crate) fn upload_name(file_name_field: &str, uploaded: Option<&str>) -> String {
    if !file_name_field.is_empty() {
        return file_name_field.to_string();
    }
    uploaded
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Where an uploaded image named `name` goes: directly in `dir`, under a name the file servers
/// will serve. Refuses names that are not valid image file names.
pub(crate) fn destination(dir: &Path, name: &str) -> Result<PathBuf, ImageError> {
    validate_file_name(name)?;
    Ok(dir.join(name))
}

/// An upload in progress. Dropping it without [`Upload::finish`] removes the temporary file.
pub(crate) struct Upload {
    store: ImageStore,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    size: u64,
    md5: Md5,
    sha256: Sha256,
}

impl Upload {
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.size += chunk.len() as u64;
        if self.size > self.store.max_size {
            return Err(ImageError::TooLarge {
                limit: self.store.max_size,
            });
        }
        self.md5.update(chunk);
        self.sha256.update(chunk);
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(chunk).await.map_err(io_err(&self.path))
    }

    /// Flush, check for duplicates, move into place and register.
    pub(crate) async fn finish(mut self, meta: ImageMeta) -> Result<ImageRecord, ImageError> {
        let dest = destination(&self.store.dir, &meta.file_name)?;
        let platform = match meta.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                Platform::parse(p)
                    .ok_or_else(|| ImageError::BadPlatform(p.to_string()))?
                    .as_str()
                    .to_string(),
            ),
            None => guess_platform(&meta.file_name).map(|p| p.as_str().to_string()),
        };
        let version = meta
            .version
            .filter(|v| !v.is_empty())
            .or_else(|| guess_version(&meta.file_name));
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_err(&self.path))?;
            file.sync_all().await.map_err(io_err(&self.path))?;
        }
        let md5 = ImageMd5(hex::encode(std::mem::take(&mut self.md5).finalize()));
        let sha256 = hex::encode(std::mem::take(&mut self.sha256).finalize());

        let store = self.store.clone();
        let _guard = store.finish_lock.lock().await;
        if let Some(existing) = store.db.image_by_sha256(&sha256).await? {
            return Err(ImageError::DuplicateContent(existing.file_name.to_string()));
        }
        match store.db.image_by_name(&meta.file_name).await {
            Ok(_) => return Err(ImageError::NameTaken(meta.file_name)),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::fs::rename(&self.path, &dest)
            .await
            .map_err(io_err(&dest))?;
        let record = ImageRecord {
            id: 0,
            file_name: ImageName::new(meta.file_name),
            size: self.size,
            md5,
            sha256,
            platform,
            version,
            created_at: String::new(),
        };
        match store.db.insert_image(&record).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = tokio::fs::remove_file(&dest).await;
                Err(e.into())
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After a successful finish the file was renamed away and this is a no-op.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64), the content of the demo's images and
/// of the tests' image files: they look like files rather than zeros, and a shifted, repeated
/// or lost block shows up as another checksum. Different seeds give different bytes.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // The mix spreads small seeds apart; `| 1` keeps xorshift away from its fixed point 0.
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ios.bin"), b"x").unwrap();
        assert!(resolve_in(dir.path(), "ios.bin").is_ok());
        assert!(resolve_in(dir.path(), "/ios.bin").is_ok());
        for bad in [
            "../etc/passwd",
            "..",
            "a/../../x",
            "/etc/passwd",
            ".incoming",
            "a\0b",
            "",
        ] {
            assert!(
                matches!(resolve_in(dir.path(), bad), Err(ResolveError::Forbidden(_))),
                "{bad:?} should be forbidden"
            );
        }
        assert_eq!(
            resolve_in(dir.path(), "missing.bin"),
            Err(ResolveError::NotFound)
        );
    }

    #[cfg(unix)]
    #[test]
    fn resolve_refuses_symlinks_to_hidden_partial_or_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".incoming")).unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        for f in [
            "ios.bin",
            ".hidden.bin",
            ".incoming/0123.part",
            "sub/inner.bin",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        for (link, to) in [
            ("hidden-link.bin", ".hidden.bin"),
            ("partial.bin", ".incoming/0123.part"),
            ("nested.bin", "sub/inner.bin"),
        ] {
            std::os::unix::fs::symlink(to, dir.path().join(link)).unwrap();
            assert!(
                matches!(
                    resolve_in(dir.path(), link),
                    Err(ResolveError::Forbidden(_))
                ),
                "{link} -> {to} must not be served"
            );
        }
        std::os::unix::fs::symlink("ios.bin", dir.path().join("alias.bin")).unwrap();
        let served = resolve_in(dir.path(), "alias.bin").unwrap();
        assert_eq!(served.file_name().unwrap(), "ios.bin");
    }

    #[cfg(unix)]
    #[test]
    fn resolve_refuses_symlink_out_of_root() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("evil.bin")).unwrap();
        assert!(matches!(
            resolve_in(dir.path(), "evil.bin"),
            Err(ResolveError::Forbidden(_))
        ));
    }
}

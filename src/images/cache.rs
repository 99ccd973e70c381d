//! Images by content: a node or agent that lacks an image fetches it by SHA-256 from another
//! fleetup process (`GET /api/v1/blobs/sha256/{sha256}`), checks the checksum before the file
//! takes its name, and keeps what it fetched in a bounded cache, evicting the least recently
//! used.
//!
//! Every file is checked against its SHA-256 before it is first handed to a file server in
//! this process, and again whenever its size, modification time or inode change: a file
//! damaged or replaced on disk is found, removed and fetched again. (Damage that changes none
//! of these is found at the next start; the device's `verify /md5` after the copy stands behind
//! that.)
//!
//! Files that were uploaded to this node are its origin copies: checked the same way, never
//! evicted and not counted against the cache's bound. The fetched ones are listed in
//! `.cache.json` beside them, with their size and last use.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// The header a process fetching an image sends: the answering node then serves only what it
/// has itself and asks no peer in turn (no fetch loops between nodes).
pub(crate) const PEER_HEADER: &str = "x-fleetup-fetch-for";

/// The index of fetched files, in the image directory (hidden: never served).
const INDEX: &str = ".cache.json";

/// An image as a cache needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
}

/// Where an image can be fetched from: a blob URL and the token to present.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub url: String,
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "image {name} is not on this node{damaged} and could not be fetched by its SHA-256: {tried}"
    )]
    Unavailable {
        name: String,
        damaged: &'static str,
        tried: String,
    },
    #[error("image cache I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Identifies one version of a file on disk: what a check is remembered against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified_ns: i128,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| Stamp {
        len: m.len(),
        modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        inode: m.ino(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    sha256: String,
    size: u64,
    /// The order of last use (higher: more recent), kept across restarts.
    last_use: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Fetched files by file name.
    fetched: BTreeMap<String, Entry>,
}

impl State {
    fn next_use(&mut self) -> u64 {
        let last = self
            .index
            .fetched
            .values()
            .map(|e| e.last_use)
            .max()
            .unwrap_or(0);
        last + 1
    }
}

#[derive(Debug, Default)]
struct State {
    index: Index,
    /// Files whose SHA-256 was checked in this process, as they were then.
    checked: HashMap<String, (Stamp, String)>,
    /// One fetch or check at a time per file name.
    flights: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// The local image files of one process, checked and, when missing, fetched.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    /// Bytes the fetched files may take together.
    max_bytes: u64,
    state: std::sync::Mutex<State>,
    client: reqwest::Client,
}

/// What one `ensure` did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// The file was here and matched (checked now or before).
    Local,
    /// It was fetched (missing, or damaged and removed).
    Fetched { replaced_damaged: bool },
}

impl Cache {
    /// The cache over `dir` (the image directory, with its `.incoming/`), bounded to
    /// `max_bytes` of fetched files.
    pub(crate) fn open(dir: PathBuf, max_bytes: u64) -> Cache {
        let mut index = std::fs::read(dir.join(INDEX))
            .ok()
            .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
            .unwrap_or_default();
        // An entry whose file is not there (a crash after the entry, before the file took its
        // name; a file removed by hand) holds no room in the bound.
        let listed = index.fetched.len();
        index.fetched.retain(|name, _| dir.join(name).is_file());
        let pruned = listed - index.fetched.len();
        let client = crate::http_client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| crate::http_client::client());
        let cache = Cache {
            dir,
            max_bytes,
            state: std::sync::Mutex::new(State {
                index,
                ..State::default()
            }),
            client,
        };
        if pruned > 0 {
            tracing::info!(
                entries = pruned,
                "image cache: entries without their file dropped from the index"
            );
            cache.save(&cache.state().index);
        }
        cache
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bytes the fetched files take now.
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> u64 {
        self.state().index.fetched.values().map(|e| e.size).sum()
    }

    /// Whether `file_name` is a fetched (evictable) file rather than an origin copy.
    pub(crate) fn is_fetched(&self, file_name: &str) -> bool {
        self.state().index.fetched.contains_key(file_name)
    }

    /// The path of `want`'s file once it is here and matches its SHA-256: checked when it has
    /// not been (in this version of the file), fetched from `sources` in order when missing or
    /// damaged. Concurrent calls for one file wait for one check or fetch.
    pub(crate) async fn ensure(
        &self,
        want: &Wanted,
        sources: &[Source],
        fetch_for: &str,
    ) -> Result<(PathBuf, Found), CacheError> {
        let name = crate::images::validate_file_name(&want.file_name)
            .map(|()| want.file_name.clone())
            .map_err(|e| CacheError::Unavailable {
                name: want.file_name.clone(),
                damaged: "",
                tried: e.to_string(),
            })?;
        let flight = self
            .state()
            .flights
            .entry(name.clone())
            .or_default()
            .clone();
        let _one_at_a_time = flight.lock().await;
        let path = self.dir.join(&name);
        let mut damaged = false;
        if let Some(now) = stamp(&path) {
            let known = self.state().checked.get(&name).cloned();
            let matches = match known {
                Some((s, sha)) if s == now => sha == want.sha256,
                _ => {
                    let p = path.clone();
                    let sha = tokio::task::spawn_blocking(move || sha256_of(&p))
                        .await
                        .map_err(|e| CacheError::Io {
                            path: path.clone(),
                            source: std::io::Error::other(e),
                        })?
                        .map_err(|source| CacheError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    // Remember what this version of the file holds, matching or not.
                    self.state()
                        .checked
                        .insert(name.clone(), (now, sha.clone()));
                    sha == want.sha256 && now.len == want.size
                }
            };
            if matches {
                self.touch(&name);
                return Ok((path, Found::Local));
            }
            tracing::warn!(
                image = %name,
                path = %path.display(),
                "image file does not match its SHA-256 (damaged or replaced on disk): removing it and fetching it again"
            );
            damaged = true;
            self.forget(&name);
            remove_if_there(&path).await?;
        }
        let mut tried = Vec::new();
        for source in sources {
            match self.fetch(want, source, fetch_for).await {
                Ok(part) => {
                    // Listed, then named: a crash between the two leaves an entry without its
                    // file (dropped at the next start), never a fetched file that the next
                    // start takes for an origin copy, which is never evicted.
                    self.record_fetched(&name, want);
                    if let Err(source) = tokio::fs::rename(&part, &path).await {
                        self.forget(&name);
                        let _ = tokio::fs::remove_file(&part).await;
                        return Err(CacheError::Io {
                            path: path.clone(),
                            source,
                        });
                    }
                    if let Some(s) = stamp(&path) {
                        self.state()
                            .checked
                            .insert(name.clone(), (s, want.sha256.clone()));
                    }
                    tracing::info!(image = %name, from = %source.url, "image fetched by SHA-256 and checked");
                    return Ok((
                        path,
                        Found::Fetched {
                            replaced_damaged: damaged,
                        },
                    ));
                }
                Err(why) => tried.push(format!("{}: {why}", source.url)),
            }
        }
        Err(CacheError::Unavailable {
            name,
            damaged: if damaged {
                " (its file did not match its SHA-256 and was removed)"
            } else {
                ""
            },
            tried: if tried.is_empty() {
                "no other fleetup node or server to fetch from".to_string()
            } else {
                tried.join("; ")
            },
        })
    }

    /// The SHA-256 of every file checked in this process and unchanged since.
    pub(crate) fn checked(&self) -> Vec<String> {
        let st = self.state();
        let mut out: Vec<String> = st
            .checked
            .iter()
            .filter(|(name, (s, _))| stamp(&self.dir.join(name)) == Some(*s))
            .map(|(_, (_, sha))| sha.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Check every fetched file against the SHA-256 it was fetched for, and remove those
    /// that do not match and files nobody fetched: what an agent does before it serves
    /// anything. The number of files kept.
    pub(crate) async fn adopt_fetched(&self) -> Result<usize, CacheError> {
        let listed: Vec<(String, Entry)> = self
            .state()
            .index
            .fetched
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        let mut kept = 0;
        for (name, entry) in listed {
            let want = Wanted {
                file_name: name.clone(),
                sha256: entry.sha256,
                size: entry.size,
            };
            if self.ensure(&want, &[], "startup").await.is_ok() {
                kept += 1;
            } else {
                self.forget(&name);
            }
        }
        let mut dir = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|source| CacheError::Io {
                path: self.dir.clone(),
                source,
            })?;
        while let Ok(Some(e)) = dir.next_entry().await {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().await.is_ok_and(|t| t.is_file());
            if is_file && !name.starts_with('.') && !self.is_fetched(&name) {
                tracing::warn!(file = %name, "removing a file the cache did not fetch");
                remove_if_there(&e.path()).await?;
            }
        }
        Ok(kept)
    }

    /// Take every checked file that changed on disk since its check out of service at once
    /// (into `.incoming/`), check it again, and put it back only when it still matches; one
    /// that does not is removed, to be fetched again. The names removed.
    pub(crate) async fn recheck(&self) -> Vec<String> {
        let changed: Vec<(String, String)> = {
            let st = self.state();
            st.checked
                .iter()
                .filter(|(name, (s, _))| stamp(&self.dir.join(name)) != Some(*s))
                .map(|(name, (_, sha))| (name.clone(), sha.clone()))
                .collect()
        };
        let mut removed = Vec::new();
        for (name, sha) in changed {
            let flight = self
                .state()
                .flights
                .entry(name.clone())
                .or_default()
                .clone();
            let _one_at_a_time = flight.lock().await;
            let path = self.dir.join(&name);
            self.state().checked.remove(&name);
            let held = self
                .dir
                .join(".incoming")
                .join(format!("{:016x}.recheck", rand::random::<u64>()));
            if tokio::fs::rename(&path, &held).await.is_err() {
                // Gone: nothing is served under that name.
                continue;
            }
            let p = held.clone();
            let matches = tokio::task::spawn_blocking(move || sha256_of(&p))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|got| got == sha);
            if matches && tokio::fs::rename(&held, &path).await.is_ok() {
                if let Some(s) = stamp(&path) {
                    self.state().checked.insert(name.clone(), (s, sha));
                }
                continue;
            }
            tracing::warn!(image = %name, "image file changed on disk and no longer matches its SHA-256: removed, to be fetched again");
            let _ = tokio::fs::remove_file(&held).await;
            self.forget(&name);
            removed.push(name);
        }
        removed
    }

    /// Download `want` from `source` into `.incoming/`, checking size and SHA-256 on the way;
    /// the temporary file's path when it matches.
    async fn fetch(
        &self,
        want: &Wanted,
        source: &Source,
        fetch_for: &str,
    ) -> Result<PathBuf, String> {
        let mut req = self.client.get(&source.url).header(PEER_HEADER, fetch_for);
        if let Some(t) = &source.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| crate::http_client::error_chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let part = self
            .dir
            .join(".incoming")
            .join(format!("{:016x}.fetch", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let result = async {
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| crate::http_client::error_chain(&e))?
            {
                got += chunk.len() as u64;
                if got > want.size {
                    return Err(format!("sent more than the image's {} bytes", want.size));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
            }
            if got != want.size {
                return Err(format!("sent {got} of the image's {} bytes", want.size));
            }
            let sha = hex::encode(hasher.finalize());
            if sha != want.sha256 {
                return Err(format!(
                    "sent content whose SHA-256 is {sha}, not {}",
                    want.sha256
                ));
            }
            file.sync_all()
                .await
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
            Ok(())
        }
        .await;
        drop(file);
        match result {
            Ok(()) => Ok(part),
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    fn touch(&self, name: &str) {
        let mut st = self.state();
        let next = st.next_use();
        if let Some(e) = st.index.fetched.get_mut(name) {
            e.last_use = next;
        }
    }

    pub(crate) fn forget(&self, name: &str) {
        let mut st = self.state();
        st.checked.remove(name);
        if st.index.fetched.remove(name).is_some() {
            self.save(&st.index);
        }
    }

    /// List a fetched file, then evict the least recently used others until the fetched
    /// files fit the bound again (the one just fetched stays, whatever its size).
    fn record_fetched(&self, name: &str, want: &Wanted) {
        let mut st = self.state();
        let last_use = st.next_use();
        st.index.fetched.insert(
            name.to_string(),
            Entry {
                sha256: want.sha256.clone(),
                size: want.size,
                last_use,
            },
        );
        let mut total: u64 = st.index.fetched.values().map(|e| e.size).sum();
        while total > self.max_bytes {
            let Some((victim, size)) = st
                .index
                .fetched
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .min_by_key(|(_, e)| e.last_use)
                .map(|(n, e)| (n.clone(), e.size))
            else {
                break;
            };
            st.index.fetched.remove(&victim);
            st.checked.remove(&victim);
            // A device copying it keeps reading the open file; the next job fetches it again.
            if let Err(e) = std::fs::remove_file(self.dir.join(&victim))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(image = %victim, error = %e, "cannot evict a cached image");
            } else {
                tracing::info!(image = %victim, bytes = size, "cached image evicted (least recently used)");
            }
            total -= size;
        }
        self.save(&st.index);
    }

    fn save(&self, index: &Index) {
        let path = self.dir.join(INDEX);
        let tmp = self.dir.join(".incoming").join("cache.json.tmp");
        let write = serde_json::to_vec_pretty(index)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = write {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the image cache's index");
        }
    }
}

async fn remove_if_there(path: &Path) -> Result<(), CacheError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CacheError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A file's SHA-256 as lower-case hex (blocking).
fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(name: &str, body: &[u8]) -> Wanted {
        Wanted {
            file_name: name.into(),
            sha256: hex::encode(Sha256::digest(body)),
            size: body.len() as u64,
        }
    }

    /// A one-route HTTP server answering every GET with `body`, counting requests.
    async fn blob_server(body: Vec<u8>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/blob",
            axum::routing::get(move || {
                let body = body.clone();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/blob", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    /// `w` is fetched a second time from `src` (its server now counted two hits), whole, and
    /// said to have replaced a damaged file or not.
    async fn assert_fetched_again(
        cache: &Cache,
        w: &Wanted,
        src: &[Source],
        body: &[u8],
        hits: &std::sync::atomic::AtomicUsize,
        replaced_damaged: bool,
    ) {
        let (path, found) = cache.ensure(w, src, "t").await.unwrap();
        assert_eq!(found, Found::Fetched { replaced_damaged });
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    fn cache_in(dir: &Path, max: u64) -> Cache {
        std::fs::create_dir_all(dir.join(".incoming")).unwrap();
        Cache::open(dir.to_path_buf(), max)
    }

    #[tokio::test]
    async fn a_missing_image_is_fetched_checked_and_then_served_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"image bytes".repeat(1000);
        let (url, hits) = blob_server(body.clone()).await;
        let cache = cache_in(dir.path(), 1 << 30);
        let w = want("c2960x-universalk9-mz.152-7.E8.bin", &body);
        let src = [Source { url, token: None }];
        let (path, found) = cache.ensure(&w, &src, "t").await.unwrap();
        assert_eq!(
            found,
            Found::Fetched {
                replaced_damaged: false
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), body);
        let (_, again) = cache.ensure(&w, &src, "t").await.unwrap();
        assert_eq!(again, Found::Local);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.is_fetched(&w.file_name));
        // The index survives a restart.
        let reopened = Cache::open(dir.path().to_path_buf(), 1 << 30);
        assert!(reopened.is_fetched(&w.file_name));
        assert_eq!(reopened.cached_bytes(), body.len() as u64);
    }

    /// A crash after a fetched file was listed and before it took its name leaves an entry
    /// without its file: the next start drops it (it holds no room in the bound), and the
    /// image is fetched again, listed as fetched, not taken for an origin copy.
    #[tokio::test]
    async fn an_entry_left_without_its_file_by_a_crash_is_dropped_and_the_image_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"image bytes".repeat(100);
        let (url, hits) = blob_server(body.clone()).await;
        let w = want("c2960x-universalk9-mz.152-7.E8.bin", &body);
        let src = [Source { url, token: None }];
        let cache = cache_in(dir.path(), 1 << 30);
        cache.ensure(&w, &src, "t").await.unwrap();
        drop(cache);
        // The moment of the crash: listed, not yet named.
        std::fs::remove_file(dir.path().join(&w.file_name)).unwrap();
        let reopened = cache_in(dir.path(), 1 << 30);
        assert!(!reopened.is_fetched(&w.file_name));
        assert_eq!(reopened.cached_bytes(), 0);
        let saved = std::fs::read_to_string(dir.path().join(INDEX)).unwrap();
        assert!(!saved.contains(&w.file_name), "{saved}");
        assert_fetched_again(&reopened, &w, &src, &body, &hits, false).await;
        assert!(reopened.is_fetched(&w.file_name));
        assert_eq!(reopened.cached_bytes(), body.len() as u64);
    }

    #[tokio::test]
    async fn a_source_with_other_content_is_refused_and_nothing_takes_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = blob_server(b"tampered content!".to_vec()).await;
        let cache = cache_in(dir.path(), 1 << 30);
        let w = want("c2960x-universalk9-mz.152-7.E8.bin", b"the real content!");
        let err = cache
            .ensure(&w, &[Source { url, token: None }], "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHA-256 is"), "{err}");
        assert!(!dir.path().join(&w.file_name).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(".incoming"))
                .unwrap()
                .count(),
            0,
            "no partial download is left"
        );
        let none = cache.ensure(&w, &[], "t").await.unwrap_err().to_string();
        assert!(none.contains("no other fleetup node"), "{none}");
    }

    #[tokio::test]
    async fn a_damaged_file_is_found_removed_and_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"0123456789".repeat(500);
        let (url, hits) = blob_server(body.clone()).await;
        let cache = cache_in(dir.path(), 1 << 30);
        let w = want("cat9k_iosxe.17.09.04a.SPA.bin", &body);
        let src = [Source { url, token: None }];
        let (path, _) = cache.ensure(&w, &src, "t").await.unwrap();
        // One byte flipped in place, same length.
        let mut damaged = body.clone();
        damaged[1234] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        assert_fetched_again(&cache, &w, &src, &body, &hits, true).await;
        // An origin copy (uploaded here, not fetched) is checked the same way.
        let origin = want("c3750e-universalk9-mz.152-4.E10.bin", b"origin");
        std::fs::write(dir.path().join(&origin.file_name), b"0rigin").unwrap();
        let err = cache
            .ensure(&origin, &[], "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not match its SHA-256"), "{err}");
    }

    #[tokio::test]
    async fn fetched_images_are_bounded_and_the_least_recently_used_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(dir.path(), 2500);
        let mut wanted = Vec::new();
        for (i, name) in [
            "c2960x-universalk9-mz.152-7.E8.bin",
            "c2960x-universalk9-mz.152-7.E9.bin",
            "c2960x-universalk9-mz.152-7.E10.bin",
        ]
        .into_iter()
        .enumerate()
        {
            let body = vec![i as u8; 1000];
            let (url, _) = blob_server(body.clone()).await;
            let w = want(name, &body);
            cache
                .ensure(
                    &w,
                    &[Source {
                        url: url.clone(),
                        token: None,
                    }],
                    "t",
                )
                .await
                .unwrap();
            wanted.push((w, url));
            if i == 1 {
                // The first is used again: the second is now the least recently used.
                cache.ensure(&wanted[0].0, &[], "t").await.unwrap();
            }
        }
        assert_eq!(cache.cached_bytes(), 2000);
        assert!(dir.path().join(&wanted[0].0.file_name).exists());
        assert!(!dir.path().join(&wanted[1].0.file_name).exists(), "evicted");
        assert!(dir.path().join(&wanted[2].0.file_name).exists());
        // An origin copy is never evicted nor counted.
        let origin = want("c3750e-universalk9-mz.152-4.E10.bin", &[7u8; 5000]);
        std::fs::write(dir.path().join(&origin.file_name), [7u8; 5000]).unwrap();
        cache.ensure(&origin, &[], "t").await.unwrap();
        assert_eq!(cache.cached_bytes(), 2000);
        assert!(!cache.is_fetched(&origin.file_name));
    }
}

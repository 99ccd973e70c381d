//! Configuration backups: the `show running-config` and `show startup-config` a rollout read
//! from a device before its first change, and the running configuration once it was back.
//!
//! A configuration holds secrets (enable secret hashes, SNMP communities, keys), so its text
//! lives only in a file of its own under `DATA_DIR/configs/DEVICE/`, mode 0600 in a 0700
//! directory, written atomically (a temporary file renamed into place). The database keeps
//! what is shown everywhere else: rollout, device, kind, moment, time, size and SHA-256. Only
//! the configs endpoints of the API (always behind the token) read the text back.

pub(crate) mod diff;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{Db, StoreError};

/// Which configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    Running,
    Startup,
}

/// When in the upgrade it was read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// Before the first change (boot variable, save, install).
    Before,
    /// Once the device was back on the new image.
    After,
}

impl ConfigKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Running => "running",
            ConfigKind::Startup => "startup",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<ConfigKind> {
        match s {
            "running" => Some(ConfigKind::Running),
            "startup" => Some(ConfigKind::Startup),
            _ => None,
        }
    }
}

impl Moment {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Moment::Before => "before",
            Moment::After => "after",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Moment> {
        match s {
            "before" => Some(Moment::Before),
            "after" => Some(Moment::After),
            _ => None,
        }
    }
}

/// One kept configuration, as recorded (its text is in `file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupRecord {
    pub id: i64,
    pub rollout_id: String,
    pub device: String,
    pub kind: ConfigKind,
    pub moment: Moment,
    /// When it was read (RFC 3339).
    pub taken_at: String,
    pub sha256: String,
    pub size: u64,
    /// The file, relative to `DATA_DIR/configs`.
    pub file: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot write the configuration backup {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the configuration backup {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot record the configuration backup: {0}")]
    Store(#[from] StoreError),
}

/// The directory of every device's backups.
pub(crate) fn root(db: &Db) -> PathBuf {
    db.data_dir().join("configs")
}

/// A device name (or rollout id) as one safe path component: letters, digits, `_` and `-` as they are, a `.`
/// anywhere but first; every other byte (`/`, `:`, `@`, a leading `.`) as `%XX`.
fn path_part(name: &str) -> String {
    let mut out = String::new();
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Write `text` to `path` atomically, mode 0600 (its directory 0700).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let tmp = path.with_extension("partial");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Keep one configuration: its file first, then its record (a file without a record is
/// removed again).
pub(crate) async fn keep(
    db: &Db,
    rollout: &str,
    device: &str,
    moment: Moment,
    kind: ConfigKind,
    text: &str,
) -> Result<BackupRecord, ConfigError> {
    let now = jiff::Timestamp::now();
    let file = format!(
        "{}/{}-{}-{}-{}.txt",
        path_part(device),
        path_part(rollout),
        moment.as_str(),
        kind.as_str(),
        now.as_millisecond()
    );
    let path = root(db).join(&file);
    let owned = (path.clone(), text.to_string());
    let written = tokio::task::spawn_blocking(move || write_private(&owned.0, &owned.1)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(source)) => return Err(ConfigError::Write { path, source }),
        Err(e) => {
            return Err(ConfigError::Write {
                path,
                source: std::io::Error::other(e.to_string()),
            });
        }
    }
    let record = BackupRecord {
        id: 0,
        rollout_id: rollout.to_string(),
        device: device.to_string(),
        kind,
        moment,
        taken_at: now.to_string(),
        sha256: sha256_hex(text),
        size: text.len() as u64,
        file,
    };
    match db.insert_config_backup(&record).await {
        Ok(id) => Ok(BackupRecord { id, ..record }),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e.into())
        }
    }
}

/// The text of a kept configuration.
pub(crate) async fn read(db: &Db, record: &BackupRecord) -> Result<String, ConfigError> {
    let path = root(db).join(&record.file);
    tokio::fs::read_to_string(&path)
        .await
        .map_err(|source| ConfigError::Read { path, source })
}

/// The running configuration before and after of one device in one rollout, diffed; `None`
/// while either is missing. The latest of each is used (a retried device was read again).
pub(crate) async fn rollout_diff(
    db: &Db,
    device: &str,
    rollout: &str,
) -> Result<Option<(BackupRecord, BackupRecord, diff::ConfigDiff)>, ConfigError> {
    let all = db.config_backups(device, Some(rollout)).await?;
    let latest = |moment: Moment| {
        all.iter()
            .filter(|b| b.kind == ConfigKind::Running && b.moment == moment)
            .max_by_key(|b| b.id)
            .cloned()
    };
    let (Some(before), Some(after)) = (latest(Moment::Before), latest(Moment::After)) else {
        return Ok(None);
    };
    let a = read(db, &before).await?;
    let b = read(db, &after).await?;
    let d = tokio::task::spawn_blocking(move || diff::diff(&a, &b))
        .await
        .unwrap_or_default();
    Ok(Some((before, after, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_become_safe_directories() {
        assert_eq!(path_part("sw-1.lab"), "sw-1.lab");
        assert_eq!(path_part(".."), "%2E.");
        assert_eq!(path_part("a/b:c@d"), "a%2Fb%3Ac%40d");
        assert!(!path_part("../x").contains('/'));
    }

    #[tokio::test]
    async fn a_backup_is_private_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("fleetup.db")).await.unwrap();
        let text = "hostname sw1\nsnmp-server community S3CR3T RO\n";
        let r = keep(
            &db,
            "r-1",
            "core/1",
            Moment::Before,
            ConfigKind::Running,
            text,
        )
        .await
        .unwrap();
        assert!(r.id > 0);
        assert_eq!(r.size, text.len() as u64);
        assert_eq!(r.sha256, sha256_hex(text));
        assert_eq!(read(&db, &r).await.unwrap(), text);
        let path = root(&db).join(&r.file);
        assert!(path.starts_with(root(&db).join("core%2F1")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        let listed = db.config_backups("core/1", None).await.unwrap();
        assert_eq!(listed, vec![r.clone()]);
        assert_eq!(db.config_backup("core/1", r.id).await.unwrap(), r);
        assert!(db.config_backup("other", r.id).await.is_err());
        assert!(rollout_diff(&db, "core/1", "r-1").await.unwrap().is_none());
        keep(
            &db,
            "r-1",
            "core/1",
            Moment::After,
            ConfigKind::Running,
            "hostname sw1\n",
        )
        .await
        .unwrap();
        let (_, _, d) = rollout_diff(&db, "core/1", "r-1").await.unwrap().unwrap();
        assert_eq!((d.added, d.removed), (0, 1));
    }
}

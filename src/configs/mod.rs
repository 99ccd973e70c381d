//! Configuration backups: the `show running-config` and `show startup-config` a rollout read
//! from a device before its first change, and the running configuration once it was back.
//!
//! A configuration holds secrets (enable secret hashes, SNMP communities, keys). Its text is
//! kept in the database, in its backup's row, beside the device credentials the database
//! already holds: every node that shares the database shows and compares it, and it outlives
//! the disk of the node that read it. Only the configs endpoints of the API (always behind
//! the token) read the text back; every other read of the store selects the record without
//! it (rollout, device, kind, moment, time, size and SHA-256). A backup kept before texts went
//! into the database has its text in a file of its own under `DATA_DIR/configs/DEVICE/`
//! (mode 0600 in a 0700 directory), which [`read`] still reads.

pub(crate) mod diff;

use std::path::PathBuf;

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

/// One kept configuration, as recorded (its text is in its row: [`read`]).
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
    /// The file of a backup kept before texts went into the database, relative to
    /// `DATA_DIR/configs`; empty for the others.
    pub file: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Keep the configurations a device showed at one moment (its running one, and its startup
/// one before the upgrade), recorded with their texts in one transaction: all, or none.
pub(crate) async fn keep(
    db: &Db,
    rollout: &str,
    device: &str,
    moment: Moment,
    texts: &[(ConfigKind, &str)],
) -> Result<Vec<BackupRecord>, ConfigError> {
    let taken_at = jiff::Timestamp::now().to_string();
    let records: Vec<BackupRecord> = texts
        .iter()
        .map(|(kind, text)| BackupRecord {
            id: 0,
            rollout_id: rollout.to_string(),
            device: device.to_string(),
            kind: *kind,
            moment,
            taken_at: taken_at.clone(),
            sha256: sha256_hex(text),
            size: text.len() as u64,
            file: String::new(),
        })
        .collect();
    let kept: Vec<(&BackupRecord, &str)> = records
        .iter()
        .zip(texts)
        .map(|(r, (_, text))| (r, *text))
        .collect();
    let ids = db.insert_config_backups(&kept).await?;
    Ok(records
        .into_iter()
        .zip(ids)
        .map(|(r, id)| BackupRecord { id, ..r })
        .collect())
}

/// The text of a kept configuration: from its row, or from its file for a backup kept before
/// texts went into the database.
pub(crate) async fn read(db: &Db, record: &BackupRecord) -> Result<String, ConfigError> {
    if let Some(text) = db.config_text(record.id).await? {
        return Ok(text);
    }
    let path = root(db).join(&record.file);
    if record.file.is_empty() {
        return Err(ConfigError::Read {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the backup has neither a text nor a file",
            ),
        });
    }
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

    #[tokio::test]
    async fn a_moments_backups_are_recorded_together_with_their_texts() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("fleetup.db")).await.unwrap();
        let text = "hostname sw1\nsnmp-server community S3CR3T RO\n";
        let kept = keep(
            &db,
            "r-1",
            "core/1",
            Moment::Before,
            &[
                (ConfigKind::Running, text),
                (ConfigKind::Startup, "hostname sw0\n"),
            ],
        )
        .await
        .unwrap();
        let [r, s] = kept.as_slice() else {
            panic!("{kept:?}")
        };
        assert!(r.id > 0 && s.id > r.id, "{kept:?}");
        assert_eq!((r.kind, s.kind), (ConfigKind::Running, ConfigKind::Startup));
        assert_eq!(r.size, text.len() as u64);
        assert_eq!(r.sha256, sha256_hex(text));
        assert_eq!(read(&db, r).await.unwrap(), text);
        assert_eq!(read(&db, s).await.unwrap(), "hostname sw0\n");
        // No file: the text is in the row.
        assert!(!root(&db).exists());
        let listed = db.config_backups("core/1", None).await.unwrap();
        assert_eq!(listed, kept);
        assert_eq!(db.config_backup("core/1", r.id).await.unwrap(), *r);
        assert!(db.config_backup("other", r.id).await.is_err());
        assert!(rollout_diff(&db, "core/1", "r-1").await.unwrap().is_none());
        keep(
            &db,
            "r-1",
            "core/1",
            Moment::After,
            &[(ConfigKind::Running, "hostname sw1\n")],
        )
        .await
        .unwrap();
        let (_, _, d) = rollout_diff(&db, "core/1", "r-1").await.unwrap().unwrap();
        assert_eq!((d.added, d.removed), (0, 1));
    }

    /// A backup kept before texts went into the database is read from its file; one with
    /// neither says so, without a panic.
    #[tokio::test]
    async fn a_backup_kept_in_a_file_before_is_still_read_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("fleetup.db")).await.unwrap();
        let file = "core%2F1/r-1-before-running-1.txt";
        std::fs::create_dir_all(root(&db).join("core%2F1")).unwrap();
        std::fs::write(root(&db).join(file), "hostname old\n").unwrap();
        for (rollout, file) in [("r-1", file), ("r-2", "")] {
            sqlx::query(
                "INSERT INTO config_backups (rollout_id, device, kind, moment, taken_at, sha256, size, file) \
                 VALUES ($1, 'core/1', 'running', 'before', '2026-12-05T00:00:00Z', 'x', 13, $2)",
            )
            .bind(rollout)
            .bind(file)
            .execute(db.pool())
            .await
            .unwrap();
        }
        let listed = db.config_backups("core/1", None).await.unwrap();
        assert_eq!(read(&db, &listed[0]).await.unwrap(), "hostname old\n");
        let lost = read(&db, &listed[1]).await.unwrap_err().to_string();
        assert!(lost.contains("neither a text nor a file"), "{lost}");
    }
}

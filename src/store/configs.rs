//! Configuration backups' records and their texts ([`crate::configs`]). The listing reads
//! never select the text: only [`Db::config_text`] does.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, StoreError};
use crate::configs::{BackupRecord, ConfigKind, Moment};

const COLUMNS: &str = "id, rollout_id, device, kind, moment, taken_at, sha256, size, file";

fn row_to_backup(r: &AnyRow) -> Result<BackupRecord, StoreError> {
    let bad = |what: &str| StoreError::Database(sqlx::Error::Decode(what.into()));
    let size: i64 = r.try_get("size")?;
    Ok(BackupRecord {
        id: r.try_get("id")?,
        rollout_id: r.try_get("rollout_id")?,
        device: r.try_get("device")?,
        kind: ConfigKind::parse(&r.try_get::<String, _>("kind")?)
            .ok_or_else(|| bad("config backup kind"))?,
        moment: Moment::parse(&r.try_get::<String, _>("moment")?)
            .ok_or_else(|| bad("config backup moment"))?,
        taken_at: r.try_get("taken_at")?,
        sha256: r.try_get("sha256")?,
        size: u64::try_from(size).unwrap_or(0),
        file: r.try_get("file")?,
    })
}

impl Db {
    /// Record backups with their texts, in one transaction; their ids, in order.
    pub(crate) async fn insert_config_backups(
        &self,
        kept: &[(&BackupRecord, &str)],
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(kept.len());
        for (b, text) in kept {
            let id = sqlx::query_scalar::<_, i64>(
                "INSERT INTO config_backups (rollout_id, device, kind, moment, taken_at, sha256, size, file, text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(&b.rollout_id)
            .bind(&b.device)
            .bind(b.kind.as_str())
            .bind(b.moment.as_str())
            .bind(&b.taken_at)
            .bind(&b.sha256)
            .bind(i64::try_from(b.size).unwrap_or(i64::MAX))
            .bind(&b.file)
            .bind(*text)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.failed(e))?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// A backup's text as recorded with it; `None` for a backup kept before texts were
    /// recorded, whose text is only in its file.
    pub(crate) async fn config_text(&self, id: i64) -> Result<Option<String>, StoreError> {
        let text = sqlx::query_scalar::<_, Option<String>>(
            "SELECT text FROM config_backups WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(text)
    }

    /// A device's backups, oldest first; only one rollout's with `rollout`.
    pub(crate) async fn config_backups(
        &self,
        device: &str,
        rollout: Option<&str>,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM config_backups WHERE device = $1 AND ($2 IS NULL OR rollout_id = $3) ORDER BY id"
        ))
        .bind(device)
        .bind(rollout)
        .bind(rollout)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_backup).collect()
    }

    /// One backup of a device.
    pub(crate) async fn config_backup(
        &self,
        device: &str,
        id: i64,
    ) -> Result<BackupRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM config_backups WHERE device = $1 AND id = $2"
        ))
        .bind(device)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row_to_backup(&row)
    }
}

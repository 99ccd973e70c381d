//! Webhook deliveries' history (`crate::notify`): recorded when queued, updated after every
//! attempt, the oldest dropped beyond a bound.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, StoreError, now_text};
use crate::notify::{DeliveryRecord, DeliveryState, Format, NotificationKind};

const COLUMNS: &str = "id, rollout_id, event_id, target, format, kind, attempts, last_status, \
                       last_error, state, created_at, updated_at";

fn row_to_delivery(r: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    let bad = |what: &str| StoreError::Database(sqlx::Error::Decode(what.into()));
    let attempts: i64 = r.try_get("attempts")?;
    let status: Option<i64> = r.try_get("last_status")?;
    Ok(DeliveryRecord {
        id: r.try_get("id")?,
        rollout_id: r.try_get("rollout_id")?,
        event_id: r.try_get("event_id")?,
        target: r.try_get("target")?,
        format: Format::parse(&r.try_get::<String, _>("format")?)
            .ok_or_else(|| bad("delivery format"))?,
        kind: NotificationKind::parse(&r.try_get::<String, _>("kind")?)
            .ok_or_else(|| bad("notification kind"))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
        state: DeliveryState::parse(&r.try_get::<String, _>("state")?)
            .ok_or_else(|| bad("delivery state"))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A delivery about to be queued.
pub(crate) struct NewDelivery<'a> {
    pub rollout_id: &'a str,
    pub event_id: i64,
    /// Redacted.
    pub target: &'a str,
    pub format: Format,
    pub kind: NotificationKind,
}

impl Db {
    /// Record a pending delivery, and drop the oldest beyond the last `keep`; its id.
    pub(crate) async fn insert_delivery(
        &self,
        d: &NewDelivery<'_>,
        keep: u32,
    ) -> Result<i64, StoreError> {
        let now = now_text();
        let mut tx = self.begin().await?;
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO webhook_deliveries (rollout_id, event_id, target, format, kind, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(d.rollout_id)
        .bind(d.event_id)
        .bind(d.target)
        .bind(d.format.as_str())
        .bind(d.kind.as_str())
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE id <= $1")
            .bind(id - i64::from(keep.max(1)))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed(e))?;
        tx.commit().await?;
        Ok(id)
    }

    /// Note an attempt's outcome (or a delivery's end).
    pub(crate) async fn update_delivery(
        &self,
        id: i64,
        attempts: u32,
        last_status: Option<u16>,
        last_error: Option<&str>,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $1, last_status = $2, last_error = $3, state = $4, updated_at = $5 \
             WHERE id = $6",
        )
        .bind(i64::from(attempts))
        .bind(last_status.map(i64::from))
        .bind(last_error)
        .bind(state.as_str())
        .bind(now_text())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries a stopped service left pending end as failed with `why`; how many.
    pub(crate) async fn abandon_pending_deliveries(&self, why: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = $1, updated_at = $2 WHERE state = 'pending'",
        )
        .bind(why)
        .bind(now_text())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// The newest `limit` deliveries, newest first; only one rollout's with `rollout`.
    pub(crate) async fn deliveries(
        &self,
        rollout: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE ($1 IS NULL OR rollout_id = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(rollout)
        .bind(rollout)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_delivery).collect()
    }
}

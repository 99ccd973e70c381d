//! Golden images (`crate::golden`): one row per scope, an empty column standing for "any".

use sqlx::Row;

use super::{Db, StoreError, now_text};
use crate::golden::{GoldenEntry, Scope};
use crate::inventory::Platform;

fn col(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Db {
    /// Every golden entry, with the version of its image (the store's record, else its name's).
    pub(crate) async fn golden_images(&self) -> Result<Vec<GoldenEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.platform, g.model, g.site, g.role, g.image, g.updated_at, i.version \
             FROM golden_images g LEFT JOIN images i ON i.file_name = g.image \
             ORDER BY g.platform, g.model, g.site, g.role",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let platform: String = r.try_get("platform")?;
                let image: String = r.try_get("image")?;
                let version: Option<String> = r.try_get("version")?;
                Ok(GoldenEntry {
                    scope: Scope {
                        platform: if platform.is_empty() {
                            None
                        } else {
                            Some(Platform::parse(&platform).ok_or_else(|| {
                                StoreError::Database(sqlx::Error::Decode("golden platform".into()))
                            })?)
                        },
                        model: opt(r.try_get("model")?),
                        site: opt(r.try_get("site")?),
                        role: opt(r.try_get("role")?),
                    },
                    version: version.or_else(|| crate::images::guess_version(&image)),
                    image,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Set the golden image of a scope (replacing the one it had).
    pub(crate) async fn set_golden_image(
        &self,
        scope: &Scope,
        image: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO golden_images (platform, model, site, role, image, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (platform, model, site, role) \
             DO UPDATE SET image = excluded.image, updated_at = excluded.updated_at",
        )
        .bind(scope.platform.map(|p| p.as_str()).unwrap_or(""))
        .bind(col(&scope.model))
        .bind(col(&scope.site))
        .bind(col(&scope.role))
        .bind(image)
        .bind(now_text())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forget the golden image of exactly this scope.
    pub(crate) async fn unset_golden_image(&self, scope: &Scope) -> Result<(), StoreError> {
        let done = sqlx::query(
            "DELETE FROM golden_images WHERE platform = $1 AND model = $2 AND site = $3 AND role = $4",
        )
        .bind(scope.platform.map(|p| p.as_str()).unwrap_or(""))
        .bind(col(&scope.model))
        .bind(col(&scope.site))
        .bind(col(&scope.role))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Devices a rollout works on now or may start on soon: a job pending or running in a
    /// rollout that has not ended. The background facts refresh leaves them alone.
    pub(crate) async fn devices_in_rollouts(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT d.device FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id \
             WHERE d.state IN ('pending', 'running') \
             AND r.state NOT IN ('completed', 'completed_with_failures', 'aborted')",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, StoreError, now_text};
use crate::images::{ImageMd5, ImageName, ImageRecord};

fn row_to_image(r: &AnyRow) -> Result<ImageRecord, StoreError> {
    let size: i64 = r.try_get("size")?;
    Ok(ImageRecord {
        id: r.try_get("id")?,
        file_name: ImageName::new(r.try_get::<String, _>("file_name")?),
        size: u64::try_from(size).unwrap_or(0),
        md5: ImageMd5::parse(&r.try_get::<String, _>("md5")?)
            .ok_or_else(|| StoreError::Database(sqlx::Error::Decode("image md5".into())))?,
        sha256: r.try_get("sha256")?,
        platform: r.try_get("platform")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, file_name, size, md5, sha256, platform, version, created_at";

impl Db {
    pub(crate) async fn insert_image(&self, img: &ImageRecord) -> Result<ImageRecord, StoreError> {
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO images (file_name, size, md5, sha256, platform, version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(img.file_name.as_str())
        .bind(i64::try_from(img.size).unwrap_or(i64::MAX))
        .bind(img.md5.as_str())
        .bind(&img.sha256)
        .bind(&img.platform)
        .bind(&img.version)
        .bind(now_text())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from_unique(e, format!("image {} already exists", img.file_name))
        })?;
        self.image_by_id(id).await
    }

    pub(crate) async fn image_by_id(&self, id: i64) -> Result<ImageRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        row_to_image(&row)
    }

    pub(crate) async fn image_by_name(&self, file_name: &str) -> Result<ImageRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM images WHERE file_name = $1"
        ))
        .bind(file_name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row_to_image(&row)
    }

    pub(crate) async fn image_by_sha256(
        &self,
        sha256: &str,
    ) -> Result<Option<ImageRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM images WHERE sha256 = $1"))
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_image).transpose()
    }

    pub(crate) async fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM images ORDER BY file_name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_image).collect()
    }

    pub(crate) async fn delete_image(&self, file_name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM images WHERE file_name = $1")
            .bind(file_name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

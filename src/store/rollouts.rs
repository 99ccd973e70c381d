use super::{Db, StoreError};

/// Rollout states after which a rollout no longer needs its images.
pub const ENDED_STATES: [&str; 3] = ["completed", "failed", "aborted"];

impl Db {
    /// The id of a rollout that has not ended and uses `file_name`, if any.
    pub async fn rollout_using_image(&self, file_name: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM rollouts WHERE state NOT IN (?, ?, ?) \
             AND EXISTS (SELECT 1 FROM json_each(rollouts.images) WHERE value = ?) LIMIT 1",
        )
        .bind(ENDED_STATES[0])
        .bind(ENDED_STATES[1])
        .bind(ENDED_STATES[2])
        .bind(file_name)
        .fetch_optional(&self.pool)
        .await?)
    }
}

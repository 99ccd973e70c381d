//! Device jobs run by site agents. The node that leads a rollout hands a device's job to the
//! agents of the device's site (`runner_site`); one agent claims it under a lease of its own
//! (`runner` until `runner_until_ms`, the database's clock), renewed with each heartbeat.
//! Every claim and every take-back moves `runner_epoch` on, and an agent's writes for the job
//! carry the epoch it claimed ([`super::leases::Fence::device`]): once the job was claimed
//! again or taken back, [`Db::begin`] refuses them.

use sqlx::Row;

use super::{Db, StoreError};
use crate::rollout::model::{Event, EventKind, JobState, RolloutState};

/// A job an agent holds: which, and the epoch its writes carry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HeldJob {
    pub rollout: String,
    pub device: String,
    #[serde(deserialize_with = "crate::agent::signed")]
    pub epoch: i64,
}

/// Who runs a job handed to a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobRunner {
    /// The site it was handed to; `None` when this node runs it.
    pub site: Option<String>,
    /// The agent that claimed it last.
    pub runner: Option<String>,
    /// That agent's lease has not lapsed.
    pub live: bool,
    pub state: JobState,
}

/// The [`JobRunner`] in the columns of [`Db::runner_columns`], from column `at` on.
fn job_runner_of(row: &sqlx::any::AnyRow, at: usize) -> Result<JobRunner, StoreError> {
    let live: i64 = row.try_get(at + 2)?;
    let state: String = row.try_get(at + 3)?;
    Ok(JobRunner {
        site: row.try_get(at)?,
        runner: row.try_get(at + 1)?,
        live: live == 1,
        state: JobState::parse(&state).unwrap_or(JobState::Running),
    })
}

/// Job states an agent may still claim.
fn open_states() -> String {
    format!(
        "'{}', '{}'",
        JobState::Pending.as_str(),
        JobState::Running.as_str()
    )
}

impl Db {
    /// Hand a job that has not ended to the agents of `site` (the rollout's task, under its
    /// fence), with the event that says so (a message of the device), in one transaction.
    pub async fn offer_job(
        &self,
        rollout: &str,
        device: &str,
        site: &str,
        message: &str,
        data: &serde_json::Value,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "UPDATE rollout_devices SET runner_site = $1 \
             WHERE rollout_id = $2 AND device = $3 AND state IN ({})",
            open_states()
        ))
        .bind(site)
        .bind(rollout)
        .bind(device)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        let event = insert_message(&mut tx, rollout, device, message, data).await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Who runs a job, and whether its agent's lease is live.
    pub(crate) async fn job_runner(
        &self,
        rollout: &str,
        device: &str,
    ) -> Result<JobRunner, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM rollout_devices WHERE rollout_id = $1 AND device = $2",
            self.runner_columns()
        ))
        .bind(rollout)
        .bind(device)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        job_runner_of(&row, 0)
    }

    /// Who runs each job of `rollout` that is handed to a site and has not ended, by device:
    /// one read for every job the rollout's task waits on. A job missing from it has ended,
    /// or is no longer handed to a site.
    pub(crate) async fn open_handed_jobs(
        &self,
        rollout: &str,
    ) -> Result<std::collections::HashMap<String, JobRunner>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT device, {} FROM rollout_devices \
             WHERE rollout_id = $1 AND runner_site IS NOT NULL AND state IN ({})",
            self.runner_columns(),
            open_states()
        ))
        .bind(rollout)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, job_runner_of(row, 1)?)))
            .collect()
    }

    /// The columns [`job_runner_of`] reads, as of the database's clock now.
    fn runner_columns(&self) -> String {
        format!(
            "runner_site, runner, \
             CASE WHEN runner_until_ms IS NOT NULL AND runner_until_ms >= {} THEN 1 ELSE 0 END, \
             state",
            self.now_ms()
        )
    }

    /// Take a job back from its site while no agent holds it live: the epoch moves on, so an
    /// agent that claimed it before writes nothing more for it. False when an agent holds it.
    pub(crate) async fn take_back_job(
        &self,
        rollout: &str,
        device: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(&format!(
            "UPDATE rollout_devices SET runner_site = NULL, runner = NULL, \
             runner_until_ms = NULL, runner_epoch = runner_epoch + 1 \
             WHERE rollout_id = $1 AND device = $2 \
             AND (runner IS NULL OR runner_until_ms IS NULL OR runner_until_ms < {})",
            self.now_ms()
        ))
        .bind(rollout)
        .bind(device)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// [`Db::claim_site_jobs_noted`] without events.
    #[cfg(test)]
    pub(crate) async fn claim_site_jobs(
        &self,
        site: &str,
        agent: &str,
        ttl_ms: i64,
        max: usize,
    ) -> Result<Vec<HeldJob>, StoreError> {
        let claimed = self
            .claim_site_jobs_noted(site, agent, ttl_ms, max, |_| None)
            .await?;
        Ok(claimed.into_iter().map(|(job, _)| job).collect())
    }

    /// Claim for `agent`, for `ttl_ms`, up to `max` jobs handed to `site` that no agent holds
    /// live, of rollouts that run (or are paused), in the rollouts' order and the plan's; each
    /// claim with the event `note` makes of it (a message of the device), in the same
    /// transaction.
    pub async fn claim_site_jobs_noted(
        &self,
        site: &str,
        agent: &str,
        ttl_ms: i64,
        max: usize,
        note: impl Fn(&HeldJob) -> Option<(String, serde_json::Value)>,
    ) -> Result<Vec<(HeldJob, Option<Event>)>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = self.now_ms();
        let running = super::rollouts::state_list(|s| {
            matches!(s, RolloutState::Running | RolloutState::Paused)
        });
        // Read first, outside a write transaction: an idle agent asks every second.
        let free: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT j.rollout_id, j.device FROM rollout_devices j \
             JOIN rollouts r ON r.id = j.rollout_id \
             WHERE j.runner_site = $1 AND j.state IN ({}) AND r.state IN ({running}) \
             AND (j.runner IS NULL OR j.runner_until_ms IS NULL OR j.runner_until_ms < {now}) \
             ORDER BY r.created_at, j.wave, j.position LIMIT $2",
            open_states()
        ))
        .bind(site)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        if free.is_empty() {
            return Ok(Vec::new());
        }
        // Each claimed only if still free: another agent may have claimed it since the read.
        let mut tx = self.begin().await?;
        let mut held = Vec::with_capacity(free.len());
        for (rollout, device) in free {
            let epoch: Option<i64> = sqlx::query_scalar(&format!(
                "UPDATE rollout_devices SET runner = $1, runner_epoch = runner_epoch + 1, \
                 runner_until_ms = {now} + $2 WHERE rollout_id = $3 AND device = $4 \
                 AND runner_site = $5 AND state IN ({}) \
                 AND (runner IS NULL OR runner_until_ms IS NULL OR runner_until_ms < {now}) \
                 RETURNING runner_epoch",
                open_states()
            ))
            .bind(agent)
            .bind(ttl_ms)
            .bind(&rollout)
            .bind(&device)
            .bind(site)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.failed(e))?;
            if let Some(epoch) = epoch {
                let job = HeldJob {
                    rollout,
                    device,
                    epoch,
                };
                let event = match note(&job) {
                    Some((message, data)) => Some(
                        insert_message(&mut tx, &job.rollout, &job.device, &message, &data).await?,
                    ),
                    None => None,
                };
                held.push((job, event));
            }
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Extend `agent`'s lease of each job of `site` it holds by `ttl_ms` from now; the jobs it
    /// no longer holds at their epoch (taken back, or claimed by another agent), and any not
    /// handed to `site`, are returned.
    pub async fn renew_site_jobs(
        &self,
        agent: &str,
        site: &str,
        held: &[HeldJob],
        ttl_ms: i64,
    ) -> Result<Vec<HeldJob>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut renewed = std::collections::HashSet::new();
        // One statement per chunk, not one per job: an agent holds hundreds, and each
        // statement is a round trip under the write lock on PostgreSQL.
        for chunk in held.chunks(RENEW_ROWS) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 4 + 3 * i, 5 + 3 * i, 6 + 3 * i))
                .collect();
            let sql = format!(
                "UPDATE rollout_devices SET runner_until_ms = {} + $1 \
                 WHERE runner = $2 AND runner_site = $3 \
                 AND (rollout_id, device, runner_epoch) IN (VALUES {}) \
                 RETURNING rollout_id, device, runner_epoch",
                self.now_ms(),
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(ttl_ms).bind(agent).bind(site);
            for job in chunk {
                q = q.bind(&job.rollout).bind(&job.device).bind(job.epoch);
            }
            for row in q.fetch_all(&mut *tx).await.map_err(|e| self.failed(e))? {
                let key: (String, String, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                renewed.insert(key);
            }
        }
        tx.commit().await?;
        Ok(held
            .iter()
            .filter(|j| !renewed.contains(&(j.rollout.clone(), j.device.clone(), j.epoch)))
            .cloned()
            .collect())
    }
}

/// A message of a handed job's device (its hand-off, its claim), in the transaction of the
/// change it tells of.
async fn insert_message(
    tx: &mut super::Tx,
    rollout: &str,
    device: &str,
    message: &str,
    data: &serde_json::Value,
) -> Result<Event, StoreError> {
    super::rollouts::insert_event(
        &mut **tx,
        rollout,
        Some(device),
        EventKind::Message,
        None,
        message,
        Some(data),
    )
    .await
}

/// Jobs one statement of [`Db::renew_site_jobs`] renews: 3 parameters each.
const RENEW_ROWS: usize = 300;

#[cfg(test)]
mod tests {
    use super::super::leases::tests::{add_job, store_with_rollout};
    use super::super::leases::{FENCE, Fence};
    use super::*;

    #[tokio::test]
    async fn a_job_claimed_again_refuses_the_writes_of_the_agent_that_held_it_before() {
        let (_dir, db) = store_with_rollout().await;
        add_job(&db, "running").await;
        // Not handed to the site: nothing to claim.
        assert!(
            db.claim_site_jobs("lab", "a1", 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        db.offer_job("r1", "sw1", "lab", "handed", &serde_json::Value::Null)
            .await
            .unwrap();
        // Another site's agent gets nothing.
        assert!(
            db.claim_site_jobs("other", "b1", 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let first = db.claim_site_jobs("lab", "a1", 60_000, 10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].rollout.as_str(), first[0].device.as_str()),
            ("r1", "sw1")
        );
        // Held live: neither another agent nor the rollout's node gets it.
        assert!(
            db.claim_site_jobs("lab", "a2", 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!db.take_back_job("r1", "sw1").await.unwrap());
        let runner = db.job_runner("r1", "sw1").await.unwrap();
        assert_eq!(
            (
                runner.site.as_deref(),
                runner.runner.as_deref(),
                runner.live
            ),
            (Some("lab"), Some("a1"), true)
        );

        let write = |epoch| {
            FENCE.scope(
                Fence {
                    rollout: "r1".into(),
                    epoch,
                    device: Some("sw1".into()),
                },
                db.set_job_origin("r1", "sw1", Some("17.9.4"), None),
            )
        };
        write(first[0].epoch).await.unwrap();

        // a1 stops beating: its lease lapses, and a2 claims the job at the next epoch.
        assert!(
            db.renew_site_jobs("a1", "lab", &first, -1)
                .await
                .unwrap()
                .is_empty()
        );
        let second = db.claim_site_jobs("lab", "a2", 60_000, 10).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].epoch, first[0].epoch + 1);
        let refused = write(first[0].epoch).await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        // a1's next heartbeat learns that it lost the job.
        assert_eq!(
            db.renew_site_jobs("a1", "lab", &first, 60_000)
                .await
                .unwrap(),
            first
        );
        write(second[0].epoch).await.unwrap();
        assert_eq!(
            db.job("r1", "sw1").await.unwrap().old_version.as_deref(),
            Some("17.9.4")
        );

        // Taken back once a2's lease lapsed: no agent writes for it any more.
        assert!(
            db.renew_site_jobs("a2", "lab", &second, -1)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(db.take_back_job("r1", "sw1").await.unwrap());
        let refused = write(second[0].epoch).await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        let runner = db.job_runner("r1", "sw1").await.unwrap();
        assert_eq!(
            (runner.site, runner.runner, runner.live),
            (None, None, false)
        );
        assert!(
            db.claim_site_jobs("lab", "a2", 60_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn one_heartbeat_renews_every_job_still_held_and_names_the_ones_lost() {
        let (_dir, db) = store_with_rollout().await;
        for device in ["sw1", "sw2", "sw3"] {
            sqlx::query(
                "INSERT INTO rollout_devices (rollout_id, device, wave, position, image, state) \
                 VALUES ('r1', $1, 0, 0, 'img.bin', 'running')",
            )
            .bind(device)
            .execute(db.pool())
            .await
            .unwrap();
            db.offer_job("r1", device, "lab", "handed", &serde_json::Value::Null)
                .await
                .unwrap();
        }
        let held = db.claim_site_jobs("lab", "a1", 60_000, 10).await.unwrap();
        assert_eq!(held.len(), 3);
        // sw2's lease lapses and a2 claims it: a1 holds sw1 and sw3 only.
        db.renew_site_jobs("a1", "lab", &held[1..2], -1)
            .await
            .unwrap();
        let taken = db.claim_site_jobs("lab", "a2", 60_000, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].device, held[1].device);
        // a1 still lists all three (and one it never held).
        let mut listed = held.clone();
        listed.push(HeldJob {
            rollout: "r1".into(),
            device: "sw9".into(),
            epoch: 1,
        });
        // Named for another site, the heartbeat renews none of them.
        let other = db
            .renew_site_jobs("a1", "other", &held, 60_000)
            .await
            .unwrap();
        assert_eq!(other, held);
        let lost = db
            .renew_site_jobs("a1", "lab", &listed, 60_000)
            .await
            .unwrap();
        assert_eq!(lost, [held[1].clone(), listed[3].clone()]);
        for job in [&held[0], &held[2]] {
            let runner = db.job_runner("r1", &job.device).await.unwrap();
            assert_eq!((runner.runner.as_deref(), runner.live), (Some("a1"), true));
        }
        let runner = db.job_runner("r1", &held[1].device).await.unwrap();
        assert_eq!((runner.runner.as_deref(), runner.live), (Some("a2"), true));

        // One read tells who runs each open handed job, as each job's own read does; a job
        // that ended or was taken back is not in it.
        sqlx::query("UPDATE rollout_devices SET state = 'succeeded' WHERE device = $1")
            .bind(&held[2].device)
            .execute(db.pool())
            .await
            .unwrap();
        db.renew_site_jobs("a1", "lab", &held[..1], -1)
            .await
            .unwrap();
        assert!(db.take_back_job("r1", &held[0].device).await.unwrap());
        let open = db.open_handed_jobs("r1").await.unwrap();
        let mut listed: Vec<_> = open.keys().cloned().collect();
        listed.sort();
        assert_eq!(listed, [held[1].device.clone()]);
        assert_eq!(
            open[&held[1].device],
            db.job_runner("r1", &held[1].device).await.unwrap()
        );
        assert!(db.open_handed_jobs("r2").await.unwrap().is_empty());
    }

    /// The writes an agent held back are made in the transaction of its job's next write,
    /// after the fence's check: kept with it, or, when the claim is stale, not at all.
    #[tokio::test]
    async fn held_writes_go_with_the_next_write_and_are_fenced_with_it() {
        use super::super::{PRE_WRITES, PreWrite, take_pre_writes};
        use crate::rollout::model::{EventKind, StepState};
        let (_dir, db) = store_with_rollout().await;
        add_job(&db, "pending").await;
        db.offer_job("r1", "sw1", "lab", "handed", &serde_json::Value::Null)
            .await
            .unwrap();
        let claim = db.claim_site_jobs("lab", "a1", 60_000, 10).await.unwrap();
        let fenced = |epoch: i64, held: Vec<PreWrite>| {
            let db = db.clone();
            FENCE.scope(
                Fence {
                    rollout: "r1".into(),
                    epoch,
                    device: Some("sw1".into()),
                },
                PRE_WRITES.scope(std::cell::RefCell::new(held), async move {
                    let written = db
                        .record_step(
                            "r1",
                            "sw1",
                            "connect",
                            Some(StepState::Started),
                            EventKind::StepStarted,
                            "connecting",
                        )
                        .await;
                    (written, take_pre_writes())
                }),
            )
        };
        let origin = |version: &str| PreWrite::Origin {
            rollout: "r1".into(),
            device: "sw1".into(),
            version: Some(version.into()),
            image: None,
        };
        // A stale epoch: neither the step nor what was held back.
        let (written, left) = fenced(claim[0].epoch - 1, vec![origin("15.2(7)E8")]).await;
        assert!(matches!(written, Err(StoreError::Fenced(_))), "{written:?}");
        assert_eq!(
            left,
            [origin("15.2(7)E8")],
            "not made: the call fails whole"
        );
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!((job.old_version, job.attempts), (None, 0));
        // The claim's epoch: both, in one transaction; a device no longer in the inventory
        // keeps no host key, and that stops nothing.
        let held = vec![
            PreWrite::StartAttempt {
                rollout: "r1".into(),
                device: "sw1".into(),
            },
            origin("15.2(7)E8"),
            PreWrite::HostKey {
                device: "sw1".into(),
                key: "ssh-ed25519 AAAA".into(),
            },
        ];
        let (written, left) = fenced(claim[0].epoch, held).await;
        written.unwrap();
        assert!(left.is_empty());
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!(job.old_version.as_deref(), Some("15.2(7)E8"));
        assert_eq!((job.attempts, job.state), (1, JobState::Running));
        assert_eq!(job.step.as_deref(), Some("connect"));
    }
}

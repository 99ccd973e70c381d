use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, StoreError, Tx, now_text};
use crate::device::{EntryKind, TranscriptEntry};
use crate::rollout::model::{
    DeviceJob, DeviceRollout, Event, EventKind, JobState, RolloutId, RolloutRecord, RolloutState,
    StepState, TranscriptLine, is_reload_step,
};
use crate::rollout::policy::RolloutView;

/// The ended rollout states as an SQL list (`'completed', …`), for `state NOT IN (…)`: the
/// states are the code's own constants, never input.
fn ended_states() -> String {
    state_list(RolloutState::is_ended)
}

/// The rollout states `pick` keeps, as an SQL list (`'completed', …`): the code's own
/// constants, never input.
pub(super) fn state_list(pick: impl Fn(RolloutState) -> bool) -> String {
    RolloutState::ALL
        .iter()
        .filter(|s| pick(**s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, …`: `n` numbered parameters.
fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode(what: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(what.to_string().into()))
}

/// Every column of a rollout but its playbook and plan, which read as empty: see
/// [`Db::rollout_meta`].
const META_COLUMNS: &str = "id, name, state, '' AS playbook, '' AS plan, images, paused, \
     abort_requested, halt_reason, created_at, updated_at, started_at, finished_at, \
     submitted_by, approval_required, approved_by, approved_at";

fn row_to_rollout(r: &AnyRow) -> Result<RolloutRecord, StoreError> {
    let state: String = r.try_get("state")?;
    let images: String = r.try_get("images")?;
    Ok(RolloutRecord {
        id: RolloutId::new(r.try_get::<String, _>("id")?),
        name: r.try_get("name")?,
        state: RolloutState::parse(&state).ok_or_else(|| decode("rollout state"))?,
        playbook: r.try_get("playbook")?,
        plan_json: r.try_get("plan")?,
        images: serde_json::from_str(&images).map_err(|_| decode("rollout images"))?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        abort_requested: r.try_get::<i64, _>("abort_requested")? != 0,
        halt_reason: r.try_get("halt_reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        submitted_by: r.try_get("submitted_by")?,
        approval_required: r.try_get::<i64, _>("approval_required")? != 0,
        approved_by: r.try_get("approved_by")?,
        approved_at: r.try_get("approved_at")?,
    })
}

fn row_to_job(r: &AnyRow) -> Result<DeviceJob, StoreError> {
    let state: String = r.try_get("state")?;
    let step: Option<String> = r.try_get("step")?;
    let step_state: Option<String> = r.try_get("step_state")?;
    Ok(DeviceJob {
        device: r.try_get("device")?,
        wave: r.try_get::<i64, _>("wave")? as usize,
        position: r.try_get::<i64, _>("position")? as usize,
        image: r.try_get("image")?,
        target_version: r.try_get("target_version")?,
        state: JobState::parse(&state).ok_or_else(|| decode("job state"))?,
        step,
        step_state: step_state.as_deref().and_then(StepState::parse),
        old_version: r.try_get("old_version")?,
        old_image: r.try_get("old_image")?,
        new_version: r.try_get("new_version")?,
        error: r.try_get("error")?,
        reload_sent: r.try_get::<i64, _>("reload_sent")? != 0,
        rollback_sent: r.try_get::<i64, _>("rollback_sent")? != 0,
        waits_for_window: r.try_get("waits_for_window")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        runner_site: r.try_get("runner_site")?,
        runner: r.try_get("runner")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn row_to_event(r: &AnyRow) -> Result<Event, StoreError> {
    let data: Option<String> = r.try_get("data")?;
    let kind: String = r.try_get("kind")?;
    Ok(Event {
        id: r.try_get("id")?,
        rollout_id: RolloutId::new(r.try_get::<String, _>("rollout_id")?),
        at: r.try_get("at")?,
        device: r.try_get("device")?,
        kind: EventKind::from_stored(&kind),
        step: r.try_get("step")?,
        message: r.try_get("message")?,
        data: data.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// An event to record, alone or with the state change it reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    pub device: Option<&'a str>,
    pub kind: EventKind,
    pub step: Option<&'a str>,
    pub message: &'a str,
    pub data: Option<&'a serde_json::Value>,
}

impl<'a> NewEvent<'a> {
    /// An event about the whole rollout.
    pub(crate) fn rollout(kind: EventKind, message: &'a str) -> Self {
        NewEvent {
            device: None,
            kind,
            step: None,
            message,
            data: None,
        }
    }

    /// An event about one device.
    pub(crate) fn device(device: &'a str, kind: EventKind, message: &'a str) -> Self {
        NewEvent {
            device: Some(device),
            ..Self::rollout(kind, message)
        }
    }

    pub(crate) fn with_data(self, data: Option<&'a serde_json::Value>) -> Self {
        NewEvent { data, ..self }
    }

    async fn insert<'c>(
        self,
        executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
        rollout_id: &str,
    ) -> Result<Event, StoreError> {
        insert_event(
            executor,
            rollout_id,
            self.device,
            self.kind,
            self.step,
            self.message,
            self.data,
        )
        .await
    }
}

/// A step event to record: the step, whether it starts or has finished, the event, and the
/// transcript lines that go with it.
#[derive(Clone, Copy)]
pub(crate) struct StepRecord<'a> {
    pub step: &'a str,
    pub state: Option<StepState>,
    pub kind: EventKind,
    pub message: &'a str,
    pub transcript: &'a [TranscriptEntry],
}

/// A device's place in a new rollout.
pub(crate) struct NewJob<'a> {
    pub device: &'a str,
    pub wave: usize,
    pub position: usize,
    pub image: &'a str,
    pub target_version: Option<&'a str>,
    pub old_version: Option<&'a str>,
    /// The kickstart image it installs with `image` (NX-OS devices that boot both).
    pub kickstart: Option<&'a str>,
}

impl Db {
    /// The id of a rollout that has not ended and uses `file_name`, if any.
    pub(crate) async fn rollout_using_image(
        &self,
        file_name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .images_in_use()
            .await?
            .into_iter()
            .find(|(_, images)| images.iter().any(|i| i == file_name))
            .map(|(id, _)| id))
    }

    /// The images of every rollout that has not ended, by rollout, oldest first.
    pub(crate) async fn images_in_use(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id, images FROM rollouts WHERE state NOT IN ({}) ORDER BY created_at",
            ended_states()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, images)| {
                serde_json::from_str(&images)
                    .map(|images| (id, images))
                    .map_err(|_| decode("rollout images"))
            })
            .collect()
    }

    /// The images that the devices of each site still have to copy, in rollouts that have not
    /// ended, by site (devices without a site left out): what each site's agent fetches ahead
    /// of them. One read for every site: its cost is that of the open jobs, which a node pays
    /// once for all its agents' heartbeats (`api::agents::SiteImages`), not once per agent.
    pub(crate) async fn images_in_use_by_site(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT DISTINCT d.site, j.image, j.kickstart FROM rollout_devices j \
             JOIN rollouts r ON r.id = j.rollout_id JOIN devices d ON d.name = j.device \
             WHERE d.site IS NOT NULL AND r.state NOT IN ({}) \
             AND j.state IN ('pending', 'running')",
            ended_states()
        ))
        .fetch_all(&self.pool)
        .await?;
        // The system images and the kickstart images that go with them, sorted, once each.
        let mut by_site: std::collections::HashMap<String, std::collections::BTreeSet<String>> =
            std::collections::HashMap::new();
        for (site, image, kickstart) in rows {
            by_site
                .entry(site)
                .or_default()
                .extend(std::iter::once(image).chain(kickstart));
        }
        Ok(by_site
            .into_iter()
            .map(|(site, images)| (site, images.into_iter().collect()))
            .collect())
    }

    /// Record a new rollout with all its device jobs, in one transaction.
    pub(crate) async fn insert_rollout(
        &self,
        r: &RolloutRecord,
        jobs: &[NewJob<'_>],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let now = now_text();
        sqlx::query(
            "INSERT INTO rollouts (id, name, state, images, created_at, updated_at, \
             submitted_by, approval_required) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.id.as_str())
        .bind(&r.name)
        .bind(r.state.as_str())
        .bind(serde_json::to_string(&r.images).unwrap_or_else(|_| "[]".into()))
        .bind(&now)
        .bind(&now)
        .bind(&r.submitted_by)
        .bind(i64::from(r.approval_required))
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO rollout_plans (rollout_id, playbook, plan) VALUES ($1, $2, $3)")
            .bind(r.id.as_str())
            .bind(&r.playbook)
            .bind(&r.plan_json)
            .execute(&mut *tx)
            .await?;
        for j in jobs {
            sqlx::query(
                "INSERT INTO rollout_devices (rollout_id, device, wave, position, image, target_version, old_version, kickstart) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.id.as_str())
            .bind(j.device)
            .bind(j.wave as i64)
            .bind(j.position as i64)
            .bind(j.image)
            .bind(j.target_version)
            .bind(j.old_version)
            .bind(j.kickstart)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rollout(&self, id: &str) -> Result<RolloutRecord, StoreError> {
        let row = sqlx::query(
            "SELECT r.*, COALESCE(p.playbook, '') AS playbook, COALESCE(p.plan, '{}') AS plan \
             FROM rollouts r LEFT JOIN rollout_plans p ON p.rollout_id = r.id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row_to_rollout(&row)
    }

    /// A rollout's record without its playbook and plan (both empty): what the engine and the
    /// API read on every step and poll. The plan lists every device and reaches hundreds of
    /// kilobytes for a large fleet (345 KB for 2,000 devices), which every read would copy
    /// (and PostgreSQL decompress).
    pub(crate) async fn rollout_meta(&self, id: &str) -> Result<RolloutRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM rollouts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row_to_rollout(&row)
    }

    /// [`Db::rollout_meta`] with the rollout's `jobs_rev` ([`Db::jobs_rev`]) read in the same
    /// row: the record and the counter in one round trip.
    pub(crate) async fn rollout_meta_and_rev(
        &self,
        id: &str,
    ) -> Result<(RolloutRecord, i64), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {META_COLUMNS}, jobs_rev FROM rollouts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok((row_to_rollout(&row)?, row.try_get("jobs_rev")?))
    }

    /// The part of a rollout the rules look at before each step: its state and the
    /// operator's flags.
    pub(crate) async fn rollout_view(&self, id: &str) -> Result<RolloutView, StoreError> {
        let row = sqlx::query("SELECT state, paused, abort_requested FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let state: String = row.try_get("state")?;
        Ok(RolloutView {
            state: RolloutState::parse(&state).ok_or_else(|| decode("rollout state"))?,
            paused: row.try_get::<i64, _>("paused")? != 0,
            abort_requested: row.try_get::<i64, _>("abort_requested")? != 0,
        })
    }

    /// A rollout's plan (JSON), as submitted.
    pub(crate) async fn rollout_plan(&self, id: &str) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT plan FROM rollout_plans WHERE rollout_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Newest first, without their playbooks and plans (see [`Db::rollout_meta`]).
    pub(crate) async fn list_rollouts(&self, limit: i64) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM rollouts ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_rollout).collect()
    }

    /// How many jobs of each rollout are in each state, for the rollouts in `ids`: one query
    /// over the `(rollout_id, state)` index instead of every job of every rollout.
    pub(crate) async fn job_state_counts(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, Vec<(JobState, usize)>>, StoreError> {
        let mut out: HashMap<String, Vec<(JobState, usize)>> = HashMap::new();
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        // Well under both servers' limit on parameters per statement.
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT rollout_id, state, count(*) FROM rollout_devices \
                 WHERE rollout_id IN ({}) GROUP BY rollout_id, state",
                params(1, chunk.len())
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            rows.extend(q.fetch_all(&self.pool).await?);
        }
        for (id, state, n) in rows {
            let state = JobState::parse(&state).ok_or_else(|| decode("job state"))?;
            out.entry(id)
                .or_default()
                .push((state, usize::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }

    /// How many rollouts are in each state (`/metrics`); a state without one is absent.
    pub(crate) async fn rollouts_by_state(&self) -> Result<HashMap<RolloutState, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM rollouts GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = RolloutState::parse(&state).ok_or_else(|| decode("rollout state"))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// How many device jobs, of every rollout, are in each state (`/metrics`); a state
    /// without one is absent.
    pub(crate) async fn jobs_by_state(&self) -> Result<HashMap<JobState, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM rollout_devices GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = JobState::parse(&state).ok_or_else(|| decode("job state"))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// Rollouts the engine must (re)start: every one that has not ended.
    /// Approve a rollout that awaits approval: its state becomes `scheduled`, with the
    /// approver and the event, in one transaction. `None` when it was not awaiting approval
    /// (any more).
    pub(crate) async fn approve_rollout(
        &self,
        id: &str,
        approver: &str,
        message: &str,
    ) -> Result<Option<Event>, StoreError> {
        let now = now_text();
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = $1, approved_by = $2, approved_at = $3, updated_at = $4 \
             WHERE id = $5 AND state = $6",
        )
        .bind(RolloutState::Scheduled.as_str())
        .bind(approver)
        .bind(&now)
        .bind(&now)
        .bind(id)
        .bind(RolloutState::AwaitingApproval.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let event = NewEvent::rollout(EventKind::Approved, message)
            .insert(&mut *tx, id)
            .await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    /// The rollouts not ended, oldest first, without their playbooks and plans.
    pub(crate) async fn unfinished_rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM rollouts WHERE state NOT IN ({}) ORDER BY created_at",
            ended_states()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_rollout).collect()
    }

    /// Change a rollout's state (and its halt reason) with the event that says so, in one
    /// transaction.
    pub(crate) async fn set_rollout_state(
        &self,
        id: &str,
        state: RolloutState,
        halt_reason: Option<&str>,
        event: NewEvent<'_>,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        let now = now_text();
        sqlx::query(
            "UPDATE rollouts SET state = $1, halt_reason = $2, updated_at = $3, \
             started_at = CASE WHEN $4 THEN coalesce(started_at, $5) ELSE started_at END, \
             finished_at = CASE WHEN $6 THEN $7 ELSE NULL END \
             WHERE id = $8",
        )
        .bind(state.as_str())
        .bind(halt_reason)
        .bind(&now)
        .bind(state == RolloutState::Running)
        .bind(&now)
        .bind(state.is_ended())
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let ev = event.insert(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(ev)
    }

    /// Set the operator's flags (and, when given, the state they imply) with their event, in
    /// one transaction.
    pub(crate) async fn set_rollout_flags(
        &self,
        id: &str,
        paused: Option<bool>,
        abort_requested: Option<bool>,
        state: Option<RolloutState>,
        event: NewEvent<'_>,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE rollouts SET paused = coalesce($1, paused), abort_requested = coalesce($2, abort_requested), \
             state = coalesce($3, state), updated_at = $4 WHERE id = $5",
        )
        .bind(paused.map(i64::from))
        .bind(abort_requested.map(i64::from))
        .bind(state.map(|s| s.as_str()))
        .bind(now_text())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let ev = event.insert(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(ev)
    }

    /// How often the rollout's device jobs have changed (kept by triggers on
    /// `rollout_devices`): equal numbers mean equal `jobs()`.
    pub async fn jobs_rev(&self, rollout_id: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT jobs_rev FROM rollouts WHERE id = $1")
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The rollout's jobs changed since its `jobs_rev` was `rev` (each row keeps the rev of
    /// its last change), in wave and position order.
    pub async fn jobs_changed_since(
        &self,
        rollout_id: &str,
        rev: i64,
    ) -> Result<Vec<DeviceJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM rollout_devices WHERE rollout_id = $1 AND rev > $2 \
             ORDER BY wave, position",
        )
        .bind(rollout_id)
        .bind(rev)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_job).collect()
    }

    pub async fn jobs(&self, rollout_id: &str) -> Result<Vec<DeviceJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM rollout_devices WHERE rollout_id = $1 ORDER BY wave, position",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_job).collect()
    }

    /// Record a step event of a device and, with `state`, that its step starts or has finished,
    /// in one transaction: what the engine writes before a step runs (so a restart knows where
    /// each device was) and as it ends.
    pub async fn record_step(
        &self,
        rollout_id: &str,
        device: &str,
        step: &str,
        state: Option<StepState>,
        kind: EventKind,
        message: &str,
    ) -> Result<Event, StoreError> {
        let record = StepRecord {
            step,
            state,
            kind,
            message,
            transcript: &[],
        };
        self.record_step_with(rollout_id, device, &record).await
    }

    /// [`Db::record_step`], with the transcript lines kept since the last record in the same
    /// transaction.
    pub(crate) async fn record_step_with(
        &self,
        rollout_id: &str,
        device: &str,
        record: &StepRecord<'_>,
    ) -> Result<Event, StoreError> {
        let mut events = self
            .record_steps_with(rollout_id, device, std::slice::from_ref(record))
            .await?;
        events.pop().ok_or(StoreError::NotFound)
    }

    /// Record several of a device's steps, in order, in one transaction: the ends the driver
    /// reported since the last step, with the next step's start. One commit instead of one per
    /// record, and the start is still written before the step runs.
    pub(crate) async fn record_steps_with(
        &self,
        rollout_id: &str,
        device: &str,
        records: &[StepRecord<'_>],
    ) -> Result<Vec<Event>, StoreError> {
        if self.backend == super::Backend::Sqlite {
            let tx = self.begin().await?;
            return write_steps_and_commit(tx, rollout_id, device, records).await;
        }
        if let Some(sql) = pg_steps_sql(records) {
            // In one round trip when it can go as constants, else in a transaction of three.
            let one_trip = self
                .write_in_one_trip(|| {
                    bind_pg_steps(Constants::default(), rollout_id, device, records).inline(&sql)
                })
                .await;
            let rows = match one_trip {
                Some(rows) => rows?,
                None => {
                    let mut tx = self.begin().await?;
                    let rows = bind_pg_steps(sqlx::query(&sql), rollout_id, device, records)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(|e| self.failed(e))?;
                    tx.commit().await?;
                    rows
                }
            };
            if rows.len() != records.len() {
                return Err(decode("the events of a step record"));
            }
            return rows.iter().map(row_to_event).collect();
        }
        let mut tx = self.begin().await?;
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            events.push(write_step(&mut tx, rollout_id, device, record).await?);
        }
        tx.commit().await?;
        Ok(events)
    }

    /// Keep transcript lines of a device's job (its current attempt), in one transaction.
    pub(crate) async fn add_transcript(
        &self,
        rollout_id: &str,
        device: &str,
        lines: &[TranscriptEntry],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        insert_transcript(&mut tx, rollout_id, device, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The transcript of a device's job, every attempt, oldest first.
    pub(crate) async fn transcript(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<Vec<TranscriptLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM job_transcripts WHERE rollout_id = $1 AND device = $2 ORDER BY id",
        )
        .bind(rollout_id)
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(TranscriptLine {
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    step: r.try_get("step")?,
                    kind: EntryKind::parse(&kind).ok_or_else(|| decode("transcript kind"))?,
                    command: r.try_get("command")?,
                    output: r.try_get("output")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// The job of one device in one rollout.
    pub(crate) async fn job(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<DeviceJob, StoreError> {
        let row =
            sqlx::query("SELECT * FROM rollout_devices WHERE rollout_id = $1 AND device = $2")
                .bind(rollout_id)
                .bind(device)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound)?;
        row_to_job(&row)
    }

    /// The rollouts that included a device (by name), newest first, with its job in each.
    pub(crate) async fn device_rollouts(
        &self,
        device: &str,
        limit: i64,
    ) -> Result<Vec<DeviceRollout>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.*, r.name AS rollout_name, r.state AS rollout_state, \
             r.created_at AS rollout_created_at \
             FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id \
             WHERE d.device = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2",
        )
        .bind(device)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("rollout_state")?;
                Ok(DeviceRollout {
                    rollout_id: RolloutId::new(r.try_get::<String, _>("rollout_id")?),
                    rollout_name: r.try_get("rollout_name")?,
                    rollout_state: RolloutState::parse(&state)
                        .ok_or_else(|| decode("rollout state"))?,
                    rollout_created_at: r.try_get("rollout_created_at")?,
                    job: row_to_job(r)?,
                })
            })
            .collect()
    }

    /// The step events of one device in a rollout, oldest first.
    pub(crate) async fn device_step_events(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM rollout_events WHERE rollout_id = $1 AND device = $2 \
             AND kind IN ($3, $4, $5, $6) ORDER BY id",
        )
        .bind(rollout_id)
        .bind(device)
        .bind(EventKind::StepStarted.as_str())
        .bind(EventKind::StepDone.as_str())
        .bind(EventKind::StepFailed.as_str())
        .bind(EventKind::StepSkipped.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// A staged device is held for its maintenance window: its row says until when, with the
    /// `waiting_window` event, in one transaction.
    pub(crate) async fn record_wait_for_window(
        &self,
        rollout_id: &str,
        device: &str,
        opens: &str,
        message: &str,
        data: &serde_json::Value,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE rollout_devices SET waits_for_window = $1 WHERE rollout_id = $2 AND device = $3",
        )
        .bind(opens)
        .bind(rollout_id)
        .bind(device)
        .execute(&mut *tx)
        .await?;
        let event = insert_event(
            &mut *tx,
            rollout_id,
            Some(device),
            EventKind::WaitingWindow,
            None,
            message,
            Some(data),
        )
        .await?;
        tx.commit().await?;
        Ok(event)
    }

    /// What the device ran before the upgrade (read at its first contact).
    pub(crate) async fn set_job_origin(
        &self,
        rollout_id: &str,
        device: &str,
        old_version: Option<&str>,
        old_image: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        set_job_origin_in(&mut tx, rollout_id, device, old_version, old_image).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keep what `checks.compare` saw before the device's first change (JSON); a later
    /// attempt's replaces it, as it is taken again right before that attempt's changes.
    pub(crate) async fn set_job_compare_baseline(
        &self,
        rollout_id: &str,
        device: &str,
        baseline: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE rollout_devices SET compare_baseline = $1 WHERE rollout_id = $2 AND device = $3",
        )
        .bind(baseline)
        .bind(rollout_id)
        .bind(device)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// What [`Self::set_job_compare_baseline`] kept, if anything.
    pub(crate) async fn job_compare_baseline(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT compare_baseline FROM rollout_devices WHERE rollout_id = $1 AND device = $2",
        )
        .bind(rollout_id)
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(b,)| b))
    }

    pub(crate) async fn start_job_attempt(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        start_job_attempt_in(&mut tx, rollout_id, device).await?;
        tx.commit().await?;
        Ok(())
    }

    /// End a device's job with the event that says how, in one transaction.
    pub(crate) async fn finish_job(
        &self,
        rollout_id: &str,
        device: &str,
        state: JobState,
        new_version: Option<&str>,
        failure: Option<(&str, &str)>,
        event: NewEvent<'_>,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE rollout_devices SET state = $1, new_version = coalesce($2, new_version), error = $3, \
             failure_reason = $4, finished_at = $5, waits_for_window = NULL \
             WHERE rollout_id = $6 AND device = $7",
        )
        .bind(state.as_str())
        .bind(new_version)
        .bind(failure.map(|(_, message)| message))
        .bind(failure.map(|(reason, _)| reason))
        .bind(now_text())
        .bind(rollout_id)
        .bind(device)
        .execute(&mut *tx)
        .await?;
        let ev = event.insert(&mut *tx, rollout_id).await?;
        tx.commit().await?;
        Ok(ev)
    }

    /// The recorded reload of a running device never reached it (proved by its uptime): the
    /// upgrade runs again and records its reload anew.
    pub(crate) async fn clear_reload_sent(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE rollout_devices SET reload_sent = 0, step = NULL, step_state = NULL \
             WHERE rollout_id = $1 AND device = $2",
        )
        .bind(rollout_id)
        .bind(device)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Put a device that was stopped before any change back in line (the rollout halted),
    /// with its event, in one transaction.
    pub(crate) async fn requeue_job(
        &self,
        rollout_id: &str,
        device: &str,
        event: NewEvent<'_>,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "UPDATE rollout_devices SET {BACK_IN_LINE}, reload_sent = 0 \
             WHERE rollout_id = $2 AND device = $3"
        ))
        .bind(JobState::Pending.as_str())
        .bind(rollout_id)
        .bind(device)
        .execute(&mut *tx)
        .await?;
        let ev = event.insert(&mut *tx, rollout_id).await?;
        tx.commit().await?;
        Ok(ev)
    }

    /// Put failed (and halt-stopped) devices back in line, and with `state` run the rollout
    /// again, with the event, in one transaction; returns how many and the event. A retried
    /// device starts from the beginning: its earlier attempt ended, reload included.
    ///
    /// With `unleased` (nodes sharing the database), the rollout is run again only when no
    /// node holds its lease: a halted rollout's task may still be finishing its running devices
    /// on another node, and its last write would undo the retry. Then nothing changes and the
    /// answer is [`StoreError::Leased`] with the holder. The same transaction moves the lease's
    /// epoch on, so a task whose lease lapsed but which still runs somewhere writes nothing
    /// more for the rollout.
    pub(crate) async fn retry_failed_jobs(
        &self,
        rollout_id: &str,
        state: Option<RolloutState>,
        unleased: bool,
        message: impl FnOnce(u64) -> String,
    ) -> Result<(u64, Event), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(state) = state {
            // One statement, so that a concurrent claim cannot slip between a check and the
            // change (PostgreSQL re-checks the condition on the row it waited for).
            let now = self.now_ms();
            let restarted = sqlx::query(&format!(
                "UPDATE rollouts SET state = $1, halt_reason = NULL, finished_at = NULL, \
                 updated_at = $2, lease_epoch = lease_epoch + 1, lease_node = NULL, \
                 lease_until_ms = NULL \
                 WHERE id = $3 AND ($4 = 0 OR lease_node IS NULL OR lease_until_ms IS NULL \
                 OR lease_until_ms < {now})"
            ))
            .bind(state.as_str())
            .bind(now_text())
            .bind(rollout_id)
            .bind(i64::from(unleased))
            .execute(&mut *tx)
            .await?;
            if restarted.rows_affected() == 0 {
                let holder: Option<String> =
                    sqlx::query_scalar("SELECT lease_node FROM rollouts WHERE id = $1")
                        .bind(rollout_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or(StoreError::NotFound)?;
                tx.rollback().await?;
                return Err(StoreError::Leased(holder.unwrap_or_default()));
            }
        }
        // A device that never came back after its reload keeps its record of the reload: the
        // retry waits for it and verifies it, and never reloads it a second time (unless its
        // uptime proves the reload never reached it).
        let done = sqlx::query(&format!(
            "UPDATE rollout_devices SET {BACK_IN_LINE}, \
             reload_sent = CASE WHEN failure_reason = $2 THEN reload_sent ELSE 0 END \
             WHERE rollout_id = $3 AND state IN ($4, $5, $6)"
        ))
        .bind(JobState::Pending.as_str())
        .bind(crate::device::FailureReason::NeverCameBack.as_str())
        .bind(rollout_id)
        .bind(JobState::Failed.as_str())
        .bind(JobState::Aborted.as_str())
        .bind(JobState::RolledBack.as_str())
        .execute(&mut *tx)
        .await?;
        let n = done.rows_affected();
        let text = message(n);
        let ev = NewEvent::rollout(EventKind::Retry, &text)
            .insert(&mut *tx, rollout_id)
            .await?;
        tx.commit().await?;
        Ok((n, ev))
    }

    pub(crate) async fn insert_event(
        &self,
        rollout_id: &str,
        device: Option<&str>,
        kind: EventKind,
        step: Option<&str>,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<Event, StoreError> {
        let mut tx = self.begin().await?;
        let event = insert_event(&mut *tx, rollout_id, device, kind, step, message, data).await?;
        tx.commit().await?;
        Ok(event)
    }

    /// The id of the newest event of any rollout (0 when there is none).
    pub(crate) async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT max(id) FROM rollout_events")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Events of every rollout after `after_id`, oldest first (the relay between nodes).
    pub(crate) async fn events_of_all_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query("SELECT * FROM rollout_events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn events_after(
        &self,
        rollout_id: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM rollout_events WHERE rollout_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(rollout_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// Every event of one device in a rollout, oldest first.
    pub async fn device_events(
        &self,
        rollout_id: &str,
        device: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM rollout_events WHERE rollout_id = $1 AND device = $2 ORDER BY id",
        )
        .bind(rollout_id)
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// The step events of a rollout (`step_started`, `step_done`, `step_failed`,
    /// `step_skipped`), oldest first: what step timings are built from.
    pub(crate) async fn step_events(&self, rollout_id: &str) -> Result<Vec<Event>, StoreError> {
        self.step_events_after(rollout_id, 0).await
    }

    /// The rollout's step events with ids above `after`, oldest first.
    pub(crate) async fn step_events_after(
        &self,
        rollout_id: &str,
        after: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.step_events_with(rollout_id, after, "*").await
    }

    /// [`Db::step_events_after`] without their messages and data (empty): what the rollout
    /// view's step timings use, without copying a message for each of the hundreds of events
    /// a poll reads during a large rollout.
    pub(crate) async fn step_timing_events_after(
        &self,
        rollout_id: &str,
        after: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.step_events_with(
            rollout_id,
            after,
            "id, rollout_id, at, device, kind, step, '' AS message, NULL AS data",
        )
        .await
    }

    /// A rollout view's catch-up in one round trip, as of one moment (one snapshot): with
    /// `record`, the rollout's record (as [`Db::rollout_meta`] reads it) and its `jobs_rev`;
    /// the jobs changed since `seen` (with each row's rev; every job without `seen`), in wave
    /// and position order; the step events after `after` (as
    /// [`Db::step_timing_events_after`] reads them). On PostgreSQL only, whose simple protocol
    /// takes the statements at once: `None` on SQLite, whose reads cost no round trip.
    pub async fn rollout_catch_up(
        &self,
        id: &str,
        record: bool,
        seen: Option<i64>,
        after: i64,
    ) -> Result<Option<CatchUp>, StoreError> {
        if self.backend != super::Backend::Postgres {
            return Ok(None);
        }
        let Some(lit) = super::pg_literal(id) else {
            return Err(StoreError::NotFound);
        };
        let kinds = [
            EventKind::StepStarted,
            EventKind::StepDone,
            EventKind::StepFailed,
            EventKind::StepSkipped,
        ]
        .map(|k| format!("'{}'", k.as_str()))
        .join(", ");
        let columns = if record {
            format!("{META_COLUMNS}, jobs_rev")
        } else {
            "jobs_rev".to_string()
        };
        let changed = seen.map_or(String::new(), |rev| format!(" AND rev > {rev}"));
        // Read only, and one snapshot for the three: the counter and the rows it counts agree.
        let script = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SELECT 'r' AS part, {columns} FROM rollouts WHERE id = {lit}; \
             SELECT 'j' AS part, * FROM rollout_devices WHERE rollout_id = {lit}{changed} \
             ORDER BY wave, position; \
             SELECT 'e' AS part, id, rollout_id, at, device, kind, step, '' AS message, \
             NULL AS data FROM rollout_events WHERE rollout_id = {lit} AND id > {after} \
             AND kind IN ({kinds}) ORDER BY id; \
             COMMIT"
        );
        // In a `Tx`: dropped while the script is out, the connection closes with its
        // transaction instead of going back to the pool inside it.
        let mut tx = Tx {
            conn: Some(self.pool.acquire().await?),
            db: self.clone(),
            _turn: None,
        };
        let rows = sqlx::Executor::fetch_all(&mut *tx, script.as_str()).await?;
        // Committed: the connection goes back to the pool.
        tx.conn = None;
        let mut out = CatchUp::default();
        let mut found = false;
        for row in &rows {
            let part: String = row.try_get("part")?;
            match part.as_str() {
                "r" => {
                    found = true;
                    out.rev = row.try_get("jobs_rev")?;
                    if record {
                        out.record = Some(row_to_rollout(row)?);
                    }
                }
                "j" => out.jobs.push(row_to_job(row)?),
                _ => out.events.push(row_to_event(row)?),
            }
        }
        if !found {
            return Err(StoreError::NotFound);
        }
        Ok(Some(out))
    }

    async fn step_events_with(
        &self,
        rollout_id: &str,
        after: i64,
        columns: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM rollout_events WHERE rollout_id = $1 AND id > $2 \
             AND kind IN ($3, $4, $5, $6) ORDER BY id"
        ))
        .bind(rollout_id)
        .bind(after)
        .bind(EventKind::StepStarted.as_str())
        .bind(EventKind::StepDone.as_str())
        .bind(EventKind::StepFailed.as_str())
        .bind(EventKind::StepSkipped.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_event).collect()
    }
}

/// What [`Db::rollout_catch_up`] read.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// The rollout's record, when asked for.
    pub record: Option<RolloutRecord>,
    /// Its `jobs_rev`.
    pub rev: i64,
    pub jobs: Vec<DeviceJob>,
    pub events: Vec<Event>,
}

/// The version and image a job's device ran before, once known (the first write stays).
pub(super) async fn set_job_origin_in(
    tx: &mut Tx,
    rollout_id: &str,
    device: &str,
    old_version: Option<&str>,
    old_image: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rollout_devices SET old_version = coalesce(old_version, $1), old_image = coalesce(old_image, $2) \
         WHERE rollout_id = $3 AND device = $4",
    )
    .bind(old_version)
    .bind(old_image)
    .bind(rollout_id)
    .bind(device)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A job's attempt starts: it runs, its attempts count one more.
pub(super) async fn start_job_attempt_in(
    tx: &mut Tx,
    rollout_id: &str,
    device: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rollout_devices SET state = $1, attempts = attempts + 1, error = NULL, \
         started_at = coalesce(started_at, $2) WHERE rollout_id = $3 AND device = $4",
    )
    .bind(JobState::Running.as_str())
    .bind(now_text())
    .bind(rollout_id)
    .bind(device)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Transcript lines of one job, in one statement per [`TRANSCRIPT_ROWS`] lines: on
/// PostgreSQL each statement is a round trip.
async fn insert_transcript(
    tx: &mut Tx,
    rollout_id: &str,
    device: &str,
    lines: &[TranscriptEntry],
) -> Result<(), StoreError> {
    for chunk in lines.chunks(TRANSCRIPT_ROWS) {
        let sql = transcript_rows_sql(chunk.len());
        bind_transcript_rows(sqlx::query(&sql), rollout_id, device, chunk)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// [`transcript_rows_sql`]'s parameters, after those `q` has.
fn bind_transcript_rows<'q, B: Bind<'q>>(
    q: B,
    rollout_id: &'q str,
    device: &'q str,
    lines: impl IntoIterator<Item = &'q TranscriptEntry>,
) -> B {
    let mut q = q.text(rollout_id).text(device);
    for l in lines {
        q = q
            .opt(l.step.map(|s| s.as_str()))
            .text(l.kind.as_str())
            .text(l.command.as_str())
            .text(l.output.as_str())
            .owned(l.at.to_string());
    }
    q
}

/// Transcript lines one statement of [`insert_transcript`] takes: 5 parameters each, well
/// under either server's limit.
const TRANSCRIPT_ROWS: usize = 500;

/// The parameters of [`transcript_rows_sql`]`(n)`.
fn transcript_params(n: usize) -> usize {
    2 + 5 * n
}

/// The statement that inserts `n` transcript lines of one job (`$1` the rollout, `$2` the
/// device, then 5 parameters per line), in their order, for the job's current attempt.
fn transcript_rows_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO job_transcripts (rollout_id, device, attempt, step, kind, command, output, at) \
         SELECT $1, $2, coalesce((SELECT CASE WHEN attempts > 1 THEN attempts ELSE 1 END \
         FROM rollout_devices WHERE rollout_id = $1 AND device = $2), 1), \
         v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES ",
    );
    for i in 0..n {
        let p = 3 + 5 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({i}, ${}, ${}, ${}, ${}, ${})",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4
        ));
    }
    sql.push_str(") AS v ORDER BY v.column1");
    sql
}

pub(super) async fn insert_event<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    rollout_id: &str,
    device: Option<&str>,
    kind: EventKind,
    step: Option<&str>,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<Event, StoreError> {
    let row = bind_event(
        sqlx::query(EVENT_INSERT),
        rollout_id,
        device,
        kind,
        step,
        message,
        data.map(|d| d.to_string()),
    )
    .fetch_one(executor)
    .await?;
    row_to_event(&row)
}

const STEP_UPDATE: &str = "UPDATE rollout_devices SET state = $1, step = $2, step_state = $3, \
     waits_for_window = NULL, \
     reload_sent = CASE WHEN $4 = 1 THEN 1 ELSE reload_sent END, \
     rollback_sent = CASE WHEN $5 = 1 THEN 1 ELSE rollback_sent END, \
     started_at = coalesce(started_at, $6) WHERE rollout_id = $7 AND device = $8";

const EVENT_INSERT: &str = "INSERT INTO rollout_events (rollout_id, at, device, kind, step, message, data) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// [`STEP_UPDATE`]'s parameters, after those `q` has.
fn bind_step_update<'q>(
    q: AnyQuery<'q>,
    rollout_id: &'q str,
    device: &'q str,
    step: &'q str,
    state: StepState,
) -> AnyQuery<'q> {
    bind_step_update_with(
        q,
        rollout_id,
        device,
        step,
        state,
        is_reload_step(step),
        step == crate::device::Step::RollbackReload.as_str(),
    )
}

/// [`STEP_UPDATE`]'s parameters, whether it marks the reload or the rollback reload sent
/// given apart.
fn bind_step_update_with<'q, B: Bind<'q>>(
    q: B,
    rollout_id: &'q str,
    device: &'q str,
    step: &'q str,
    state: StepState,
    reload: bool,
    rollback: bool,
) -> B {
    q.text(JobState::Running.as_str())
        .text(step)
        .text(state.as_str())
        .int(i64::from(reload))
        .int(i64::from(rollback))
        .owned(now_text())
        .text(rollout_id)
        .text(device)
}

/// [`EVENT_INSERT`]'s parameters, after those `q` has.
fn bind_event<'q, B: Bind<'q>>(
    q: B,
    rollout_id: &'q str,
    device: Option<&'q str>,
    kind: EventKind,
    step: Option<&'q str>,
    message: &'q str,
    data: Option<String>,
) -> B {
    q.text(rollout_id)
        .owned(now_text())
        .opt(device)
        .text(kind.as_str())
        .opt(step)
        .text(message)
        .opt_owned(data)
}

/// Where a statement's parameters go, in order: bound to a query, or kept to be written into
/// its text as constants ([`Constants`]).
trait Bind<'q>: Sized {
    fn text(self, v: &'q str) -> Self;
    fn owned(self, v: String) -> Self;
    fn opt(self, v: Option<&'q str>) -> Self;
    fn opt_owned(self, v: Option<String>) -> Self;
    fn int(self, v: i64) -> Self;
}

impl<'q> Bind<'q> for AnyQuery<'q> {
    fn text(self, v: &'q str) -> Self {
        self.bind(v)
    }
    fn owned(self, v: String) -> Self {
        self.bind(v)
    }
    fn opt(self, v: Option<&'q str>) -> Self {
        self.bind(v)
    }
    fn opt_owned(self, v: Option<String>) -> Self {
        self.bind(v)
    }
    fn int(self, v: i64) -> Self {
        self.bind(v)
    }
}

/// A statement's parameters kept in order, to be written into its text as PostgreSQL
/// constants ([`Constants::inline`]) for its simple protocol, which takes no parameters.
#[derive(Debug, Default)]
struct Constants<'q>(Vec<Constant<'q>>);

#[derive(Debug)]
enum Constant<'q> {
    Text(std::borrow::Cow<'q, str>),
    Null,
    Int(i64),
}

impl<'q> Bind<'q> for Constants<'q> {
    fn text(mut self, v: &'q str) -> Self {
        self.0.push(Constant::Text(v.into()));
        self
    }
    fn owned(mut self, v: String) -> Self {
        self.0.push(Constant::Text(v.into()));
        self
    }
    fn opt(self, v: Option<&'q str>) -> Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }
    fn opt_owned(self, v: Option<String>) -> Self {
        match v {
            Some(v) => self.owned(v),
            None => self.null(),
        }
    }
    fn int(mut self, v: i64) -> Self {
        self.0.push(Constant::Int(v));
        self
    }
}

impl Constants<'_> {
    fn null(mut self) -> Self {
        self.0.push(Constant::Null);
        self
    }

    /// `sql` with each parameter `$N` written as the N-th constant: text as an `E'…'` string
    /// ([`super::pg_literal`]), an integer as itself, none as `NULL`. `None` when a `$N` has no
    /// constant or a text holds a NUL (no PostgreSQL text does). `sql` must hold no `$` but
    /// its parameters' (the statements of this module hold no string constants).
    fn inline(&self, sql: &str) -> Option<String> {
        let mut out = String::with_capacity(sql.len() + 64 * self.0.len());
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let n: usize = after[..digits].parse().ok()?;
            match self.0.get(n.checked_sub(1)?)? {
                Constant::Text(t) => out.push_str(&super::pg_literal(t)?),
                Constant::Null => out.push_str("NULL"),
                Constant::Int(i) => out.push_str(&i.to_string()),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// `sql` with each parameter `$N` renumbered `$(N + offset)`, to follow other statements in one
/// query.
fn shifted(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// [`Db::record_steps_with`] on SQLite: every record's statements (the job's step, its
/// transcript lines, its event) and the `COMMIT`, in one query whose statements SQLite runs in
/// turn: after `BEGIN` (with the fence's check), one call to the connection's thread for the
/// whole transaction instead of one per statement and one for the commit.
async fn write_steps_and_commit(
    tx: Tx,
    rollout_id: &str,
    device: &str,
    records: &[StepRecord<'_>],
) -> Result<Vec<Event>, StoreError> {
    let sql = steps_sql(records);
    let mut q = sqlx::query(&sql);
    for record in records {
        if let Some(state) = record.state {
            q = bind_step_update(q, rollout_id, device, record.step, state);
        }
        for chunk in record.transcript.chunks(TRANSCRIPT_ROWS) {
            q = bind_transcript_rows(q, rollout_id, device, chunk);
        }
        q = bind_event(
            q,
            rollout_id,
            Some(device),
            record.kind,
            Some(record.step),
            record.message,
            None,
        );
    }
    // The rows of every statement: only the events return any, one each, in order.
    let rows = tx.fetch_all_and_commit(q).await?;
    if rows.len() != records.len() {
        return Err(decode("the events of a step record"));
    }
    rows.iter().map(row_to_event).collect()
}

/// The SQL of [`write_steps_and_commit`]: each record's statements, their parameters numbered
/// in the order they are bound, then `COMMIT`.
fn steps_sql(records: &[StepRecord<'_>]) -> String {
    let mut sql = String::new();
    let mut offset = 0;
    let mut push = |sql: &mut String, statement: &str, params: usize| {
        sql.push_str(&shifted(statement, offset));
        sql.push_str(";\n");
        offset += params;
    };
    for record in records {
        if record.state.is_some() {
            push(&mut sql, STEP_UPDATE, 8);
        }
        for chunk in record.transcript.chunks(TRANSCRIPT_ROWS) {
            push(
                &mut sql,
                &transcript_rows_sql(chunk.len()),
                transcript_params(chunk.len()),
            );
        }
        push(&mut sql, EVENT_INSERT, 7);
    }
    sql.push_str("COMMIT");
    sql
}

/// The records of one call as one statement on PostgreSQL, whose extended protocol takes one
/// statement per round trip: the job's row as the last record with a state leaves it (a reload
/// or rollback reload among them marks it sent, as each would), every transcript line, then
/// every event, returned in order. Bound by [`bind_pg_steps`]. `None` for no record, or more
/// transcript lines than one statement takes: those go one statement at a time.
fn pg_steps_sql(records: &[StepRecord<'_>]) -> Option<String> {
    let lines: usize = records.iter().map(|r| r.transcript.len()).sum();
    if records.is_empty() || lines > TRANSCRIPT_ROWS {
        return None;
    }
    let mut parts = Vec::new();
    let mut offset = 0;
    if records.iter().any(|r| r.state.is_some()) {
        parts.push(format!("u AS ({})", shifted(STEP_UPDATE, offset)));
        offset += 8;
    }
    if lines > 0 {
        parts.push(format!(
            "t AS ({})",
            shifted(&transcript_rows_sql(lines), offset)
        ));
        offset += transcript_params(lines);
    }
    let rows: Vec<String> = (0..records.len())
        .map(|i| shifted("($1, $2, $3, $4, $5, $6, $7)", offset + 7 * i))
        .collect();
    parts.push(format!(
        "e AS (INSERT INTO rollout_events (rollout_id, at, device, kind, step, message, data) \
         VALUES {} RETURNING *)",
        rows.join(", ")
    ));
    Some(format!(
        "WITH {} SELECT * FROM e ORDER BY id",
        parts.join(", ")
    ))
}

/// [`pg_steps_sql`]'s parameters, in its order.
fn bind_pg_steps<'q, B: Bind<'q>>(
    mut q: B,
    rollout_id: &'q str,
    device: &'q str,
    records: &'q [StepRecord<'q>],
) -> B {
    if let Some((last, state)) = records.iter().rev().find_map(|r| Some((r, r.state?))) {
        let stated = || records.iter().filter(|r| r.state.is_some());
        q = bind_step_update_with(
            q,
            rollout_id,
            device,
            last.step,
            state,
            stated().any(|r| is_reload_step(r.step)),
            stated().any(|r| r.step == crate::device::Step::RollbackReload.as_str()),
        );
    }
    if records.iter().any(|r| !r.transcript.is_empty()) {
        q = bind_transcript_rows(
            q,
            rollout_id,
            device,
            records.iter().flat_map(|r| r.transcript),
        );
    }
    for r in records {
        q = bind_event(
            q,
            rollout_id,
            Some(device),
            r.kind,
            Some(r.step),
            r.message,
            None,
        );
    }
    q
}

/// A device back in line (bind the pending state first): nothing left of its earlier attempt.
/// What putting a job back in line resets; its state is `$1`. `reload_sent` is each caller's.
const BACK_IN_LINE: &str = "state = $1, error = NULL, failure_reason = NULL, finished_at = NULL, \
     step = NULL, step_state = NULL, rollback_sent = 0, waits_for_window = NULL, \
     runner_site = NULL, runner = NULL, runner_until_ms = NULL";

/// One step record inside a transaction on PostgreSQL, whose extended protocol takes one
/// statement at a time: the job's current step (with a state), its event and the transcript
/// lines that go with it. SQLite writes them with the commit in one call
/// ([`write_steps_and_commit`]).
async fn write_step(
    tx: &mut Tx,
    rollout_id: &str,
    device: &str,
    record: &StepRecord<'_>,
) -> Result<Event, StoreError> {
    let StepRecord {
        step,
        state,
        kind,
        message,
        transcript,
    } = *record;
    if let Some(state) = state {
        bind_step_update(sqlx::query(STEP_UPDATE), rollout_id, device, step, state)
            .execute(&mut **tx)
            .await?;
    }
    let event = insert_event(
        &mut **tx,
        rollout_id,
        Some(device),
        kind,
        Some(step),
        message,
        None,
    )
    .await?;
    insert_transcript(tx, rollout_id, device, transcript).await?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_to_follow_other_statements() {
        assert_eq!(
            shifted("VALUES ($1, $2, '$', $12) WHERE x = $3", 8),
            "VALUES ($9, $10, '$', $20) WHERE x = $11"
        );
        assert_eq!(shifted(EVENT_INSERT, 0), EVENT_INSERT);
        // The combined query numbers every parameter once, in the order they are bound.
        let combined = format!(
            "{STEP_UPDATE};{};{};{}",
            shifted(&transcript_rows_sql(1), 8),
            shifted(&transcript_rows_sql(2), 8 + transcript_params(1)),
            shifted(
                EVENT_INSERT,
                8 + transcript_params(1) + transcript_params(2)
            )
        );
        let mut numbers: Vec<usize> = combined
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers, (1..=8 + 7 + 12 + 7).collect::<Vec<_>>());
    }

    /// Every parameter of a transaction's step records numbered once, in the order they are
    /// bound, and the commit last.
    #[test]
    fn step_records_and_their_commit_make_one_query() {
        let line = TranscriptEntry {
            step: None,
            kind: EntryKind::Command,
            command: "show version".into(),
            output: String::new(),
            at: jiff::Timestamp::now(),
        };
        let lines = [line.clone(), line];
        let ended = StepRecord {
            step: "copy",
            state: Some(StepState::Done),
            kind: EventKind::StepDone,
            message: "copied",
            transcript: &lines,
        };
        let note = StepRecord {
            step: "copy",
            state: None,
            kind: EventKind::Held,
            message: "",
            transcript: &[],
        };
        let sql = steps_sql(&[ended, note]);
        let numbers: Vec<usize> = sql
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        let mut distinct = numbers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // 8 for the step, 2 for the lines' job and 5 for each line, 7 for each event.
        assert_eq!(distinct, (1..=8 + 2 + 2 * 5 + 2 * 7).collect::<Vec<_>>());
        assert_eq!(sql.matches("INSERT INTO job_transcripts").count(), 1);
        assert_eq!(sql.matches("INSERT INTO rollout_events").count(), 2);
        assert!(sql.ends_with(";\nCOMMIT"), "{sql}");
    }

    /// A transaction of step records that fails part way (here its last event is refused)
    /// leaves nothing of it: not the job's step, not the lines written before the failure.
    /// The next record goes through.
    #[tokio::test]
    async fn step_records_that_fail_part_way_leave_nothing() {
        let (_dir, db) = super::super::leases::tests::store_with_rollout().await;
        super::super::leases::tests::add_job(&db, "pending").await;
        sqlx::query(
            "CREATE TRIGGER refuse AFTER INSERT ON rollout_events WHEN NEW.message = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let lines = [TranscriptEntry {
            step: Some(crate::device::Step::Copy),
            kind: EntryKind::Command,
            command: "copy tftp: flash:".into(),
            output: String::new(),
            at: jiff::Timestamp::now(),
        }];
        let start = |message| StepRecord {
            step: "copy",
            state: Some(StepState::Started),
            kind: EventKind::StepStarted,
            message,
            transcript: &lines,
        };
        let ended = StepRecord {
            step: "file_present",
            state: Some(StepState::Done),
            kind: EventKind::StepDone,
            message: "absent",
            transcript: &[],
        };
        let err = db
            .record_steps_with("r1", "sw1", &[ended, start("refused")])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused by the test"), "{err}");
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!((job.state, job.step), (JobState::Pending, None));
        assert!(db.transcript("r1", "sw1").await.unwrap().is_empty());
        assert!(db.events_after("r1", 0, 10).await.unwrap().is_empty());

        let events = db
            .record_steps_with("r1", "sw1", &[ended, start("copying")])
            .await
            .unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.kind, e.message.as_str()))
                .collect::<Vec<_>>(),
            [
                (EventKind::StepDone, "absent"),
                (EventKind::StepStarted, "copying")
            ]
        );
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!(
            (job.state, job.step.as_deref()),
            (JobState::Running, Some("copy"))
        );
        assert_eq!(db.transcript("r1", "sw1").await.unwrap().len(), 1);
    }

    /// A step record with its transcript lines, written in one call on SQLite: the job, the
    /// lines (numbered for the job's attempt) and the event.
    #[tokio::test]
    async fn a_step_record_writes_the_job_its_transcript_and_its_event_in_one_call() {
        let (_dir, db) = super::super::leases::tests::store_with_rollout().await;
        super::super::leases::tests::add_job(&db, "pending").await;
        let lines: Vec<TranscriptEntry> = (0..3)
            .map(|i| TranscriptEntry {
                step: Some(crate::device::Step::Copy),
                kind: EntryKind::Command,
                command: format!("copy {i}"),
                output: format!("out {i}"),
                at: jiff::Timestamp::now(),
            })
            .collect();
        let record = StepRecord {
            step: "reload",
            state: Some(StepState::Started),
            kind: EventKind::StepStarted,
            message: "reloading",
            transcript: &lines,
        };
        let event = db.record_step_with("r1", "sw1", &record).await.unwrap();
        assert_eq!(
            (event.kind, event.step.as_deref(), event.message.as_str()),
            (EventKind::StepStarted, Some("reload"), "reloading")
        );
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.step.as_deref(), Some("reload"));
        assert!(job.reload_sent, "a reload's start is recorded as sent");
        let kept = db.transcript("r1", "sw1").await.unwrap();
        assert_eq!(
            kept.iter()
                .map(|l| (l.attempt, l.command.as_str(), l.output.as_str()))
                .collect::<Vec<_>>(),
            [
                (1, "copy 0", "out 0"),
                (1, "copy 1", "out 1"),
                (1, "copy 2", "out 2")
            ]
        );
        // A record without a state writes only its event.
        let done = StepRecord {
            step: "reload",
            state: None,
            kind: EventKind::StepDone,
            message: "sent",
            transcript: &[],
        };
        let e2 = db.record_step_with("r1", "sw1", &done).await.unwrap();
        assert!(e2.id > event.id);
        assert_eq!(
            db.job("r1", "sw1").await.unwrap().step_state,
            job.step_state
        );
    }

    /// Transcript lines go in one statement, in their order, numbered for the job's attempt.
    #[tokio::test]
    async fn transcript_lines_are_kept_in_order_for_the_current_attempt() {
        let (_dir, db) = super::super::leases::tests::store_with_rollout().await;
        super::super::leases::tests::add_job(&db, "running").await;
        sqlx::query("UPDATE rollout_devices SET attempts = 2")
            .execute(db.pool())
            .await
            .unwrap();
        let lines: Vec<TranscriptEntry> = (0..12)
            .map(|i| TranscriptEntry {
                step: (i % 3 != 0).then_some(crate::device::Step::VerifyMd5),
                kind: EntryKind::Command,
                command: format!("command {i}"),
                output: format!("it's output {i}"),
                at: jiff::Timestamp::now(),
            })
            .collect();
        db.add_transcript("r1", "sw1", &lines[..1]).await.unwrap();
        db.add_transcript("r1", "sw1", &lines[1..]).await.unwrap();
        let kept = db.transcript("r1", "sw1").await.unwrap();
        assert_eq!(
            kept.iter()
                .map(|l| (
                    l.attempt,
                    l.step.clone(),
                    l.command.clone(),
                    l.output.clone()
                ))
                .collect::<Vec<_>>(),
            lines
                .iter()
                .map(|l| (
                    2,
                    l.step.map(|s| s.as_str().to_string()),
                    l.command.clone(),
                    l.output.clone()
                ))
                .collect::<Vec<_>>()
        );
    }

    /// The values a statement binds, written into it as constants in the order they bind:
    /// `$12` is not `$1` then `2`, text is quoted whatever it holds, none is `NULL`.
    #[test]
    fn parameters_written_as_constants_take_their_places_in_binding_order() {
        let mut c = Constants::default();
        for v in [
            "a",
            "it's",
            "back\\slash",
            "$1",
            "e",
            "f",
            "g",
            "h",
            "i",
            "j",
            "k",
        ] {
            c = c.text(v);
        }
        let c = c.opt(None).int(-7).opt_owned(Some("x".into()));
        let sql = "VALUES ($1, $2, $3, $4), ($12, $13, $14, $11)";
        assert_eq!(
            c.inline(sql).as_deref(),
            Some("VALUES (E'a', E'it''s', E'back\\\\slash', E'$1'), (NULL, -7, E'x', E'k')")
        );
        // A parameter without a value, `$0`, a `$` without a number, a NUL: not written.
        assert_eq!(c.inline("SELECT $15"), None);
        assert_eq!(c.inline("SELECT $0"), None);
        assert_eq!(c.inline("SELECT $"), None);
        assert_eq!(Constants::default().text("a\0b").inline("SELECT $1"), None);
        assert_eq!(c.inline("SELECT 1").as_deref(), Some("SELECT 1"));

        // A call's records bind the same values either way.
        let lines = [TranscriptEntry {
            step: None,
            kind: EntryKind::Command,
            command: "reload".into(),
            output: "Proceed with reload? [confirm]".into(),
            at: jiff::Timestamp::now(),
        }];
        let records = [StepRecord {
            step: "reload",
            state: Some(StepState::Started),
            kind: EventKind::StepStarted,
            message: "reloading",
            transcript: &lines,
        }];
        let sql = pg_steps_sql(&records).unwrap();
        let constants = bind_pg_steps(Constants::default(), "r1", "sw1", &records);
        let bound = bind_pg_steps(sqlx::query(&sql), "r1", "sw1", &records);
        let mut bound = bound;
        let arguments = sqlx::Execute::take_arguments(&mut bound).unwrap().unwrap();
        assert_eq!(constants.0.len(), sqlx::Arguments::len(&arguments));
        let inline = constants.inline(&sql).unwrap();
        assert!(!inline.contains('$'), "{inline}");
        assert!(
            inline.contains("E'Proceed with reload? [confirm]'"),
            "{inline}"
        );
    }

    #[test]
    fn a_calls_records_are_one_statement_on_postgresql_numbered_in_binding_order() {
        let line = TranscriptEntry {
            step: None,
            kind: EntryKind::Command,
            command: "reload".into(),
            output: String::new(),
            at: jiff::Timestamp::now(),
        };
        let lines = [line.clone(), line];
        let ended = StepRecord {
            step: "save",
            state: Some(StepState::Done),
            kind: EventKind::StepDone,
            message: "saved",
            transcript: &lines,
        };
        let started = StepRecord {
            step: "reload",
            state: Some(StepState::Started),
            kind: EventKind::StepStarted,
            message: "reloading",
            transcript: &[],
        };
        let sql = pg_steps_sql(&[ended, started]).unwrap();
        // The job's row ($1-$8), two transcript lines ($9, $10, then 5 each), two events.
        assert!(
            sql.starts_with("WITH u AS (UPDATE rollout_devices"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE rollout_id = $7 AND device = $8), t AS"),
            "{sql}"
        );
        assert!(
            sql.contains("(0, $11, $12, $13, $14, $15), (1, $16, $17, $18, $19, $20)"),
            "{sql}"
        );
        assert!(
            sql.contains("VALUES ($21, $22, $23, $24, $25, $26, $27), ($28, $29, $30, $31, $32, $33, $34) RETURNING *)"),
            "{sql}"
        );
        assert!(sql.ends_with("SELECT * FROM e ORDER BY id"), "{sql}");
        // Events alone: no row to change, no lines.
        let note = StepRecord {
            step: "reload",
            state: None,
            kind: EventKind::StepDone,
            message: "sent",
            transcript: &[],
        };
        assert_eq!(
            pg_steps_sql(&[note]).as_deref(),
            Some(
                "WITH e AS (INSERT INTO rollout_events (rollout_id, at, device, kind, step, message, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *) SELECT * FROM e ORDER BY id"
            )
        );
        assert_eq!(pg_steps_sql(&[]), None);
    }

    #[test]
    fn the_transcript_statement_numbers_five_parameters_per_line_after_the_job() {
        let sql = transcript_rows_sql(2);
        assert!(
            sql.contains("(0, $3, $4, $5, $6, $7), (1, $8, $9, $10, $11, $12)"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY v.column1"), "{sql}");
    }
}

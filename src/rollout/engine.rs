//! The rollout engine: runs every rollout's waves, holds concurrency and failure limits, and
//! obeys pause, resume, abort and retry. The database is the source of truth: the engine can
//! be killed at any point and, restarted, picks every rollout up where it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinSet;

use super::clock::Clock;
use super::job::{self, JobContext, JobOutcome};
use super::model::{DeviceJob, Event, EventKind, JobState, RolloutRecord, RolloutState};
use super::policy::{self, AfterWave, End, JobView, Limits, Proceed, RolloutView};
use super::{FileServers, RolloutError};
use crate::images::ImageStore;
use crate::playbook::{self, Plan, Playbook};
use crate::shutdown::Shutdown;
use crate::store::rollouts::NewJob;
use crate::store::{Db, StoreError};
use crate::transfers::Transfers;

/// Operator requests for one running rollout, seen by its task between steps.
struct Control {
    changed: Notify,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) images: ImageStore,
    pub(crate) transfers: Transfers,
    pub(crate) clock: Clock,
    pub(crate) servers: FileServers,
    global: Arc<Semaphore>,
    controls: Mutex<HashMap<String, Arc<Control>>>,
    events: broadcast::Sender<Event>,
    shutdown: Shutdown,
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Devices worked on at once across all rollouts.
    pub max_concurrent_devices: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_concurrent_devices: 100,
        }
    }
}

impl Engine {
    /// Start the engine and resume every rollout that had not ended.
    pub async fn start(
        db: Db,
        images: ImageStore,
        transfers: Transfers,
        clock: Clock,
        servers: FileServers,
        settings: EngineSettings,
        shutdown: Shutdown,
    ) -> Result<Engine, RolloutError> {
        let (events, _) = broadcast::channel(4096);
        let engine = Engine {
            inner: Arc::new(Inner {
                db,
                images,
                transfers,
                clock,
                servers,
                global: Arc::new(Semaphore::new(settings.max_concurrent_devices.max(1))),
                controls: Mutex::new(HashMap::new()),
                events,
                shutdown,
            }),
        };
        for r in engine.inner.db.unfinished_rollouts().await? {
            tracing::info!(rollout = %r.id, state = %r.state, "resuming rollout after restart");
            engine
                .event(
                    &r.id,
                    None,
                    EventKind::Resumed,
                    None,
                    "the service restarted; resuming",
                    None,
                )
                .await;
            engine.spawn(r.id.clone());
        }
        Ok(engine)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn transfers(&self) -> &Transfers {
        &self.inner.transfers
    }

    /// Live events of every rollout.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Validate a playbook and plan it against the current inventory; touches no device.
    pub async fn plan(&self, text: &str) -> Result<(Playbook, Plan), RolloutError> {
        let pb = super::parse_playbook(text)?;
        let devices = self.inner.db.all_devices().await?;
        let images = self.inner.images.list().await?;
        for img in pb.image.all() {
            if !images.iter().any(|i| i.file_name == img.value) {
                return Err(RolloutError::Playbook(crate::yaml::YamlError::new(
                    img.referenced.line(),
                    img.referenced.column(),
                    format!(
                        "image: {} is not in the image store; add it with `fleetup image add` first",
                        img.value
                    ),
                )));
            }
        }
        let version = |name: &str| {
            images
                .iter()
                .find(|i| i.file_name == name)
                .and_then(|i| i.version.clone())
        };
        let plan = playbook::plan(&pb, &devices, &version);
        Ok((pb, plan))
    }

    /// Record a rollout and start it.
    pub async fn submit(&self, text: &str) -> Result<RolloutRecord, RolloutError> {
        let (pb, plan) = self.plan(text).await?;
        if plan.total == 0 {
            return Err(RolloutError::NothingToDo(
                plan.skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.device, s.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let id = new_rollout_id(&self.inner.clock);
        let mut images: Vec<String> = plan.devices().map(|d| d.image.clone()).collect();
        images.sort();
        images.dedup();
        let record = RolloutRecord {
            id: id.clone(),
            name: pb.name.clone(),
            state: RolloutState::Scheduled,
            playbook: text.to_string(),
            plan_json: serde_json::to_string(&plan).unwrap_or_else(|_| "{}".into()),
            images,
            paused: false,
            abort_requested: false,
            halt_reason: None,
            created_at: String::new(),
            updated_at: String::new(),
            started_at: None,
            finished_at: None,
        };
        let jobs: Vec<NewJob> = plan
            .waves
            .iter()
            .flat_map(|w| {
                w.devices.iter().enumerate().map(move |(i, d)| NewJob {
                    device: &d.device,
                    wave: w.index,
                    position: i,
                    image: &d.image,
                    target_version: d.target_version.as_deref(),
                    old_version: d.current_version.as_deref(),
                })
            })
            .collect();
        self.inner.db.insert_rollout(&record, &jobs).await?;
        self.event(
            &id,
            None,
            EventKind::Created,
            None,
            &format!(
                "rollout {:?}: {} device(s) in {} wave(s), {} skipped",
                pb.name,
                plan.total,
                plan.waves.len(),
                plan.skipped.len()
            ),
            Some(json!({"plan": plan})),
        )
        .await;
        for s in &plan.skipped {
            self.event(
                &id,
                Some(&s.device),
                EventKind::Skipped,
                None,
                &s.reason,
                None,
            )
            .await;
        }
        self.spawn(id.clone());
        Ok(self.inner.db.rollout(&id).await?)
    }

    pub async fn pause(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        self.inner
            .db
            .set_rollout_flags(id, Some(true), None)
            .await?;
        if r.state == RolloutState::Running || r.state == RolloutState::Scheduled {
            self.inner
                .db
                .set_rollout_state(id, RolloutState::Paused, None)
                .await?;
        }
        self.event(
            id,
            None,
            EventKind::Paused,
            None,
            "paused by operator: no new step starts",
            None,
        )
        .await;
        self.poke(id);
        Ok(())
    }

    pub async fn resume(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        self.inner
            .db
            .set_rollout_flags(id, Some(false), None)
            .await?;
        if r.state == RolloutState::Paused {
            self.inner
                .db
                .set_rollout_state(id, RolloutState::Running, None)
                .await?;
        }
        self.event(
            id,
            None,
            EventKind::Resumed,
            None,
            "resumed by operator",
            None,
        )
        .await;
        self.poke(id);
        Ok(())
    }

    /// Stop at the next safe point: no device is stopped inside a reload.
    pub async fn abort(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        self.inner
            .db
            .set_rollout_flags(id, Some(false), Some(true))
            .await?;
        self.event(
            id,
            None,
            EventKind::AbortRequested,
            None,
            "abort requested: devices stop at their next safe point",
            None,
        )
        .await;
        if r.state == RolloutState::Halted {
            // Nothing runs in a halted rollout: end it now.
            self.inner
                .db
                .set_rollout_state(id, RolloutState::Aborted, r.halt_reason.as_deref())
                .await?;
            self.event(id, None, EventKind::Aborted, None, "rollout aborted", None)
                .await;
        }
        self.poke(id);
        Ok(())
    }

    /// Put failed devices back in line and go on, also after the rollout ended with failures.
    pub async fn retry_failed(&self, id: &str) -> Result<u64, RolloutError> {
        let r = self.inner.db.rollout(id).await.map_err(|e| match e {
            StoreError::NotFound => RolloutError::NotFound(id.to_string()),
            e => e.into(),
        })?;
        let jobs = job_views(&self.inner.db.jobs(id).await?);
        let restart = match policy::retry(view(&r), &jobs) {
            policy::Retry::Refused => {
                return Err(RolloutError::Ended {
                    id: id.to_string(),
                    state: r.state,
                });
            }
            policy::Retry::Nothing => return Ok(0),
            policy::Retry::Requeue { restart, .. } => restart,
        };
        let n = self.inner.db.retry_failed_jobs(id).await?;
        self.event(
            id,
            None,
            EventKind::Retry,
            None,
            &format!("{n} failed device(s) put back in line"),
            None,
        )
        .await;
        if restart {
            self.inner
                .db
                .set_rollout_state(id, RolloutState::Running, None)
                .await?;
            self.spawn(id.to_string());
        }
        self.poke(id);
        Ok(n)
    }

    async fn live(&self, id: &str) -> Result<RolloutRecord, RolloutError> {
        let r = self.inner.db.rollout(id).await.map_err(|e| match e {
            crate::store::StoreError::NotFound => RolloutError::NotFound(id.to_string()),
            e => e.into(),
        })?;
        if r.state.is_ended() {
            return Err(RolloutError::Ended {
                id: id.to_string(),
                state: r.state,
            });
        }
        Ok(r)
    }

    fn poke(&self, id: &str) {
        if let Some(c) = self.control(id) {
            c.changed.notify_waiters();
        }
    }

    fn control(&self, id: &str) -> Option<Arc<Control>> {
        self.inner
            .controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn spawn(&self, id: String) {
        {
            let mut controls = self
                .inner
                .controls
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if controls.contains_key(&id) {
                return;
            }
            controls.insert(
                id.clone(),
                Arc::new(Control {
                    changed: Notify::new(),
                }),
            );
        }
        let engine = self.clone();
        self.inner.shutdown.tasks.spawn(async move {
            let result = engine.run_rollout(&id).await;
            engine
                .inner
                .controls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Err(e) = result {
                tracing::error!(rollout = %id, error = %e, "rollout task failed");
            }
        });
    }

    /// Record an event and publish it to live subscribers.
    pub(crate) async fn event(
        &self,
        rollout: &str,
        device: Option<&str>,
        kind: EventKind,
        step: Option<&str>,
        message: &str,
        data: Option<serde_json::Value>,
    ) {
        match self
            .inner
            .db
            .insert_event(rollout, device, kind, step, message, data.as_ref())
            .await
        {
            Ok(ev) => {
                let _ = self.inner.events.send(ev);
            }
            Err(e) => tracing::error!(rollout, error = %e, "cannot record rollout event"),
        }
    }

    /// Record a device's step event (and with `state`, its current step) in one transaction,
    /// and publish the event.
    pub(crate) async fn step_event(
        &self,
        rollout: &str,
        device: &str,
        record: &crate::store::rollouts::StepRecord<'_>,
    ) -> Result<(), StoreError> {
        let ev = self
            .inner
            .db
            .record_step_with(rollout, device, record)
            .await?;
        let _ = self.inner.events.send(ev);
        Ok(())
    }

    /// Publish an event the store has already recorded.
    pub(crate) fn publish(&self, ev: Event) {
        let _ = self.inner.events.send(ev);
    }

    /// The engine's clock (a manual one in tests).
    pub fn now(&self) -> jiff::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) async fn sleep_until(&self, at: jiff::Timestamp) {
        self.inner.clock.sleep_until(at).await
    }

    /// Wait while the rollout is paused; false when it must stop (abort, halt or shutdown).
    pub(crate) async fn may_go_on(&self, id: &str) -> bool {
        loop {
            let Some(control) = self.control(id) else {
                return false;
            };
            let changed = control.changed.notified();
            let Ok(r) = self.inner.db.rollout(id).await else {
                return false;
            };
            match policy::proceed(view(&r), self.inner.shutdown.is_requested()) {
                Proceed::Go => return true,
                Proceed::Stop => return false,
                Proceed::Wait => {}
            }
            tokio::select! {
                _ = changed => {}
                _ = self.inner.shutdown.requested() => return false,
            }
        }
    }

    /// Wait for an operator request or shutdown.
    pub(crate) async fn changed(&self, id: &str) {
        let Some(control) = self.control(id) else {
            return;
        };
        tokio::select! {
            _ = control.changed.notified() => {}
            _ = self.inner.shutdown.requested() => {}
        }
    }

    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    async fn run_rollout(&self, id: &str) -> Result<(), RolloutError> {
        let record = self.inner.db.rollout(id).await?;
        let pb = match super::parse_playbook(&record.playbook) {
            Ok(pb) => pb,
            Err(e) => {
                let msg = format!(
                    "the stored playbook no longer parses ({e}); abort this rollout and submit the playbook again"
                );
                return self.halt(id, &msg).await;
            }
        };
        let plan: Plan = serde_json::from_str(&record.plan_json)
            .map_err(|e| RolloutError::Corrupt(e.to_string()))?;

        // Schedule: nothing before start_at.
        if let Some(start) = pb.schedule.start_at
            && self.inner.clock.now() < start
            && !record.abort_requested
        {
            self.event(
                id,
                None,
                EventKind::Scheduled,
                None,
                &format!("waiting for the start time {start}"),
                None,
            )
            .await;
            tokio::select! {
                _ = self.inner.clock.sleep_until(start) => {}
                _ = self.wait_abort(id) => {}
                _ = self.inner.shutdown.requested() => return Ok(()),
            }
        }
        if !self.finish_if_aborted(id).await? {
            return Ok(());
        }
        let current = self.inner.db.rollout(id).await?;
        if current.state != RolloutState::Halted {
            let state = if current.paused {
                RolloutState::Paused
            } else {
                RolloutState::Running
            };
            self.inner.db.set_rollout_state(id, state, None).await?;
            if current.started_at.is_none() {
                self.event(id, None, EventKind::Started, None, "rollout started", None)
                    .await;
            }
        }

        let per_rollout = Arc::new(Semaphore::new(pb.strategy.concurrency.max(1)));
        let ctx = Arc::new(JobContext {
            engine: self.clone(),
            rollout_id: id.to_string(),
            playbook: pb.clone(),
        });
        let waves = plan.waves.len();
        let limits = Limits {
            halt_after_failures: plan.halt_after_failures,
            canary: plan.waves.first().is_some_and(|w| w.name == "canary"),
        };
        // Work on the first wave that still has devices to do; retried devices of an earlier
        // wave bring the rollout back to that wave.
        while let Some(wave) = self.next_wave(id).await? {
            let jobs: Vec<DeviceJob> = self
                .inner
                .db
                .jobs(id)
                .await?
                .into_iter()
                .filter(|j| j.wave == wave && !j.state.is_finished())
                .collect();
            self.event(
                id,
                None,
                EventKind::WaveStarted,
                None,
                &format!(
                    "{} started ({} wave(s) in all)",
                    wave_name(&plan, wave),
                    waves
                ),
                Some(json!({"wave": wave})),
            )
            .await;
            let mut running: JoinSet<(String, JobOutcome)> = JoinSet::new();
            for j in jobs {
                if !self.may_go_on(id).await {
                    break;
                }
                let global = self.inner.global.clone().acquire_owned().await;
                let local = per_rollout.clone().acquire_owned().await;
                let (Ok(global), Ok(local)) = (global, local) else {
                    break;
                };
                // Permits may have taken a while: check again before starting the device.
                if !self.may_go_on(id).await {
                    break;
                }
                let ctx = ctx.clone();
                running.spawn(async move {
                    let _permits = (global, local);
                    let name = j.device.clone();
                    let outcome = job::run(&ctx, j).await;
                    (name, outcome)
                });
                // Reap finished devices while starting others, so the threshold acts promptly.
                while let Some(done) = running.try_join_next() {
                    self.after_device(id, limits, done).await?;
                }
            }
            while let Some(done) = running.join_next().await {
                self.after_device(id, limits, done).await?;
            }
            if self.inner.shutdown.is_requested() {
                return Ok(());
            }
            let r = self.inner.db.rollout(id).await?;
            let after = job_views(&self.inner.db.jobs(id).await?);
            match policy::after_wave(limits, view(&r), wave, &after) {
                AfterWave::Stop => break,
                AfterWave::Halt(reason) => {
                    self.halt(id, &reason).await?;
                    break;
                }
                AfterWave::Next { failed } => {
                    self.event(
                        id,
                        None,
                        EventKind::WaveFinished,
                        None,
                        &format!("{} finished", wave_name(&plan, wave)),
                        Some(json!({"wave": wave, "failed": failed})),
                    )
                    .await;
                }
            }
        }
        self.conclude(id).await
    }

    /// The first wave with a device still to do.
    async fn next_wave(&self, id: &str) -> Result<Option<usize>, RolloutError> {
        Ok(policy::next_wave(&job_views(
            &self.inner.db.jobs(id).await?,
        )))
    }

    async fn after_device(
        &self,
        id: &str,
        limits: Limits,
        joined: Result<(String, JobOutcome), tokio::task::JoinError>,
    ) -> Result<(), RolloutError> {
        if let Err(e) = joined {
            tracing::error!(rollout = id, error = %e, "device task panicked");
        }
        let jobs = job_views(&self.inner.db.jobs(id).await?);
        let r = self.inner.db.rollout(id).await?;
        if let Some(reason) = policy::after_device(limits, view(&r), &jobs) {
            self.halt(id, &reason).await?;
        }
        Ok(())
    }

    async fn halt(&self, id: &str, reason: &str) -> Result<(), RolloutError> {
        self.inner
            .db
            .set_rollout_state(id, RolloutState::Halted, Some(reason))
            .await?;
        self.event(id, None, EventKind::Halted, None, reason, None)
            .await;
        self.poke(id);
        Ok(())
    }

    async fn wait_abort(&self, id: &str) {
        loop {
            if let Ok(r) = self.inner.db.rollout(id).await
                && r.abort_requested
            {
                return;
            }
            self.changed(id).await;
            if self.inner.shutdown.is_requested() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// End an aborted rollout; true when it may go on.
    async fn finish_if_aborted(&self, id: &str) -> Result<bool, RolloutError> {
        let r = self.inner.db.rollout(id).await?;
        if r.abort_requested {
            self.conclude(id).await?;
            return Ok(false);
        }
        Ok(!self.inner.shutdown.is_requested())
    }

    /// Decide the final state once no device runs.
    async fn conclude(&self, id: &str) -> Result<(), RolloutError> {
        if self.inner.shutdown.is_requested() {
            return Ok(());
        }
        let r = self.inner.db.rollout(id).await?;
        let jobs = self.inner.db.jobs(id).await?;
        let end = policy::end(view(&r), &job_views(&jobs));
        let (kind, message) = match &end {
            End::StayHalted => return Ok(()),
            End::Aborted => {
                for j in jobs.iter().filter(|j| j.state == JobState::Pending) {
                    self.inner
                        .db
                        .finish_job(
                            id,
                            &j.device,
                            JobState::Aborted,
                            None,
                            Some("rollout aborted before this device started"),
                        )
                        .await?;
                }
                (EventKind::Aborted, "rollout aborted".to_string())
            }
            End::Completed { upgraded } => (
                EventKind::Completed,
                format!("rollout completed: {upgraded} device(s) upgraded"),
            ),
            End::CompletedWithFailures { failed, upgraded } => (
                EventKind::CompletedWithFailures,
                format!(
                    "rollout completed with failures: {failed} device(s) failed, {upgraded} upgraded; `fleetup rollout retry {id}` puts the failed ones back in line"
                ),
            ),
        };
        if let Some(state) = end.state() {
            let reason = match end {
                End::Aborted => r.halt_reason.clone(),
                End::CompletedWithFailures { .. } => Some(message.clone()),
                _ => None,
            };
            self.inner
                .db
                .set_rollout_state(id, state, reason.as_deref())
                .await?;
        }
        self.event(id, None, kind, None, &message, None).await;
        Ok(())
    }
}

/// What the rules of [`policy`] look at.
fn view(r: &RolloutRecord) -> RolloutView {
    RolloutView {
        state: r.state,
        paused: r.paused,
        abort_requested: r.abort_requested,
    }
}

fn job_views(jobs: &[DeviceJob]) -> Vec<JobView> {
    jobs.iter()
        .map(|j| JobView {
            wave: j.wave,
            state: j.state,
        })
        .collect()
}

/// Waves are numbered one way everywhere: `canary`, `wave 1`, `wave 2`…
pub fn wave_name(plan: &Plan, wave: usize) -> String {
    match plan.waves.get(wave) {
        Some(w) if w.name == "canary" => "canary".to_string(),
        _ => {
            let canary = plan.waves.first().is_some_and(|w| w.name == "canary");
            format!("wave {}", if canary { wave } else { wave + 1 })
        }
    }
}

/// Sortable, readable ids: `r-20261124-013000-4f2a`.
fn new_rollout_id(clock: &Clock) -> String {
    let now = clock.now();
    let stamp = now.strftime("%Y%m%d-%H%M%S");
    format!("r-{stamp}-{:04x}", rand::random::<u16>())
}

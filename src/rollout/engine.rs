//! The rollout engine: runs every rollout's waves, holds concurrency and failure limits, and
//! obeys pause, resume, abort and retry. The database is the source of truth: the engine can
//! be killed at any point and, restarted, picks every rollout up where it was.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::task::JoinSet;

use super::clock::Clock;
use super::handoff;
use super::job::{self, JobContext, JobOutcome};
use super::ledger::Ledger;
use super::model::{DeviceJob, Event, EventKind, JobState, RolloutId, RolloutRecord, RolloutState};
use super::policy::{self, AfterWave, End, JobView, Limits, Proceed, RolloutView};
use super::{FileServers, RolloutError};
use crate::images::ImageStore;
use crate::playbook::{self, Plan, Playbook};
use crate::shutdown::Shutdown;
use crate::store::leases::{FENCE, Fence};
use crate::store::rollouts::{NewEvent, NewJob};
use crate::store::{Db, StoreError};
use crate::transfers::Transfers;

/// A device's permits to run: the service's (`--max-concurrent-devices`) and its rollout's
/// (`strategy.concurrency`).
type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// The device tasks of a wave, and the permits each runs under. A task's permits are held
/// here, not by the task, and freed only once the rollout task has taken in its outcome
/// ([`Engine::take_in`]): freed when the task ended, they let the next device start before a
/// failure that ended it was counted, past the failure threshold.
#[derive(Default)]
struct Running {
    tasks: JoinSet<(String, JobOutcome)>,
    permits: HashMap<tokio::task::Id, Permits>,
}

impl Running {
    fn spawn<F>(&mut self, task: F, permits: Permits)
    where
        F: Future<Output = (String, JobOutcome)> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.permits.insert(handle.id(), permits);
    }
}

/// How long a retry of a halted rollout waits for the rollout's task to end (it ends once the
/// devices it was running have finished).
const RETRY_WAITS_FOR_TASK: std::time::Duration = std::time::Duration::from_secs(30);

/// How often that retry looks again whether another node still holds the rollout's lease.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Handle to the engine; cheap to clone. The engine decides nothing itself: it reads a
/// snapshot, asks [`policy`], and writes the decision through the [`Ledger`].
#[derive(Clone)]
pub(crate) struct Engine {
    ledger: Arc<Ledger>,
    /// This node's name, the holder named by the leases it claims.
    node: Arc<str>,
    /// Where other nodes reach this node's API, for its heartbeat.
    url: Option<Arc<str>>,
    /// How long a claimed rollout stays this node's without a renewal.
    lease: std::time::Duration,
    /// Devices worked on at once across all rollouts.
    global: Arc<Semaphore>,
    /// The service's device slots ([`Engine::global`]'s permits) and how many rollout tasks
    /// wait for one, for `/metrics`.
    slots: Arc<Slots>,
    /// Whether a playbook that does not say needs an approval.
    approval: crate::playbook::Approval,
}

/// The service's device slots (`--max-concurrent-devices`), and the rollouts waiting for one.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    size: usize,
    waiting: std::sync::atomic::AtomicUsize,
}

/// A rollout task counted in [`Slots::waiting`] while it lives.
struct Waiting<'a>(&'a Slots);

impl Slots {
    fn waiting(&self) -> Waiting<'_> {
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(self)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What `/metrics` shows of the device slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotUse {
    /// `--max-concurrent-devices`.
    pub size: usize,
    /// Held by devices that run (or by a rollout task about to start one).
    pub busy: usize,
    /// Rollout tasks waiting for a slot.
    pub waiting: usize,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    /// Devices worked on at once across all rollouts.
    pub max_concurrent_devices: usize,
    /// Whether a playbook that does not say needs an approval (`--approval`).
    pub approval: crate::playbook::Approval,
    /// This node's name (`--node-name`).
    pub node: String,
    /// Where other nodes reach its API (`--advertise-url`).
    pub url: Option<String>,
    /// The rollout lease (`--lease`).
    pub lease: std::time::Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_concurrent_devices: 100,
            approval: crate::playbook::Approval::None,
            node: "fleetup".into(),
            url: None,
            lease: std::time::Duration::from_secs(15),
        }
    }
}

impl Engine {
    /// Start the engine and resume every rollout that had not ended.
    pub(crate) async fn start(
        db: Db,
        images: ImageStore,
        transfers: Transfers,
        clock: Clock,
        servers: FileServers,
        settings: EngineSettings,
        shutdown: Shutdown,
    ) -> Result<Engine, RolloutError> {
        let engine = Engine {
            ledger: Arc::new(Ledger::new(db, images, transfers, clock, servers, shutdown)),
            node: settings.node.into(),
            url: settings.url.map(Into::into),
            lease: settings.lease.max(std::time::Duration::from_secs(2)),
            global: Arc::new(Semaphore::new(settings.max_concurrent_devices.max(1))),
            slots: Arc::new(Slots {
                size: settings.max_concurrent_devices.max(1),
                ..Slots::default()
            }),
            approval: settings.approval,
        };
        engine.watch_leases();
        if engine.shared() {
            let ledger = engine.ledger.clone();
            engine
                .ledger
                .shutdown()
                .tasks
                .spawn(async move { ledger.relay_events().await });
            // Several nodes may share this database: rollouts are taken by lease, by whichever
            // node finds them free (at start, and whenever a holder lets one lapse).
            return Ok(engine);
        }
        for r in engine.ledger.db.unfinished_rollouts().await? {
            if r.state == RolloutState::AwaitingApproval {
                // Still waiting for its approval: nothing to resume.
                continue;
            }
            tracing::info!(rollout = %r.id, state = %r.state, "resuming rollout after restart");
            engine
                .ledger
                .event(
                    &r.id,
                    None,
                    EventKind::Resumed,
                    None,
                    "the service restarted; resuming",
                    None,
                )
                .await;
            engine.spawn(r.id.to_string());
        }
        Ok(engine)
    }

    /// Live events of every rollout.
    /// Publish an event recorded outside the engine (a site agent's claim) to live subscribers.
    pub(crate) fn publish(&self, ev: Event) {
        self.ledger.publish(ev);
    }

    /// Carry out a site agent's call for a job it claimed (`POST /agents/jobs/{rollout}/{device}`):
    /// writes inside the job's fence, at the epoch of the agent's claim.
    pub(crate) async fn job_call(
        &self,
        rollout: &str,
        device: &str,
        epoch: i64,
        op: super::job_store::JobOp,
    ) -> Result<super::job_store::JobAnswer, super::job_store::OpError> {
        if op.reads_only() {
            return super::job_store::apply(&self.ledger, rollout, device, op).await;
        }
        let fence = Fence {
            rollout: rollout.to_string(),
            epoch,
            device: Some(device.to_string()),
        };
        FENCE
            .scope(
                fence,
                super::job_store::apply(&self.ledger, rollout, device, op),
            )
            .await
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.ledger.subscribe()
    }

    /// The histograms the device jobs observe, for `/metrics`.
    pub(crate) fn metrics(&self) -> &crate::metrics::RolloutMetrics {
        &self.ledger.metrics
    }

    /// The service's device slots: how many, how many are held, how many rollouts wait.
    pub(crate) fn slots(&self) -> SlotUse {
        SlotUse {
            size: self.slots.size,
            busy: self
                .slots
                .size
                .saturating_sub(self.global.available_permits()),
            waiting: self
                .slots
                .waiting
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The engine's clock (a manual one in tests).
    /// Whether this service has the server a device copying by `protocol` needs.
    pub(crate) fn offers(&self, protocol: crate::playbook::TransferProtocol) -> bool {
        use crate::playbook::TransferProtocol as P;
        let s = &self.ledger.servers;
        match protocol {
            P::Tftp => s.tftp.is_some(),
            P::Ftp => s.ftp.is_some() && s.ftp_credentials.is_some(),
            P::Http => s.http.is_some(),
            P::Https => s.https.is_some(),
            P::Scp | P::Sftp => s.scp.is_some(),
            P::ScpPush => true,
        }
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.ledger.now()
    }

    /// Validate a playbook and plan it against the current inventory; touches no device.
    pub(crate) async fn plan(&self, text: &str) -> Result<(Playbook, Plan), RolloutError> {
        let pb = super::parse_playbook(text)?;
        crate::notify::check_usable(&pb.notify)?;
        let devices = self.ledger.db.all_devices().await?;
        let images = self.ledger.images.list().await?;
        let named = pb
            .image
            .value
            .all()
            .into_iter()
            .map(|i| ("image", i))
            .chain(
                pb.kickstart_image
                    .all()
                    .into_iter()
                    .map(|i| ("kickstart_image", i)),
            );
        for (field, img) in named {
            if !images.iter().any(|i| i.file_name == img.value) {
                return Err(RolloutError::Playbook(crate::yaml::YamlError::new(
                    img.referenced.line(),
                    img.referenced.column(),
                    format!(
                        "{field}: {} is not in the image store; add it with `fleetup image add` first",
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
        let golden = if pb.image.value.golden {
            let golden = self.ledger.db.golden_images().await?;
            golden_check(&pb, &devices, &golden, &images)?;
            golden
        } else {
            Vec::new()
        };
        let plan = playbook::plan(&pb, &devices, &version, &golden);
        Ok((pb, plan))
    }

    /// Record a rollout and start it, or, when it needs an approval, leave it waiting for one.
    /// `submitted_by`: the name of the token that submitted it.
    pub(crate) async fn submit(
        &self,
        text: &str,
        submitted_by: Option<&str>,
    ) -> Result<RolloutRecord, RolloutError> {
        let (pb, plan) = self.plan(text).await?;
        let approval_required =
            pb.approval.unwrap_or(self.approval) == crate::playbook::Approval::Required;
        if plan.total == 0 {
            return Err(RolloutError::NothingToDo(
                plan.skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.device, s.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let id = new_rollout_id(self.ledger.now());
        let mut images: Vec<String> = plan.devices().map(|d| d.image.clone()).collect();
        images.sort();
        images.dedup();
        let record = RolloutRecord {
            id: RolloutId::new(id.clone()),
            name: pb.name.clone(),
            state: if approval_required {
                RolloutState::AwaitingApproval
            } else {
                RolloutState::Scheduled
            },
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
            submitted_by: submitted_by.map(str::to_string),
            approval_required,
            approved_by: None,
            approved_at: None,
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
                    kickstart: d.kickstart.as_deref(),
                })
            })
            .collect();
        self.ledger.db.insert_rollout(&record, &jobs).await?;
        self.ledger
            .event(
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
            self.ledger
                .event(
                    &id,
                    Some(&s.device),
                    EventKind::Skipped,
                    None,
                    &s.reason,
                    None,
                )
                .await;
        }
        if approval_required {
            self.ledger
                .event(
                    &id,
                    None,
                    EventKind::AwaitingApproval,
                    None,
                    &format!(
                        "waiting for approval: an operator or admin token other than {} approves it (fleetup rollout approve {id})",
                        submitted_by.unwrap_or("the submitter's")
                    ),
                    Some(json!({"plan": plan, "submitted_by": submitted_by})),
                )
                .await;
        } else {
            self.spawn(id.clone());
        }
        Ok(self.ledger.db.rollout_meta(&id).await?)
    }

    /// Approve a rollout that waits for it, and start it. Refused for the token that
    /// submitted it: the approval is a second person's.
    pub(crate) async fn approve(&self, id: &str, approver: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        if r.state != RolloutState::AwaitingApproval {
            return Err(RolloutError::NotAwaitingApproval {
                id: id.to_string(),
                state: r.state,
            });
        }
        if r.submitted_by.as_deref() == Some(approver) {
            return Err(RolloutError::OwnApproval(approver.to_string()));
        }
        let message = format!(
            "approved by {approver} (submitted by {})",
            r.submitted_by.as_deref().unwrap_or("an unnamed token")
        );
        match self
            .ledger
            .db
            .approve_rollout(id, approver, &message)
            .await?
        {
            Some(ev) => self.ledger.publish(ev),
            // Approved (or aborted) by someone else in between.
            None => {
                let now = self.ledger.db.rollout_view(id).await?;
                return Err(RolloutError::NotAwaitingApproval {
                    id: id.to_string(),
                    state: now.state,
                });
            }
        }
        self.spawn(id.to_string());
        Ok(())
    }

    pub(crate) async fn pause(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        let state = matches!(r.state, RolloutState::Running | RolloutState::Scheduled)
            .then_some(RolloutState::Paused);
        self.ledger
            .set_flags(
                id,
                Some(true),
                None,
                state,
                NewEvent::rollout(EventKind::Paused, "paused by operator: no new step starts"),
            )
            .await?;
        self.ledger.poke(id);
        Ok(())
    }

    pub(crate) async fn resume(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        let state = (r.state == RolloutState::Paused).then_some(RolloutState::Running);
        self.ledger
            .set_flags(
                id,
                Some(false),
                None,
                state,
                NewEvent::rollout(EventKind::Resumed, "resumed by operator"),
            )
            .await?;
        self.ledger.poke(id);
        Ok(())
    }

    /// Stop at the next safe point: no device is stopped inside a reload.
    pub(crate) async fn abort(&self, id: &str) -> Result<(), RolloutError> {
        let r = self.live(id).await?;
        self.ledger
            .set_flags(
                id,
                Some(false),
                Some(true),
                None,
                NewEvent::rollout(
                    EventKind::AbortRequested,
                    "abort requested: devices stop at their next safe point",
                ),
            )
            .await?;
        if matches!(
            r.state,
            RolloutState::Halted | RolloutState::AwaitingApproval
        ) {
            // Nothing runs in a halted rollout, nor in one never approved: end it now.
            self.ledger
                .set_state(
                    id,
                    RolloutState::Aborted,
                    r.halt_reason.as_deref(),
                    NewEvent::rollout(EventKind::Aborted, "rollout aborted"),
                )
                .await?;
        }
        self.ledger.poke(id);
        Ok(())
    }

    /// Put failed devices back in line and go on, also after the rollout ended with failures.
    ///
    /// A halted rollout's task goes on until the devices it was running have finished, and
    /// then records its end; a retry meanwhile would be undone by it (and the task, still
    /// there, would not be started again). So the retry of a halted rollout waits for that
    /// task to end: here through its control, and on a shared database for any node's lease
    /// on it to go (the store refuses the restart while one is held). After
    /// [`RETRY_WAITS_FOR_TASK`] it gives up with a conflict that says why.
    pub(crate) async fn retry_failed(&self, id: &str) -> Result<u64, RolloutError> {
        let deadline = tokio::time::Instant::now() + RETRY_WAITS_FOR_TASK;
        loop {
            let mut r = self.record(id).await?;
            if r.state == RolloutState::Halted {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !self.ledger.task_ended(id, left).await {
                    return Err(RolloutError::Store(StoreError::Conflict(format!(
                        "rollout {id}: the devices that were running when it halted have not all finished; retry once they have"
                    ))));
                }
                // What the task wrote last.
                r = self.record(id).await?;
            }
            let jobs = JobView::all(&self.ledger.db.jobs(id).await?);
            let restart = match policy::retry(RolloutView::of(&r), &jobs) {
                policy::Retry::Refused => {
                    return Err(RolloutError::Ended {
                        id: id.to_string(),
                        state: r.state,
                    });
                }
                policy::Retry::Nothing => return Ok(0),
                policy::Retry::Requeue { restart, .. } => restart,
            };
            let retried = self
                .ledger
                .db
                .retry_failed_jobs(
                    id,
                    restart.then_some(RolloutState::Running),
                    self.shared(),
                    |n| format!("{n} failed device(s) put back in line"),
                )
                .await;
            let (n, ev) = match retried {
                Ok(done) => done,
                Err(StoreError::Leased(node)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(RolloutError::Store(StoreError::Conflict(format!(
                            "rollout {id}: its task on node {node} is still finishing the devices that were running when it halted; retry once they have"
                        ))));
                    }
                    // Another node's task (or a claim of this node's that has not started
                    // yet) holds the rollout: look again shortly. Nodes share no channel
                    // but the database, so this is a poll, bounded by the deadline.
                    tokio::time::sleep(LEASE_POLL).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.ledger.publish(ev);
            if restart {
                self.spawn(id.to_string());
            }
            self.ledger.poke(id);
            return Ok(n);
        }
    }

    /// The rollout's record (without its playbook and plan); `NotFound` names it.
    async fn record(&self, id: &str) -> Result<RolloutRecord, RolloutError> {
        self.ledger.db.rollout_meta(id).await.map_err(|e| match e {
            StoreError::NotFound => RolloutError::NotFound(id.to_string()),
            e => e.into(),
        })
    }

    async fn live(&self, id: &str) -> Result<RolloutRecord, RolloutError> {
        let r = self.record(id).await?;
        if r.state.is_ended() {
            return Err(RolloutError::Ended {
                id: id.to_string(),
                state: r.state,
            });
        }
        Ok(r)
    }

    /// Whether other nodes may share the database (PostgreSQL): rollouts then go by lease.
    /// On a SQLite file, which the data directory's lock keeps to this one process, every
    /// claim is this node's.
    fn shared(&self) -> bool {
        self.ledger.db.backend() == crate::store::Backend::Postgres
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Run rollout `id` on this node, unless it runs here already or another node holds its
    /// lease. Its task claims the lease first; every write of the rollout and its device jobs
    /// then carries the lease's epoch, and the task stops (its jobs with it) the moment the
    /// lease is found taken over.
    fn spawn(&self, id: String) {
        if !self.ledger.open_control(&id) {
            return;
        }
        let engine = self.clone();
        self.ledger.shutdown().tasks.spawn(async move {
            let claim = engine
                .ledger
                .db
                .claim_rollout(&id, &engine.node, engine.lease_ms(), !engine.shared())
                .await;
            let claim = match claim {
                Ok(Some(claim)) => claim,
                Ok(None) => {
                    engine.ledger.close_control(&id);
                    return;
                }
                Err(e) => {
                    tracing::error!(rollout = %id, error = %e, "cannot claim the rollout's lease");
                    engine.ledger.close_control(&id);
                    return;
                }
            };
            let fence = Fence {
                rollout: id.clone(),
                epoch: claim.epoch,
                device: None,
            };
            tracing::debug!(rollout = %id, epoch = claim.epoch, previous = ?claim.previous, "lease claimed");
            let run = FENCE.scope(fence, engine.run_claimed(&id, claim.previous.as_deref()));
            tokio::select! {
                _ = run => {}
                why = engine.keep_lease(&id, claim.epoch) => {
                    tracing::warn!(rollout = %id, node = %engine.node, "{why}: this node stops driving the rollout");
                }
            }
            if let Err(e) = engine
                .ledger
                .db
                .release_rollout(&id, &engine.node, claim.epoch)
                .await
            {
                tracing::warn!(rollout = %id, error = %e, "cannot give the rollout's lease back; it lapses by itself");
            }
            engine.ledger.close_control(&id);
        });
    }

    /// The claimed rollout's task: run it, and after a failed write go on from what was
    /// recorded once writes work again.
    async fn run_claimed(&self, id: &str, previous: Option<&str>) {
        if self.shared()
            && let Some(previous) = previous
        {
            let message = if previous == &*self.node {
                format!("node {previous} restarted; resuming")
            } else {
                format!(
                    "node {} takes the rollout over from node {previous}, whose lease lapsed",
                    self.node
                )
            };
            self.ledger
                .event(
                    id,
                    None,
                    EventKind::Resumed,
                    None,
                    &message,
                    Some(json!({"node": &*self.node, "previous_node": previous})),
                )
                .await;
        }
        loop {
            let result = self.run_rollout(id).await;
            if let Err(e) = &result {
                tracing::error!(rollout = %id, error = %e, "rollout task stopped");
            }
            // Stopped because its writes failed (a full disk): wait for room, then go on
            // from what was recorded.
            if self.ledger.db.writes_failing().is_none() || !self.wait_for_storage().await {
                break;
            }
            self.ledger
                .event(
                    id,
                    None,
                    EventKind::Resumed,
                    None,
                    "the data directory takes writes again: the rollout goes on",
                    None,
                )
                .await;
        }
    }

    /// Hold the lease of a running rollout: renew it every third of its length and wake the
    /// rollout each second (an operator's request may have come through another node).
    /// Returns why the lease is lost: taken over, or not renewed for its whole length. Never
    /// returns on a SQLite file, where the lease is this process's for good.
    async fn keep_lease(&self, id: &str, epoch: i64) -> String {
        if !self.shared() {
            return std::future::pending().await;
        }
        let renew_every = self.lease / 3;
        let mut renewed = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if renewed.elapsed() >= renew_every {
                match self
                    .ledger
                    .db
                    .renew_rollout(id, &self.node, epoch, self.lease_ms())
                    .await
                {
                    Ok(true) => {
                        tracing::debug!(rollout = %id, epoch, "lease renewed");
                        renewed = tokio::time::Instant::now();
                    }
                    Ok(false) => return "another node took the rollout's lease over".into(),
                    Err(e) => {
                        tracing::warn!(rollout = %id, error = %e, "cannot renew the rollout's lease");
                        if renewed.elapsed() >= self.lease {
                            return format!(
                                "the rollout's lease was not renewed for {} s",
                                self.lease.as_secs()
                            );
                        }
                    }
                }
            }
            self.ledger.poke(id);
        }
    }

    /// Say this node is alive each third of the lease, and on a shared database take every
    /// rollout no live node holds (at start, and whenever a holder has let one lapse).
    fn watch_leases(&self) {
        let engine = self.clone();
        let beat = crate::store::leases::Heartbeat {
            name: self.node.to_string(),
            instance: format!("{:016x}", rand::random::<u64>()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: crate::store::now_text(),
            url: self.url.as_deref().map(str::to_string),
            kind: crate::store::leases::NodeKind::Node,
            site: None,
            detail: None,
        };
        self.ledger.shutdown().tasks.spawn(async move {
            let shutdown = engine.ledger.shutdown().clone();
            loop {
                if let Err(e) = engine.ledger.db.node_heartbeat(&beat).await {
                    tracing::warn!(error = %e, "cannot record this node's heartbeat");
                }
                if engine.shared() {
                    engine.ledger.images.warm().await;
                    match engine.ledger.db.claimable_rollouts().await {
                        Ok(ids) => {
                            for id in ids {
                                engine.spawn(id);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot look for rollouts to run"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(engine.lease / 3) => {}
                    _ = shutdown.requested() => return,
                }
            }
        });
    }

    /// Wait until writes work again; false on shutdown.
    async fn wait_for_storage(&self) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = self.ledger.shutdown().requested() => return false,
            }
            match self.ledger.db.storage_problem().await {
                None => return true,
                Some(why) => {
                    tracing::warn!(%why, "rollouts wait for the data directory to take writes")
                }
            }
        }
    }

    async fn run_rollout(&self, id: &str) -> Result<(), RolloutError> {
        let record = self.ledger.db.rollout(id).await?;
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

        // Schedule: nothing before start_at. The start event says when a wait ended, for the
        // notifications (`schedule_reached`).
        let mut start_reached = None;
        if let Some(start) = pb.schedule.start_at
            && self.ledger.now() < start
            && !record.abort_requested
        {
            self.ledger
                .event(
                    id,
                    None,
                    EventKind::Scheduled,
                    None,
                    &format!("waiting for the start time {start}"),
                    None,
                )
                .await;
            tokio::select! {
                _ = self.ledger.sleep_until(start) => start_reached = Some(start),
                _ = self.wait_abort(id) => {}
                _ = self.ledger.shutdown().requested() => return Ok(()),
            }
        }
        if !self.finish_if_aborted(id).await? {
            return Ok(());
        }
        let current = self.ledger.db.rollout(id).await?;
        if current.state != RolloutState::Halted {
            let state = if current.paused {
                RolloutState::Paused
            } else {
                RolloutState::Running
            };
            if current.started_at.is_none() {
                let data = start_reached.map(|at| json!({"start_at": at.to_string()}));
                let message = match start_reached {
                    Some(_) => "the scheduled start time came: rollout started",
                    None => "rollout started",
                };
                self.ledger
                    .set_state(
                        id,
                        state,
                        None,
                        NewEvent::rollout(EventKind::Started, message).with_data(data.as_ref()),
                    )
                    .await?;
            } else if current.state != state {
                self.ledger
                    .set_state(
                        id,
                        state,
                        None,
                        NewEvent::rollout(EventKind::Resumed, "the rollout runs again"),
                    )
                    .await?;
            }
        }

        let per_rollout = Arc::new(Semaphore::new(pb.strategy.concurrency.max(1)));
        let ctx = Arc::new(JobContext {
            store: self.ledger.clone(),
            env: self.ledger.job_env(),
            rollout_id: RolloutId::new(id),
            playbook: pb.clone(),
        });
        let waves = plan.waves.len();
        let limits = Limits {
            halt_after_failures: plan.halt_after_failures,
            canary: plan.waves.first().is_some_and(|w| w.name == "canary"),
        };
        // Work on the first wave that still has devices to do; retried devices of an earlier
        // wave bring the rollout back to that wave.
        let mut stalled_passes = 0;
        let handing = Arc::new(handoff::Shared::default());
        while let Some(wave) = self.next_wave(id).await? {
            let finished_before = JobView::all(&self.ledger.db.jobs(id).await?)
                .iter()
                .filter(|j| j.state.is_finished())
                .count();
            let jobs: Vec<DeviceJob> = self
                .ledger
                .db
                .jobs(id)
                .await?
                .into_iter()
                .filter(|j| j.wave == wave && !j.state.is_finished())
                .collect();
            self.ledger
                .event(
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
            let mut running = Running::default();
            for j in jobs {
                // A device of a site whose agent drives is handed to that site.
                let site = handoff::site_for(&self.ledger, &handing.drivers, &pb, &j).await;
                let Some(permits) = self
                    .permits_to_start(id, limits, &mut running, &per_rollout)
                    .await?
                else {
                    break;
                };
                let ctx = ctx.clone();
                // The device's writes carry the rollout task's lease epoch too.
                let fence = FENCE.try_with(Clone::clone).unwrap_or(Fence {
                    rollout: String::new(),
                    epoch: 0,
                    device: None,
                });
                let (ledger, handing) = (self.ledger.clone(), handing.clone());
                let task = FENCE.scope(fence, async move {
                    let name = j.device.clone();
                    let handed = match &site {
                        Some(site) => {
                            handoff::run(&ledger, &handing, &ctx.rollout_id, &j, site).await
                        }
                        None => None,
                    };
                    let outcome = match handed {
                        Some(outcome) => outcome,
                        None => job::run(&ctx, j).await,
                    };
                    (name, outcome)
                });
                running.spawn(task, permits);
                // Reap finished devices while starting others, so the threshold acts promptly.
                while let Some(done) = running.tasks.try_join_next_with_id() {
                    self.take_in(id, limits, &mut running, done).await?;
                }
            }
            while let Some(done) = running.tasks.join_next_with_id().await {
                self.take_in(id, limits, &mut running, done).await?;
            }
            // On shutdown, or while writes fail, stop here without deciding anything: what was
            // recorded is where the rollout goes on from.
            if self.ledger.shutdown().is_requested() || self.ledger.db.writes_failing().is_some() {
                return Ok(());
            }
            let r = self.ledger.db.rollout_view(id).await?;
            let after = JobView::all(&self.ledger.db.jobs(id).await?);
            let finished = after.iter().filter(|j| j.state.is_finished()).count();
            if finished == finished_before && self.ledger.may_go_on(id).await {
                stalled_passes += 1;
                match policy::stalled(&wave_name(&plan, wave), stalled_passes) {
                    policy::Stalled::Halt(reason) => {
                        self.halt(id, &reason).await?;
                        break;
                    }
                    policy::Stalled::RetryAfter(wait) => {
                        tracing::warn!(rollout = %id, wave, pass = stalled_passes, "no device of the wave finished; trying again in {wait:?}");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.ledger.shutdown().requested() => return Ok(()),
                        }
                        continue;
                    }
                }
            }
            stalled_passes = 0;
            match policy::after_wave(limits, r, wave, &after) {
                AfterWave::Stop => break,
                AfterWave::Halt(reason) => {
                    self.halt(id, &reason).await?;
                    break;
                }
                AfterWave::Next { failed } => {
                    self.ledger
                        .event(
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
        Ok(policy::next_wave(&JobView::all(
            &self.ledger.db.jobs(id).await?,
        )))
    }

    /// The permits to start the rollout's next device, once it may go on; `None` when it must
    /// stop. Outcomes of the devices that end meanwhile are taken in: a device's permits are
    /// freed only once its outcome is counted. The rollout's own permit is taken before the
    /// service's: waiting for its own devices, it holds no slot another rollout could use. A
    /// pause that came while it waited gives both back, and the wait starts again: a paused
    /// rollout holds no slot it does not use.
    async fn permits_to_start(
        &self,
        id: &str,
        limits: Limits,
        running: &mut Running,
        per_rollout: &Arc<Semaphore>,
    ) -> Result<Option<Permits>, RolloutError> {
        loop {
            if !self.go_on(id, limits, running).await? {
                return Ok(None);
            }
            let acquire = async {
                let local = per_rollout.clone().acquire_owned().await.ok()?;
                let _waiting = self.slots.waiting();
                let global = self.global.clone().acquire_owned().await.ok()?;
                Some((global, local))
            };
            tokio::pin!(acquire);
            let permits = loop {
                tokio::select! {
                    biased;
                    Some(done) = running.tasks.join_next_with_id(), if !running.tasks.is_empty() => {
                        self.take_in(id, limits, running, done).await?;
                    }
                    permits = &mut acquire => break permits,
                }
            };
            let Some(permits) = permits else {
                return Ok(None);
            };
            // Permits may have taken a while: devices may have ended since, and the rollout
            // may have been halted, aborted or paused.
            while let Some(done) = running.tasks.try_join_next_with_id() {
                self.take_in(id, limits, running, done).await?;
            }
            match self.ledger.proceed_now(id).await {
                Proceed::Go => return Ok(Some(permits)),
                Proceed::Stop => return Ok(None),
                Proceed::Wait => drop(permits),
            }
        }
    }

    /// Whether the rollout may start its next device ([`Ledger::may_go_on`], which waits while
    /// it is paused), taking in first the outcomes of the devices that ended, and then those of
    /// the devices that end meanwhile: their permits, which other rollouts may be waiting for,
    /// are not held by a pause that may last hours. The question is asked again after each
    /// outcome, which may have halted the rollout.
    async fn go_on(
        &self,
        id: &str,
        limits: Limits,
        running: &mut Running,
    ) -> Result<bool, RolloutError> {
        let ask = self.ledger.may_go_on(id);
        tokio::pin!(ask);
        loop {
            tokio::select! {
                biased;
                Some(done) = running.tasks.join_next_with_id(), if !running.tasks.is_empty() => {
                    self.take_in(id, limits, running, done).await?;
                    ask.set(self.ledger.may_go_on(id));
                }
                go = &mut ask => return Ok(go),
            }
        }
    }

    /// Take in the outcome of a device task that ended (`done`), then free its permits.
    async fn take_in(
        &self,
        id: &str,
        limits: Limits,
        running: &mut Running,
        done: Result<(tokio::task::Id, (String, JobOutcome)), tokio::task::JoinError>,
    ) -> Result<(), RolloutError> {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let permits = running.permits.remove(&task);
        self.after_device(id, limits, done.map(|(_, outcome)| outcome))
            .await?;
        drop(permits);
        Ok(())
    }

    async fn after_device(
        &self,
        id: &str,
        limits: Limits,
        joined: Result<(String, JobOutcome), tokio::task::JoinError>,
    ) -> Result<(), RolloutError> {
        match &joined {
            Err(e) => tracing::error!(rollout = id, error = %e, "device task panicked"),
            // Only a failure moves the failures up to the limit: after a success or an abort
            // the count is one already checked. Counting is an aggregate over every job of
            // the rollout: 2,000 rows read per device on PostgreSQL at 2,000 devices.
            Ok((_, JobOutcome::Succeeded | JobOutcome::Aborted)) => return Ok(()),
            Ok(_) => {}
        }
        // After a failure: one aggregate query, not every job of the rollout (which made the
        // engine's work per device grow with the fleet).
        let counts = self.ledger.db.job_state_counts(&[id]).await?;
        let tally = policy::Tally::of_counts(counts.get(id).into_iter().flatten().copied());
        let r = self.ledger.db.rollout_view(id).await?;
        if let Some(reason) = policy::after_device(limits, r, tally) {
            self.halt(id, &reason).await?;
        }
        Ok(())
    }

    async fn halt(&self, id: &str, reason: &str) -> Result<(), RolloutError> {
        self.ledger
            .set_state(
                id,
                RolloutState::Halted,
                Some(reason),
                NewEvent::rollout(EventKind::Halted, reason),
            )
            .await?;
        self.ledger.poke(id);
        Ok(())
    }

    async fn wait_abort(&self, id: &str) {
        loop {
            if let Ok(r) = self.ledger.db.rollout_view(id).await
                && r.abort_requested
            {
                return;
            }
            self.ledger.changed(id).await;
            if self.ledger.shutdown().is_requested() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// End an aborted rollout; true when it may go on.
    async fn finish_if_aborted(&self, id: &str) -> Result<bool, RolloutError> {
        let r = self.ledger.db.rollout_view(id).await?;
        if r.abort_requested {
            self.conclude(id).await?;
            return Ok(false);
        }
        Ok(!self.ledger.shutdown().is_requested())
    }

    /// Decide the final state once no device runs.
    async fn conclude(&self, id: &str) -> Result<(), RolloutError> {
        if self.ledger.shutdown().is_requested() {
            return Ok(());
        }
        let r = self.ledger.db.rollout_meta(id).await?;
        let jobs = self.ledger.db.jobs(id).await?;
        let end = policy::end(RolloutView::of(&r), &JobView::all(&jobs));
        let (kind, message) = match &end {
            End::StayHalted | End::Unfinished => return Ok(()),
            End::Aborted => {
                for j in jobs.iter().filter(|j| j.state == JobState::Pending) {
                    let why = "rollout aborted before this device started";
                    self.ledger
                        .finish_job(
                            id,
                            &j.device,
                            JobState::Aborted,
                            None,
                            Some(("aborted", why)),
                            NewEvent::device(&j.device, EventKind::DeviceAborted, why),
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
            self.ledger
                .set_state(
                    id,
                    state,
                    reason.as_deref(),
                    NewEvent::rollout(kind, &message),
                )
                .await?;
        }
        Ok(())
    }
}

/// Waves are named one way everywhere: `canary`, `wave 1`, `wave 2`… (by the plan).
pub(crate) fn wave_name(plan: &Plan, wave: usize) -> String {
    plan.waves
        .get(wave)
        .map(|w| w.name.clone())
        .unwrap_or_else(|| format!("wave {wave}"))
}

/// Sortable, readable ids: `r-20261124-013000-4f2a`.
fn new_rollout_id(now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%d-%H%M%S");
    format!("r-{stamp}-{:04x}", rand::random::<u16>())
}

/// `image: golden`: every targeted device must have a golden image, and each such image must be
/// in the image store; otherwise the playbook is refused at its `image:`, naming the devices.
/// A device without a golden image is never targeted.
fn golden_check(
    pb: &Playbook,
    devices: &[crate::inventory::Device],
    golden: &[crate::golden::GoldenEntry],
    images: &[crate::images::ImageRecord],
) -> Result<(), RolloutError> {
    let at = pb.image.referenced;
    let refuse = |message: String| {
        RolloutError::Playbook(crate::yaml::YamlError::new(at.line(), at.column(), message))
    };
    let mut missing = Vec::new();
    for d in devices.iter().filter(|d| crate::playbook::selected(pb, d)) {
        let key = crate::golden::DeviceKey::of(d);
        match crate::golden::resolve(golden, &key) {
            None => missing.push(format!(
                "{} (platform {}{}{})",
                d.name(),
                key.platform,
                key.model
                    .map(|m| format!(", model {m}"))
                    .unwrap_or_default(),
                key.site.map(|s| format!(", site {s}")).unwrap_or_default(),
            )),
            Some(e) if !images.iter().any(|i| i.file_name == e.image) => {
                return Err(refuse(format!(
                    "image: golden: the golden image of {} ({}) is {}, which is not in the image store; add it with `fleetup image add` or set another with `fleetup golden set`",
                    d.name(),
                    e.scope,
                    e.image
                )));
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let n = missing.len();
        missing.truncate(20);
        return Err(refuse(format!(
            "image: golden: no golden image applies to {n} targeted device(s): {}{}; set one with `fleetup golden set`, or exclude them",
            missing.join(", "),
            if n > 20 { ", ..." } else { "" }
        )));
    }
    Ok(())
}

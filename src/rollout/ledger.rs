//! What a rollout's tasks share, and all they may do to the outside: record events and steps
//! (each with its state change in one transaction) and publish them, read the clock, and
//! learn whether the rollout may go on. The engine and every device job hold a `Ledger`;
//! neither reaches into the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use super::FileServers;
use super::clock::Clock;
use super::model::{Event, EventKind, JobState, RolloutState};
use super::policy::{self, Proceed, RolloutView};
use crate::images::ImageStore;
use crate::shutdown::Shutdown;
use crate::store::rollouts::NewEvent;
use crate::store::{Db, StoreError};
use crate::transfers::Transfers;

/// Operator requests for one running rollout, seen by its task between steps.
pub(crate) struct Control {
    changed: Notify,
    /// The rollout's flags as last read for a step's gate, shared by its jobs on this node.
    gate: Mutex<Gate>,
    /// Set when the rollout's task ends.
    ended: tokio::sync::watch::Sender<bool>,
}

/// How long the rollout's state and flags, read at one step's gate, serve the gates of its
/// other jobs on this node: hundreds of jobs start steps every second, and each read is a
/// call to the database. An operator request made on this node is seen at once (`poke`
/// forgets the view); one made on another node, or the leader's halt there, by the steps
/// that start more than this after it is written.
const GATE_FRESH: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Default)]
struct Gate {
    /// The view and when its read began.
    view: Option<(RolloutView, std::time::Instant)>,
    /// Counts the pokes: a read that began before one is not kept.
    generation: u64,
}

pub(crate) struct Ledger {
    pub(crate) db: Db,
    pub(crate) images: ImageStore,
    pub(crate) transfers: Transfers,
    pub(crate) servers: FileServers,
    /// Step durations and reload detection, observed by the jobs, read by `/metrics`.
    pub(crate) metrics: crate::metrics::RolloutMetrics,
    clock: Clock,
    controls: Mutex<HashMap<String, Arc<Control>>>,
    events: broadcast::Sender<Event>,
    /// The ids of the last events published here, so that the relay of other nodes' events
    /// (on a shared database) never publishes one twice.
    published: Mutex<std::collections::BTreeSet<i64>>,
    /// Device jobs handed to a site's agents, each woken when an event that may end it is
    /// published here (`super::handoff`), by (rollout, device).
    handed: Mutex<HashMap<(String, String), Arc<Notify>>>,
    shutdown: Shutdown,
}

impl Ledger {
    pub(crate) fn new(
        db: Db,
        images: ImageStore,
        transfers: Transfers,
        clock: Clock,
        servers: FileServers,
        shutdown: Shutdown,
    ) -> Ledger {
        let (events, _) = broadcast::channel(4096);
        Ledger {
            db,
            images,
            transfers,
            servers,
            metrics: crate::metrics::RolloutMetrics::default(),
            clock,
            controls: Mutex::new(HashMap::new()),
            events,
            published: Mutex::new(std::collections::BTreeSet::new()),
            handed: Mutex::default(),
            shutdown,
        }
    }

    /// What a device job run here uses of this process.
    pub(crate) fn job_env(&self) -> super::job::JobEnv {
        super::job::JobEnv {
            transfers: self.transfers.clone(),
            servers: self.servers.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Wake the rollout's task and its devices: an operator request changed something.
    pub(crate) fn poke(&self, id: &str) {
        if let Some(c) = self.control(id) {
            {
                let mut gate = c.gate.lock().unwrap_or_else(|e| e.into_inner());
                gate.view = None;
                gate.generation += 1;
            }
            c.changed.notify_waiters();
        }
    }

    /// The rollout's state and flags for a step's gate: read at most every [`GATE_FRESH`] for
    /// all its jobs on this node while its task runs here, else read now.
    pub(crate) async fn gate_view(&self, id: &str) -> Result<RolloutView, StoreError> {
        let Some(control) = self.control(id) else {
            return self.db.rollout_view(id).await;
        };
        let began = std::time::Instant::now();
        let generation = {
            let gate = control.gate.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((view, at)) = gate.view
                && began.saturating_duration_since(at) < GATE_FRESH
            {
                return Ok(view);
            }
            gate.generation
        };
        let view = self.db.rollout_view(id).await?;
        let mut gate = control.gate.lock().unwrap_or_else(|e| e.into_inner());
        if gate.generation == generation && gate.view.is_none_or(|(_, at)| at < began) {
            gate.view = Some((view, began));
        }
        Ok(view)
    }

    fn control(&self, id: &str) -> Option<Arc<Control>> {
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
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
            .db
            .insert_event(rollout, device, kind, step, message, data.as_ref())
            .await
        {
            Ok(ev) => self.publish(ev),
            Err(e) => tracing::error!(rollout, error = %e, "cannot record rollout event"),
        }
    }

    /// Record a device's step events (each with its state change, if any, and the transcript
    /// lines that go with it) in one transaction, in order, and publish them: the ends the
    /// driver reported, then the next step's start.
    pub(crate) async fn step_events(
        &self,
        rollout: &str,
        device: &str,
        records: &[crate::store::rollouts::StepRecord<'_>],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        for ev in self.db.record_steps_with(rollout, device, records).await? {
            self.publish(ev);
        }
        Ok(())
    }

    /// Change a rollout's state with its event (one transaction), then publish the event.
    pub(crate) async fn set_state(
        &self,
        id: &str,
        state: RolloutState,
        reason: Option<&str>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        let ev = self.db.set_rollout_state(id, state, reason, event).await?;
        self.publish(ev);
        Ok(())
    }

    /// Set the operator's flags (and the state they imply) with their event, then publish it.
    pub(crate) async fn set_flags(
        &self,
        id: &str,
        paused: Option<bool>,
        abort_requested: Option<bool>,
        state: Option<RolloutState>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        let ev = self
            .db
            .set_rollout_flags(id, paused, abort_requested, state, event)
            .await?;
        self.publish(ev);
        Ok(())
    }

    /// End a device's job with its event (one transaction), then publish the event.
    pub(crate) async fn finish_job(
        &self,
        id: &str,
        device: &str,
        state: JobState,
        new_version: Option<&str>,
        failure: Option<(&str, &str)>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        let ev = self
            .db
            .finish_job(id, device, state, new_version, failure, event)
            .await?;
        self.publish(ev);
        Ok(())
    }

    /// Put a device back in line with its event, then publish the event.
    pub(crate) async fn requeue_job(
        &self,
        id: &str,
        device: &str,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        let ev = self.db.requeue_job(id, device, event).await?;
        self.publish(ev);
        Ok(())
    }

    /// Publish an event the store has already recorded.
    pub(crate) fn publish(&self, ev: Event) {
        if self.remember(ev.id) {
            if let Some(device) = &ev.device
                && super::handoff::may_end(ev.kind)
                && let Some(waiter) = self
                    .handed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(ev.rollout_id.to_string(), device.clone()))
            {
                waiter.notify_one();
            }
            let _ = self.events.send(ev);
        }
    }

    /// Note an event id as published here; false when it already was.
    /// What wakes the wait for a handed job: notified (a permit kept when nobody waits yet)
    /// when an event that may end it is published. Dropped with [`Ledger::forget_handed`].
    pub(crate) fn handed_waiter(&self, rollout: &str, device: &str) -> Arc<Notify> {
        self.handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((rollout.to_string(), device.to_string()))
            .or_default()
            .clone()
    }

    pub(crate) fn forget_handed(&self, rollout: &str, device: &str) {
        self.handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(rollout.to_string(), device.to_string()));
    }

    fn remember(&self, id: i64) -> bool {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if !published.insert(id) {
            return false;
        }
        // Far more than the relay's look back can reach.
        while published.len() > 100_000 {
            published.pop_first();
        }
        true
    }

    /// On a database other nodes share: publish here the events they record, so that a live
    /// stream on any node shows every rollout (those this node drives are published as they
    /// are written). Looks twice a second, from the last event when it starts.
    pub(crate) async fn relay_events(&self) {
        let mut after = match self.db.last_event_id().await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last event: other nodes' events are not relayed");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = self.shutdown.requested() => return,
            }
            match self.db.events_of_all_after(after, 1000).await {
                Ok(events) => {
                    for ev in events {
                        after = after.max(ev.id);
                        self.publish(ev);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read other nodes' events"),
            }
        }
    }

    /// The engine's clock (a manual one in tests).
    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    pub(crate) async fn sleep_until(&self, at: jiff::Timestamp) {
        self.clock.sleep_until(at).await
    }

    /// Wait while the rollout is paused; false when it must stop (abort, halt or shutdown).
    /// [`Ledger::may_go_on`], without a second read when the view `seen` was read just now
    /// and lets the job go on (a step's gate reads it once for the pause notice and this).
    pub(crate) async fn may_go_on_seen(&self, id: &str, seen: Option<RolloutView>) -> bool {
        if let Some(r) = seen
            && self.control(id).is_some()
            && self.db.writes_failing().is_none()
            && policy::proceed(r, self.shutdown.is_requested()) == Proceed::Go
        {
            return true;
        }
        self.may_go_on(id).await
    }

    pub(crate) async fn may_go_on(&self, id: &str) -> bool {
        loop {
            let Some(control) = self.control(id) else {
                return false;
            };
            let changed = control.changed.notified();
            match self.proceed_now(id).await {
                Proceed::Go => return true,
                Proceed::Stop => return false,
                Proceed::Wait => {}
            }
            tokio::select! {
                _ = changed => {}
                _ = self.shutdown.requested() => return false,
            }
        }
    }

    /// Whether the rollout may start its next device now, without waiting: `Wait` while it
    /// is paused.
    pub(crate) async fn proceed_now(&self, id: &str) -> Proceed {
        if self.control(id).is_none() {
            return Proceed::Stop;
        }
        let Ok(r) = self.db.rollout_view(id).await else {
            return Proceed::Stop;
        };
        // Nothing new starts while writes fail: a step must be recorded before it runs.
        if self.db.writes_failing().is_some() {
            return Proceed::Stop;
        }
        policy::proceed(r, self.shutdown.is_requested())
    }

    /// Wait for an operator request or shutdown.
    pub(crate) async fn changed(&self, id: &str) {
        let Some(control) = self.control(id) else {
            return;
        };
        tokio::select! {
            _ = control.changed.notified() => {}
            _ = self.shutdown.requested() => {}
        }
    }

    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Take the control of a rollout about to run; false when its task runs already.
    pub(crate) fn open_control(&self, id: &str) -> bool {
        let mut controls = self.controls.lock().unwrap_or_else(|e| e.into_inner());
        if controls.contains_key(id) {
            return false;
        }
        controls.insert(
            id.to_string(),
            Arc::new(Control {
                changed: Notify::new(),
                gate: Mutex::default(),
                ended: tokio::sync::watch::Sender::new(false),
            }),
        );
        true
    }

    pub(crate) fn close_control(&self, id: &str) {
        let closed = self
            .controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(c) = closed {
            c.ended.send_replace(true);
        }
    }

    /// Wait until this node's task of the rollout has ended (at once when none runs); false
    /// when it still runs after `within`.
    pub(crate) async fn task_ended(&self, id: &str, within: std::time::Duration) -> bool {
        let Some(c) = self.control(id) else {
            return true;
        };
        let mut ended = c.ended.subscribe();
        tokio::time::timeout(within, ended.wait_for(|e| *e))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ledger_with_running_rollout() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        sqlx::query(
            "INSERT INTO rollouts (id, name, state, created_at, updated_at) \
             VALUES ('r1', 'r1', 'running', '2026-12-07T00:00:00Z', '2026-12-07T00:00:00Z')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let images = ImageStore::open(dir.path().join("images"), db.clone(), 1 << 20)
            .await
            .unwrap();
        let ledger = Ledger::new(
            db,
            images,
            Transfers::new(),
            super::super::clock::Clock::System,
            FileServers::default(),
            Shutdown::new(),
        );
        (dir, ledger)
    }

    async fn pause_in_the_store(ledger: &Ledger) {
        sqlx::query("UPDATE rollouts SET paused = 1 WHERE id = 'r1'")
            .execute(ledger.db.pool())
            .await
            .unwrap();
    }

    /// The gates of a rollout's jobs share one read while it is fresh; a request made on this
    /// node (`poke`) is seen by the next gate at once. Without the rollout's task here, every
    /// gate reads.
    #[tokio::test]
    async fn the_gates_share_one_read_and_a_poke_forgets_it() {
        let (_dir, ledger) = ledger_with_running_rollout().await;
        // No task here: read each time.
        assert!(!ledger.gate_view("r1").await.unwrap().paused);
        pause_in_the_store(&ledger).await;
        assert!(ledger.gate_view("r1").await.unwrap().paused);
        sqlx::query("UPDATE rollouts SET paused = 0 WHERE id = 'r1'")
            .execute(ledger.db.pool())
            .await
            .unwrap();

        assert!(ledger.open_control("r1"));
        let read = std::time::Instant::now();
        assert!(!ledger.gate_view("r1").await.unwrap().paused);
        pause_in_the_store(&ledger).await;
        // Written behind this node's back: the shared read stands while it is fresh (a read
        // of the store now would say paused; on a machine so slow that the view has aged
        // already, the gate reads again and sees it)…
        let shared = ledger.gate_view("r1").await.unwrap().paused;
        assert!(
            !shared || read.elapsed() >= GATE_FRESH,
            "the gate read the store again while its view was fresh"
        );
        // …and a poke (what this node's pause does after writing it) is seen at once.
        ledger.poke("r1");
        assert!(ledger.gate_view("r1").await.unwrap().paused);
        ledger.close_control("r1");
    }
}

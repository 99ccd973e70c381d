//! Everything a device job reads and records, behind one trait, so that the same job runs on
//! the node that leads its rollout ([`Ledger`], straight on the database) and on a site agent
//! (`crate::agent::jobs`, through the API: each call one [`JobOp`], answered by [`apply`] on a
//! serve node, inside the job's fence).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::ledger::Ledger;
use super::model::{Event, EventKind, JobState, StepState};
use super::policy::RolloutView;
use crate::configs::Moment;
use crate::device::TranscriptEntry;
use crate::images::ImageRecord;
use crate::inventory::{Device, Facts};
use crate::store::StoreError;
use crate::store::rollouts::{NewEvent, StepRecord};

/// What a device job may read and record. Every write is one transaction with its event.
#[async_trait]
pub(crate) trait JobStore: Send + Sync {
    /// The device as the inventory has it, credentials included.
    async fn device(&self, name: &str) -> Result<Device, String>;
    /// The image registered as `name`, its file here and checked against its SHA-256.
    async fn local_image(&self, name: &str) -> Result<ImageRecord, String>;
    /// Where the image files the file servers serve are.
    fn image_dir(&self) -> PathBuf;
    /// The live agent of `site` that serves the images (their SHA-256 `checksums`: the system
    /// image, and the kickstart image with it) over TFTP, once it holds them checked; `None`
    /// when the serve nodes serve the site (or this is the agent).
    async fn site_agent(
        &self,
        site: &str,
        checksums: &[String],
        wait: Duration,
    ) -> Result<Option<(String, SocketAddr)>, String>;
    /// Wait until agent `name` of `site` beats again, or no longer counts as live.
    async fn wait_for_agent(&self, site: &str, name: &str, wait: Duration);
    /// Record one event of the device (failures are logged: an event is a report).
    async fn event(
        &self,
        rollout: &str,
        device: &str,
        kind: EventKind,
        step: Option<&str>,
        message: &str,
        data: Option<Value>,
    );
    /// Record step events in order, in one transaction.
    async fn step_events(
        &self,
        rollout: &str,
        device: &str,
        records: &[StepRecord<'_>],
    ) -> Result<(), StoreError>;
    async fn finish_job(
        &self,
        rollout: &str,
        device: &str,
        state: JobState,
        new_version: Option<&str>,
        failure: Option<(&str, &str)>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError>;
    async fn requeue_job(
        &self,
        rollout: &str,
        device: &str,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError>;
    /// Wait while the rollout is paused; false when it must stop (abort, halt or shutdown).
    /// `seen` is the rollout's view as just read by the caller, if it read one: a view that
    /// lets the job go on is not read again.
    async fn may_go_on(&self, rollout: &str, seen: Option<RolloutView>) -> bool;
    /// Wait for an operator request (or, where none is announced, a while).
    async fn changed(&self, rollout: &str);
    async fn rollout_view(&self, rollout: &str) -> Result<RolloutView, StoreError>;
    async fn set_job_origin(
        &self,
        rollout: &str,
        device: &str,
        version: Option<&str>,
        image: Option<&str>,
    ) -> Result<(), StoreError>;
    async fn set_facts(&self, device: &str, facts: &Facts) -> Result<(), StoreError>;
    async fn set_compare_baseline(
        &self,
        rollout: &str,
        device: &str,
        baseline: &str,
    ) -> Result<(), StoreError>;
    async fn compare_baseline(
        &self,
        rollout: &str,
        device: &str,
    ) -> Result<Option<String>, StoreError>;
    async fn record_wait_for_window(
        &self,
        rollout: &str,
        device: &str,
        opens: &str,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError>;
    async fn start_job_attempt(&self, rollout: &str, device: &str) -> Result<(), StoreError>;
    async fn clear_reload_sent(&self, rollout: &str, device: &str) -> Result<(), StoreError>;
    async fn add_transcript(
        &self,
        rollout: &str,
        device: &str,
        lines: &[TranscriptEntry],
    ) -> Result<(), StoreError>;
    async fn set_host_key(&self, device: &str, key: &str) -> Result<(), StoreError>;
    async fn device_events(&self, rollout: &str, device: &str) -> Result<Vec<Event>, StoreError>;
    /// Keep the device's configurations (files of their own on the serve node, mode 0600);
    /// what the step's event says of them, never the text.
    async fn keep_configs(
        &self,
        rollout: &str,
        device: &str,
        moment: Moment,
        running: &str,
        startup: Option<&str>,
    ) -> Result<String, String>;
}

/// One step event as an agent sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireStep {
    pub step: String,
    pub state: Option<StepState>,
    pub kind: EventKind,
    pub message: String,
    #[serde(default)]
    pub transcript: Vec<TranscriptEntry>,
}

impl WireStep {
    pub(crate) fn of(r: &StepRecord<'_>) -> WireStep {
        WireStep {
            step: r.step.to_string(),
            state: r.state,
            kind: r.kind,
            message: r.message.to_string(),
            transcript: r.transcript.to_vec(),
        }
    }

    fn record(&self) -> StepRecord<'_> {
        StepRecord {
            step: &self.step,
            state: self.state,
            kind: self.kind,
            message: &self.message,
            transcript: &self.transcript,
        }
    }
}

/// The event that goes with a job's end, as an agent sends it (always the job's device).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub kind: EventKind,
    pub step: Option<String>,
    pub message: String,
    pub data: Option<Value>,
}

impl WireEvent {
    pub(crate) fn of(e: &NewEvent<'_>) -> WireEvent {
        WireEvent {
            kind: e.kind,
            step: e.step.map(str::to_string),
            message: e.message.to_string(),
            data: e.data.cloned(),
        }
    }

    fn event<'a>(&'a self, device: &'a str) -> NewEvent<'a> {
        NewEvent {
            device: Some(device),
            kind: self.kind,
            step: self.step.as_deref(),
            message: &self.message,
            data: self.data.as_ref(),
        }
    }
}

/// One call of a job run by a site agent, for the job of the route's rollout and device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum JobOp {
    /// The registered image of that name (`JobAnswer::Image`).
    Image {
        name: String,
    },
    Event {
        kind: EventKind,
        step: Option<String>,
        message: String,
        data: Option<Value>,
    },
    Steps {
        records: Vec<WireStep>,
    },
    Finish {
        state: JobState,
        new_version: Option<String>,
        failure: Option<(String, String)>,
        event: WireEvent,
    },
    Requeue {
        event: WireEvent,
    },
    /// The rollout's state and flags, and whether the service takes writes
    /// (`JobAnswer::View`).
    View,
    Origin {
        version: Option<String>,
        image: Option<String>,
    },
    Facts {
        facts: Facts,
    },
    SetBaseline {
        baseline: String,
    },
    /// `JobAnswer::Baseline`.
    Baseline,
    WaitForWindow {
        opens: String,
        message: String,
        data: Value,
    },
    StartAttempt,
    ClearReloadSent,
    Transcript {
        lines: Vec<TranscriptEntry>,
    },
    HostKey {
        key: String,
    },
    /// `JobAnswer::Events`.
    Events,
    /// `JobAnswer::Note`.
    KeepConfigs {
        moment: Moment,
        running: String,
        startup: Option<String>,
    },
    /// Several writes in order, each carried out as its own call would be, up to the first
    /// that fails; the answer is the last one's. An agent sends the writes whose moment does
    /// not matter (an attempt's start, the version before, facts, the host key) with the next
    /// write that does: one call where there were several.
    Batch {
        ops: Vec<JobOp>,
    },
}

impl JobOp {
    /// A write that may wait, as the store makes it in the transaction of the next one.
    fn held_write(&self, rollout: &str, device: &str) -> Option<crate::store::PreWrite> {
        use crate::store::PreWrite;
        let (rollout, device) = (rollout.to_string(), device.to_string());
        Some(match self {
            JobOp::StartAttempt => PreWrite::StartAttempt { rollout, device },
            JobOp::Origin { version, image } => PreWrite::Origin {
                rollout,
                device,
                version: version.clone(),
                image: image.clone(),
            },
            JobOp::Facts { facts } => PreWrite::Facts {
                device,
                facts: facts.clone(),
            },
            JobOp::HostKey { key } => PreWrite::HostKey {
                device,
                key: key.clone(),
            },
            _ => return None,
        })
    }

    /// Whether an agent may send this write with its job's next one rather than at once:
    /// nothing is done to the device on the strength of it in between.
    pub(crate) fn may_wait(&self) -> bool {
        matches!(
            self,
            JobOp::StartAttempt
                | JobOp::Origin { .. }
                | JobOp::Facts { .. }
                | JobOp::HostKey { .. }
        )
    }
}

impl JobOp {
    /// Every op's name, as its `op` tag says it: [`JobOp::index`] indexes this.
    pub(crate) const NAMES: [&'static str; 18] = [
        "image",
        "event",
        "steps",
        "finish",
        "requeue",
        "view",
        "origin",
        "facts",
        "set_baseline",
        "baseline",
        "wait_for_window",
        "start_attempt",
        "clear_reload_sent",
        "transcript",
        "host_key",
        "events",
        "keep_configs",
        "batch",
    ];

    /// Where the op's name is in [`JobOp::NAMES`].
    pub(crate) fn index(&self) -> usize {
        match self {
            JobOp::Image { .. } => 0,
            JobOp::Event { .. } => 1,
            JobOp::Steps { .. } => 2,
            JobOp::Finish { .. } => 3,
            JobOp::Requeue { .. } => 4,
            JobOp::View => 5,
            JobOp::Origin { .. } => 6,
            JobOp::Facts { .. } => 7,
            JobOp::SetBaseline { .. } => 8,
            JobOp::Baseline => 9,
            JobOp::WaitForWindow { .. } => 10,
            JobOp::StartAttempt => 11,
            JobOp::ClearReloadSent => 12,
            JobOp::Transcript { .. } => 13,
            JobOp::HostKey { .. } => 14,
            JobOp::Events => 15,
            JobOp::KeepConfigs { .. } => 16,
            JobOp::Batch { .. } => 17,
        }
    }

    /// Whether the call reads only: those are not fenced.
    pub(crate) fn reads_only(&self) -> bool {
        matches!(
            self,
            JobOp::Image { .. } | JobOp::View | JobOp::Baseline | JobOp::Events
        )
    }
}

/// The answer to a [`JobOp`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum JobAnswer {
    Done,
    Image {
        image: ImageRecord,
    },
    View {
        view: RolloutView,
        /// Why writes fail now, if they do: nothing new starts meanwhile.
        writes_failing: Option<String>,
    },
    Baseline {
        baseline: Option<String>,
    },
    Events {
        events: Vec<Event>,
    },
    Note {
        note: String,
    },
}

/// Why a [`JobOp`] was not carried out.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    /// Refused for what it asks (an unknown image, configurations that cannot be kept).
    Refused(String),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

/// Carry out an agent's call for the job of `rollout` and `device` on this node.
pub(crate) async fn apply(
    ledger: &Ledger,
    rollout: &str,
    device: &str,
    op: JobOp,
) -> Result<JobAnswer, OpError> {
    let store: &dyn JobStore = ledger;
    match op {
        JobOp::Image { name } => {
            let image = ledger
                .images
                .get(&name)
                .await
                .map_err(|e| OpError::Refused(format!("image {name}: {e}")))?;
            Ok(JobAnswer::Image { image })
        }
        JobOp::Event {
            kind,
            step,
            message,
            data,
        } => {
            let ev = ledger
                .db
                .insert_event(
                    rollout,
                    Some(device),
                    kind,
                    step.as_deref(),
                    &message,
                    data.as_ref(),
                )
                .await?;
            ledger.publish(ev);
            Ok(JobAnswer::Done)
        }
        JobOp::Steps { records } => {
            let records: Vec<StepRecord<'_>> = records.iter().map(WireStep::record).collect();
            store.step_events(rollout, device, &records).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Finish {
            state,
            new_version,
            failure,
            event,
        } => {
            store
                .finish_job(
                    rollout,
                    device,
                    state,
                    new_version.as_deref(),
                    failure.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
                    event.event(device),
                )
                .await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Requeue { event } => {
            store
                .requeue_job(rollout, device, event.event(device))
                .await?;
            Ok(JobAnswer::Done)
        }
        JobOp::View => Ok(JobAnswer::View {
            view: ledger.gate_view(rollout).await?,
            writes_failing: ledger.db.writes_failing(),
        }),
        JobOp::Origin { version, image } => {
            store
                .set_job_origin(rollout, device, version.as_deref(), image.as_deref())
                .await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Facts { facts } => {
            store.set_facts(device, &facts).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::SetBaseline { baseline } => {
            store
                .set_compare_baseline(rollout, device, &baseline)
                .await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Baseline => Ok(JobAnswer::Baseline {
            baseline: store.compare_baseline(rollout, device).await?,
        }),
        JobOp::WaitForWindow {
            opens,
            message,
            data,
        } => {
            store
                .record_wait_for_window(rollout, device, &opens, &message, &data)
                .await?;
            Ok(JobAnswer::Done)
        }
        JobOp::StartAttempt => {
            store.start_job_attempt(rollout, device).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::ClearReloadSent => {
            store.clear_reload_sent(rollout, device).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Transcript { lines } => {
            store.add_transcript(rollout, device, &lines).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::HostKey { key } => {
            store.set_host_key(device, &key).await?;
            Ok(JobAnswer::Done)
        }
        JobOp::Events => Ok(JobAnswer::Events {
            events: store.device_events(rollout, device).await?,
        }),
        JobOp::Batch { ops } => {
            for op in &ops {
                if matches!(op, JobOp::Batch { .. }) {
                    return Err(OpError::Refused("a batch holds no batch".into()));
                }
                if op.reads_only() {
                    return Err(OpError::Refused("a batch holds writes only".into()));
                }
            }
            // The writes that may wait go into the transaction of the first write after them:
            // kept with it, or not at all. Those it did not take (it began none), and those
            // with no write after them, are made on their own.
            let mut answer = JobAnswer::Done;
            let mut held = Vec::new();
            for op in ops {
                if let Some(w) = op.held_write(rollout, device) {
                    held.push(w);
                    continue;
                }
                let writes = std::cell::RefCell::new(std::mem::take(&mut held));
                let (done, left) = crate::store::PRE_WRITES
                    .scope(writes, async {
                        let done = Box::pin(apply(ledger, rollout, device, op)).await;
                        (done, crate::store::take_pre_writes())
                    })
                    .await;
                answer = done?;
                held = left;
            }
            for w in held {
                ledger.db.write_held(&w).await?;
            }
            Ok(answer)
        }
        JobOp::KeepConfigs {
            moment,
            running,
            startup,
        } => {
            let note = store
                .keep_configs(rollout, device, moment, &running, startup.as_deref())
                .await
                .map_err(OpError::Refused)?;
            Ok(JobAnswer::Note { note })
        }
    }
}

#[async_trait]
impl JobStore for Ledger {
    async fn device(&self, name: &str) -> Result<Device, String> {
        self.db
            .device_by_name(name)
            .await
            .map_err(|e| format!("device {name} is no longer in the inventory ({e})"))
    }

    async fn local_image(&self, name: &str) -> Result<ImageRecord, String> {
        let image = self
            .images
            .get(name)
            .await
            .map_err(|e| format!("image {name}: {e}"))?;
        // The file servers serve what is on this node: fetched by SHA-256 from another node
        // when it was uploaded there, and checked against its SHA-256 before any device
        // copies it.
        self.images
            .ensure_local(&image, true)
            .await
            .map_err(|e| format!("image {name}: {e}"))?;
        Ok(image)
    }

    fn image_dir(&self) -> PathBuf {
        self.images.dir().to_path_buf()
    }

    async fn site_agent(
        &self,
        site: &str,
        checksums: &[String],
        wait: Duration,
    ) -> Result<Option<(String, SocketAddr)>, String> {
        let deadline = Instant::now() + wait;
        loop {
            let nodes = self
                .db
                .nodes()
                .await
                .map_err(|e| format!("cannot read the site agents: {e}"))?;
            let agents: Vec<(String, crate::api::agents::AgentDetail)> = nodes
                .into_iter()
                .filter(|n| n.site.as_deref() == Some(site))
                .filter_map(|n| {
                    let d = crate::api::agents::AgentDetail::of(&n)?;
                    (crate::api::agents::is_live(n.heartbeat_age_ms, d.heartbeat_seconds)
                        && d.tftp.is_some())
                    .then_some((n.name, d))
                })
                .collect();
            if agents.is_empty() {
                return Ok(None);
            }
            if let Some((name, addr)) = agents.iter().find_map(|(name, d)| {
                let addr = d.tftp.as_deref()?.parse().ok()?;
                checksums
                    .iter()
                    .all(|want| d.images.iter().any(|s| s == want))
                    .then(|| (name.clone(), addr))
            }) {
                return Ok(Some((name, addr)));
            }
            if Instant::now() >= deadline || self.shutdown().is_requested() {
                let names: Vec<&str> = agents.iter().map(|(n, _)| n.as_str()).collect();
                return Err(format!(
                    "the agent of site {site} ({}) has not fetched and checked the image{} within {}s",
                    names.join(", "),
                    if checksums.len() > 1 { "s" } else { "" },
                    wait.as_secs()
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.shutdown().requested() => {}
            }
        }
    }

    async fn wait_for_agent(&self, site: &str, name: &str, wait: Duration) {
        let since = Instant::now();
        let deadline = since + wait;
        while Instant::now() < deadline && !self.shutdown().is_requested() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.shutdown().requested() => return,
            }
            let Ok(nodes) = self.db.nodes().await else {
                continue;
            };
            let Some(agent) = nodes.into_iter().find(|n| {
                n.kind == crate::store::leases::NodeKind::Agent
                    && n.name == name
                    && n.site.as_deref() == Some(site)
            }) else {
                return;
            };
            let interval =
                crate::api::agents::AgentDetail::of(&agent).map_or(5, |d| d.heartbeat_seconds);
            let waited = i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX);
            if agent.heartbeat_age_ms < waited
                || !crate::api::agents::is_live(agent.heartbeat_age_ms, interval)
            {
                return;
            }
        }
    }

    async fn event(
        &self,
        rollout: &str,
        device: &str,
        kind: EventKind,
        step: Option<&str>,
        message: &str,
        data: Option<Value>,
    ) {
        Ledger::event(self, rollout, Some(device), kind, step, message, data).await
    }

    async fn step_events(
        &self,
        rollout: &str,
        device: &str,
        records: &[StepRecord<'_>],
    ) -> Result<(), StoreError> {
        Ledger::step_events(self, rollout, device, records).await
    }

    async fn finish_job(
        &self,
        rollout: &str,
        device: &str,
        state: JobState,
        new_version: Option<&str>,
        failure: Option<(&str, &str)>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        Ledger::finish_job(self, rollout, device, state, new_version, failure, event).await
    }

    async fn requeue_job(
        &self,
        rollout: &str,
        device: &str,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        Ledger::requeue_job(self, rollout, device, event).await
    }

    async fn may_go_on(&self, rollout: &str, seen: Option<RolloutView>) -> bool {
        Ledger::may_go_on_seen(self, rollout, seen).await
    }

    async fn changed(&self, rollout: &str) {
        Ledger::changed(self, rollout).await
    }

    async fn rollout_view(&self, rollout: &str) -> Result<RolloutView, StoreError> {
        self.gate_view(rollout).await
    }

    async fn set_job_origin(
        &self,
        rollout: &str,
        device: &str,
        version: Option<&str>,
        image: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db
            .set_job_origin(rollout, device, version, image)
            .await
    }

    async fn set_facts(&self, device: &str, facts: &Facts) -> Result<(), StoreError> {
        self.db.set_facts(device, facts).await
    }

    async fn set_compare_baseline(
        &self,
        rollout: &str,
        device: &str,
        baseline: &str,
    ) -> Result<(), StoreError> {
        self.db
            .set_job_compare_baseline(rollout, device, baseline)
            .await
    }

    async fn compare_baseline(
        &self,
        rollout: &str,
        device: &str,
    ) -> Result<Option<String>, StoreError> {
        self.db.job_compare_baseline(rollout, device).await
    }

    async fn record_wait_for_window(
        &self,
        rollout: &str,
        device: &str,
        opens: &str,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        let ev = self
            .db
            .record_wait_for_window(rollout, device, opens, message, data)
            .await?;
        self.publish(ev);
        Ok(())
    }

    async fn start_job_attempt(&self, rollout: &str, device: &str) -> Result<(), StoreError> {
        self.db.start_job_attempt(rollout, device).await
    }

    async fn clear_reload_sent(&self, rollout: &str, device: &str) -> Result<(), StoreError> {
        self.db.clear_reload_sent(rollout, device).await
    }

    async fn add_transcript(
        &self,
        rollout: &str,
        device: &str,
        lines: &[TranscriptEntry],
    ) -> Result<(), StoreError> {
        self.db.add_transcript(rollout, device, lines).await
    }

    async fn set_host_key(&self, device: &str, key: &str) -> Result<(), StoreError> {
        self.db.set_host_key(device, Some(key)).await
    }

    async fn device_events(&self, rollout: &str, device: &str) -> Result<Vec<Event>, StoreError> {
        self.db.device_events(rollout, device).await
    }

    async fn keep_configs(
        &self,
        rollout: &str,
        device: &str,
        moment: Moment,
        running: &str,
        startup: Option<&str>,
    ) -> Result<String, String> {
        use crate::configs::{self, ConfigKind};
        let db = &self.db;
        let said = |r: &configs::BackupRecord| {
            format!(
                "{} configuration kept ({} bytes, sha256 {})",
                r.kind.as_str(),
                r.size,
                r.sha256.get(..12).unwrap_or(&r.sha256)
            )
        };
        let mut texts = vec![(ConfigKind::Running, running)];
        texts.extend(startup.map(|s| (ConfigKind::Startup, s)));
        let kept = configs::keep(db, rollout, device, moment, &texts)
            .await
            .map_err(|e| e.to_string())?;
        let mut note = kept.iter().map(said).collect::<Vec<_>>().join("; ");
        if moment == Moment::After {
            match configs::rollout_diff(db, device, rollout).await {
                Ok(Some((_, _, d))) if d.too_different => note
                    .push_str("; the running configuration changed in many lines since before"),
                Ok(Some((_, _, d))) if d.added + d.removed == 0 => note.push_str(
                    "; the running configuration is the same as before the upgrade (volatile lines aside)",
                ),
                Ok(Some((_, _, d))) => note.push_str(&format!(
                    "; the running configuration changed since before: {} line(s) added, {} removed (see `fleetup device configs {device} --diff`)",
                    d.added, d.removed
                )),
                Ok(None) => note.push_str("; no backup from before to compare with"),
                Err(e) => note.push_str(&format!("; cannot compare with the one before: {e}")),
            }
        }
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_counted_under_the_name_its_tag_says() {
        let event = WireEvent {
            kind: EventKind::Message,
            step: None,
            message: String::new(),
            data: None,
        };
        let ops = [
            JobOp::Image { name: "i".into() },
            JobOp::Event {
                kind: EventKind::Message,
                step: None,
                message: String::new(),
                data: None,
            },
            JobOp::Steps {
                records: Vec::new(),
            },
            JobOp::Finish {
                state: JobState::Succeeded,
                new_version: None,
                failure: None,
                event: event.clone(),
            },
            JobOp::Requeue { event },
            JobOp::View,
            JobOp::Origin {
                version: None,
                image: None,
            },
            JobOp::Facts {
                facts: Facts::default(),
            },
            JobOp::SetBaseline {
                baseline: String::new(),
            },
            JobOp::Baseline,
            JobOp::WaitForWindow {
                opens: String::new(),
                message: String::new(),
                data: Value::Null,
            },
            JobOp::StartAttempt,
            JobOp::ClearReloadSent,
            JobOp::Transcript { lines: Vec::new() },
            JobOp::HostKey { key: String::new() },
            JobOp::Events,
            JobOp::KeepConfigs {
                moment: Moment::Before,
                running: String::new(),
                startup: None,
            },
            JobOp::Batch {
                ops: vec![JobOp::StartAttempt],
            },
        ];
        assert_eq!(ops.len(), JobOp::NAMES.len());
        let mut seen = std::collections::BTreeSet::new();
        for op in &ops {
            let json = serde_json::to_value(op).expect("an op serializes");
            assert_eq!(
                json["op"].as_str(),
                Some(JobOp::NAMES[op.index()]),
                "{op:?}"
            );
            seen.insert(op.index());
        }
        assert_eq!(seen.len(), ops.len(), "each op has an index of its own");
        for op in &ops {
            assert_eq!(
                op.may_wait(),
                op.held_write("r1", "sw1").is_some(),
                "an op that may wait is one the store can hold back: {op:?}"
            );
        }
    }
}

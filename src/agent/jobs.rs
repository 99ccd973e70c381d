//! An agent that drives its site's devices (`fleetup agent --drive`, with an agent token of its
//! site or an admin token). The
//! node that leads a rollout hands the jobs of the site's devices to the site
//! (`crate::rollout::handoff`); the agent claims them (`POST /api/v1/agents/jobs/claim`), each
//! under a lease that its heartbeats renew, and runs each with the same code a serve node runs
//! (`crate::rollout::job`), recording every step through the API before it runs
//! (`POST /api/v1/agents/jobs/{rollout}/{device}`), fenced by the epoch of its claim. The
//! device copies the image from the agent's own file servers (or the agent pushes it).
//!
//! When the agent dies, its leases lapse and an agent of the site (it, back, or another)
//! claims the jobs again and resumes each from its recorded step; a reload recorded as sent
//! is never sent again. A job whose lease the service says is lost stops at once, and
//! anything it still tried to record would be refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::configs::Moment;
use crate::device::TranscriptEntry;
use crate::images::ImageRecord;
use crate::images::cache::{Cache, Source, Wanted};
use crate::inventory::{CredentialSpec, Device, DeviceName, DeviceSpec, Facts, Platform};
use crate::rollout::job::{self, JobContext, JobEnv};
use crate::rollout::job_store::{JobAnswer, JobOp, JobStore, WireEvent, WireStep};
use crate::rollout::model::{DeviceJob, Event, EventKind, JobState, RolloutId};
use crate::rollout::policy::{self, Proceed, RolloutView};
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::store::rollouts::{NewEvent, StepRecord};
use crate::store::runners::HeldJob;

/// An agent's request for jobs of its site.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub site: String,
    /// At most this many jobs (1 to 1000).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "super::whole")]
    pub max: u64,
    /// Seconds between its heartbeats: a claim lapses after three without one.
    #[schema(minimum = 1, maximum = 300)]
    #[serde(deserialize_with = "super::whole")]
    pub heartbeat_seconds: u64,
}

/// The jobs an agent claimed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobTickets {
    pub jobs: Vec<JobTicket>,
}

/// One claimed job, with what running it needs.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobTicket {
    pub rollout: String,
    /// The claim's epoch: every call for the job carries it.
    pub epoch: i64,
    pub job: DeviceJob,
    /// The rollout's playbook as submitted.
    pub playbook: String,
    pub device: DeviceTicket,
}

/// A device as a driving agent needs it, credentials included: inline secrets as stored, and
/// the names of the environment variables that hold the others (read in the agent's own
/// environment).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceTicket {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub platform: Platform,
    pub site: Option<String>,
    pub model: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub enable_secret: Option<String>,
    pub enable_secret_env: Option<String>,
    pub host_key: Option<String>,
    pub facts: Facts,
}

impl std::fmt::Debug for DeviceTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTicket")
            .field("name", &self.name)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl DeviceTicket {
    pub(crate) fn of(d: &Device) -> DeviceTicket {
        let c = &d.spec.credentials;
        DeviceTicket {
            name: d.name().to_string(),
            host: d.spec.host.clone(),
            port: d.spec.port,
            platform: d.spec.platform,
            site: d.spec.site.clone(),
            model: d.spec.model.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            password_env: c.password_env.clone(),
            enable_secret: c.enable_secret.clone(),
            enable_secret_env: c.enable_secret_env.clone(),
            host_key: d.host_key.clone(),
            facts: d.facts.clone(),
        }
    }

    fn device(&self) -> Result<Device, String> {
        let name = DeviceName::parse(&self.name).map_err(|e| e.to_string())?;
        Ok(Device {
            id: 0,
            spec: DeviceSpec {
                name,
                host: self.host.clone(),
                port: self.port,
                platform: self.platform,
                site: self.site.clone(),
                model: self.model.clone(),
                groups: Vec::new(),
                tags: Vec::new(),
                credentials: CredentialSpec {
                    username: self.username.clone(),
                    password: self.password.clone(),
                    password_env: self.password_env.clone(),
                    enable_secret: self.enable_secret.clone(),
                    enable_secret_env: self.enable_secret_env.clone(),
                },
            },
            host_key: self.host_key.clone(),
            facts: self.facts.clone(),
            created_at: String::new(),
            updated_at: String::new(),
            source: None,
        })
    }
}

/// One call of a claimed job.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobCall {
    /// The epoch of the claim.
    #[serde(deserialize_with = "super::signed")]
    pub epoch: i64,
    /// What to read or record (`op`: `steps`, `event`, `finish`, `view`, ...; see
    /// docs/api.md).
    #[schema(value_type = Object)]
    pub(crate) op: JobOp,
}

/// How the agent reaches the service.
#[derive(Clone)]
pub(crate) struct Service {
    pub client: reqwest::Client,
    pub server: reqwest::Url,
    pub token: String,
}

impl Service {
    /// POST `body` to `path` of the service with the agent's token; the answer, or why not.
    pub(crate) async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, String> {
        let url = format!("{}{path}", self.server.as_str().trim_end_matches('/'));
        self.post_to(&url, body).await
    }

    /// The URL of the calls of one claimed job.
    fn job_url(&self, rollout: &str, device: &str) -> Result<reqwest::Url, String> {
        let mut url = self
            .server
            .join("api/v1/agents/jobs/")
            .map_err(|e| e.to_string())?;
        url.path_segments_mut()
            .map_err(|()| "the service's URL cannot take a path".to_string())?
            .pop_if_empty()
            .push(rollout)
            .push(device);
        Ok(url)
    }

    async fn post_to<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: &impl Serialize,
    ) -> Result<T, String> {
        let resp = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| crate::http_client::error_chain(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("HTTP {status}: {}", body.trim()));
        }
        resp.json()
            .await
            .map_err(|e| format!("unreadable answer: {}", crate::http_client::error_chain(&e)))
    }
}

/// How long a call retries when the service cannot be reached at all.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// A held job by (rollout, device): the epoch of its claim and the way to stop it.
type HeldMap = HashMap<(String, String), (i64, tokio_util::sync::CancellationToken)>;

/// The jobs this agent holds, each with the way to stop it.
#[derive(Clone, Default)]
pub(crate) struct Held(Arc<Mutex<HeldMap>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeldMap> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The jobs held now, for the heartbeat (which renews their leases).
    pub(crate) fn list(&self) -> Vec<HeldJob> {
        let mut jobs: Vec<HeldJob> = self
            .lock()
            .iter()
            .map(|((rollout, device), (epoch, _))| HeldJob {
                rollout: rollout.clone(),
                device: device.clone(),
                epoch: *epoch,
            })
            .collect();
        jobs.sort_by(|a, b| (&a.rollout, &a.device).cmp(&(&b.rollout, &b.device)));
        jobs
    }

    /// Stop the jobs whose lease the service says this agent lost.
    pub(crate) fn lose(&self, lost: &[HeldJob]) {
        let held = self.lock();
        for l in lost {
            if let Some((epoch, stop)) = held.get(&(l.rollout.clone(), l.device.clone()))
                && *epoch == l.epoch
            {
                tracing::warn!(rollout = %l.rollout, device = %l.device, "the service took this job back; stopping it");
                stop.cancel();
            }
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What a driving agent runs its jobs with.
pub(crate) struct Driver {
    pub service: Service,
    pub name: String,
    pub site: String,
    pub max_jobs: usize,
    pub heartbeat_seconds: u64,
    pub cache: Arc<Cache>,
    pub images_dir: PathBuf,
    /// The address the site's devices reach the agent's file servers at.
    pub reach: std::net::IpAddr,
    /// The agent's file servers, with the FTP accounts and grants its jobs issue.
    pub servers: crate::rollout::FileServers,
    pub transfers: crate::transfers::Transfers,
    pub held: Held,
    /// The rollouts' state and flags as last read, shared by the jobs of each rollout.
    pub views: Views,
    /// The image records as last read, shared by every job.
    pub images: ImageRecords,
    pub shutdown: Shutdown,
}

/// A rollout's state and flags as last read, when, and why writes fail if they did.
type ViewRead = Option<(tokio::time::Instant, RolloutView, Option<String>)>;

/// The last read of each rollout's state and flags, one for all the rollout's jobs on this
/// agent: hundreds of jobs each ask before every step, and one read a moment old
/// ([`VIEW_FRESH`]) answers them all. A read in progress is waited for, not repeated.
#[derive(Clone, Default)]
pub(crate) struct Views(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<ViewRead>>>>>);

impl Views {
    /// The read of `rollout` its jobs share.
    fn of(&self, rollout: &str) -> Arc<tokio::sync::Mutex<ViewRead>> {
        let mut views = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reads of rollouts whose jobs all ended here go once they are a while old.
        views.retain(|id, read| {
            id == rollout
                || Arc::strong_count(read) > 1
                || read.try_lock().map_or(true, |r| {
                    r.as_ref()
                        .is_some_and(|(at, _, _)| at.elapsed() < VIEW_KEPT)
                })
        });
        views.entry(rollout.to_string()).or_default().clone()
    }
}

/// How long the read of a rollout none of whose jobs runs here is kept.
const VIEW_KEPT: Duration = Duration::from_secs(60);

/// The registered images as last read from the service, by name, shared by the agent's jobs:
/// the jobs of one rollout copy the same one or two images.
#[derive(Clone, Default)]
pub(crate) struct ImageRecords(Arc<Mutex<HashMap<String, (tokio::time::Instant, ImageRecord)>>>);

/// How long an image record read from the service answers the agent's jobs.
const IMAGE_FRESH: Duration = Duration::from_secs(10);

impl ImageRecords {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (tokio::time::Instant, ImageRecord)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The record of `name` if it was read within [`IMAGE_FRESH`].
    fn fresh(&self, name: &str) -> Option<ImageRecord> {
        let mut records = self.lock();
        records.retain(|_, (at, _)| at.elapsed() < IMAGE_FRESH);
        records.get(name).map(|(_, r)| r.clone())
    }

    fn keep(&self, name: &str, record: &ImageRecord) {
        self.lock().insert(
            name.to_string(),
            (tokio::time::Instant::now(), record.clone()),
        );
    }
}

impl Driver {
    /// Claim the site's jobs while there is room, and run each; until shutdown.
    pub(crate) async fn run(self: Arc<Self>, allowed: tokio::sync::watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let room = self.max_jobs.saturating_sub(self.held.len());
            if room > 0 && *allowed.borrow() {
                match self.claim(room).await {
                    Ok(tickets) => {
                        failing = false;
                        for t in tickets {
                            self.start(t);
                        }
                    }
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cannot claim the site's jobs; trying again");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.shutdown.requested() => return,
            }
        }
    }

    async fn claim(&self, room: usize) -> Result<Vec<JobTicket>, String> {
        let req = ClaimRequest {
            name: self.name.clone(),
            site: self.site.clone(),
            max: u64::try_from(room.min(1000)).unwrap_or(1000),
            heartbeat_seconds: self.heartbeat_seconds,
        };
        let tickets: JobTickets = self.service.post("/api/v1/agents/jobs/claim", &req).await?;
        Ok(tickets.jobs)
    }

    fn start(self: &Arc<Self>, t: JobTicket) {
        let stop = self.shutdown.token.child_token();
        let key = (t.rollout.clone(), t.job.device.clone());
        self.held
            .lock()
            .insert(key.clone(), (t.epoch, stop.clone()));
        tracing::info!(rollout = %t.rollout, device = %t.job.device, epoch = t.epoch, "claimed a device job of the site");
        let me = self.clone();
        self.shutdown.tasks.spawn(async move {
            me.run_job(t, stop).await;
            me.held.lock().remove(&key);
        });
    }

    async fn run_job(&self, t: JobTicket, stop: tokio_util::sync::CancellationToken) {
        let device = match t.device.device() {
            Ok(d) => d,
            Err(e) => {
                return self
                    .cannot_run(&t, &format!("the device's record does not read here ({e})"))
                    .await;
            }
        };
        let mut playbook = match crate::rollout::parse_playbook(&t.playbook) {
            Ok(pb) => pb,
            Err(e) => {
                let why = format!(
                    "the playbook does not parse in agent version {} ({e}); upgrade the agent to the service's version",
                    env!("CARGO_PKG_VERSION")
                );
                return self.cannot_run(&t, &why).await;
            }
        };
        // The site's devices copy from this agent, unless the playbook names a server for
        // the site.
        let named = playbook
            .transfer
            .sites
            .get(&self.site)
            .is_some_and(|s| s.server.is_some());
        if !named {
            playbook.transfer.server = Some(self.reach.to_string());
        }
        let store = RemoteStore {
            service: self.service.clone(),
            rollout: t.rollout.clone(),
            device: t.job.device.clone(),
            epoch: t.epoch,
            ticket: device,
            cache: self.cache.clone(),
            images_dir: self.images_dir.clone(),
            agent: self.name.clone(),
            fetch_wait: playbook.strategy.timeouts.copy.duration(),
            stop: stop.clone(),
            view: self.views.of(&t.rollout),
            deferred: Mutex::default(),
            images: self.images.clone(),
        };
        let ctx = JobContext {
            store: Arc::new(store),
            env: JobEnv {
                transfers: self.transfers.clone(),
                servers: self.servers.clone(),
                metrics: crate::metrics::RolloutMetrics::default(),
                clock: crate::rollout::clock::Clock::System,
                shutdown: Shutdown {
                    token: stop,
                    tasks: self.shutdown.tasks.clone(),
                },
            },
            rollout_id: RolloutId::new(&t.rollout),
            playbook,
        };
        let name = t.job.device.clone();
        let outcome = job::run(&ctx, t.job).await;
        tracing::info!(rollout = %t.rollout, device = %name, ?outcome, "device job ended here");
    }
}

impl Driver {
    /// End a claimed job this agent cannot run as failed, saying why, rather than claim it
    /// again and again: nothing was done to the device.
    async fn cannot_run(&self, t: &JobTicket, why: &str) {
        let message = format!(
            "configuration: agent {} cannot run this job: {why}",
            self.name
        );
        tracing::error!(rollout = %t.rollout, device = %t.job.device, "{message}");
        let call = JobCall {
            epoch: t.epoch,
            op: JobOp::Finish {
                state: JobState::Failed,
                new_version: None,
                failure: Some(("configuration".into(), message.clone())),
                event: WireEvent {
                    kind: EventKind::DeviceFailed,
                    step: None,
                    message,
                    data: Some(serde_json::json!({"reason": "configuration", "agent": self.name})),
                },
            },
        };
        let sent = match self.service.job_url(&t.rollout, &t.job.device) {
            Ok(url) => self.service.post_to::<JobAnswer>(url.as_str(), &call).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::error!(rollout = %t.rollout, device = %t.job.device, error = %e, "cannot record that this agent cannot run the job");
        }
    }
}

/// A claimed job's store: the service's API, every call carrying the claim's epoch.
struct RemoteStore {
    service: Service,
    rollout: String,
    device: String,
    epoch: i64,
    ticket: Device,
    cache: Arc<Cache>,
    images_dir: PathBuf,
    agent: String,
    /// How long an image may take to become fetchable (the playbook's copy timeout).
    fetch_wait: Duration,
    /// Cancelled when the job must stop (shutdown, or its lease was lost).
    stop: tokio_util::sync::CancellationToken,
    /// The rollout's state and flags as last read, and when, shared with the rollout's other
    /// jobs here ([`Views`]): each step asks twice (paused? may it go on?), and one answer
    /// serves both, and every job of the rollout.
    view: Arc<tokio::sync::Mutex<ViewRead>>,
    /// Writes that go with the job's next one ([`JobOp::may_wait`]), in order.
    deferred: Mutex<Vec<JobOp>>,
    images: ImageRecords,
}

/// How long a read of the rollout's state and flags serves a job on an agent: a pause or an
/// abort reaches it at its next step at most this much later than on a serve node.
const VIEW_FRESH: Duration = Duration::from_millis(500);

impl RemoteStore {
    /// The rollout's state and flags, and why writes fail if they do.
    async fn view(&self) -> Result<(RolloutView, Option<String>), StoreError> {
        // Held while this job reads, so that the rollout's other jobs wait for its answer
        // rather than ask too.
        let mut last = tokio::select! {
            last = self.view.lock() => last,
            _ = self.stop.cancelled() => return Err(StoreError::Remote("stopped".into())),
        };
        if let Some((at, view, failing)) = last.clone()
            && at.elapsed() < VIEW_FRESH
        {
            return Ok((view, failing));
        }
        match self.call(JobOp::View).await? {
            JobAnswer::View {
                view,
                writes_failing,
            } => {
                *last = Some((tokio::time::Instant::now(), view, writes_failing.clone()));
                Ok((view, writes_failing))
            }
            a => Err(unexpected(&a)),
        }
    }

    async fn call(&self, op: JobOp) -> Result<JobAnswer, StoreError> {
        // A write takes the writes deferred before it along, ahead of it.
        let op = if op.reads_only() {
            op
        } else {
            let mut ops = std::mem::take(
                &mut *self
                    .deferred
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if ops.is_empty() {
                op
            } else {
                ops.push(op);
                JobOp::Batch { ops }
            }
        };
        let url = self
            .service
            .job_url(&self.rollout, &self.device)
            .map_err(StoreError::Remote)?;
        let body = JobCall {
            epoch: self.epoch,
            op,
        };
        let deadline = tokio::time::Instant::now() + UNREACHABLE_FOR;
        let resp = loop {
            let sent = self
                .service
                .client
                .post(url.clone())
                .bearer_auth(&self.service.token)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(resp) => break resp,
                // Never sent: the service was not reached. Anything else may have been
                // carried out, and is not sent twice.
                Err(e) if e.is_connect() && tokio::time::Instant::now() < deadline => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.stop.cancelled() => return Err(StoreError::Remote("stopped".into())),
                    }
                }
                Err(e) => return Err(StoreError::Remote(crate::http_client::error_chain(&e))),
            }
        };
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| {
                StoreError::Remote(format!(
                    "unreadable answer: {}",
                    crate::http_client::error_chain(&e)
                ))
            });
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Err(match (status.as_u16(), code.as_str()) {
            (409, "fenced") => StoreError::Fenced(message),
            (404, _) => StoreError::NotFound,
            (503, "storage_full") => StoreError::Storage(message),
            _ => StoreError::Remote(format!("HTTP {status}: {message}")),
        })
    }

    async fn done(&self, op: JobOp) -> Result<(), StoreError> {
        self.call(op).await.map(|_| ())
    }

    /// A write whose moment does not matter: sent with the job's next write, in one call.
    fn defer(&self, op: JobOp) -> Result<(), StoreError> {
        debug_assert!(op.may_wait());
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(op);
        Ok(())
    }
}

fn unexpected(a: &JobAnswer) -> StoreError {
    StoreError::Remote(format!("unexpected answer {a:?}"))
}

#[async_trait]
impl JobStore for RemoteStore {
    async fn device(&self, _name: &str) -> Result<Device, String> {
        Ok(self.ticket.clone())
    }

    async fn local_image(&self, name: &str) -> Result<ImageRecord, String> {
        let image = match self.images.fresh(name) {
            Some(image) => image,
            None => match self.call(JobOp::Image { name: name.into() }).await {
                Ok(JobAnswer::Image { image }) => {
                    self.images.keep(name, &image);
                    image
                }
                Ok(a) => return Err(unexpected(&a).to_string()),
                Err(e) => return Err(format!("image {name}: {e}")),
            },
        };
        let want = Wanted {
            file_name: image.file_name.to_string(),
            sha256: image.sha256.clone(),
            size: image.size,
        };
        let source = Source {
            url: crate::images::blob_url(self.service.server.as_str(), &image.sha256),
            token: Some(self.service.token.clone()),
        };
        // The node this agent reports to may still be fetching it from the node it was
        // uploaded to: try again, up to the copy timeout.
        let deadline = tokio::time::Instant::now() + self.fetch_wait;
        loop {
            match self
                .cache
                .ensure(&want, std::slice::from_ref(&source), &self.agent)
                .await
            {
                Ok(_) => return Ok(image),
                Err(e) if tokio::time::Instant::now() >= deadline || self.stop.is_cancelled() => {
                    return Err(format!("image {name}: {e}"));
                }
                Err(e) => {
                    tracing::debug!(image = name, error = %e, "image not fetched yet; trying again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    fn image_dir(&self) -> PathBuf {
        self.images_dir.clone()
    }

    async fn site_agent(
        &self,
        _site: &str,
        _checksums: &[String],
        _wait: Duration,
    ) -> Result<Option<(String, SocketAddr)>, String> {
        // This is the site's agent: its own file server serves the copy.
        Ok(None)
    }

    async fn wait_for_agent(&self, _site: &str, _name: &str, _wait: Duration) {}

    async fn event(
        &self,
        _rollout: &str,
        device: &str,
        kind: EventKind,
        step: Option<&str>,
        message: &str,
        data: Option<Value>,
    ) {
        let op = JobOp::Event {
            kind,
            step: step.map(str::to_string),
            message: message.to_string(),
            data,
        };
        if let Err(e) = self.done(op).await {
            tracing::error!(device, error = %e, "cannot record an event");
        }
    }

    async fn step_events(
        &self,
        _rollout: &str,
        _device: &str,
        records: &[StepRecord<'_>],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.iter().map(WireStep::of).collect();
        self.done(JobOp::Steps { records }).await
    }

    async fn finish_job(
        &self,
        _rollout: &str,
        _device: &str,
        state: JobState,
        new_version: Option<&str>,
        failure: Option<(&str, &str)>,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        self.done(JobOp::Finish {
            state,
            new_version: new_version.map(str::to_string),
            failure: failure.map(|(r, m)| (r.to_string(), m.to_string())),
            event: WireEvent::of(&event),
        })
        .await
    }

    async fn requeue_job(
        &self,
        _rollout: &str,
        _device: &str,
        event: NewEvent<'_>,
    ) -> Result<(), StoreError> {
        self.done(JobOp::Requeue {
            event: WireEvent::of(&event),
        })
        .await
    }

    async fn may_go_on(&self, _rollout: &str, _seen: Option<RolloutView>) -> bool {
        // The view is kept for a moment (`VIEW_FRESH`): one just read is not asked again.
        // A service that cannot be asked for a while stops the job: nothing starts unrecorded.
        let mut unanswered = 0;
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            match self.view().await {
                Ok((view, writes_failing)) => {
                    unanswered = 0;
                    if writes_failing.is_some() {
                        return false;
                    }
                    match policy::proceed(view, false) {
                        Proceed::Go => return true,
                        Proceed::Stop => return false,
                        Proceed::Wait => {}
                    }
                }
                Err(StoreError::Fenced(_)) | Err(StoreError::NotFound) => return false,
                Err(e) => {
                    unanswered += 1;
                    if unanswered >= 3 {
                        tracing::warn!(device = %self.device, error = %e, "the service does not answer; stopping this device at a safe point");
                        return false;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.stop.cancelled() => return false,
            }
        }
    }

    async fn changed(&self, _rollout: &str) {
        // The service announces nothing to an agent: look again a while later.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    async fn rollout_view(&self, _rollout: &str) -> Result<RolloutView, StoreError> {
        Ok(self.view().await?.0)
    }

    async fn set_job_origin(
        &self,
        _rollout: &str,
        _device: &str,
        version: Option<&str>,
        image: Option<&str>,
    ) -> Result<(), StoreError> {
        self.defer(JobOp::Origin {
            version: version.map(str::to_string),
            image: image.map(str::to_string),
        })
    }

    async fn set_facts(&self, _device: &str, facts: &Facts) -> Result<(), StoreError> {
        self.defer(JobOp::Facts {
            facts: facts.clone(),
        })
    }

    async fn set_compare_baseline(
        &self,
        _rollout: &str,
        _device: &str,
        baseline: &str,
    ) -> Result<(), StoreError> {
        self.done(JobOp::SetBaseline {
            baseline: baseline.to_string(),
        })
        .await
    }

    async fn compare_baseline(
        &self,
        _rollout: &str,
        _device: &str,
    ) -> Result<Option<String>, StoreError> {
        match self.call(JobOp::Baseline).await? {
            JobAnswer::Baseline { baseline } => Ok(baseline),
            a => Err(unexpected(&a)),
        }
    }

    async fn record_wait_for_window(
        &self,
        _rollout: &str,
        _device: &str,
        opens: &str,
        message: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        self.done(JobOp::WaitForWindow {
            opens: opens.to_string(),
            message: message.to_string(),
            data: data.clone(),
        })
        .await
    }

    async fn start_job_attempt(&self, _rollout: &str, _device: &str) -> Result<(), StoreError> {
        self.defer(JobOp::StartAttempt)
    }

    async fn clear_reload_sent(&self, _rollout: &str, _device: &str) -> Result<(), StoreError> {
        self.done(JobOp::ClearReloadSent).await
    }

    async fn add_transcript(
        &self,
        _rollout: &str,
        _device: &str,
        lines: &[TranscriptEntry],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.done(JobOp::Transcript {
            lines: lines.to_vec(),
        })
        .await
    }

    async fn set_host_key(&self, _device: &str, key: &str) -> Result<(), StoreError> {
        self.defer(JobOp::HostKey {
            key: key.to_string(),
        })
    }

    async fn device_events(&self, _rollout: &str, _device: &str) -> Result<Vec<Event>, StoreError> {
        match self.call(JobOp::Events).await? {
            JobAnswer::Events { events } => Ok(events),
            a => Err(unexpected(&a)),
        }
    }

    async fn keep_configs(
        &self,
        _rollout: &str,
        _device: &str,
        moment: Moment,
        running: &str,
        startup: Option<&str>,
    ) -> Result<String, String> {
        let op = JobOp::KeepConfigs {
            moment,
            running: running.to_string(),
            startup: startup.map(str::to_string),
        };
        match self.call(op).await {
            Ok(JobAnswer::Note { note }) => Ok(note),
            Ok(a) => Err(unexpected(&a).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_jobs_of_one_rollout_share_one_read_of_its_state() {
        let views = Views::default();
        let a = views.of("r1");
        let b = views.of("r1");
        assert!(Arc::ptr_eq(&a, &b), "two jobs of r1 share the read");
        let other = views.of("r2");
        assert!(!Arc::ptr_eq(&a, &other), "r2 has a read of its own");
        let view = RolloutView {
            state: crate::rollout::model::RolloutState::Running,
            paused: true,
            abort_requested: false,
        };
        *a.lock().await = Some((tokio::time::Instant::now(), view, None));
        let seen = b.lock().await.clone().map(|(_, v, _)| v);
        assert_eq!(seen, Some(view), "what one job read, the other sees");
        // Once no job of r2 holds its read and it was never made, it goes at the next look.
        drop(other);
        views.of("r1");
        let kept: Vec<String> = views.0.lock().unwrap().keys().cloned().collect();
        assert_eq!(kept, ["r1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_record_answers_the_agents_jobs_for_a_while_then_is_read_again() {
        let record: ImageRecord = serde_json::from_value(serde_json::json!({
            "id": 1,
            "file_name": "c2960x-universalk9-mz.152-7.E8.bin",
            "size": 10,
            "md5": "0123456789abcdef0123456789abcdef",
            "sha256": "ab",
            "platform": null,
            "version": null,
            "created_at": "2026-12-07T00:00:00Z"
        }))
        .unwrap();
        let images = ImageRecords::default();
        let name = "c2960x-universalk9-mz.152-7.E8.bin";
        assert!(images.fresh(name).is_none());
        images.keep(name, &record);
        assert_eq!(images.fresh(name).map(|r| r.sha256), Some("ab".to_string()));
        assert!(images.fresh("other.bin").is_none());
        tokio::time::advance(IMAGE_FRESH).await;
        assert!(images.fresh(name).is_none(), "read again once it is old");
        assert!(images.lock().is_empty(), "and the old one is gone");
    }
}

//! Device jobs handed to the agents of their site. The node that leads a rollout still decides
//! when a device starts (waves, concurrency, threshold); for a device whose site has an agent
//! that drives (`fleetup agent`), it hands the job to the site instead of running it, and
//! waits for it to end. An agent claims it under a lease of its own and runs the same job
//! (`super::job`) through the API, fenced by the job's epoch (`store::runners`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use super::job::JobOutcome;
use super::ledger::Ledger;
use super::model::{DeviceJob, EventKind, JobState};
use super::policy::{self, Handed};
use crate::playbook::TransferProtocol;
use crate::store::rollouts::NewEvent;
use crate::store::runners::JobRunner;

/// How often a waiting handoff looks at its job when no event woke it.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// The sites that have a live agent that drives, with the copy protocols their agents offer,
/// read at most once per [`LOOK_AGAIN`] for a rollout's task and all its handed jobs.
#[derive(Default)]
pub(crate) struct Drivers(tokio::sync::Mutex<DriversRead>);

#[derive(Default)]
struct DriversRead {
    at: Option<tokio::time::Instant>,
    sites: HashMap<String, HashSet<String>>,
}

impl Drivers {
    /// The protocols the driving agents of `site` offer; `None` when none drives there.
    pub(crate) async fn offered(&self, ledger: &Ledger, site: &str) -> Option<HashSet<String>> {
        self.read(ledger, |sites| sites.get(site).cloned()).await
    }

    /// Whether any site has a driving agent.
    async fn any(&self, ledger: &Ledger) -> bool {
        self.read(ledger, |sites| !sites.is_empty()).await
    }

    async fn read<T>(
        &self,
        ledger: &Ledger,
        pick: impl FnOnce(&HashMap<String, HashSet<String>>) -> T,
    ) -> T {
        let mut r = self.0.lock().await;
        if r.at.is_none_or(|at| at.elapsed() >= LOOK_AGAIN) {
            match driving_sites(ledger).await {
                Ok(sites) => r.sites = sites,
                Err(e) => tracing::warn!(error = %e, "cannot read the site agents"),
            }
            r.at = Some(tokio::time::Instant::now());
        }
        pick(&r.sites)
    }
}

async fn driving_sites(
    ledger: &Ledger,
) -> Result<HashMap<String, HashSet<String>>, crate::store::StoreError> {
    let mut sites: HashMap<String, HashSet<String>> = HashMap::new();
    for n in ledger.db.nodes().await? {
        let Some(d) = crate::api::agents::AgentDetail::of(&n) else {
            continue;
        };
        let (Some(site), true) = (
            n.site,
            d.drives && crate::api::agents::is_live(n.heartbeat_age_ms, d.heartbeat_seconds),
        ) else {
            continue;
        };
        let offered = sites.entry(site).or_default();
        offered.extend(d.servers.into_keys());
        if d.tftp.is_some() {
            offered.insert(TransferProtocol::Tftp.as_str().to_string());
        }
        // An agent pushes over the device's own SCP server from its cache.
        offered.insert(TransferProtocol::ScpPush.as_str().to_string());
    }
    Ok(sites)
}

/// The site whose agents should run `job`: the one it was handed to already, or the device's
/// site when an agent there drives and offers a copy protocol the playbook allows for it.
pub(crate) async fn site_for(
    ledger: &Ledger,
    drivers: &Drivers,
    playbook: &crate::playbook::Playbook,
    job: &DeviceJob,
) -> Option<String> {
    if let Some(site) = &job.runner_site {
        return Some(site.clone());
    }
    if !drivers.any(ledger).await {
        return None;
    }
    let device = ledger.db.device_by_name(&job.device).await.ok()?;
    let site = device.spec.site?;
    let wanted = playbook.transfer.for_site(Some(&site)).protocols;
    let offered = drivers.offered(ledger, &site).await?;
    wanted
        .iter()
        .any(|p| offered.contains(p.as_str()))
        .then_some(site)
}

/// Who runs each handed job of a rollout that has not ended, read at most once per
/// [`LOOK_AGAIN`] for all the jobs its task waits on (hundreds at once), rather than once per
/// job.
#[derive(Default)]
pub(crate) struct Runners(tokio::sync::Mutex<RunnersRead>);

#[derive(Default)]
struct RunnersRead {
    at: Option<Instant>,
    jobs: HashMap<String, JobRunner>,
}

impl Runners {
    /// Who runs `device`'s job, as read after `since`. A job missing from the shared read
    /// (it ended, or was taken back) is read alone.
    async fn of(
        &self,
        ledger: &Ledger,
        rollout: &str,
        device: &str,
        since: Instant,
    ) -> Result<JobRunner, crate::store::StoreError> {
        let mut r = self.0.lock().await;
        if r.at
            .is_none_or(|at| at < since || at.elapsed() >= LOOK_AGAIN)
        {
            let at = Instant::now();
            r.jobs = ledger.db.open_handed_jobs(rollout).await?;
            r.at = Some(at);
        }
        if let Some(runner) = r.jobs.get(device) {
            return Ok(runner.clone());
        }
        drop(r);
        ledger.db.job_runner(rollout, device).await
    }
}

/// What a rollout's task shares among the jobs it hands to sites.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) drivers: Drivers,
    runners: Runners,
}

/// Hand `job` to the agents of `site` and wait for it to end. `None` when it was taken back
/// to run on this node (it never started, and no agent of the site drives any more).
pub(crate) async fn run(
    ledger: &Ledger,
    shared: &Shared,
    id: &str,
    job: &DeviceJob,
    site: &str,
) -> Option<JobOutcome> {
    let device = job.device.as_str();
    // Registered before the hand-off, so that no end is missed.
    let ended = ledger.handed_waiter(id, device);
    let outcome = wait(ledger, shared, id, job, site, &ended).await;
    ledger.forget_handed(id, device);
    outcome
}

/// How the wait looks at its job next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Not yet: it was just handed, so no agent holds it and it has not ended.
    Wait,
    /// Read alone: an event may have ended it, or it was handed before this wait began.
    Alone,
    /// In the rollout's shared read of its handed jobs.
    Shared,
}

async fn wait(
    ledger: &Ledger,
    shared: &Shared,
    id: &str,
    job: &DeviceJob,
    site: &str,
    ended: &tokio::sync::Notify,
) -> Option<JobOutcome> {
    let device = job.device.as_str();
    let mut next = Next::Alone;
    if job.runner_site.as_deref() != Some(site) {
        let handed = ledger
            .db
            .offer_job(
                id,
                device,
                site,
                &format!("handed to the agents of site {site}, which drive its devices"),
                &json!({"site": site}),
            )
            .await;
        match handed {
            Ok(event) => ledger.publish(event),
            Err(e) => {
                tracing::error!(rollout = id, device, error = %e, "cannot hand a job to its site");
                return Some(JobOutcome::Interrupted);
            }
        }
        next = Next::Wait;
    }
    let mut since = Instant::now();
    loop {
        if ledger.shutdown().is_requested() {
            return Some(JobOutcome::Interrupted);
        }
        let runner = match next {
            Next::Wait => None,
            Next::Alone => Some(ledger.db.job_runner(id, device).await),
            Next::Shared => Some(shared.runners.of(ledger, id, device, since).await),
        };
        since = Instant::now();
        if let Some(runner) = runner {
            match look(ledger, &shared.drivers, id, device, site, runner).await {
                Ok(Some(done)) => return done,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(rollout = id, device, error = %e, "cannot read a handed job")
                }
            }
        }
        next = tokio::select! {
            _ = ended.notified() => Next::Alone,
            _ = tokio::time::sleep(LOOK_AGAIN) => Next::Shared,
            _ = ledger.shutdown().requested() => Next::Alone,
        };
    }
}

/// Events after which a handed job may have ended.
pub(crate) fn may_end(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::DeviceSucceeded
            | EventKind::DeviceFailed
            | EventKind::DeviceRolledBack
            | EventKind::DeviceAborted
            | EventKind::DeviceRequeued
    )
}

/// Look at the job once and act on the decision: `Some` when the wait is over.
async fn look(
    ledger: &Ledger,
    drivers: &Drivers,
    id: &str,
    device: &str,
    site: &str,
    runner: Result<JobRunner, crate::store::StoreError>,
) -> Result<Option<Option<JobOutcome>>, crate::store::StoreError> {
    let runner = runner?;
    // An ended job, or one an agent holds, is decided on the job alone (`policy::handed`
    // looks at the rollout and the site's agents only for a job no agent holds): hundreds of
    // jobs wait at once, and most are held.
    let (view, drives) = if runner.state.is_finished() || runner.site.is_none() || runner.live {
        (
            super::policy::RolloutView {
                state: super::model::RolloutState::Running,
                paused: false,
                abort_requested: false,
            },
            true,
        )
    } else {
        (
            ledger.db.rollout_view(id).await?,
            drivers.offered(ledger, site).await.is_some(),
        )
    };
    let decision = policy::handed(
        runner.state,
        runner.site.is_some(),
        runner.live,
        drives,
        view,
    );
    Ok(match decision {
        Handed::Wait => None,
        Handed::Ended => Some(Some(outcome(runner.state))),
        Handed::Leave => Some(Some(JobOutcome::Aborted)),
        Handed::RunHere => {
            if !ledger.db.take_back_job(id, device).await? {
                return Ok(None);
            }
            ledger
                .event(
                    id,
                    Some(device),
                    EventKind::Message,
                    None,
                    &format!("no agent of site {site} drives any more: this node runs the device"),
                    Some(json!({"site": site})),
                )
                .await;
            Some(None)
        }
        Handed::TakeBack { started } => {
            if !ledger.db.take_back_job(id, device).await? {
                return Ok(None);
            }
            if started {
                let message = format!(
                    "aborted while no agent of site {site} held the job; the device is as its last recorded step left it"
                );
                ledger
                    .finish_job(
                        id,
                        device,
                        JobState::Aborted,
                        None,
                        Some(("aborted", &message)),
                        NewEvent::device(device, EventKind::DeviceAborted, &message),
                    )
                    .await?;
            }
            Some(Some(JobOutcome::Aborted))
        }
    })
}

fn outcome(state: JobState) -> JobOutcome {
    match state {
        JobState::Succeeded | JobState::Skipped => JobOutcome::Succeeded,
        JobState::Failed | JobState::RolledBack => JobOutcome::Failed,
        _ => JobOutcome::Aborted,
    }
}

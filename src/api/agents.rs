//! `/agents`: the site agents (`fleetup agent`, [`crate::agent`]). An agent's heartbeat
//! says which images it holds checked, where the site's devices reach its file server and
//! what it transfers; the answer names the images the site's devices still have to copy.
//! Agents share the nodes table with the serve nodes (kind `agent`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Internal, StorageFull};
use super::{ApiError, ApiResult, AppState};
use crate::access::{Principal, Role};
use crate::agent::AgentTransfer;
use crate::agent::jobs::{ClaimRequest, DeviceTicket, JobCall, JobTicket, JobTickets};
use crate::agent::{AgentBeat, AgentOrders};
use crate::rollout::job_store::JobOp;
use crate::store::leases::{Heartbeat, NodeKind};
use crate::store::{Db, StoreError};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(list_agents))
        .routes(routes!(claim_jobs))
        .routes(routes!(job_call))
}

/// Largest heartbeat body kept (the transfers it lists are capped by the agent).
const MAX_DETAIL: usize = 256 * 1024;

/// An agent's heartbeat: recorded, answered with the images its site needs.
#[utoipa::path(post, path = "/agents/heartbeat", tag = "agents", request_body = AgentBeat,
    responses((status = 200, body = AgentOrders),
              (status = 400, body = ErrorBody, description = "`bad_request`: not JSON"),
              (status = 403, body = ErrorBody, description = "`forbidden`: an agent token of another site, or one beating under the name of a serve node or of another site's agent"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`unprocessable`: no name or site, or a field of the wrong type"),
              Internal, StorageFull))]
async fn heartbeat(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(beat): Json<AgentBeat>,
) -> ApiResult<Json<AgentOrders>> {
    let (name, site) = (beat.name.as_str(), beat.site.as_str());
    let fits = |s: &str| (1..=200).contains(&s.chars().count());
    if !fits(name) || !fits(site) {
        return Err(ApiError::unprocessable(
            "an agent's heartbeat names the agent and its site (each 1 to 200 characters)",
        ));
    }
    if who.role == Role::Agent {
        // An agent token beats for its own site only, and never under the name of a serve
        // node or of another site's agent.
        who.may_act_for_site(site).map_err(ApiError::forbidden)?;
        match state.db.node_identity(name).await? {
            Some((NodeKind::Node, _)) => {
                return Err(ApiError::forbidden(format!(
                    "{name} is the name of a serve node: an agent token may not beat under it"
                )));
            }
            Some((NodeKind::Agent, Some(other))) if other != site => {
                return Err(ApiError::forbidden(format!(
                    "agent {name} is recorded for site {other}: an agent token of site {site} \
                     may not beat under its name"
                )));
            }
            _ => {}
        }
    }
    // An agent drives its site's devices only with an admin token, or an agent token of the
    // site: a job hands over the device's credentials.
    let drive_refused = (beat.drive && !matches!(who.role, Role::Admin | Role::Agent)).then(|| {
        format!(
            "token {} is {} {} token: an agent drives devices only with an admin token or an \
             agent token of its site",
            who.name,
            who.role.article(),
            who.role
        )
    });
    let drive = beat.drive && drive_refused.is_none();
    // Its jobs' leases run three heartbeats from now.
    let lost = state
        .db
        .renew_site_jobs(name, site, &beat.jobs, lease_ms(beat.heartbeat_seconds))
        .await?;
    let detail = AgentDetail {
        heartbeat_seconds: beat.heartbeat_seconds,
        tftp: beat.tftp.clone(),
        images: beat.images.clone(),
        transfers: beat.transfers.clone(),
        drives: drive,
        servers: beat.servers.clone(),
        jobs: beat
            .jobs
            .iter()
            .filter(|j| !lost.contains(j))
            .cloned()
            .collect(),
    };
    let detail =
        serde_json::to_string(&detail).map_err(|e| ApiError::internal("agent heartbeat", &e))?;
    if detail.len() > MAX_DETAIL {
        return Err(ApiError::unprocessable("the heartbeat lists too much"));
    }
    state
        .db
        .node_heartbeat(&Heartbeat {
            name: name.to_string(),
            instance: beat.instance.clone(),
            version: beat.version.clone(),
            started_at: beat.started_at.clone(),
            url: None,
            kind: NodeKind::Agent,
            site: Some(site.to_string()),
            detail: Some(detail),
        })
        .await?;
    let mut images = Vec::new();
    for file_name in state
        .site_images
        .of(&state.db, site, std::time::Instant::now())
        .await?
    {
        match state.db.image_by_name(&file_name).await {
            Ok(img) => images.push(img),
            Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(AgentOrders {
        images,
        drive,
        drive_refused,
        lost,
    }))
}

/// Image file names by site.
type SitesImages = std::collections::HashMap<String, Vec<String>>;

/// How long this node answers agents' heartbeats with the images it read for their sites
/// before it reads them again.
const SITE_IMAGES_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// The images each site's devices still have to copy ([`Db::images_in_use_by_site`]), as this
/// node read them last: every heartbeat of every agent asks, and the read costs as much as
/// the open jobs of every rollout (17 ms at 2,000 devices on a busy PostgreSQL). It is made at
/// most once every [`SITE_IMAGES_FRESH`], one at a time: a heartbeat that comes meanwhile
/// waits for the read in flight and takes its answer. An image a site needs shows in its
/// agent's orders that much later at most; a job whose image its agent lacks fetches it then.
#[derive(Debug, Default)]
pub(crate) struct SiteImages {
    read: tokio::sync::Mutex<Option<(std::time::Instant, Arc<SitesImages>)>>,
}

impl SiteImages {
    /// The images of `site`, read again when the last read is older than
    /// [`SITE_IMAGES_FRESH`] at `now`.
    pub(crate) async fn of(
        &self,
        db: &Db,
        site: &str,
        now: std::time::Instant,
    ) -> Result<Vec<String>, StoreError> {
        let mut read = self.read.lock().await;
        let by_site = match &*read {
            Some((at, by_site)) if now.saturating_duration_since(*at) < SITE_IMAGES_FRESH => {
                by_site.clone()
            }
            _ => {
                let by_site = Arc::new(db.images_in_use_by_site().await?);
                *read = Some((now, by_site.clone()));
                by_site
            }
        };
        Ok(by_site.get(site).cloned().unwrap_or_default())
    }
}

/// How long an agent's claim of a job lasts without a heartbeat: three of its intervals.
fn lease_ms(heartbeat_seconds: u64) -> i64 {
    3 * 1000 * i64::try_from(heartbeat_seconds.clamp(1, 300)).unwrap_or(300)
}

/// A driving agent claims jobs of its site that the node leading their rollout handed to the
/// site and no agent holds: each comes with its device (credentials included), its playbook
/// and the epoch its calls carry. Needs an admin token, or an agent token of the site.
#[utoipa::path(post, path = "/agents/jobs/claim", tag = "agents", request_body = ClaimRequest,
    responses((status = 200, body = JobTickets),
              (status = 400, body = ErrorBody, description = "`bad_request`: not JSON"),
              (status = 403, body = ErrorBody, description = "`forbidden`: neither an admin token nor an agent token of the site"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`unprocessable`: no name or site, `max` or `heartbeat_seconds` out of range"),
              Internal, StorageFull))]
async fn claim_jobs(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<ClaimRequest>,
) -> ApiResult<Json<JobTickets>> {
    let fits = |s: &str| (1..=200).contains(&s.chars().count());
    if !fits(&req.name) || !fits(&req.site) {
        return Err(ApiError::unprocessable(
            "a claim names the agent and its site (each 1 to 200 characters)",
        ));
    }
    if !(1..=1000).contains(&req.max) || !(1..=300).contains(&req.heartbeat_seconds) {
        return Err(ApiError::unprocessable(
            "a claim asks for 1 to 1000 jobs, with a heartbeat of 1 to 300 seconds",
        ));
    }
    who.may_act_for_site(&req.site)
        .map_err(ApiError::forbidden)?;
    // What the audit log would say of each claim, on the job's own record, written with it.
    let held = state
        .db
        .claim_site_jobs_noted(
            &req.site,
            &req.name,
            lease_ms(req.heartbeat_seconds),
            req.max as usize,
            |h| {
                Some((
                    format!(
                        "claimed by agent {} of site {} with token {} (epoch {})",
                        req.name, req.site, who.name, h.epoch
                    ),
                    serde_json::json!({"agent": req.name, "site": req.site, "token": who.name, "epoch": h.epoch}),
                ))
            },
        )
        .await?;
    let mut jobs = Vec::with_capacity(held.len());
    let mut playbooks = std::collections::HashMap::new();
    for (h, event) in held {
        if let Some(event) = event {
            state.engine.publish(event);
        }
        let job = state.db.job(&h.rollout, &h.device).await?;
        let device = state.db.device_by_name(&h.device).await?;
        if !playbooks.contains_key(&h.rollout) {
            let record = state.db.rollout(&h.rollout).await?;
            playbooks.insert(h.rollout.clone(), record.playbook);
        }
        jobs.push(JobTicket {
            playbook: playbooks.get(&h.rollout).cloned().unwrap_or_default(),
            rollout: h.rollout,
            epoch: h.epoch,
            job,
            device: DeviceTicket::of(&device),
        });
    }
    Ok(Json(JobTickets { jobs }))
}

/// One call of a job an agent claimed: record its steps and events, read the rollout's state,
/// keep the device's facts and configurations. Every write carries the claim's epoch and is
/// refused (409 `fenced`) once the job was claimed again or taken back. Needs an admin token,
/// or an agent token of the site the job was handed to.
#[utoipa::path(post, path = "/agents/jobs/{rollout}/{device}", tag = "agents", request_body = JobCall,
    params(("rollout" = String, Path, description = "The rollout's id"),
           ("device" = String, Path, description = "The device's name")),
    responses((status = 200, body = Object, description = "the call's answer (`answer`: `done`, `view`, `image`, ...)"),
              (status = 400, body = ErrorBody, description = "`bad_request`: not JSON"),
              (status = 403, body = ErrorBody, description = "`forbidden`: neither an admin token nor an agent token of the site the job was handed to"),
              (status = 404, body = ErrorBody, description = "`not_found`: no such rollout, job or image"),
              (status = 409, body = ErrorBody, description = "`fenced`: the job was claimed again or taken back since this claim"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`unprocessable`: not a call this service knows, or one it cannot carry out"),
              Internal, StorageFull))]
async fn job_call(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((rollout, device)): Path<(String, String)>,
    Json(call): Json<JobCall>,
) -> ApiResult<Json<crate::rollout::job_store::JobAnswer>> {
    use crate::rollout::job_store::OpError;
    if let (Role::Agent, Some(site)) = (who.role, who.site.as_deref()) {
        job_of_site(&state, &who, &rollout, &device, site).await?;
    }
    state.job_calls.count(&call.op);
    match state
        .engine
        .job_call(&rollout, &device, call.epoch, call.op)
        .await
    {
        Ok(answer) => Ok(Json(answer)),
        Err(OpError::Store(e)) => Err(e.into()),
        Err(OpError::Refused(why)) => Err(ApiError::unprocessable(why)),
    }
}

/// Whether the job was handed to `site`, for a call of `who`, an agent token of that site:
/// `403` if not, `404` for no such job. A job found handed to the site is remembered
/// ([`JobCalls::sites`]), so that an agent's calls of one job cost one read of the database
/// between them, not one each: a job stays with its device's site until it ends (taken back,
/// it is run by the serve nodes, and its epoch fences off what the agent still writes).
async fn job_of_site(
    state: &AppState,
    who: &Principal,
    rollout: &str,
    device: &str,
    site: &str,
) -> ApiResult<()> {
    let key = (rollout.to_string(), device.to_string());
    if state.job_calls.site_of(&key).as_deref() == Some(site) {
        return Ok(());
    }
    let runner = match state.db.job_runner(rollout, device).await {
        Ok(r) => r,
        Err(crate::store::StoreError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "no job of device {device} in rollout {rollout}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    match runner.site.as_deref() {
        Some(s) if s == site => {
            state.job_calls.remember_site(key, site);
            Ok(())
        }
        handed => Err(ApiError::forbidden(format!(
            "token {} is an agent token of site {site}: the job of {device} in rollout {rollout} \
             is {}",
            who.name,
            match handed {
                Some(other) => format!("handed to site {other}"),
                None => "not handed to a site".to_string(),
            }
        ))),
    }
}

/// Jobs [`JobCalls::sites`] remembers at most; past that it starts again empty.
const SITES_KEPT: usize = 65_536;

/// Calls of agents' jobs answered by this node, and the ops they carried by op
/// ([`JobOp::NAMES`]): a batch counts once as `batch` and once for each op in it.
#[derive(Debug, Default)]
pub(crate) struct JobCalls {
    ops: [std::sync::atomic::AtomicU64; JobOp::NAMES.len()],
    requests: std::sync::atomic::AtomicU64,
    /// The site each job called by an agent token was found handed to, by rollout and
    /// device ([`job_of_site`]); at most [`SITES_KEPT`].
    sites: std::sync::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl JobCalls {
    fn site_of(&self, key: &(String, String)) -> Option<String> {
        self.sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn remember_site(&self, key: (String, String), site: &str) {
        let mut sites = self
            .sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sites.len() >= SITES_KEPT {
            sites.clear();
        }
        sites.insert(key, site.to_string());
    }

    fn count(&self, op: &JobOp) {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.count_op(op);
    }

    fn count_op(&self, op: &JobOp) {
        self.ops[op.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let JobOp::Batch { ops } = op {
            for op in ops {
                self.count_op(op);
            }
        }
    }

    /// The calls answered.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Each op's name and how many of its calls were answered.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        JobOp::NAMES
            .iter()
            .zip(&self.ops)
            .map(|(name, n)| (*name, n.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// What an agent reported with its last heartbeat, as kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AgentDetail {
    /// Seconds between its heartbeats.
    pub heartbeat_seconds: u64,
    /// Where the site's devices reach its TFTP server.
    pub tftp: Option<String>,
    /// SHA-256 of the images it holds checked.
    pub images: Vec<String>,
    /// Its file server's latest transfers.
    pub transfers: Vec<AgentTransfer>,
    /// It drives its site's devices (`--drive`, with an admin token): the serve nodes hand
    /// it their jobs.
    #[serde(default)]
    pub drives: bool,
    /// The device jobs it holds now.
    #[serde(default)]
    pub jobs: Vec<crate::store::runners::HeldJob>,
    /// Where the site's devices reach each of its file servers, by protocol.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, String>,
}

impl AgentDetail {
    /// What agent `n` reported with its last heartbeat; `None` for a serve node, or a detail
    /// this version cannot read.
    pub(crate) fn of(n: &crate::store::leases::NodeRecord) -> Option<AgentDetail> {
        if n.kind != NodeKind::Agent {
            return None;
        }
        serde_json::from_str(n.detail.as_deref()?).ok()
    }
}

/// One agent as its last heartbeat shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub name: String,
    pub site: String,
    pub version: String,
    pub started_at: String,
    /// Seconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_seconds: f64,
    /// Whether it beat within three of its intervals: a site whose agent is not live copies
    /// from the serve nodes.
    pub live: bool,
    #[serde(flatten)]
    pub detail: AgentDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// Every agent that ever beat, by name.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, body = AgentList), Internal))]
async fn list_agents(State(state): State<AppState>) -> ApiResult<Json<AgentList>> {
    let agents = state
        .db
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.kind == NodeKind::Agent)
        .map(|n| {
            let detail = AgentDetail::of(&n).unwrap_or_default();
            AgentView {
                live: is_live(n.heartbeat_age_ms, detail.heartbeat_seconds),
                name: n.name,
                site: n.site.unwrap_or_default(),
                version: n.version,
                started_at: n.started_at,
                heartbeat_age_seconds: n.heartbeat_age_ms.max(0) as f64 / 1000.0,
                detail,
            }
        })
        .collect();
    Ok(Json(AgentList { agents }))
}

/// An agent is live while its last heartbeat is younger than three of its intervals.
pub(crate) fn is_live(age_ms: i64, heartbeat_seconds: u64) -> bool {
    let interval = i64::try_from(heartbeat_seconds.clamp(1, 300)).unwrap_or(300);
    age_ms < 3 * interval * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollout `id` in `state` with a pending job on `image` for each device.
    async fn rollout(db: &Db, id: &str, state: &str, jobs: &[(&str, &str)]) {
        sqlx::query(
            "INSERT INTO rollouts (id, name, state, created_at, updated_at) \
             VALUES ($1, $1, $2, '2026-12-08T00:00:00Z', '2026-12-08T00:00:00Z')",
        )
        .bind(id)
        .bind(state)
        .execute(db.pool())
        .await
        .unwrap();
        for (position, (device, image)) in jobs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rollout_devices (rollout_id, device, wave, position, image, state) \
                 VALUES ($1, $2, 0, $3, $4, 'pending')",
            )
            .bind(id)
            .bind(*device)
            .bind(position as i64)
            .bind(*image)
            .execute(db.pool())
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn a_sites_images_are_read_for_every_site_at_once_and_again_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        for (name, site) in [
            ("a1", Some("a")),
            ("a2", Some("a")),
            ("b1", Some("b")),
            ("x", None),
        ] {
            sqlx::query(
                "INSERT INTO devices (name, host, platform, site, created_at, updated_at) \
                 VALUES ($1, '192.0.2.1', 'ios', $2, '2026-12-08T00:00:00Z', '2026-12-08T00:00:00Z')",
            )
            .bind(name)
            .bind(site)
            .execute(db.pool())
            .await
            .unwrap();
        }
        rollout(
            &db,
            "r1",
            "running",
            &[("a1", "new.bin"), ("b1", "new.bin"), ("x", "x.bin")],
        )
        .await;
        // An ended rollout's jobs are nobody's to fetch for.
        rollout(&db, "r0", "completed", &[("a2", "old.bin")]).await;
        let images = SiteImages::default();
        let t0 = std::time::Instant::now();
        assert_eq!(images.of(&db, "a", t0).await.unwrap(), ["new.bin"]);
        assert_eq!(images.of(&db, "b", t0).await.unwrap(), ["new.bin"]);
        assert!(images.of(&db, "elsewhere", t0).await.unwrap().is_empty());

        // A rollout submitted since: heartbeats within the freshness get the read before it…
        rollout(&db, "r2", "running", &[("a2", "next.bin")]).await;
        let soon = t0 + SITE_IMAGES_FRESH / 2;
        assert_eq!(images.of(&db, "a", soon).await.unwrap(), ["new.bin"]);
        // …and the first after it reads again, for every site.
        let later = t0 + SITE_IMAGES_FRESH;
        assert_eq!(
            images.of(&db, "a", later).await.unwrap(),
            ["new.bin", "next.bin"]
        );
        assert_eq!(images.of(&db, "b", later).await.unwrap(), ["new.bin"]);
    }
}

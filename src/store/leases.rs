//! Rollout leases and node heartbeats: which fleetup node drives each rollout, on one database
//! that several nodes share. Times are the database's own clock (milliseconds since 1970), so
//! the nodes' clocks never have to agree.

use sqlx::Row;

use super::{Backend, Db, StoreError};
use crate::rollout::model::RolloutState;

/// A node's writes for one rollout carry the lease epoch it claimed: [`Db::begin`] refuses
/// them (`StoreError::Fenced`) once another node has claimed the rollout since. A site agent's
/// writes for one device's job (`device`) carry the job's runner epoch instead
/// (`store::runners`), checked the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub rollout: String,
    pub epoch: i64,
    pub device: Option<String>,
}

tokio::task_local! {
    /// The fence of the rollout task (and its device jobs) running on this task.
    pub(crate) static FENCE: Fence;
}

impl Fence {
    /// Run `f` with every write it makes fenced by this fence: refused once the rollout's
    /// lease (or, with a `device`, the job's claim) has moved past `epoch`.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        FENCE.scope(self, f).await
    }
}

/// A claimed lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub epoch: i64,
    /// The node that held the rollout before, if any (a takeover when it is another one).
    pub previous: Option<String>,
}

/// What a heartbeat comes from: a `fleetup serve` node or a site agent (`fleetup agent`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Node,
    Agent,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Node => "node",
            NodeKind::Agent => "agent",
        }
    }

    /// A stored kind; one this version does not know reads as a node.
    fn parse(s: &str) -> NodeKind {
        if s == "agent" {
            NodeKind::Agent
        } else {
            NodeKind::Node
        }
    }
}

/// One heartbeat, as a node or an agent sends it.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub name: String,
    /// Random per process: tells a restart from the same process beating.
    pub instance: String,
    pub version: String,
    pub started_at: String,
    pub url: Option<String>,
    pub kind: NodeKind,
    pub site: Option<String>,
    /// What an agent reports (JSON), kept as sent.
    pub detail: Option<String>,
}

/// One node as its heartbeat shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    pub name: String,
    pub version: String,
    pub started_at: String,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Rollouts whose lease it holds now.
    pub rollouts: Vec<String>,
    /// Where its API answers (`--advertise-url`): other nodes fetch missing images there.
    pub url: Option<String>,
    pub kind: NodeKind,
    /// An agent's site.
    pub site: Option<String>,
    /// What an agent reported with its last heartbeat (JSON).
    pub detail: Option<String>,
}

impl Db {
    /// The database's clock in milliseconds since 1970, as an SQL expression.
    pub(super) fn now_ms(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres => "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Take the lease of rollout `id` for `node` for `ttl_ms`, when nobody holds it or its
    /// holder let it lapse; `force` takes it whatever (one process on a SQLite file, which the
    /// data directory's lock guarantees). `None` when another node holds it.
    pub(crate) async fn claim_rollout(
        &self,
        id: &str,
        node: &str,
        ttl_ms: i64,
        force: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let now = self.now_ms();
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT lease_node, lease_until_ms FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let previous: Option<String> = row.try_get(0)?;
        let claimed: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE rollouts SET lease_node = $1, lease_epoch = lease_epoch + 1, \
             lease_until_ms = {now} + $2 \
             WHERE id = $3 AND ($4 = 1 OR lease_node IS NULL OR lease_until_ms IS NULL \
             OR lease_until_ms < {now}) RETURNING lease_epoch"
        ))
        .bind(node)
        .bind(ttl_ms)
        .bind(id)
        .bind(i64::from(force))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.failed(e))?;
        tx.commit().await?;
        Ok(claimed.map(|epoch| Claim { epoch, previous }))
    }

    /// Extend a held lease by `ttl_ms` from now; false when it is no longer this node's at
    /// this epoch (another node took it over).
    pub(crate) async fn renew_rollout(
        &self,
        id: &str,
        node: &str,
        epoch: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE rollouts SET lease_until_ms = {} + $1 \
             WHERE id = $2 AND lease_node = $3 AND lease_epoch = $4",
            self.now_ms()
        ))
        .bind(ttl_ms)
        .bind(id)
        .bind(node)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Give a lease back (the rollout task ended, or the node stops): another node may take
    /// the rollout at once.
    pub(crate) async fn release_rollout(
        &self,
        id: &str,
        node: &str,
        epoch: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rollouts SET lease_node = NULL, lease_until_ms = NULL \
             WHERE id = $1 AND lease_node = $2 AND lease_epoch = $3",
        )
        .bind(id)
        .bind(node)
        .bind(epoch)
        .execute(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Rollouts to run that no live node holds: not ended, not waiting for an approval, and
    /// with no lease or a lapsed one.
    pub(crate) async fn claimable_rollouts(&self) -> Result<Vec<String>, StoreError> {
        let not_to_run =
            super::rollouts::state_list(|s| s.is_ended() || s == RolloutState::AwaitingApproval);
        Ok(sqlx::query_scalar(&format!(
            "SELECT id FROM rollouts WHERE state NOT IN ({}) \
             AND (lease_node IS NULL OR lease_until_ms IS NULL OR lease_until_ms < {}) \
             ORDER BY created_at",
            not_to_run,
            self.now_ms()
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Record that `node` (this process: `instance`) is alive.
    pub(crate) async fn node_heartbeat(&self, beat: &Heartbeat) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO nodes (name, instance, version, started_at, url, kind, site, detail, heartbeat_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {now}) \
             ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, \
             version = excluded.version, started_at = excluded.started_at, url = excluded.url, \
             kind = excluded.kind, site = excluded.site, detail = excluded.detail, heartbeat_ms = {now}",
            now = self.now_ms()
        ))
        .bind(&beat.name)
        .bind(&beat.instance)
        .bind(&beat.version)
        .bind(&beat.started_at)
        .bind(&beat.url)
        .bind(beat.kind.as_str())
        .bind(&beat.site)
        .bind(&beat.detail)
        .execute(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Every node that ever ran on this database, with the rollouts each holds now.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let now = self.now_ms();
        let rows = sqlx::query(&format!(
            "SELECT name, version, started_at, {now} - heartbeat_ms, url, kind, site, detail \
             FROM nodes ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        let held: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT lease_node, id FROM rollouts WHERE lease_node IS NOT NULL \
             AND lease_until_ms >= {now} ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get(0)?;
            out.push(NodeRecord {
                rollouts: held
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, id)| id.clone())
                    .collect(),
                name,
                version: r.try_get(1)?,
                started_at: r.try_get(2)?,
                heartbeat_age_ms: r.try_get(3)?,
                url: r.try_get(4)?,
                kind: NodeKind::parse(&r.try_get::<String, _>(5)?),
                site: r.try_get(6)?,
                detail: r.try_get(7)?,
            });
        }
        Ok(out)
    }

    /// The kind and site the node or agent of this name was last recorded with, if any.
    pub(crate) async fn node_identity(
        &self,
        name: &str,
    ) -> Result<Option<(NodeKind, Option<String>)>, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT kind, site FROM nodes WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(kind, site)| (NodeKind::parse(&kind), site)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rollout::model::{EventKind, JobState};

    /// A store with rollout r1, running.
    pub(in crate::store) async fn store_with_rollout() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        sqlx::query(
            "INSERT INTO rollouts (id, name, state, created_at, updated_at) \
             VALUES ('r1', 'r1', 'running', '2026-12-06T00:00:00Z', '2026-12-06T00:00:00Z')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        (dir, db)
    }

    /// Device sw1 in rollout r1, in `state`.
    pub(in crate::store) async fn add_job(db: &Db, state: &str) {
        sqlx::query(
            "INSERT INTO rollout_devices (rollout_id, device, wave, position, image, state) \
             VALUES ('r1', 'sw1', 0, 0, 'img.bin', $1)",
        )
        .bind(state)
        .execute(db.pool())
        .await
        .unwrap();
    }

    async fn event_as(db: &Db, epoch: i64) -> Result<(), StoreError> {
        let fence = Fence {
            rollout: "r1".into(),
            epoch,
            device: None,
        };
        FENCE
            .scope(
                fence,
                db.insert_event(
                    "r1",
                    Some("sw1"),
                    EventKind::StepStarted,
                    Some("copy"),
                    "x",
                    None,
                ),
            )
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn a_lease_goes_to_one_node_and_a_stale_epoch_writes_nothing() {
        let (_dir, db) = store_with_rollout().await;
        let a = db.claim_rollout("r1", "a", 60_000, false).await.unwrap();
        assert_eq!(
            a,
            Some(Claim {
                epoch: 1,
                previous: None
            })
        );
        assert_eq!(
            db.claim_rollout("r1", "b", 60_000, false).await.unwrap(),
            None,
            "a holds it"
        );
        assert!(db.claimable_rollouts().await.unwrap().is_empty());
        assert!(db.renew_rollout("r1", "a", 1, 60_000).await.unwrap());

        // a lets its lease lapse (paused, partitioned): b takes the rollout over.
        sqlx::query("UPDATE rollouts SET lease_until_ms = 0")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(db.claimable_rollouts().await.unwrap(), ["r1"]);
        let b = db.claim_rollout("r1", "b", 60_000, false).await.unwrap();
        assert_eq!(
            b,
            Some(Claim {
                epoch: 2,
                previous: Some("a".into())
            })
        );

        // a's writes carry epoch 1: refused, nothing written; b's go through.
        let before = db.events_after("r1", 0, 100).await.unwrap().len();
        let refused = event_as(&db, 1).await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        assert_eq!(db.events_after("r1", 0, 100).await.unwrap().len(), before);
        event_as(&db, 2).await.unwrap();
        assert_eq!(
            db.events_after("r1", 0, 100).await.unwrap().len(),
            before + 1
        );
        // a cannot renew nor give back what is no longer its own; b can.
        assert!(!db.renew_rollout("r1", "a", 1, 60_000).await.unwrap());
        db.release_rollout("r1", "a", 1).await.unwrap();
        assert!(
            db.claimable_rollouts().await.unwrap().is_empty(),
            "still b's"
        );
        db.release_rollout("r1", "b", 2).await.unwrap();
        assert_eq!(db.claimable_rollouts().await.unwrap(), ["r1"]);

        // One process on a SQLite file takes its rollouts whatever the lease says.
        let forced = db.claim_rollout("r1", "c", 60_000, true).await.unwrap();
        assert_eq!(forced.map(|c| c.epoch), Some(3));
    }

    /// A halted rollout whose task still runs on node a: a retry through node b changes
    /// nothing while a holds the lease, and once it is given back (or lapses) the retry runs
    /// the rollout again and moves the epoch on, so a task of a that still runs writes nothing.
    #[tokio::test]
    async fn a_retry_restarts_a_halted_rollout_only_when_no_node_holds_it() {
        let (_dir, db) = store_with_rollout().await;
        sqlx::query("UPDATE rollouts SET state = 'halted'")
            .execute(db.pool())
            .await
            .unwrap();
        add_job(&db, "failed").await;
        let a = db.claim_rollout("r1", "a", 60_000, false).await.unwrap();
        assert_eq!(a.as_ref().map(|c| c.epoch), Some(1));
        let state = || async {
            let r = db.rollout("r1").await.unwrap();
            let jobs = db.jobs("r1").await.unwrap();
            (r.state, jobs[0].state)
        };

        let refused = db
            .retry_failed_jobs("r1", Some(RolloutState::Running), true, |n| format!("{n}"))
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Leased(node)) if node == "a"),
            "{refused:?}"
        );
        assert_eq!(state().await, (RolloutState::Halted, JobState::Failed));

        // a's lease lapses with its task still running somewhere (partitioned).
        sqlx::query("UPDATE rollouts SET lease_until_ms = 0")
            .execute(db.pool())
            .await
            .unwrap();
        let (n, _) = db
            .retry_failed_jobs("r1", Some(RolloutState::Running), true, |n| format!("{n}"))
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(state().await, (RolloutState::Running, JobState::Pending));
        let late = event_as(&db, 1).await;
        assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
        assert_eq!(
            db.claimable_rollouts().await.unwrap(),
            ["r1"],
            "no node holds the rollout: the next to look runs it"
        );
        let next = db.claim_rollout("r1", "b", 60_000, false).await.unwrap();
        assert_eq!(next.map(|c| c.epoch), Some(3));
    }

    /// The ends a driver reported and the next step's start are one transaction: recorded
    /// together and in order, or (here: a stale epoch) not at all.
    #[tokio::test]
    async fn step_ends_and_the_next_start_commit_together_or_not_at_all() {
        use crate::rollout::model::StepState;
        use crate::store::rollouts::StepRecord;
        let (_dir, db) = store_with_rollout().await;
        add_job(&db, "running").await;
        let epoch = db
            .claim_rollout("r1", "a", 60_000, false)
            .await
            .unwrap()
            .map(|c| c.epoch)
            .unwrap();
        let records = [
            StepRecord {
                step: "copy",
                state: Some(StepState::Done),
                kind: EventKind::StepDone,
                message: "copied",
                transcript: &[],
            },
            StepRecord {
                step: "verify",
                state: Some(StepState::Started),
                kind: EventKind::StepStarted,
                message: "verifying",
                transcript: &[],
            },
        ];
        let write = |epoch| {
            FENCE.scope(
                Fence {
                    rollout: "r1".into(),
                    epoch,
                    device: None,
                },
                db.record_steps_with("r1", "sw1", &records),
            )
        };

        let refused = write(epoch + 1).await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        assert!(db.events_after("r1", 0, 100).await.unwrap().is_empty());
        assert_eq!(db.job("r1", "sw1").await.unwrap().step, None);

        let events = write(epoch).await.unwrap();
        let stored = db.events_after("r1", 0, 100).await.unwrap();
        let ids = |v: &[crate::rollout::model::Event]| v.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&stored),
            ids(&events),
            "what was returned is what was stored"
        );
        let said: Vec<_> = stored
            .iter()
            .map(|e| (e.kind, e.step.as_deref(), e.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                (EventKind::StepDone, Some("copy"), "copied"),
                (EventKind::StepStarted, Some("verify"), "verifying"),
            ]
        );
        let job = db.job("r1", "sw1").await.unwrap();
        assert_eq!(
            (job.step.as_deref(), job.step_state),
            (Some("verify"), Some(StepState::Started))
        );
    }

    #[tokio::test]
    async fn nodes_show_their_heartbeat_and_the_rollouts_they_hold() {
        let (_dir, db) = store_with_rollout().await;
        let beat = |name: &str, instance: &str, version: &str| Heartbeat {
            name: name.into(),
            instance: instance.into(),
            version: version.into(),
            started_at: "2026-12-06T00:00:00Z".into(),
            url: Some(format!("http://{name}:8080")),
            kind: NodeKind::Node,
            site: None,
            detail: None,
        };
        db.node_heartbeat(&beat("a", "i1", "0.1.0")).await.unwrap();
        db.node_heartbeat(&beat("b", "i2", "0.1.0")).await.unwrap();
        db.claim_rollout("r1", "b", 60_000, false).await.unwrap();
        db.node_heartbeat(&beat("a", "i3", "0.1.1")).await.unwrap();
        db.node_heartbeat(&Heartbeat {
            kind: NodeKind::Agent,
            site: Some("branch-7".into()),
            url: None,
            detail: Some("{}".into()),
            ..beat("agent-7", "i4", "0.1.1")
        })
        .await
        .unwrap();
        let nodes = db.nodes().await.unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].name, "a");
        assert_eq!(nodes[0].version, "0.1.1", "the last heartbeat's");
        assert!(nodes[0].rollouts.is_empty());
        // By name: a, agent-7, b.
        assert_eq!(nodes[2].rollouts, ["r1"]);
        assert!((0..60_000).contains(&nodes[2].heartbeat_age_ms));
        assert_eq!(nodes[0].url.as_deref(), Some("http://a:8080"));
        let agent = nodes.iter().find(|n| n.name == "agent-7").unwrap();
        assert_eq!(
            (agent.kind, agent.site.as_deref(), agent.url.as_deref()),
            (NodeKind::Agent, Some("branch-7"), None)
        );
    }
}

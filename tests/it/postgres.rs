//! fleetup on PostgreSQL: the two migration sets give one schema, and `fleetup db migrate`
//! moves a whole SQLite store (a real lab rollout's devices, images, jobs, events, transcripts,
//! tokens and audit) into PostgreSQL, where a service then runs on it.
//!
//! These need the PostgreSQL cluster that scripts/test starts for its PostgreSQL pass
//! (`FLEETUP_TEST_POSTGRES`), so they are #[ignore]d in the SQLite pass and run by name there.

use std::path::Path;

use fleetup::store::copy::{TABLES, Table};
use fleetup::store::{DatabaseUrl, Db};
use serde_json::{Value, json};

use crate::support::{Rig, TestApp, eventually, jobs, playbook, test_database};

/// The test database for `dir`, which must exist: these tests are meaningless on SQLite alone.
fn postgres_for(dir: &Path) -> String {
    test_database(dir).expect(
        "FLEETUP_TEST_POSTGRES names the PostgreSQL that scripts/test starts (scripts/postgres up DIR)",
    )
}

/// A store on a fresh database of the test PostgreSQL, and the directory it keeps its files in.
async fn pg_store() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url: DatabaseUrl = postgres_for(dir.path()).parse().unwrap();
    let db = Db::connect(&url, dir.path()).await.unwrap();
    (dir, db)
}

fn by_name(tables: &[Table]) -> Vec<&str> {
    tables.iter().map(|t| t.name.as_str()).collect()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_schema_is_the_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(&dir.path().join("fleetup.db")).await.unwrap();
    let pg_url: DatabaseUrl = postgres_for(dir.path()).parse().unwrap();
    let pg = Db::connect(&pg_url, dir.path()).await.unwrap();
    let a = sqlite.schema().await.unwrap();
    let b = pg.schema().await.unwrap();
    assert_eq!(by_name(&a), by_name(&b), "the same tables");
    for (ta, tb) in a.iter().zip(&b) {
        assert_eq!(ta.columns, tb.columns, "{}: the same columns", ta.name);
        assert_eq!(ta.indexes, tb.indexes, "{}: the same indexes", ta.name);
        assert_eq!(ta.unique, tb.unique, "{}: the same unique keys", ta.name);
    }
    // The copy's table list is the whole schema: a new table must be added to it.
    let mut listed: Vec<&str> = TABLES
        .iter()
        .chain(fleetup::store::copy::FIXED_TABLES)
        .copied()
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, by_name(&a), "store::copy::TABLES names every table");
}

/// Every row of every data table, as text, in primary-key order.
async fn dump(db: &Db) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push((t.to_string(), db.dump_table(t).await.unwrap()));
    }
    out
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn db_migrate_moves_a_sqlite_store_into_postgres_whole() {
    // A SQLite store with a finished lab rollout in it, whatever database the pass uses.
    let rig = Rig::options(3)
        .serve(|a| a.database = Some(DatabaseUrl::in_data_dir(&a.data_dir)))
        .start()
        .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 3\n"))
        .await;
    let detail = rig.wait_end(&id).await;
    assert_eq!(detail["state"], "completed", "{detail:#}");
    let token = rig
        .post("/api/v1/tokens")
        .json(&json!({"name": "noc-viewer", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert!(token.status().is_success(), "{token:?}");
    let devices_before: Value = rig
        .get("/api/v1/devices?limit=1000")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let images_before: Value = rig
        .get("/api/v1/images")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sqlite_path = rig.data_dir().join("fleetup.db");
    let source = Db::open(&sqlite_path).await.unwrap();
    let before = dump(&source).await;
    for t in [
        "devices",
        "images",
        "rollouts",
        "rollout_devices",
        "rollout_events",
        "job_transcripts",
        "api_tokens",
        "audit_log",
    ] {
        let rows = &before.iter().find(|(n, _)| n == t).unwrap().1;
        assert!(!rows.is_empty(), "the source has {t} to copy");
    }

    // `db migrate` refuses a store a service runs on (the rig's still does): copy from a
    // snapshot of it, as a backup restored elsewhere would be.
    let snapshot = tempfile::tempdir().unwrap();
    let snapshot_path = snapshot.path().join("fleetup.db");
    sqlx::query(&format!("VACUUM INTO '{}'", snapshot_path.display()))
        .execute(source.pool())
        .await
        .unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = postgres_for(target_dir.path());
    let from = format!("sqlite://{}", snapshot_path.display());
    let out = rig
        .fleetup(&["db", "migrate", "--from", &from, "--to", &target, "--json"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied: u64 = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    let total: usize = before.iter().map(|(_, rows)| rows.len()).sum();
    assert_eq!(copied, total as u64, "{report:#}");
    // The password never shows.
    let password = target.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(password));

    let pg = Db::connect(&target.parse().unwrap(), target_dir.path())
        .await
        .unwrap();
    assert_eq!(
        dump(&pg).await,
        before,
        "every row of every table, as it was"
    );

    // A second copy into a database that holds data is refused, and changes nothing.
    let again = rig
        .fleetup(&["db", "migrate", "--from", &from, "--to", &target])
        .await;
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds data"), "{err}");
    assert_eq!(dump(&pg).await, before);

    // A service on the copy, with the image files moved along, answers as the old one did,
    // and new rows get new ids.
    let data = target_dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(rig.data_dir().join("images"))
        .arg(&data)
        .status()
        .unwrap();
    assert!(cp.success());
    let on_pg = TestApp::start_with(move |a| {
        a.data_dir = data.clone();
        a.database = Some(target.parse().unwrap());
    })
    .await;
    let get = |path: &str| {
        let req = on_pg.get(path);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(get("/api/v1/devices?limit=1000").await, devices_before);
    assert_eq!(get("/api/v1/images").await, images_before);
    let moved = get(&format!("/api/v1/rollouts/{id}")).await;
    for field in ["state", "name", "created_at", "finished_at"] {
        assert_eq!(moved[field], detail[field], "{field}");
    }
    // The jobs as recorded (a job's live transfer is the serving process's memory, not the
    // store's).
    let recorded = |d: &Value| -> Vec<Value> {
        jobs(d)
            .into_iter()
            .map(|mut j| {
                j.as_object_mut().unwrap().remove("transfer");
                j
            })
            .collect()
    };
    assert_eq!(recorded(&moved), recorded(&detail));
    let added = on_pg
        .post("/api/v1/devices")
        .json(&json!({"name": "new-after-move", "host": "192.0.2.10", "platform": "ios"}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{:?}", added.text().await);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_job_rows_keep_the_rev_of_their_last_change() {
    let (_dir, pg) = pg_store().await;
    crate::store::job_rows_keep_the_rev_of_their_last_change(&pg).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_a_lease_renewal_alone_leaves_the_jobs_rev() {
    let (_dir, pg) = pg_store().await;
    crate::store::a_lease_renewal_alone_leaves_the_jobs_rev(&pg).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_a_step_record_at_a_stale_epoch_is_refused_and_keeps_nothing() {
    let (_dir, pg) = pg_store().await;
    crate::store::a_step_record_at_a_stale_epoch_is_refused_and_keeps_nothing(&pg).await;
}

/// A writer dropped while it waits for the write lock (the HTTP client of an agent's call gave
/// up, a timeout) leaves no connection behind in a transaction: handed back to the pool, one
/// would take the lock once its wait ended and keep it, idle in its transaction, and every
/// writer of every node would wait for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_a_writer_dropped_while_it_waits_for_the_lock_leaves_nothing_held() {
    use fleetup::rollout::model::{EventKind, StepState};
    use sqlx::Executor;
    let (_dir, db) = pg_store().await;
    crate::store::rollout_with_jobs(&db, &["sw1"]).await;
    let write = |db: Db| async move {
        db.record_step(
            "r1",
            "sw1",
            "connect",
            Some(StepState::Started),
            EventKind::StepStarted,
            "connecting",
        )
        .await
    };
    // What the test's own queries of pg_stat_activity count: the other sessions of this
    // database in a state.
    let sessions = |db: Db, what: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND {what}"
        ))
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    let waiting_for_the_lock = "wait_event_type = 'Lock' AND wait_event = 'advisory'";

    // Another node's write holds the lock.
    let mut other = db.pool().acquire().await.unwrap();
    other
        .execute("BEGIN; SELECT pg_advisory_xact_lock(7466346977)")
        .await
        .unwrap();
    let dropped = tokio::spawn(write(db.clone()));
    eventually("the writer to wait for the lock", || async {
        (sessions(db.clone(), waiting_for_the_lock).await == 1).then_some(())
    })
    .await;
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    other.execute("COMMIT").await.unwrap();
    drop(other);

    // The dropped writer's session ends its wait, and nothing is left holding the lock.
    eventually("the dropped writer's session to end its wait", || async {
        let left = sessions(
            db.clone(),
            "(wait_event = 'advisory' OR (state = 'active' AND query LIKE 'BEGIN;%'))",
        )
        .await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(
        sessions(db.clone(), "state LIKE 'idle in transaction%'").await,
        0,
        "no session is left idle in a transaction"
    );
    for _ in 0..3 {
        tokio::time::timeout(std::time::Duration::from_secs(30), write(db.clone()))
            .await
            .expect("a write went through")
            .unwrap();
    }
}

/// The fence's check goes to PostgreSQL with the rollout's and device's names written as
/// constants (`fleetup::store::pg_literal`): whatever a name holds, the server reads it back
/// as it is.
#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_a_name_written_as_a_constant_reads_back_as_it_is() {
    let (_dir, db) = pg_store().await;
    for name in [
        "sw1",
        "it's",
        "a\\b",
        "\\'; DROP TABLE devices; --",
        "''\\\\''",
        "$$x$$",
        "E'x'",
        "zürich-é-交换机",
        "tab\tnewline\n",
    ] {
        let literal = fleetup::store::pg_literal(name).unwrap();
        for conforming in ["on", "off"] {
            let sql =
                format!("SET standard_conforming_strings = {conforming}; SELECT {literal}::text");
            let rows = sqlx::Executor::fetch_all(db.pool(), sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{name:?} as {literal}: {e}"));
            let back: String = sqlx::Row::try_get(&rows[0], 0).unwrap();
            assert_eq!(
                back, name,
                "{literal} with standard_conforming_strings {conforming}"
            );
        }
    }
    assert_eq!(fleetup::store::pg_literal("a\0b"), None);
    assert!(
        sqlx::query("SELECT count(*) FROM devices")
            .fetch_one(db.pool())
            .await
            .is_ok()
    );
}

/// A rollout view's catch-up on PostgreSQL reads in one round trip, from one snapshot, what
/// the reads one by one read: the record and `jobs_rev`, the jobs changed since a count (all
/// without one), the step events after an id. On SQLite there is no such read (`None`): the
/// view reads one by one.
#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn postgres_a_rollout_views_catch_up_reads_at_once_what_the_reads_one_by_one_read() {
    use fleetup::rollout::model::{EventKind, StepState};
    let (_dir, db) = pg_store().await;
    crate::store::rollout_with_jobs(&db, &["sw1", "sw2", "sw3"]).await;
    let step = |device: &'static str, step: &'static str, kind: EventKind| {
        let state = match kind {
            EventKind::StepStarted => StepState::Started,
            _ => StepState::Done,
        };
        db.record_step("r1", device, step, Some(state), kind, "a step")
    };
    step("sw1", "connect", EventKind::StepStarted)
        .await
        .unwrap();
    step("sw1", "connect", EventKind::StepDone).await.unwrap();
    sqlx::query(
        "INSERT INTO rollout_events (rollout_id, at, device, kind, message) \
         VALUES ('r1', '2026-12-08T00:00:00.000Z', 'sw2', $1, 'not a step')",
    )
    .bind(EventKind::Message.as_str())
    .execute(db.pool())
    .await
    .unwrap();
    let db = &db;
    let step_events = |after: i64| async move {
        db.events_after("r1", after, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.step.is_some())
            .map(|e| (e.id, e.kind, e.device, e.at))
            .collect::<Vec<_>>()
    };
    let jobs =
        |jobs: &[fleetup::rollout::model::DeviceJob]| -> Vec<(String, String, Option<String>)> {
            jobs.iter()
                .map(|j| (j.device.clone(), j.state.to_string(), j.step.clone()))
                .collect()
        };

    let all = db
        .rollout_catch_up("r1", true, None, 0)
        .await
        .unwrap()
        .expect("one round trip on PostgreSQL");
    let record = all.record.as_ref().expect("the record, asked for");
    assert_eq!(
        (record.id.as_str(), record.state.as_str()),
        ("r1", "running")
    );
    assert_eq!(all.rev, db.jobs_rev("r1").await.unwrap());
    assert_eq!(jobs(&all.jobs), jobs(&db.jobs("r1").await.unwrap()));
    let read = |events: &[fleetup::rollout::model::Event]| {
        events
            .iter()
            .map(|e| (e.id, e.kind, e.device.clone(), e.at.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(read(&all.events), step_events(0).await);
    assert_eq!(all.events.len(), 2);

    // Since that read: one job written, one step event; nothing else comes again.
    let last = all.events.last().map(|e| e.id).unwrap_or_default();
    step("sw3", "connect", EventKind::StepStarted)
        .await
        .unwrap();
    let since = db
        .rollout_catch_up("r1", false, Some(all.rev), last)
        .await
        .unwrap()
        .unwrap();
    assert!(since.record.is_none());
    assert_eq!(since.rev, db.jobs_rev("r1").await.unwrap());
    assert_eq!(
        jobs(&since.jobs),
        jobs(&db.jobs_changed_since("r1", all.rev).await.unwrap())
    );
    assert_eq!(jobs(&since.jobs)[0].0, "sw3");
    assert_eq!(since.jobs.len(), 1);
    assert_eq!(read(&since.events), step_events(last).await);
    assert_eq!(since.events.len(), 1);

    // No such rollout, whatever its name holds; and the connection went back clean.
    for id in ["nope", "o'brien", "a\\b"] {
        let missing = db.rollout_catch_up(id, true, None, 0).await;
        assert!(
            matches!(missing, Err(fleetup::store::StoreError::NotFound)),
            "{id}: {missing:?}"
        );
    }
    assert_eq!(db.jobs("r1").await.unwrap().len(), 3);
}

//! Applying a source-of-truth sync (`crate::sync`): one transaction that adds, changes, marks
//! absent and brings back the devices of one scope, or, for a dry run, works out the same
//! report and rolls back.

use std::collections::{BTreeMap, BTreeSet};

use super::devices::{fetch_in_tx, find_id, insert, update};
use super::{Db, StoreError, Tx, now_text};
use crate::inventory::DeviceSpec;
use crate::sync::{Changed, FieldChange, SyncReport, SyncSkip};

impl Db {
    /// Apply the devices a scope of a source holds now (`records`: its id there and the
    /// validated description). Devices are matched by their id in the scope first, then by
    /// name; the source keeps name, address, platform, site, model, role (as the groups) and
    /// tags. Port and credentials stay as an operator set them; the defaults in `records` fill
    /// only what a device lacks.
    pub(crate) async fn sync_devices(
        &self,
        scope: &str,
        records: &[(String, DeviceSpec)],
        skipped: &[SyncSkip],
        dry_run: bool,
    ) -> Result<SyncReport, StoreError> {
        let mut tx = self.begin().await?;
        let now = now_text();
        let mut report = SyncReport {
            scope: scope.to_string(),
            dry_run,
            skipped: skipped.to_vec(),
            ..Default::default()
        };
        let kept: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, name, sync_id, absent_since FROM devices WHERE sync_source = $1 AND sync_id IS NOT NULL",
        )
        .bind(scope)
        .fetch_all(&mut *tx)
        .await?;
        let by_source_id: BTreeMap<&str, i64> = kept
            .iter()
            .map(|(id, _, sid, _)| (sid.as_str(), *id))
            .collect();
        let mut seen = BTreeSet::new();
        // Devices the source holds but that could not be taken are not gone.
        for s in skipped {
            if let Some(id) = by_source_id.get(s.id.as_str()) {
                seen.insert(*id);
            }
        }
        for (source_id, spec) in records {
            let found = match by_source_id.get(source_id.as_str()) {
                Some(id) => Some(*id),
                None => find_id(&mut tx, spec.name.as_str()).await?,
            };
            let Some(id) = found else {
                let id = insert(&mut tx, spec).await?;
                link(&mut tx, id, scope, source_id).await?;
                seen.insert(id);
                report.added.push(spec.name.to_string());
                continue;
            };
            seen.insert(id);
            let current = fetch_in_tx(&mut tx, id).await?;
            if current.spec.name != spec.name
                && let Some(other) = find_id(&mut tx, spec.name.as_str()).await?
                && other != id
            {
                report.skipped.push(SyncSkip {
                    id: source_id.clone(),
                    name: spec.name.to_string(),
                    reason: format!(
                        "renamed from {} in the source, but fleetup already has another device named {}",
                        current.spec.name, spec.name
                    ),
                });
                continue;
            }
            let merged = merge(&current.spec, spec);
            let mut fields = differences(&current.spec, &merged);
            let was_scope = current.source.as_ref().map(|s| s.scope.as_str());
            if was_scope != Some(scope) {
                fields.push(FieldChange {
                    field: "source".into(),
                    from: was_scope.unwrap_or_default().to_string(),
                    to: scope.to_string(),
                });
            }
            if merged != current.spec {
                update(&mut tx, id, &merged).await?;
            }
            link(&mut tx, id, scope, source_id).await?;
            let was_absent = current.absent().is_some();
            if was_absent {
                report.returned.push(merged.name.to_string());
            }
            if !fields.is_empty() {
                report.changed.push(Changed {
                    name: merged.name.to_string(),
                    fields,
                });
            } else if !was_absent {
                report.unchanged += 1;
            }
        }
        for (id, name, _, absent_since) in &kept {
            if seen.contains(id) || absent_since.is_some() {
                continue;
            }
            sqlx::query("UPDATE devices SET absent_since = $1, updated_at = $2 WHERE id = $3")
                .bind(&now)
                .bind(&now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            report.gone.push(name.clone());
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// The scope that keeps a device and its id there, if a source of truth keeps it (for
    /// write-back).
    pub(crate) async fn source_id_of(
        &self,
        name: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT sync_source, sync_id FROM devices WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((Some(scope), Some(id))) => Some((scope, id)),
            _ => None,
        })
    }
}

async fn link(tx: &mut Tx, id: i64, scope: &str, source_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE devices SET sync_source = $1, sync_id = $2, absent_since = NULL WHERE id = $3",
    )
    .bind(scope)
    .bind(source_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the source keeps, over what the operator keeps.
fn merge(current: &DeviceSpec, from_source: &DeviceSpec) -> DeviceSpec {
    let mut m = current.clone();
    m.name = from_source.name.clone();
    m.host = from_source.host.clone();
    m.platform = from_source.platform;
    m.site = from_source.site.clone();
    m.model = from_source.model.clone();
    m.groups = from_source.groups.clone();
    m.tags = from_source.tags.clone();
    let c = &mut m.credentials;
    let d = &from_source.credentials;
    if c.username.is_none() {
        c.username = d.username.clone();
    }
    if !c.has_password() {
        c.password_env = d.password_env.clone();
    }
    if !c.has_enable_secret() {
        c.enable_secret_env = d.enable_secret_env.clone();
    }
    m
}

fn differences(a: &DeviceSpec, b: &DeviceSpec) -> Vec<FieldChange> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let list = |l: &[String]| l.join(",");
    let pairs = [
        ("name", a.name.to_string(), b.name.to_string()),
        ("host", a.host.clone(), b.host.clone()),
        ("platform", a.platform.to_string(), b.platform.to_string()),
        ("site", opt(&a.site), opt(&b.site)),
        ("model", opt(&a.model), opt(&b.model)),
        ("groups", list(&a.groups), list(&b.groups)),
        ("tags", list(&a.tags), list(&b.tags)),
        (
            "username",
            opt(&a.credentials.username),
            opt(&b.credentials.username),
        ),
        (
            "password_env",
            opt(&a.credentials.password_env),
            opt(&b.credentials.password_env),
        ),
        (
            "enable_secret_env",
            opt(&a.credentials.enable_secret_env),
            opt(&b.credentials.enable_secret_env),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .map(|(field, from, to)| FieldChange {
            field: field.into(),
            from,
            to,
        })
        .collect()
}

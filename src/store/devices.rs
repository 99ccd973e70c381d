use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, StoreError, Tx, now_text};
use crate::inventory::{
    CredentialSpec, Device, DeviceName, DeviceSpec, Facts, FactsSnapshot, Platform,
};

/// How many sets of facts are kept per device.
pub(super) const FACTS_HISTORY: i64 = 100;

/// Filters for listing devices; every given filter must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceFilter {
    pub group: Option<String>,
    pub tag: Option<String>,
    pub site: Option<String>,
    pub platform: Option<Platform>,
    pub version: Option<String>,
    /// Substring of the name or host.
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct DevicePage {
    pub devices: Vec<Device>,
    pub total: i64,
}

const COLUMNS: &str = "id, name, host, port, platform, site, model, username, password, password_env, \
     enable_secret, enable_secret_env, host_key, version, image, facts_model, serial, uptime, \
     config_register, last_seen, members, created_at, updated_at, sync_source, sync_id, absent_since, \
     (SELECT string_agg(name, '\u{1f}' ORDER BY name) FROM device_groups g WHERE g.device_id = devices.id) AS groups_joined, \
     (SELECT string_agg(name, '\u{1f}' ORDER BY name) FROM device_tags t WHERE t.device_id = devices.id) AS tags_joined";

fn split_joined(s: Option<String>) -> Vec<String> {
    s.map(|s| s.split('\u{1f}').map(str::to_string).collect())
        .unwrap_or_default()
}

fn row_to_device(row: &AnyRow) -> Result<Device, StoreError> {
    let name: String = row.try_get("name")?;
    let platform: String = row.try_get("platform")?;
    let port: i64 = row.try_get("port")?;
    let decode = |what: &str| StoreError::Database(sqlx::Error::Decode(what.to_string().into()));
    Ok(Device {
        id: row.try_get("id")?,
        spec: DeviceSpec {
            name: DeviceName::parse(&name).map_err(|_| decode("device name"))?,
            host: row.try_get("host")?,
            port: u16::try_from(port).map_err(|_| decode("port"))?,
            platform: Platform::parse(&platform).ok_or_else(|| decode("platform"))?,
            site: row.try_get("site")?,
            model: row.try_get("model")?,
            groups: split_joined(row.try_get("groups_joined")?),
            tags: split_joined(row.try_get("tags_joined")?),
            credentials: CredentialSpec {
                username: row.try_get("username")?,
                password: row.try_get("password")?,
                password_env: row.try_get("password_env")?,
                enable_secret: row.try_get("enable_secret")?,
                enable_secret_env: row.try_get("enable_secret_env")?,
            },
        },
        host_key: row.try_get("host_key")?,
        facts: Facts {
            version: row.try_get("version")?,
            image: row.try_get("image")?,
            model: row.try_get("facts_model")?,
            serial: row.try_get("serial")?,
            uptime: row.try_get("uptime")?,
            config_register: row.try_get("config_register")?,
            last_seen: row.try_get("last_seen")?,
            // Written by fleetup only; an unreadable value reads as none.
            members: row
                .try_get::<Option<String>, _>("members")?
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        source: match (
            row.try_get::<Option<String>, _>("sync_source")?,
            row.try_get::<Option<String>, _>("sync_id")?,
        ) {
            (Some(scope), Some(id)) => Some(crate::inventory::SourceLink {
                scope,
                id,
                absent_since: row.try_get("absent_since")?,
            }),
            _ => None,
        },
    })
}

fn members_json(members: &[crate::inventory::Member]) -> Option<String> {
    if members.is_empty() {
        return None;
    }
    serde_json::to_string(members).ok()
}

/// Whether an upsert created or changed a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    Created,
    Updated,
    Unchanged,
}

impl Db {
    pub(crate) async fn create_device(&self, spec: &DeviceSpec) -> Result<Device, StoreError> {
        let mut tx = self.begin().await?;
        if find_id(&mut tx, spec.name.as_str()).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "a device named {} already exists",
                spec.name
            )));
        }
        let id = insert(&mut tx, spec).await?;
        tx.commit().await?;
        self.device_by_id(id).await
    }

    /// Replace the operator-given description of an existing device; facts and host key stay.
    pub(crate) async fn update_device(
        &self,
        name: &str,
        spec: &DeviceSpec,
    ) -> Result<Device, StoreError> {
        let mut tx = self.begin().await?;
        let id = find_id(&mut tx, name).await?.ok_or(StoreError::NotFound)?;
        if spec.name.as_str() != name && find_id(&mut tx, spec.name.as_str()).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "a device named {} already exists",
                spec.name
            )));
        }
        update(&mut tx, id, spec).await?;
        tx.commit().await?;
        self.device_by_id(id).await
    }

    /// Create or update many devices in one transaction: all of them or none.
    pub(crate) async fn upsert_devices(
        &self,
        specs: &[DeviceSpec],
    ) -> Result<Vec<Upserted>, StoreError> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let result = match find_id(&mut tx, spec.name.as_str()).await? {
                None => {
                    insert(&mut tx, spec).await?;
                    Upserted::Created
                }
                Some(id) => {
                    let current = fetch_in_tx(&mut tx, id).await?;
                    let mut spec = spec.clone();
                    spec.credentials
                        .keep_secrets_from(&current.spec.credentials);
                    let spec = &spec;
                    if current.spec == *spec {
                        Upserted::Unchanged
                    } else {
                        update(&mut tx, id, spec).await?;
                        Upserted::Updated
                    }
                }
            };
            out.push(result);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn device_by_id(&self, id: i64) -> Result<Device, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        row_to_device(&row)
    }

    pub async fn device_by_name(&self, name: &str) -> Result<Device, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        row_to_device(&row)
    }

    pub(crate) async fn delete_device(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM devices WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub(crate) async fn list_devices(&self, f: &DeviceFilter) -> Result<DevicePage, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        // Each clause's parameter is the bind pushed just before it: `$N` with N = binds.len().
        let mut clause = |bind: String, sql: &dyn Fn(usize) -> String| {
            binds.push(bind);
            clauses.push(sql(binds.len()));
        };
        if let Some(g) = &f.group {
            clause(g.clone(), &|n| {
                format!(
                    "EXISTS (SELECT 1 FROM device_groups g WHERE g.device_id = devices.id AND g.name = ${n})"
                )
            });
        }
        if let Some(t) = &f.tag {
            clause(t.clone(), &|n| {
                format!(
                    "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id AND t.name = ${n})"
                )
            });
        }
        if let Some(s) = &f.site {
            clause(s.clone(), &|n| format!("site = ${n}"));
        }
        if let Some(p) = f.platform {
            clause(p.as_str().to_string(), &|n| format!("platform = ${n}"));
        }
        if let Some(v) = &f.version {
            clause(v.clone(), &|n| format!("version = ${n}"));
        }
        if let Some(q) = &f.search {
            // A case-insensitive substring of the name or the host, the same on both servers
            // (SQLite's LIKE ignores ASCII case, PostgreSQL's does not: both sides are lowered).
            clause(format!("%{}%", like_escape(&q.to_lowercase())), &|n| {
                format!("(lower(name) LIKE ${n} ESCAPE '\\' OR lower(host) LIKE ${n} ESCAPE '\\')")
            });
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let count_sql = format!("SELECT count(*) FROM devices{where_sql}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for b in &binds {
            count = count.bind(b);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM devices{where_sql} ORDER BY name LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let q = q.bind(f.limit).bind(f.offset);
        // The count and the page at once, each on a connection of its own: a page waits for
        // one round trip, not two (the dashboard polls it every second).
        let (total, rows) = tokio::try_join!(count.fetch_one(&self.pool), q.fetch_all(&self.pool))?;
        let devices = rows.iter().map(row_to_device).collect::<Result<_, _>>()?;
        Ok(DevicePage { devices, total })
    }

    /// Every device, ordered by name (exports, target selection).
    pub(crate) async fn all_devices(&self) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM devices ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_device).collect()
    }

    /// Record what the device reported about itself, seen now (`facts.last_seen` is ignored),
    /// and append it to the device's facts history (the last [`FACTS_HISTORY`] are kept).
    pub(crate) async fn set_facts(&self, name: &str, facts: &Facts) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        set_facts_in(&mut tx, name, facts).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The facts read from a device over time, newest first.
    pub(crate) async fn facts_history(&self, name: &str) -> Result<Vec<FactsSnapshot>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.* FROM device_facts_history h JOIN devices d ON d.id = h.device_id \
             WHERE d.name = $1 ORDER BY h.id DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FactsSnapshot {
                    version: r.try_get("version")?,
                    image: r.try_get("image")?,
                    model: r.try_get("model")?,
                    serial: r.try_get("serial")?,
                    uptime: r.try_get("uptime")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Pin (or, with `None`, forget) the device's SSH host key.
    pub(crate) async fn set_host_key(
        &self,
        name: &str,
        key: Option<&str>,
    ) -> Result<(), StoreError> {
        // A job writes this on its first login: it takes its turn with the other writers.
        let mut tx = self.begin().await?;
        if let Err(e) = set_host_key_in(&mut tx, name, key).await {
            tx.rollback().await?;
            return Err(e);
        }
        tx.commit().await
    }

    /// Counts per (site, version) for the fleet view.
    pub(crate) async fn version_counts(
        &self,
    ) -> Result<Vec<(Option<String>, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT site, version, count(*) AS n FROM devices GROUP BY site, version ORDER BY site, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("site")?, r.try_get("version")?, r.try_get("n")?)))
            .collect()
    }
}

/// A device's facts as read now, and one more line of its facts history (the oldest beyond
/// the history's length go).
pub(super) async fn set_facts_in(tx: &mut Tx, name: &str, facts: &Facts) -> Result<(), StoreError> {
    let now = now_text();
    let id = sqlx::query_scalar::<_, i64>(
        "UPDATE devices SET version = $1, image = $2, facts_model = $3, serial = $4, uptime = $5, \
         config_register = $6, last_seen = $7, members = $8, updated_at = $9 WHERE name = $10 RETURNING id",
    )
    .bind(&facts.version)
    .bind(&facts.image)
    .bind(&facts.model)
    .bind(&facts.serial)
    .bind(&facts.uptime)
    .bind(&facts.config_register)
    .bind(&now)
    .bind(members_json(&facts.members))
    .bind(&now)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    sqlx::query(
        "INSERT INTO device_facts_history (device_id, version, image, model, serial, uptime, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&facts.version)
    .bind(&facts.image)
    .bind(&facts.model)
    .bind(&facts.serial)
    .bind(&facts.uptime)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM device_facts_history WHERE device_id = $1 AND id NOT IN \
         (SELECT id FROM device_facts_history WHERE device_id = $2 ORDER BY id DESC LIMIT $3)",
    )
    .bind(id)
    .bind(id)
    .bind(FACTS_HISTORY)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The SSH host key kept for a device (`None`: forget it); `NotFound` for no such device.
pub(super) async fn set_host_key_in(
    tx: &mut Tx,
    name: &str,
    key: Option<&str>,
) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE devices SET host_key = $1, updated_at = $2 WHERE name = $3")
        .bind(key)
        .bind(now_text())
        .bind(name)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn find_id(tx: &mut Tx, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT id FROM devices WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

pub(super) async fn fetch_in_tx(tx: &mut Tx, id: i64) -> Result<Device, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    row_to_device(&row)
}

pub(super) async fn insert(tx: &mut Tx, spec: &DeviceSpec) -> Result<i64, StoreError> {
    let now = now_text();
    let c = &spec.credentials;
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO devices (name, host, port, platform, site, model, username, password, password_env, \
         enable_secret, enable_secret_env, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(spec.name.as_str())
    .bind(&spec.host)
    .bind(i64::from(spec.port))
    .bind(spec.platform.as_str())
    .bind(&spec.site)
    .bind(&spec.model)
    .bind(&c.username)
    .bind(&c.password)
    .bind(&c.password_env)
    .bind(&c.enable_secret)
    .bind(&c.enable_secret_env)
    .bind(&now)
    .bind(&now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| StoreError::from_unique(e, format!("a device named {} already exists", spec.name)))?;
    write_labels(tx, id, spec).await?;
    Ok(id)
}

pub(super) async fn update(tx: &mut Tx, id: i64, spec: &DeviceSpec) -> Result<(), StoreError> {
    let c = &spec.credentials;
    sqlx::query(
        "UPDATE devices SET name = $1, host = $2, port = $3, platform = $4, site = $5, model = $6, username = $7, \
         password = $8, password_env = $9, enable_secret = $10, enable_secret_env = $11, updated_at = $12 WHERE id = $13",
    )
    .bind(spec.name.as_str())
    .bind(&spec.host)
    .bind(i64::from(spec.port))
    .bind(spec.platform.as_str())
    .bind(&spec.site)
    .bind(&spec.model)
    .bind(&c.username)
    .bind(&c.password)
    .bind(&c.password_env)
    .bind(&c.enable_secret)
    .bind(&c.enable_secret_env)
    .bind(now_text())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM device_groups WHERE device_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    write_labels(tx, id, spec).await
}

async fn write_labels(tx: &mut Tx, id: i64, spec: &DeviceSpec) -> Result<(), StoreError> {
    for g in &spec.groups {
        sqlx::query(
            "INSERT INTO device_groups (device_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(g)
        .execute(&mut **tx)
        .await?;
    }
    for t in &spec.tags {
        sqlx::query(
            "INSERT INTO device_tags (device_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(t)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// `s` with LIKE's wildcards (`%`, `_`) and the escape character itself escaped by `\\`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_facts_history_keeps_the_last_ones_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        let spec = DeviceSpec {
            name: DeviceName::parse("sw1").unwrap(),
            host: "10.0.0.1".into(),
            port: 22,
            platform: Platform::Ios,
            site: None,
            model: None,
            groups: Vec::new(),
            tags: Vec::new(),
            credentials: CredentialSpec::default(),
        };
        db.create_device(&spec).await.unwrap();
        let n = FACTS_HISTORY as usize + 5;
        for i in 0..n {
            let facts = Facts {
                version: Some(format!("15.2(7)E{i}")),
                ..Facts::default()
            };
            db.set_facts("sw1", &facts).await.unwrap();
        }
        let history = db.facts_history("sw1").await.unwrap();
        assert_eq!(history.len(), FACTS_HISTORY as usize);
        let newest = format!("15.2(7)E{}", n - 1);
        assert_eq!(history[0].version.as_deref(), Some(newest.as_str()));
        assert_eq!(history[99].version.as_deref(), Some("15.2(7)E5"));
        assert_eq!(
            db.device_by_name("sw1").await.unwrap().facts.version,
            Some(newest)
        );
        assert!(matches!(
            db.set_facts("nope", &Facts::default()).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn search_is_a_case_insensitive_substring_and_wildcards_are_literal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        for (name, host) in [
            ("core_sw1", "10.0.0.1"),
            ("coreXsw2", "10.0.0.2"),
            ("EDGE-1", "edge.example.NET"),
        ] {
            let spec = DeviceSpec {
                name: DeviceName::parse(name).unwrap(),
                host: host.into(),
                port: 22,
                platform: Platform::Ios,
                site: None,
                model: None,
                groups: vec!["lab".into()],
                tags: Vec::new(),
                credentials: CredentialSpec::default(),
            };
            db.create_device(&spec).await.unwrap();
        }
        let names = |search: &str| {
            let db = db.clone();
            let f = DeviceFilter {
                search: Some(search.to_string()),
                group: Some("lab".into()),
                limit: 10,
                ..DeviceFilter::default()
            };
            async move {
                let page = db.list_devices(&f).await.unwrap();
                assert_eq!(page.total as usize, page.devices.len());
                page.devices
                    .into_iter()
                    .map(|d| d.name().to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(names("core_").await, ["core_sw1"], "'_' is not a wildcard");
        assert_eq!(
            names("%").await,
            Vec::<String>::new(),
            "'%' is not a wildcard"
        );
        assert_eq!(
            names("edge").await,
            ["EDGE-1"],
            "the name, whatever its case"
        );
        assert_eq!(
            names("EXAMPLE.net").await,
            ["EDGE-1"],
            "the host, whatever its case"
        );
        assert_eq!(names("10.0.0.").await.len(), 2);
    }
}

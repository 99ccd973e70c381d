//! Moving a whole store from one database to another (`fleetup db migrate`), and the schema as
//! each server describes it (for the test that the two migration sets agree).

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use super::{Backend, Db, StoreError};

/// Every table of the schema, parents before children (foreign keys hold at every insert).
/// `write_probe` holds one fixed row that both sides already have.
pub const TABLES: &[&str] = &[
    "devices",
    "device_groups",
    "device_tags",
    "images",
    "rollouts",
    "rollout_plans",
    "rollout_devices",
    "rollout_events",
    "job_transcripts",
    "device_facts_history",
    "config_backups",
    "webhook_deliveries",
    "api_tokens",
    "audit_log",
    "golden_images",
    "nodes",
];

/// Tables of the schema that are not data (they are the same in every store).
pub const FIXED_TABLES: &[&str] = &["write_probe"];

/// Rows per INSERT statement: well under both servers' limit on parameters (26 columns at most).
const BATCH: usize = 200;

/// The two kinds of column the schema uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Integer,
    Text,
}

/// One column as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub not_null: bool,
    /// Its position in the primary key (1-based), or 0.
    pub primary_key: u32,
}

/// One table as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// The indexes made by the migrations (not the ones a key makes by itself), by name, with
    /// their columns in order.
    pub indexes: Vec<(String, Vec<String>)>,
    /// The column sets that must be unique (UNIQUE constraints and the primary key).
    pub unique: Vec<Vec<String>>,
}

/// What a copy moved: rows per table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableRows>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

impl CopyReport {
    pub fn render(&self) -> String {
        let mut out = format!("{:<22} {:>10}\n", "TABLE", "ROWS");
        for t in &self.tables {
            out.push_str(&format!("{:<22} {:>10}\n", t.table, t.rows));
        }
        out
    }
}

fn kind_of(declared: &str) -> Result<ColumnKind, StoreError> {
    let d = declared.to_ascii_lowercase();
    if d.contains("int") {
        Ok(ColumnKind::Integer)
    } else if d.contains("text") || d.contains("char") {
        Ok(ColumnKind::Text)
    } else {
        Err(StoreError::Database(sqlx::Error::Decode(
            format!("a column of type {declared}, which fleetup's schema does not use").into(),
        )))
    }
}

impl Db {
    /// The schema's tables as this server describes them, by name (sqlx's own bookkeeping left
    /// out).
    pub async fn schema(&self) -> Result<Vec<Table>, StoreError> {
        let names: Vec<String> = match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
                     ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?
            }
            Backend::Postgres => {
                sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     AND table_name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY table_name",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut tables = Vec::with_capacity(names.len());
        for name in names {
            tables.push(self.table(&name).await?);
        }
        Ok(tables)
    }

    async fn table(&self, name: &str) -> Result<Table, StoreError> {
        let mut columns = Vec::new();
        let mut indexes = Vec::new();
        let mut unique = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let rows = sqlx::query(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                for r in rows {
                    let pk: i64 = r.try_get(3)?;
                    columns.push(Column {
                        name: r.try_get(0)?,
                        kind: kind_of(&r.try_get::<String, _>(1)?)?,
                        // A primary key never holds NULL in this schema (SQLite would let a
                        // TEXT key, but fleetup never writes one).
                        not_null: r.try_get::<i64, _>(2)? != 0 || pk > 0,
                        primary_key: u32::try_from(pk).unwrap_or(0),
                    });
                }
                let list = sqlx::query(
                    "SELECT name, \"unique\", origin FROM pragma_index_list($1) ORDER BY name",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                for r in list {
                    let index: String = r.try_get(0)?;
                    let cols: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                            .bind(&index)
                            .fetch_all(&self.pool)
                            .await?;
                    let origin: String = r.try_get(2)?;
                    if r.try_get::<i64, _>(1)? != 0 {
                        unique.push(cols.clone());
                    }
                    if origin == "c" {
                        indexes.push((index, cols));
                    }
                }
                // An INTEGER PRIMARY KEY is the rowid: SQLite lists no index for it.
                let mut pk: Vec<&Column> = columns.iter().filter(|c| c.primary_key > 0).collect();
                pk.sort_by_key(|c| c.primary_key);
                let pk: Vec<String> = pk.iter().map(|c| c.name.clone()).collect();
                if !pk.is_empty() && !unique.contains(&pk) {
                    unique.push(pk);
                }
            }
            Backend::Postgres => {
                let rows = sqlx::query(
                    "SELECT c.column_name::text, c.data_type::text, c.is_nullable::text, \
                     coalesce((SELECT k.ordinal_position::bigint \
                        FROM information_schema.table_constraints t \
                        JOIN information_schema.key_column_usage k \
                          ON k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
                         AND k.table_schema = t.table_schema \
                       WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name \
                         AND t.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name), 0) \
                     FROM information_schema.columns c \
                     WHERE c.table_schema = current_schema() AND c.table_name = $1 \
                     ORDER BY c.ordinal_position",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                for r in rows {
                    let pk: i64 = r.try_get(3)?;
                    columns.push(Column {
                        name: r.try_get(0)?,
                        kind: kind_of(&r.try_get::<String, _>(1)?)?,
                        not_null: r.try_get::<String, _>(2)? == "NO",
                        primary_key: u32::try_from(pk).unwrap_or(0),
                    });
                }
                // Every index with its columns in order, and whether a constraint made it.
                let list = sqlx::query(
                    "SELECT i.relname::text, x.indisunique, \
                     EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid), \
                     array_to_string(ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY u(n, o) \
                        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.n ORDER BY u.o), ',') \
                     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                     JOIN pg_class t ON t.oid = x.indrelid \
                     WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace \
                     ORDER BY i.relname",
                )
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                for r in list {
                    let index: String = r.try_get(0)?;
                    let is_unique: bool = r.try_get(1)?;
                    let by_constraint: bool = r.try_get(2)?;
                    let cols: Vec<String> = r
                        .try_get::<String, _>(3)?
                        .split(',')
                        .map(str::to_string)
                        .collect();
                    if is_unique {
                        unique.push(cols.clone());
                    }
                    if !by_constraint {
                        indexes.push((index, cols));
                    }
                }
            }
        }
        unique.sort();
        Ok(Table {
            name: name.to_string(),
            columns,
            indexes,
            unique,
        })
    }

    /// Every row of `table`, each value as text (NULL as `None`), in column order, sorted: for
    /// comparing two stores.
    pub async fn dump_table(&self, table: &str) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        let columns = self.table(table).await?.columns;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let rows = sqlx::query(&format!("SELECT {} FROM {table}", names.join(", ")))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                values.push(match c.kind {
                    ColumnKind::Integer => row.try_get::<Option<i64>, _>(i)?.map(|v| v.to_string()),
                    ColumnKind::Text => row.try_get::<Option<String>, _>(i)?,
                });
            }
            out.push(values);
        }
        out.sort();
        Ok(out)
    }

    /// Rows in each data table.
    pub async fn row_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::with_capacity(TABLES.len());
        for t in TABLES {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {t}"))
                .fetch_one(&self.pool)
                .await?;
            out.push((t.to_string(), u64::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }

    /// Copy every row of `self` into `to`, in one transaction on `to`, which must hold no data
    /// yet (its migrations applied, nothing else). Ids, timestamps and counters are kept as
    /// they are, and the copy is checked table by table before it is committed.
    pub async fn copy_into(&self, to: &Db) -> Result<CopyReport, StoreError> {
        let held: Vec<String> = to
            .row_counts()
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} ({n} rows)"))
            .collect();
        if !held.is_empty() {
            return Err(StoreError::Conflict(format!(
                "the target database already holds data: {}; fleetup copies only into an empty \
                 database",
                held.join(", ")
            )));
        }
        let mut report = CopyReport::default();
        // Every read in one snapshot of the source, even if a service still writes to it.
        let mut src = self.pool.acquire().await?;
        let snapshot = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        src.execute(snapshot).await?;
        let mut tx = to.begin().await?;
        for &table in TABLES {
            let columns = to.table(table).await?.columns;
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            let select = format!("SELECT {} FROM {table} ORDER BY 1", names.join(", "));
            let mut rows = sqlx::query(&select).fetch(&mut *src);
            let mut batch: Vec<AnyRow> = Vec::with_capacity(BATCH);
            let mut copied = 0u64;
            while let Some(row) = rows.try_next().await? {
                batch.push(row);
                if batch.len() == BATCH {
                    copied += insert(&mut tx, table, &columns, &batch).await?;
                    batch.clear();
                }
            }
            drop(rows);
            copied += insert(&mut tx, table, &columns, &batch).await?;
            report.tables.push(TableRows {
                table: table.to_string(),
                rows: copied,
            });
        }
        // Rows copied keep their rev and move no counter (the triggers stamp only rows without
        // one); a source's rows from before revs existed would: put back the source's jobs_rev.
        let revs: Vec<(String, i64)> = sqlx::query_as("SELECT id, jobs_rev FROM rollouts")
            .fetch_all(&mut *src)
            .await?;
        src.execute("ROLLBACK").await?;
        for (id, rev) in revs {
            sqlx::query("UPDATE rollouts SET jobs_rev = $1 WHERE id = $2")
                .bind(rev)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| to.failed(e))?;
        }
        if to.backend == Backend::Postgres {
            // Identity columns go on after the largest id copied, not from 1.
            for &table in TABLES {
                let has_id = to
                    .table(table)
                    .await?
                    .columns
                    .iter()
                    .any(|c| c.name == "id" && c.kind == ColumnKind::Integer);
                if has_id {
                    sqlx::query(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                         coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    ))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| to.failed(e))?;
                }
            }
        }
        for TableRows {
            table,
            rows: copied,
        } in &report.tables
        {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut *tx)
                .await?;
            if u64::try_from(n).ok() != Some(*copied) {
                return Err(StoreError::Conflict(format!(
                    "{table}: {copied} rows read but {n} in the target; nothing was committed"
                )));
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// Insert `rows` (read with `columns`, in order) into `table`; returns how many.
async fn insert(
    tx: &mut super::Tx,
    table: &str,
    columns: &[Column],
    rows: &[AnyRow],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let width = columns.len();
    let values: Vec<String> = (0..rows.len())
        .map(|r| {
            let ps: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", ps.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES {}",
        names.join(", "),
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for row in rows {
        for (i, c) in columns.iter().enumerate() {
            q = match c.kind {
                ColumnKind::Integer => q.bind(row.try_get::<Option<i64>, _>(i)?),
                ColumnKind::Text => q.bind(row.try_get::<Option<String>, _>(i)?),
            };
        }
    }
    let done = q.execute(&mut **tx).await?;
    Ok(done.rows_affected())
}

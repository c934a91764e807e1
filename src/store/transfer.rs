//! Run history moved between homes (`fuse export --runs` / `fuse import`):
//! the rows of another database's history tables copied into this one.

use std::path::Path;

use super::Store;
use crate::error::Result;

/// History tables in the order their references need, with the columns a
/// copy leaves out (row ids this database assigns itself).
const TABLES: &[(&str, &[&str])] = &[
    ("definitions", &[]),
    ("executions", &["workflow_id"]),
    ("node_runs", &["id"]),
    ("logs", &["id"]),
    ("node_steps", &[]),
    ("blobs", &[]),
    ("blob_refs", &[]),
];

impl Store {
    /// Copies the run history of the database at `src` into this one (rows
    /// already here are kept); runs are tied to this home's workflows by name.
    /// Returns the number of runs copied.
    pub fn copy_history_from(&mut self, src: &Path) -> Result<usize> {
        let name = src.to_str().ok_or_else(|| {
            crate::Error::Setting(format!("{} is not a UTF-8 path", src.display()))
        })?;
        self.conn
            .execute("ATTACH DATABASE ?1 AS src", [name])
            .map_err(|e| self.db_err("opening the exported history", e))?;
        let copied = self.copy_attached();
        let detached = self.conn.execute_batch("DETACH DATABASE src");
        let copied = copied?;
        detached.map_err(|e| self.db_err("closing the exported history", e))?;
        Ok(copied)
    }

    fn copy_attached(&mut self) -> Result<usize> {
        let columns = |store: &Store, schema: &str, table: &str| -> Result<Vec<String>> {
            let mut stmt = store
                .conn
                .prepare(&format!("PRAGMA {schema}.table_info({table})"))
                .map_err(|e| store.db_err("reading the history schema", e))?;
            stmt.query_map([], |r| r.get::<_, String>(1))
                .and_then(|r| r.collect())
                .map_err(|e| store.db_err("reading the history schema", e))
        };
        let mut plans = Vec::new();
        for (table, skip) in TABLES {
            let theirs = columns(self, "src", table)?;
            let ours = columns(self, "main", table)?;
            let shared: Vec<String> = ours
                .into_iter()
                .filter(|c| theirs.contains(c) && !skip.contains(&c.as_str()))
                .collect();
            if !shared.is_empty() {
                plans.push((*table, shared));
            }
        }
        let before: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM main.executions", [], |r| r.get(0))
            .map_err(|e| self.db_err("counting runs", e))?;
        let (tx, err) = self.write_tx("importing run history")?;
        // References (a retry's original, a sub-run's parent) are checked at commit.
        // Runs already here keep their rows: only new runs bring attempts,
        // logs and steps (so importing twice adds nothing).
        tx.execute_batch(
            "PRAGMA defer_foreign_keys = ON;
             CREATE TEMP TABLE IF NOT EXISTS had (id TEXT PRIMARY KEY);
             DELETE FROM temp.had;
             INSERT INTO temp.had SELECT id FROM main.executions;",
        )
        .map_err(|e| err.of(e))?;
        for (table, cols) in &plans {
            let list = cols.join(", ");
            let sql = if *table == "executions" {
                format!(
                    "INSERT OR IGNORE INTO main.executions ({list}, workflow_id)
                     SELECT {list}, (SELECT id FROM main.workflows w WHERE w.name = s.workflow_name)
                     FROM src.executions s ORDER BY created_at"
                )
            } else if matches!(*table, "node_runs" | "logs" | "node_steps") {
                format!(
                    "INSERT OR IGNORE INTO main.{table} ({list}) SELECT {list} FROM src.{table}
                     WHERE execution_id IN (SELECT id FROM src.executions)
                       AND execution_id NOT IN (SELECT id FROM temp.had)"
                )
            } else {
                format!(
                    "INSERT OR IGNORE INTO main.{table} ({list}) SELECT {list} FROM src.{table}"
                )
            };
            tx.execute(&sql, []).map_err(|e| err.of(e))?;
        }
        tx.commit().map_err(|e| err.of(e))?;
        let after: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM main.executions", [], |r| r.get(0))
            .map_err(|e| self.db_err("counting runs", e))?;
        Ok(usize::try_from(after - before).unwrap_or(0))
    }
}

//! The schema, migration by migration (`migrations/sqlite/NNNN_name.sql`).
//!
//! Applied migrations are listed in `_sqlx_migrations`, the table (and checksums: SHA-384 of
//! the SQL) that earlier versions, which migrated with sqlx, wrote: a database they created
//! opens unchanged.

use rusqlite::Connection;

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "init", sql: include_str!("../../../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, description: "sns", sql: include_str!("../../../migrations/sqlite/0002_sns.sql") },
    Migration { version: 3, description: "things", sql: include_str!("../../../migrations/sqlite/0003_things.sql") },
    Migration { version: 4, description: "jobs", sql: include_str!("../../../migrations/sqlite/0004_jobs.sql") },
    Migration { version: 5, description: "ota", sql: include_str!("../../../migrations/sqlite/0005_ota.sql") },
    Migration {
        version: 6,
        description: "event_resources_by_seq",
        sql: include_str!("../../../migrations/sqlite/0006_event_resources_by_seq.sql"),
    },
    Migration {
        version: 7,
        description: "jobs_due",
        sql: include_str!("../../../migrations/sqlite/0007_jobs_due.sql"),
    },
    Migration {
        version: 8,
        description: "events_by_account_seq",
        sql: include_str!("../../../migrations/sqlite/0008_events_by_account_seq.sql"),
    },
    Migration {
        version: 9,
        description: "event_keys",
        sql: include_str!("../../../migrations/sqlite/0009_event_keys.sql"),
    },
    Migration {
        version: 10,
        description: "things_by_type",
        sql: include_str!("../../../migrations/sqlite/0010_things_by_type.sql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration {0} was changed after it was applied to this database")]
    Changed(i64),
    #[error("migration {0} failed earlier and left the database partly migrated")]
    Dirty(i64),
    #[error("the database was migrated by a newer version (migration {0} is unknown); upgrade otatrail")]
    Newer(i64),
}

fn checksum(sql: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, sql.as_bytes()).as_ref().to_vec()
}

/// Applies every migration the database lacks, each in its own transaction.
pub fn run(conn: &mut Connection) -> Result<(), MigrationError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );",
    )?;
    let applied: Vec<(i64, bool, Vec<u8>)> = conn
        .prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (version, success, sum) in &applied {
        if !success {
            return Err(MigrationError::Dirty(*version));
        }
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => return Err(MigrationError::Newer(*version)),
            Some(m) if checksum(m.sql) != *sum => return Err(MigrationError::Changed(*version)),
            Some(_) => {}
        }
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version)) {
        let started = std::time::Instant::now();
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, 1, ?, ?)",
            rusqlite::params![m.version, m.description, checksum(m.sql), started.elapsed().as_nanos() as i64],
        )?;
        tx.commit()?;
        tracing::info!(version = m.version, description = m.description, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_changed_or_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn).unwrap();
        run(&mut conn).unwrap();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
        conn.execute("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2", []).unwrap();
        assert!(matches!(run(&mut conn), Err(MigrationError::Changed(2))));
        conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 2", [checksum(MIGRATIONS[1].sql)]).unwrap();
        conn.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'x', 1, x'00', 0)", []).unwrap();
        assert!(matches!(run(&mut conn), Err(MigrationError::Newer(99))));
    }
}

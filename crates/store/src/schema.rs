//! Opening the database: pragmas for durability, and the schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::StoreError;

const SCHEMA_VERSION: i64 = 2;

pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL with FULL sync: each commit is fsynced before it returns. secure_delete
    // overwrites deleted content, so erased templates do not linger in free pages.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 => {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS galleries (
                     name TEXT PRIMARY KEY,
                     index_spec TEXT NOT NULL,
                     match_threshold REAL NOT NULL,
                     model_name TEXT NOT NULL,
                     model_version TEXT NOT NULL,
                     embedding_size INTEGER NOT NULL,
                     created_ms INTEGER NOT NULL,
                     seq INTEGER NOT NULL DEFAULT 0,
                     index_parameters TEXT NOT NULL DEFAULT ''
                 );
                 CREATE TABLE IF NOT EXISTS identities (
                     gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
                     identity_id TEXT NOT NULL,
                     display_name TEXT NOT NULL,
                     metadata TEXT NOT NULL,
                     created_ms INTEGER NOT NULL,
                     PRIMARY KEY (gallery, identity_id)
                 );
                 CREATE TABLE IF NOT EXISTS faces (
                     face_id INTEGER PRIMARY KEY AUTOINCREMENT,
                     gallery TEXT NOT NULL,
                     identity_id TEXT NOT NULL,
                     embedding BLOB NOT NULL,
                     FOREIGN KEY (gallery, identity_id)
                         REFERENCES identities(gallery, identity_id) ON DELETE CASCADE
                 );
                 CREATE INDEX IF NOT EXISTS faces_by_identity ON faces(gallery, identity_id);
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        // Version 1 kept no index parameters: its galleries ran FAISS's defaults.
        1 => conn.execute_batch(
            "BEGIN;
             ALTER TABLE galleries ADD COLUMN index_parameters TEXT NOT NULL DEFAULT '';
             PRAGMA user_version = 2;
             COMMIT;",
        )?,
        SCHEMA_VERSION => {}
        other => {
            return Err(StoreError::Corrupt(format!(
                "database schema version {other} is newer than this server's {SCHEMA_VERSION}"
            )))
        }
    }
    Ok(conn)
}

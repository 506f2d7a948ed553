//! The gallery record in PostgreSQL, shared by every replica (`gallery.backend =
//! "postgres"`).
//!
//! PostgreSQL is the system of record: galleries, identities and templates in tables
//! like SQLite's, plus an append-only change log. Every write takes the next number of
//! one counter row in the same transaction, so writes commit one at a time and the log
//! has no gaps: a replica that applies the log in order, from the number it loaded at,
//! holds exactly what the tables hold. `NOTIFY` wakes the replicas; the log, not the
//! notification, is the truth, so a missed notification only delays a replica until
//! its next poll.
//!
//! The log names templates by face id and does not copy their embeddings: a replica
//! reads them from the faces table when it applies the change, so that erasing an
//! identity (DeleteIdentity, then `CompactStorage`'s `VACUUM FULL`) leaves no copy of
//! its templates in the log.
//!
//! Each replica applies every change, its own included, through the same hook the
//! SQLite store calls, and [`PgStore::apply`] returns only once its own replica has
//! applied the change: a caller reads its own writes on the replica it wrote to, and on
//! any other once that one has reached the change's sequence number.
//!
//! tokio-postgres with deadpool-postgres: the async client the tokio ecosystem keeps,
//! with a pool that reconnects after a database restart; sqlx would bring its own
//! runtime glue, macros and a second TLS stack for the same queries.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, GenericClient, NoTls, Row};

use crate::codec::{blob_to_embedding, embedding_to_blob, json_to_metadata, metadata_to_json};
use crate::rules::{check_dims, merge_identity};
use crate::types::{
    Applied, Change, FaceRow, GalleryContents, GalleryRecord, IdentityRow, ModelTag,
};
use crate::StoreError;

/// The channel every write notifies.
const CHANNEL: &str = "vargid_changes";
/// Changes read from the log per query while following.
const LOG_PAGE: i64 = 512;
/// How often a replica polls the log when no notification came (a lost notification,
/// or a listening connection being re-established).
const POLL: Duration = Duration::from_millis(500);
/// Arbitrary key of the advisory lock that serialises schema creation by replicas
/// starting at once.
const SCHEMA_LOCK: i64 = 0x7661_7267_6964; // "vargid"

/// What a replica's follower hands its hook, in log order.
pub enum Followed<'a> {
    /// The next change.
    Change(&'a LoggedChange),
    /// The replica fell behind the trimmed log (or found a gap): every gallery as of
    /// `seq`, to rebuild from; changes after it follow.
    Reset(PgSnapshot),
}

/// Called on the replica's follower task.
pub type ChangeHook = Box<dyn Fn(Followed<'_>) + Send + Sync + 'static>;

/// Changes the log keeps by default: a replica further behind than this rebuilds from
/// the tables instead of catching up change by change.
pub const DEFAULT_LOG_KEEP: i64 = 100_000;
/// How often a replica trims the log to its last `log_keep` changes.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// One entry of the change log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoggedChange {
    pub seq: i64,
    /// The writer's clock at commit (replication lag is measured against it).
    pub committed_unix_ms: i64,
    pub applied: Applied,
}

/// Every gallery as of one point of the log.
#[derive(Debug)]
pub struct PgSnapshot {
    /// The last change these contents include: follow from here.
    pub seq: i64,
    pub galleries: Vec<GalleryContents>,
}

/// How replicas reach the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PgTls {
    /// Plaintext (a private network, or a TLS-terminating proxy beside the replica).
    #[default]
    Disabled,
    /// TLS (rustls), the server's certificate verified against the CA certificates in
    /// `ca_file` (PEM) and the URL's host name. Add `sslmode=require` to the URL so
    /// that a server offering no TLS is refused rather than used in plaintext.
    Verified { ca_file: PathBuf },
}

/// The TLS connector both the pool and the listening connection use.
#[derive(Clone)]
enum Connector {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Connector {
    fn new(tls: &PgTls) -> Result<Self, StoreError> {
        let ca_file = match tls {
            PgTls::Disabled => return Ok(Connector::Plain),
            PgTls::Verified { ca_file } => ca_file,
        };
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let bad = |why: String| StoreError::Database(format!("PostgreSQL TLS: {why}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| bad(format!("reading {}: {e}", ca_file.display())))?
        {
            let cert = cert.map_err(|e| bad(format!("{}: {e}", ca_file.display())))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("{}: {e}", ca_file.display())))?;
        }
        if roots.is_empty() {
            return Err(bad(format!("no certificate in {}", ca_file.display())));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Connector::Rustls(
            tokio_postgres_rustls::MakeRustlsConnect::new(config),
        ))
    }
}

/// Handle to the shared gallery database.
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    connector: Connector,
    /// The last change this replica has applied (0 until it follows).
    applied: watch::Receiver<i64>,
    applied_tx: Arc<watch::Sender<i64>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("applied", &*self.applied.borrow())
            .finish()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A closed connection, one that could not be made, or a server shutting down:
        // the database is down or unreachable, which a caller may retry; anything else
        // is an error of ours.
        use tokio_postgres::error::SqlState;
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let down = e.code().is_some_and(|c| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(c)
        });
        if e.is_closed() || io || down {
            StoreError::Unavailable(format!("PostgreSQL connection lost: {e}"))
        } else {
            StoreError::Database(e.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        // The pool's message alone ("error connecting to server") hides the cause.
        let mut message = format!("cannot reach PostgreSQL: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        StoreError::Unavailable(message)
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl PgStore {
    /// Connects to the database at `url` (a libpq URL or key=value string) and creates
    /// the schema if it is missing.
    pub async fn open(url: &str, max_connections: usize, tls: &PgTls) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Database(format!("PostgreSQL URL: {e}")))?;
        let connector = Connector::new(tls)?;
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &connector {
            Connector::Plain => Manager::from_config(config.clone(), NoTls, recycling()),
            Connector::Rustls(tls) => {
                Manager::from_config(config.clone(), tls.clone(), recycling())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(2))
            .build()
            .map_err(|e| StoreError::Database(format!("PostgreSQL pool: {e}")))?;
        let (applied_tx, applied) = watch::channel(0);
        let store = Self {
            pool,
            config,
            connector,
            applied,
            applied_tx: Arc::new(applied_tx),
        };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS galleries (
                 name TEXT PRIMARY KEY,
                 index_spec TEXT NOT NULL,
                 index_parameters TEXT NOT NULL,
                 match_threshold DOUBLE PRECISION NOT NULL,
                 model_name TEXT NOT NULL,
                 model_version TEXT NOT NULL,
                 embedding_size INTEGER NOT NULL,
                 created_ms BIGINT NOT NULL,
                 seq BIGINT NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS identities (
                 gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
                 identity_id TEXT NOT NULL,
                 display_name TEXT NOT NULL,
                 metadata TEXT NOT NULL,
                 created_ms BIGINT NOT NULL,
                 PRIMARY KEY (gallery, identity_id)
             );
             CREATE TABLE IF NOT EXISTS faces (
                 face_id BIGSERIAL PRIMARY KEY,
                 gallery TEXT NOT NULL,
                 identity_id TEXT NOT NULL,
                 embedding BYTEA NOT NULL,
                 FOREIGN KEY (gallery, identity_id)
                     REFERENCES identities(gallery, identity_id) ON DELETE CASCADE
             );
             CREATE INDEX IF NOT EXISTS faces_by_identity ON faces(gallery, identity_id);
             CREATE TABLE IF NOT EXISTS change_log (
                 seq BIGINT PRIMARY KEY,
                 committed_ms BIGINT NOT NULL,
                 change TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS change_head (
                 only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
                 seq BIGINT NOT NULL
             );
             INSERT INTO change_head (only_row, seq) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every gallery with its identities and templates, and the log position they
    /// reflect, read in one consistent snapshot: build the indexes from it, then
    /// [`PgStore::follow`] from `seq`.
    pub async fn snapshot(&self) -> Result<PgSnapshot, StoreError> {
        snapshot_of(&self.pool).await
    }

    /// Deletes all but the last `keep` changes of the log.
    pub async fn trim_log(&self, keep: i64) -> Result<u64, StoreError> {
        trim(&self.pool, keep).await
    }

    /// Applies the log after `from` to this replica through `hook`, in order, from now
    /// on: woken by notifications, polling as a fallback. Runs until the store is
    /// dropped.
    ///
    /// Every `TRIM_EVERY` it also trims the log to its last `log_keep` changes (every
    /// replica does; the deletes are idempotent).
    pub fn follow(&self, from: i64, log_keep: i64, hook: ChangeHook) {
        self.applied_tx.send_replace(from);
        let pool = self.pool.clone();
        let (config, connector) = (self.config.clone(), self.connector.clone());
        let applied = self.applied_tx.clone();
        tokio::spawn(async move {
            let (wake_tx, mut wake) = mpsc::channel::<()>(1);
            tokio::spawn(listen(config, connector, wake_tx));
            let mut last = from;
            let mut trimmed = tokio::time::Instant::now();
            loop {
                match changes_after(&pool, last).await {
                    Ok(page) if page.first().is_some_and(|c| c.seq != last + 1) => {
                        // The log was trimmed past this replica: it cannot catch up
                        // change by change, so it rebuilds from the tables.
                        tracing::warn!(
                            expected = last + 1,
                            found = page[0].seq,
                            "change log gap: rebuilding every gallery from the database"
                        );
                        match snapshot_of(&pool).await {
                            Ok(snapshot) => {
                                let seq = snapshot.seq;
                                hook(Followed::Reset(snapshot));
                                last = seq;
                                applied.send_replace(last);
                                continue;
                            }
                            Err(e) => tracing::warn!(error = %e, "reading the galleries"),
                        }
                    }
                    Ok(page) => {
                        let full = page.len() as i64 == LOG_PAGE;
                        for change in page {
                            hook(Followed::Change(&change));
                            last = change.seq;
                            applied.send_replace(last);
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the change log"),
                }
                if trimmed.elapsed() >= TRIM_EVERY {
                    trimmed = tokio::time::Instant::now();
                    if let Err(e) = trim(&pool, log_keep).await {
                        tracing::warn!(error = %e, "trimming the change log");
                    }
                }
                if applied.is_closed() {
                    return;
                }
                let _ = tokio::time::timeout(POLL, wake.recv()).await;
            }
        });
    }

    /// The last change this replica has applied.
    pub fn applied_seq(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until this replica has applied change `seq` (read-your-writes across
    /// replicas), or `timeout` passes; returns whether it has.
    pub async fn wait_for(&self, seq: i64, timeout: Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|&applied| applied >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies one change durably and returns it with its sequence number, once this
    /// replica's follower has applied it (so the hook ran, as with SQLite).
    pub async fn apply(&self, change: Change) -> Result<(i64, Applied), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The counter row's lock is held to commit: writers commit one at a time, in
        // sequence order, so the log never shows a later number before an earlier one.
        let seq: i64 = tx
            .query_one("UPDATE change_head SET seq = seq + 1 RETURNING seq", &[])
            .await?
            .get(0);
        let applied = apply_in(&*tx, &change).await?;
        let logged = LoggedChange {
            seq,
            committed_unix_ms: now_ms(),
            applied,
        };
        let text = serde_json::to_string(&without_embeddings(&logged)).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO change_log (seq, committed_ms, change) VALUES ($1, $2, $3)",
            &[&seq, &logged.committed_unix_ms, &text],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
            .await?;
        tx.commit().await?;
        drop(client);
        // Committed: durable whatever happens next. The follower applies it shortly
        // (woken by the notification); answer once it has.
        let mut rx = self.applied.clone();
        let _ = rx.wait_for(|&applied| applied >= seq).await;
        Ok((seq, logged.applied))
    }

    /// Rewrites the tables without the space deleted rows held (`VACUUM FULL`), so that
    /// erased templates' bytes leave the table files.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .batch_execute("VACUUM FULL faces, identities, change_log")
            .await?;
        Ok(())
    }

    /// Every gallery.
    pub async fn galleries(&self) -> Result<Vec<GalleryRecord>, StoreError> {
        let client = self.pool.get().await?;
        galleries_in(&**client).await
    }

    /// Up to `limit` identities after `after` (ascending ids) with their templates.
    pub async fn export_page(
        &self,
        gallery: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(IdentityRow, Vec<FaceRow>)>, StoreError> {
        let client = self.pool.get().await?;
        if gallery_in(&**client, gallery).await?.is_none() {
            return Err(StoreError::GalleryNotFound(gallery.into()));
        }
        let rows = client
            .query(
                "SELECT identity_id, display_name, metadata, created_ms FROM identities
                 WHERE gallery = $1 AND identity_id > $2 ORDER BY identity_id LIMIT $3",
                &[&gallery, &after.unwrap_or(""), &(limit as i64)],
            )
            .await?;
        let identities = rows
            .iter()
            .map(identity_row)
            .collect::<Result<Vec<_>, _>>()?;
        // The page's templates in one query, not one per identity.
        let ids: Vec<&str> = identities.iter().map(|i| i.identity_id.as_str()).collect();
        let mut faces: std::collections::HashMap<String, Vec<FaceRow>> = Default::default();
        for face in face_rows(
            &client
                .query(
                    "SELECT face_id, identity_id, embedding FROM faces
                     WHERE gallery = $1 AND identity_id = ANY($2) ORDER BY face_id",
                    &[&gallery, &ids],
                )
                .await?,
        )? {
            faces
                .entry(face.identity_id.clone())
                .or_default()
                .push(face);
        }
        Ok(identities
            .into_iter()
            .map(|identity| {
                let templates = faces.remove(&identity.identity_id).unwrap_or_default();
                (identity, templates)
            })
            .collect())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closes the pool; the follower sees its sender's receivers gone and stops.
        self.pool.close();
    }
}

async fn snapshot_of(pool: &Pool) -> Result<PgSnapshot, StoreError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let seq: i64 = tx
        .query_one("SELECT seq FROM change_head", &[])
        .await?
        .get(0);
    let mut galleries = Vec::new();
    for record in galleries_in(&*tx).await? {
        galleries.push(load_in(&*tx, record).await?);
    }
    tx.commit().await?;
    Ok(PgSnapshot { seq, galleries })
}

async fn trim(pool: &Pool, keep: i64) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM change_log WHERE seq <= (SELECT seq FROM change_head) - $1",
            &[&keep.max(0)],
        )
        .await?)
}

/// Drives a listening connection, forwarding each notification to `notes`.
fn drive_notifications<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notes: mpsc::UnboundedSender<()>,
) -> tokio::task::JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = notes.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
}

/// Forwards notifications on `config`'s database to `wake`, reconnecting after a
/// failure, until `wake`'s receiver is gone.
async fn listen(config: tokio_postgres::Config, connector: Connector, wake: mpsc::Sender<()>) {
    while !wake.is_closed() {
        let (note_tx, mut notes) = mpsc::unbounded_channel();
        let connected = match &connector {
            Connector::Plain => config
                .connect(NoTls)
                .await
                .map(|(client, connection)| (client, drive_notifications(connection, note_tx))),
            Connector::Rustls(tls) => config
                .connect(tls.clone())
                .await
                .map(|(client, connection)| (client, drive_notifications(connection, note_tx))),
        };
        match connected {
            Ok((client, driver)) => {
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    // Wake once after (re)connecting: changes may have been missed.
                    let _ = wake.try_send(());
                    while notes.recv().await.is_some() {
                        let _ = wake.try_send(());
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "listening for changes"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn changes_after(pool: &Pool, after: i64) -> Result<Vec<LoggedChange>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT change FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &LOG_PAGE],
        )
        .await?;
    let mut changes = rows
        .iter()
        .map(|r| serde_json::from_str::<LoggedChange>(r.get::<_, &str>(0)).map_err(corrupt))
        .collect::<Result<Vec<_>, _>>()?;
    // The templates' embeddings, from the faces table. One deleted since (a later
    // change in this log removes its identity) is left out.
    let ids: Vec<i64> = changes
        .iter_mut()
        .flat_map(|c| face_lists_mut(&mut c.applied))
        .flat_map(|faces| faces.iter().map(|f| f.face_id))
        .collect();
    if ids.is_empty() {
        return Ok(changes);
    }
    let mut embeddings: std::collections::HashMap<i64, Vec<f32>> = client
        .query(
            "SELECT face_id, embedding FROM faces WHERE face_id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, blob_to_embedding(r.try_get(1)?)?)))
        .collect::<Result<_, StoreError>>()?;
    for change in &mut changes {
        for faces in face_lists_mut(&mut change.applied) {
            faces.retain_mut(|f| match embeddings.remove(&f.face_id) {
                Some(e) => {
                    f.embedding = e;
                    true
                }
                None => false,
            });
        }
    }
    Ok(changes)
}

/// The change as the log keeps it: templates by face id, without their embeddings.
fn without_embeddings(logged: &LoggedChange) -> LoggedChange {
    let mut out = logged.clone();
    for faces in face_lists_mut(&mut out.applied) {
        for f in faces.iter_mut() {
            f.embedding = Vec::new();
        }
    }
    out
}

fn face_lists_mut(applied: &mut Applied) -> Vec<&mut Vec<FaceRow>> {
    match applied {
        Applied::Enrolled { faces, .. } => vec![faces],
        Applied::Imported { identities, .. } => identities.iter_mut().map(|(_, f)| f).collect(),
        _ => Vec::new(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn gallery_record(r: &Row) -> Result<GalleryRecord, StoreError> {
    Ok(GalleryRecord {
        name: r.try_get(0)?,
        index: r.try_get(1)?,
        index_parameters: r.try_get(2)?,
        match_threshold: r.try_get::<_, f64>(3)? as f32,
        model: ModelTag {
            name: r.try_get(4)?,
            version: r.try_get(5)?,
            embedding_size: usize::try_from(r.try_get::<_, i32>(6)?).map_err(corrupt)?,
        },
        created_at_unix_ms: r.try_get(7)?,
        seq: r.try_get(8)?,
    })
}

const GALLERY_COLUMNS: &str = "name, index_spec, index_parameters, match_threshold, model_name, \
                               model_version, embedding_size, created_ms, seq";

async fn gallery_in(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<GalleryRecord>, StoreError> {
    let sql = format!("SELECT {GALLERY_COLUMNS} FROM galleries WHERE name = $1");
    c.query_opt(sql.as_str(), &[&name])
        .await?
        .as_ref()
        .map(gallery_record)
        .transpose()
}

async fn galleries_in(c: &impl GenericClient) -> Result<Vec<GalleryRecord>, StoreError> {
    let sql = format!("SELECT {GALLERY_COLUMNS} FROM galleries ORDER BY name");
    c.query(sql.as_str(), &[])
        .await?
        .iter()
        .map(gallery_record)
        .collect()
}

fn identity_row(r: &Row) -> Result<IdentityRow, StoreError> {
    Ok(IdentityRow {
        identity_id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        metadata: json_to_metadata(r.try_get(2)?)?,
        created_at_unix_ms: r.try_get(3)?,
    })
}

fn face_rows(rows: &[Row]) -> Result<Vec<FaceRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(FaceRow {
                face_id: r.try_get(0)?,
                identity_id: r.try_get(1)?,
                embedding: blob_to_embedding(r.try_get(2)?)?,
            })
        })
        .collect()
}

async fn identity_in(
    c: &impl GenericClient,
    gallery: &str,
    id: &str,
) -> Result<Option<IdentityRow>, StoreError> {
    c.query_opt(
        "SELECT identity_id, display_name, metadata, created_ms FROM identities
         WHERE gallery = $1 AND identity_id = $2",
        &[&gallery, &id],
    )
    .await?
    .as_ref()
    .map(identity_row)
    .transpose()
}

async fn load_in(
    c: &impl GenericClient,
    gallery: GalleryRecord,
) -> Result<GalleryContents, StoreError> {
    let identities = c
        .query(
            "SELECT identity_id, display_name, metadata, created_ms FROM identities
             WHERE gallery = $1 ORDER BY identity_id",
            &[&gallery.name],
        )
        .await?
        .iter()
        .map(identity_row)
        .collect::<Result<Vec<_>, _>>()?;
    let faces = face_rows(
        &c.query(
            "SELECT face_id, identity_id, embedding FROM faces WHERE gallery = $1 ORDER BY face_id",
            &[&gallery.name],
        )
        .await?,
    )?;
    Ok(GalleryContents {
        gallery,
        identities,
        faces,
    })
}

/// The change's statements, in the caller's transaction; the same rules as the SQLite
/// writer's `apply`.
async fn apply_in(c: &impl GenericClient, change: &Change) -> Result<Applied, StoreError> {
    match change {
        Change::CreateGallery(record) => {
            if gallery_in(c, &record.name).await?.is_some() {
                return Err(StoreError::GalleryExists(record.name.clone()));
            }
            let size = i32::try_from(record.model.embedding_size).map_err(corrupt)?;
            c.execute(
                "INSERT INTO galleries (name, index_spec, index_parameters, match_threshold,
                                        model_name, model_version, embedding_size, created_ms, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
                &[
                    &record.name,
                    &record.index,
                    &record.index_parameters,
                    &f64::from(record.match_threshold),
                    &record.model.name,
                    &record.model.version,
                    &size,
                    &record.created_at_unix_ms,
                ],
            )
            .await?;
            let stored = gallery_in(c, &record.name)
                .await?
                .ok_or_else(|| StoreError::GalleryNotFound(record.name.clone()))?;
            Ok(Applied::GalleryCreated(stored))
        }
        Change::DropGallery { name } => {
            if gallery_in(c, name).await?.is_none() {
                return Err(StoreError::GalleryNotFound(name.clone()));
            }
            c.execute("DELETE FROM faces WHERE gallery = $1", &[name])
                .await?;
            c.execute("DELETE FROM identities WHERE gallery = $1", &[name])
                .await?;
            c.execute("DELETE FROM galleries WHERE name = $1", &[name])
                .await?;
            Ok(Applied::GalleryDropped { name: name.clone() })
        }
        Change::Enroll {
            gallery,
            identity_id,
            display_name,
            metadata,
            embeddings,
            at_unix_ms,
        } => {
            let dim = gallery_dim(c, gallery).await?;
            check_dims(gallery, dim, embeddings)?;
            let (identity, created) = upsert_identity(
                c,
                gallery,
                IdentityRow {
                    identity_id: identity_id.clone(),
                    display_name: display_name.clone().unwrap_or_default(),
                    metadata: metadata.clone(),
                    created_at_unix_ms: *at_unix_ms,
                },
                display_name.is_some(),
            )
            .await?;
            let faces = insert_faces(c, gallery, identity_id, embeddings).await?;
            bump(c, gallery).await?;
            let face_count: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM faces WHERE gallery = $1 AND identity_id = $2",
                    &[gallery, identity_id],
                )
                .await?
                .get(0);
            Ok(Applied::Enrolled {
                gallery: gallery.clone(),
                identity,
                created,
                faces,
                face_count: usize::try_from(face_count).map_err(corrupt)?,
            })
        }
        Change::DeleteIdentity {
            gallery,
            identity_id,
        } => {
            gallery_dim(c, gallery).await?;
            if identity_in(c, gallery, identity_id).await?.is_none() {
                return Err(StoreError::IdentityNotFound(identity_id.clone()));
            }
            let mut face_ids: Vec<i64> = c
                .query(
                    "DELETE FROM faces WHERE gallery = $1 AND identity_id = $2
                     RETURNING face_id",
                    &[gallery, identity_id],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            face_ids.sort_unstable();
            c.execute(
                "DELETE FROM identities WHERE gallery = $1 AND identity_id = $2",
                &[gallery, identity_id],
            )
            .await?;
            bump(c, gallery).await?;
            Ok(Applied::Deleted {
                gallery: gallery.clone(),
                identity_id: identity_id.clone(),
                face_ids,
            })
        }
        Change::Import {
            gallery,
            identities,
        } => {
            let dim = gallery_dim(c, gallery).await?;
            let mut out = Vec::with_capacity(identities.len());
            for (row, embeddings) in identities {
                check_dims(gallery, dim, embeddings)?;
                let (identity, _) =
                    upsert_identity(c, gallery, row.clone(), !row.display_name.is_empty()).await?;
                let faces = insert_faces(c, gallery, &row.identity_id, embeddings).await?;
                out.push((identity, faces));
            }
            bump(c, gallery).await?;
            Ok(Applied::Imported {
                gallery: gallery.clone(),
                identities: out,
            })
        }
    }
}

async fn gallery_dim(c: &impl GenericClient, gallery: &str) -> Result<usize, StoreError> {
    gallery_in(c, gallery)
        .await?
        .map(|g| g.model.embedding_size)
        .ok_or_else(|| StoreError::GalleryNotFound(gallery.into()))
}

/// Creates the identity or merges `row` into it; returns the stored row and whether
/// it was created. The row is locked (`FOR UPDATE`) so that two replicas enrolling
/// the same identity at once merge one after the other.
async fn upsert_identity(
    c: &impl GenericClient,
    gallery: &str,
    row: IdentityRow,
    replace_name: bool,
) -> Result<(IdentityRow, bool), StoreError> {
    let existing = c
        .query_opt(
            "SELECT identity_id, display_name, metadata, created_ms FROM identities
             WHERE gallery = $1 AND identity_id = $2 FOR UPDATE",
            &[&gallery, &row.identity_id],
        )
        .await?
        .as_ref()
        .map(identity_row)
        .transpose()?;
    let (merged, created) = merge_identity(existing, row, replace_name);
    c.execute(
        "INSERT INTO identities (gallery, identity_id, display_name, metadata, created_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (gallery, identity_id) DO UPDATE SET
             display_name = excluded.display_name, metadata = excluded.metadata",
        &[
            &gallery,
            &merged.identity_id,
            &merged.display_name,
            &metadata_to_json(&merged.metadata),
            &merged.created_at_unix_ms,
        ],
    )
    .await?;
    Ok((merged, created))
}

async fn insert_faces(
    c: &impl GenericClient,
    gallery: &str,
    identity_id: &str,
    embeddings: &[Vec<f32>],
) -> Result<Vec<FaceRow>, StoreError> {
    let stmt = c
        .prepare(
            "INSERT INTO faces (gallery, identity_id, embedding) VALUES ($1, $2, $3)
             RETURNING face_id",
        )
        .await?;
    let mut faces = Vec::with_capacity(embeddings.len());
    for embedding in embeddings {
        let face_id: i64 = c
            .query_one(
                &stmt,
                &[&gallery, &identity_id, &embedding_to_blob(embedding)],
            )
            .await?
            .get(0);
        faces.push(FaceRow {
            face_id,
            identity_id: identity_id.to_string(),
            embedding: embedding.clone(),
        });
    }
    Ok(faces)
}

async fn bump(c: &impl GenericClient, gallery: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE galleries SET seq = seq + 1 WHERE name = $1",
        &[&gallery],
    )
    .await?;
    Ok(())
}

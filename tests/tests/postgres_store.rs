//! The PostgreSQL store (`vargid_store::postgres`) against a real PostgreSQL server,
//! started on a loopback port for each test: replicas sharing one database see each
//! other's changes in one order, read their own writes, merge concurrent enrollments
//! of one identity, and survive a database restart.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::PgServer;
use vargid_store::postgres::{Followed, LoggedChange, PgStore, PgTls, DEFAULT_LOG_KEEP};
use vargid_store::{Applied, Change, GalleryRecord, ModelTag, StoreError};

/// A replica: a store following the log from its snapshot, recording what it applies.
struct Replica {
    store: PgStore,
    seen: Arc<Mutex<Vec<LoggedChange>>>,
}

async fn replica(url: &str) -> Replica {
    let store = PgStore::open(url, 4, &PgTls::Disabled)
        .await
        .expect("open the store");
    let snapshot = store.snapshot().await.expect("snapshot");
    let seen: Arc<Mutex<Vec<LoggedChange>>> = Arc::default();
    let sink = seen.clone();
    store.follow(
        snapshot.seq,
        DEFAULT_LOG_KEEP,
        Box::new(move |followed| match followed {
            Followed::Change(c) => sink.lock().unwrap().push(c.clone()),
            Followed::Reset(snapshot) => panic!("unexpected rebuild at {}", snapshot.seq),
        }),
    );
    Replica { store, seen }
}

impl Replica {
    fn seqs(&self) -> Vec<i64> {
        self.seen.lock().unwrap().iter().map(|c| c.seq).collect()
    }
}

fn gallery(name: &str) -> Change {
    Change::CreateGallery(GalleryRecord {
        name: name.into(),
        index: "IDMap2,Flat".into(),
        index_parameters: String::new(),
        match_threshold: 0.4,
        model: ModelTag {
            name: "m".into(),
            version: "1".into(),
            embedding_size: 4,
        },
        created_at_unix_ms: 1,
        seq: 0,
    })
}

fn enroll(gallery: &str, id: &str, x: f32) -> Change {
    Change::Enroll {
        gallery: gallery.into(),
        identity_id: id.into(),
        display_name: Some(format!("{id} name")),
        metadata: BTreeMap::new(),
        embeddings: vec![vec![x, 0.0, 0.0, 1.0]],
        at_unix_ms: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_ordered_log_and_read_their_writes() {
    let pg = PgServer::start();
    let (a, b) = (replica(&pg.url()).await, replica(&pg.url()).await);

    let (s1, created) = a.store.apply(gallery("g")).await.expect("create");
    assert!(matches!(created, Applied::GalleryCreated(_)));
    let (s2, enrolled) = a
        .store
        .apply(enroll("g", "alice", 0.5))
        .await
        .expect("enroll");
    assert_eq!(s2, s1 + 1);
    // Read-your-writes on the writing replica: applied before apply returned.
    assert_eq!(a.store.applied_seq(), s2);
    assert_eq!(a.seqs(), vec![s1, s2]);
    let Applied::Enrolled { faces, .. } = enrolled else {
        panic!("{enrolled:?}")
    };

    // The other replica: within a bounded delay, in the same order, the same change.
    let started = Instant::now();
    assert!(b.store.wait_for(s2, Duration::from_secs(5)).await);
    eprintln!(
        "replication lag (commit to applied on the other replica): {} ms",
        now_ms() - b.seen.lock().unwrap()[1].committed_unix_ms
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(b.seqs(), vec![s1, s2]);
    match &b.seen.lock().unwrap()[1].applied {
        Applied::Enrolled {
            faces: theirs,
            identity,
            ..
        } => {
            assert_eq!(theirs, &faces, "the same face ids and embeddings");
            assert_eq!(identity.display_name, "alice name");
        }
        other => panic!("{other:?}"),
    }

    // The log names templates by id; their embeddings stay in the faces table only.
    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    for row in db
        .query("SELECT change FROM change_log", &[])
        .await
        .unwrap()
    {
        let text: &str = row.get(0);
        assert_eq!(
            text.matches("\"embedding\":").count(),
            text.matches("\"embedding\":[]").count(),
            "an embedding in the log: {text}"
        );
    }

    // Deletes and drops propagate; errors are the caller's and change nothing.
    let (s3, _) = b
        .store
        .apply(Change::DeleteIdentity {
            gallery: "g".into(),
            identity_id: "alice".into(),
        })
        .await
        .expect("delete");
    assert_eq!(
        a.store
            .apply(Change::DeleteIdentity {
                gallery: "g".into(),
                identity_id: "alice".into(),
            })
            .await
            .unwrap_err(),
        StoreError::IdentityNotFound("alice".into())
    );
    assert_eq!(
        a.store.apply(gallery("g")).await.unwrap_err(),
        StoreError::GalleryExists("g".into())
    );
    let (s4, _) = a
        .store
        .apply(Change::DropGallery { name: "g".into() })
        .await
        .expect("drop");
    assert_eq!(s4, s3 + 1, "a refused change takes no number");
    assert!(a.store.wait_for(s4, Duration::from_secs(5)).await);
    assert!(b.store.wait_for(s4, Duration::from_secs(5)).await);
    assert_eq!(a.seqs(), b.seqs());
    assert!(a.store.galleries().await.unwrap().is_empty());
    a.store.compact().await.expect("VACUUM FULL");

    // A replica that starts later loads the snapshot and follows from there.
    a.store.apply(gallery("h")).await.unwrap();
    let (s6, _) = a.store.apply(enroll("h", "bob", 0.1)).await.unwrap();
    let c = replica(&pg.url()).await;
    assert_eq!(c.store.applied_seq(), s6);
    let snapshot = c.store.snapshot().await.unwrap();
    assert_eq!(snapshot.galleries.len(), 1);
    assert_eq!(snapshot.galleries[0].faces.len(), 1);
}

/// Two replicas enrolling the same identity at once: every template is kept, each
/// change sees the one before it, and both replicas apply them in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_of_one_identity_merge() {
    let pg = PgServer::start();
    let (a, b) = (
        Arc::new(replica(&pg.url()).await),
        Arc::new(replica(&pg.url()).await),
    );
    a.store.apply(gallery("g")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, r) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.spawn(async move {
            let mut last = 0;
            for n in 0..20 {
                let (seq, _) = r
                    .store
                    .apply(enroll("g", "carol", (i * 100 + n) as f32))
                    .await
                    .expect("enroll");
                last = last.max(seq);
            }
            last
        });
    }
    let mut last = 0;
    while let Some(done) = tasks.join_next().await {
        last = last.max(done.unwrap());
    }
    assert!(a.store.wait_for(last, Duration::from_secs(10)).await);
    assert!(b.store.wait_for(last, Duration::from_secs(10)).await);
    assert_eq!(a.seqs(), b.seqs());
    let counts: Vec<usize> = a
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match &c.applied {
            Applied::Enrolled { face_count, .. } => Some(*face_count),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<_>>(),
        "each saw the one before"
    );
    let page = a.store.export_page("g", None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1.len(), 40);
}

/// The database restarted: writes fail as unavailable while it is down, and work
/// again after; the other replica catches up on what was written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_fails_writes_then_recovers() {
    let pg = PgServer::start();
    let (a, b) = (replica(&pg.url()).await, replica(&pg.url()).await);
    a.store.apply(gallery("g")).await.unwrap();
    pg.pg_ctl("stop");
    match a.store.apply(enroll("g", "dave", 1.0)).await {
        Err(StoreError::Unavailable(message)) => eprintln!("while down: {message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    pg.pg_ctl("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let seq = loop {
        match a.store.apply(enroll("g", "dave", 1.0)).await {
            Ok((seq, _)) => break seq,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying after the restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not back after the restart: {e}"),
        }
    };
    assert!(b.store.wait_for(seq, Duration::from_secs(10)).await);
    assert_eq!(a.seqs(), b.seqs());
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A replica behind the trimmed start of the log rebuilds from the tables, then
/// follows the changes after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_trimmed_log_rebuilds() {
    let pg = PgServer::start();
    let a = replica(&pg.url()).await;
    let late = PgStore::open(&pg.url(), 2, &PgTls::Disabled)
        .await
        .expect("open");
    let behind = late.snapshot().await.expect("snapshot").seq;
    a.store.apply(gallery("g")).await.unwrap();
    let mut head = 0;
    for i in 0..5 {
        head = a
            .store
            .apply(enroll("g", &format!("p{i}"), i as f32))
            .await
            .unwrap()
            .0;
    }
    assert_eq!(a.store.trim_log(1).await.unwrap(), 5);
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = events.clone();
    late.follow(
        behind,
        DEFAULT_LOG_KEEP,
        Box::new(move |followed| {
            sink.lock().unwrap().push(match followed {
                Followed::Change(c) => format!("change {}", c.seq),
                Followed::Reset(s) => format!(
                    "reset {} with {} faces",
                    s.seq,
                    s.galleries.iter().map(|g| g.faces.len()).sum::<usize>()
                ),
            })
        }),
    );
    // Rebuilt up to the head first (so the order below is fixed), then one more change.
    assert!(late.wait_for(head, Duration::from_secs(10)).await);
    let (next, _) = a.store.apply(enroll("g", "p5", 5.0)).await.unwrap();
    assert!(late.wait_for(next, Duration::from_secs(10)).await);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            format!("reset {head} with 5 faces"),
            format!("change {next}")
        ]
    );
}

/// TLS to the database: a server that refuses plaintext is reached with the CA's
/// certificate, and refused without TLS or with another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let pg = PgServer::start_tls(&cert.pem(), &key.serialize_pem());
    let dir = std::env::temp_dir().join(format!("vargid-pg-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let url = format!("{}?sslmode=require", pg.url_by_name());

    let tls = PgTls::Verified {
        ca_file: ca_file.clone(),
    };
    let store = PgStore::open(&url, 2, &tls).await.expect("TLS with the CA");
    let snapshot = store.snapshot().await.unwrap();
    store.follow(snapshot.seq, DEFAULT_LOG_KEEP, Box::new(|_| {}));
    store.apply(gallery("g")).await.expect("a write over TLS");

    let plain = PgStore::open(&pg.url_by_name(), 2, &PgTls::Disabled).await;
    assert!(
        matches!(plain, Err(StoreError::Unavailable(_))),
        "plaintext must be refused: {plain:?}"
    );
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::new()).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_file = dir.join("other.pem");
    std::fs::write(&other_file, other.self_signed(&other_key).unwrap().pem()).unwrap();
    let wrong = PgStore::open(
        &url,
        2,
        &PgTls::Verified {
            ca_file: other_file,
        },
    )
    .await;
    assert!(wrong.is_err(), "another CA must be refused");
    let _ = std::fs::remove_dir_all(&dir);
}

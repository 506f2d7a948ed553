//! The store against a real SQLite file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vargid_store::{Applied, Change, GalleryRecord, ModelTag, Store, StoreError};

fn temp_db(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vargid-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("galleries.sqlite3")
}

fn gallery(name: &str) -> GalleryRecord {
    GalleryRecord {
        name: name.into(),
        index: "IDMap2,HNSW16".into(),
        index_parameters: "efConstruction=64,efSearch=96".into(),
        match_threshold: 0.4,
        model: ModelTag {
            name: "m".into(),
            version: "1".into(),
            embedding_size: 4,
        },
        created_at_unix_ms: 1,
        seq: 0,
    }
}

fn enroll(identity: &str, n: usize) -> Change {
    Change::Enroll {
        gallery: "g".into(),
        identity_id: identity.into(),
        display_name: None,
        metadata: BTreeMap::new(),
        embeddings: vec![vec![0.5; 4]; n],
        at_unix_ms: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_commit_in_groups_and_survive_reopening() {
    let path = temp_db("groups");
    let hooked = Arc::new(AtomicUsize::new(0));
    let counter = hooked.clone();
    let store = Arc::new(
        Store::open(
            &path,
            Box::new(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap(),
    );
    store
        .apply(Change::CreateGallery(gallery("g")))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move { store.apply(enroll(&format!("id{i:03}"), 2)).await });
    }
    let mut face_ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap().unwrap() {
            Applied::Enrolled { faces, created, .. } => {
                assert!(created);
                face_ids.extend(faces.iter().map(|f| f.face_id));
            }
            other => panic!("{other:?}"),
        }
    }
    face_ids.sort_unstable();
    face_ids.dedup();
    assert_eq!(face_ids.len(), 400, "face ids are unique");
    assert_eq!(
        hooked.load(Ordering::SeqCst),
        201,
        "the hook saw every committed change"
    );
    drop(store);

    let reopened = Store::open(&path, Box::new(|_| {})).unwrap();
    let contents = reopened.load("g").unwrap();
    assert_eq!(contents.identities.len(), 200);
    assert_eq!(contents.faces.len(), 400);
    assert_eq!(contents.gallery.seq, 200);
}

#[tokio::test]
async fn failed_changes_leave_nothing_and_name_the_problem() {
    let store = Store::open(&temp_db("errors"), Box::new(|_| {})).unwrap();
    assert_eq!(
        store.apply(enroll("a", 1)).await.unwrap_err(),
        StoreError::GalleryNotFound("g".into())
    );
    store
        .apply(Change::CreateGallery(gallery("g")))
        .await
        .unwrap();
    assert_eq!(
        store
            .apply(Change::CreateGallery(gallery("g")))
            .await
            .unwrap_err(),
        StoreError::GalleryExists("g".into())
    );
    let wrong = Change::Enroll {
        gallery: "g".into(),
        identity_id: "a".into(),
        display_name: None,
        metadata: BTreeMap::new(),
        embeddings: vec![vec![0.5; 4], vec![0.5; 3]],
        at_unix_ms: 0,
    };
    assert!(matches!(
        store.apply(wrong).await.unwrap_err(),
        StoreError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        }
    ));
    assert!(
        store.load("g").unwrap().identities.is_empty(),
        "the failed enrollment left no identity"
    );
    assert_eq!(
        store
            .apply(Change::DeleteIdentity {
                gallery: "g".into(),
                identity_id: "nobody".into()
            })
            .await
            .unwrap_err(),
        StoreError::IdentityNotFound("nobody".into())
    );

    store.apply(enroll("a", 2)).await.unwrap();
    let Applied::Deleted { face_ids, .. } = store
        .apply(Change::DeleteIdentity {
            gallery: "g".into(),
            identity_id: "a".into(),
        })
        .await
        .unwrap()
    else {
        panic!("expected Deleted");
    };
    assert_eq!(face_ids.len(), 2);
    store
        .apply(Change::DropGallery { name: "g".into() })
        .await
        .unwrap();
    assert!(store.galleries().unwrap().is_empty());
}

#[tokio::test]
async fn export_pages_carry_templates() {
    let store = Store::open(&temp_db("export"), Box::new(|_| {})).unwrap();
    store
        .apply(Change::CreateGallery(gallery("g")))
        .await
        .unwrap();
    for id in ["b", "a", "c"] {
        store.apply(enroll(id, 1)).await.unwrap();
    }
    let page = store.export_page("g", None, 2).unwrap();
    assert_eq!(
        page.iter()
            .map(|(i, _)| i.identity_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(page[0].1[0].embedding, vec![0.5; 4]);
    let rest = store.export_page("g", Some("b"), 2).unwrap();
    assert_eq!(rest.len(), 1);
}

#[tokio::test]
async fn index_parameters_are_kept_and_version_1_databases_are_upgraded() {
    let path = temp_db("params");
    let store = Store::open(&path, Box::new(|_| {})).unwrap();
    store
        .apply(Change::CreateGallery(gallery("g")))
        .await
        .unwrap();
    let stored = store.gallery("g").unwrap().unwrap();
    assert_eq!(stored.index_parameters, "efConstruction=64,efSearch=96");
    drop(store);

    // A database written by schema version 1, which had no index_parameters column.
    let old = temp_db("schema-v1");
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch(
        "CREATE TABLE galleries (name TEXT PRIMARY KEY, index_spec TEXT NOT NULL,
             match_threshold REAL NOT NULL, model_name TEXT NOT NULL,
             model_version TEXT NOT NULL, embedding_size INTEGER NOT NULL,
             created_ms INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE identities (gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
             identity_id TEXT NOT NULL, display_name TEXT NOT NULL, metadata TEXT NOT NULL,
             created_ms INTEGER NOT NULL, PRIMARY KEY (gallery, identity_id));
         CREATE TABLE faces (face_id INTEGER PRIMARY KEY AUTOINCREMENT, gallery TEXT NOT NULL,
             identity_id TEXT NOT NULL, embedding BLOB NOT NULL,
             FOREIGN KEY (gallery, identity_id) REFERENCES identities(gallery, identity_id) ON DELETE CASCADE);
         INSERT INTO galleries VALUES ('old', 'IDMap2,HNSW32', 0.4, 'm', '1', 4, 1, 3);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&old, Box::new(|_| {})).unwrap();
    let upgraded = store.gallery("old").unwrap().unwrap();
    assert_eq!(upgraded.index, "IDMap2,HNSW32");
    assert_eq!(upgraded.index_parameters, "");
    assert_eq!(upgraded.seq, 3);
}

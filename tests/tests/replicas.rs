//! Two vargid processes sharing one PostgreSQL gallery record (`gallery.backend =
//! "postgres"`), each with its own data directory and in-memory indexes: what one
//! enrolls the other identifies (the lag measured and printed), read-your-writes with
//! `min_sequence`, deletes and gallery drops propagate, and a replica killed with
//! SIGKILL catches up when it comes back.

mod common;

use std::time::{Duration, Instant};

use common::postgres::PgServer;
use common::{lfw_crop_at, lfw_photos, raw_image, tempfile_dir::TempDir, Server};
use tonic::transport::Channel;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

type Client = FaceServiceClient<Channel>;

fn replica(pg: &PgServer, data: &TempDir) -> Server {
    let url = pg.url();
    Server::start_in(
        &data.0,
        &[
            ("VARGID_GALLERY__BACKEND", "postgres"),
            ("VARGID_GALLERY__POSTGRES__URL", url.as_str()),
        ],
    )
}

async fn enroll(client: &mut Client, id: &str, photo: &std::path::Path) -> pb::EnrollResponse {
    client
        .enroll(pb::EnrollRequest {
            identity_id: id.into(),
            images: vec![raw_image(&lfw_crop_at(photo))],
            ..Default::default()
        })
        .await
        .expect("enroll")
        .into_inner()
}

/// The best candidate for the photo, if any.
async fn best(client: &mut Client, photo: &std::path::Path, min_sequence: u64) -> Option<String> {
    let found = client
        .identify(pb::IdentifyRequest {
            image: Some(raw_image(&lfw_crop_at(photo))),
            top_k: 1,
            min_sequence,
            ..Default::default()
        })
        .await
        .expect("identify")
        .into_inner();
    found.faces[0]
        .candidates
        .first()
        .filter(|c| c.score > 0.99)
        .map(|c| c.identity_id.clone())
}

/// Polls until `check` holds (or panics after 10 s); returns how long it took.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

async fn gallery_names(client: &mut Client) -> Vec<String> {
    client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .expect("list galleries")
        .into_inner()
        .galleries
        .into_iter()
        .map(|g| g.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_gallery_through_postgres() {
    let pg = PgServer::start();
    let (data_a, data_b) = (TempDir::new("replica-a"), TempDir::new("replica-b"));
    let a = replica(&pg, &data_a);
    let mut b = replica(&pg, &data_b);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let photos = lfw_photos();

    // Enrolled on A, identified on B: the lag is the time from A's answer until B
    // finds the identity.
    let mut lags = Vec::new();
    for (i, photo) in photos.iter().step_by(97).take(5).enumerate() {
        let id = format!("person-{i}");
        let enrolled = enroll(&mut ca, &id, photo).await;
        assert!(enrolled.sequence > 0, "a shared record numbers its changes");
        let lag = eventually("B sees A's enrollment", || {
            let (mut cb, id) = (cb.clone(), id.clone());
            async move { best(&mut cb, photo, 0).await.as_deref() == Some(id.as_str()) }
        })
        .await;
        lags.push(lag);
    }
    lags.sort();
    eprintln!(
        "replication lag, enrolled on A until identified on B: median {:?}, max {:?}",
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );

    // Read-your-writes: with min_sequence, B answers with the enrollment at once.
    let photo = &photos[1000];
    let enrolled = enroll(&mut ca, "ryw", photo).await;
    assert_eq!(
        best(&mut cb, photo, enrolled.sequence).await.as_deref(),
        Some("ryw")
    );
    // A number no replica has reached: UNAVAILABLE within the call's deadline.
    let mut request = tonic::Request::new(pb::IdentifyRequest {
        image: Some(raw_image(&lfw_crop_at(photo))),
        min_sequence: enrolled.sequence + 1000,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(300));
    let refused = cb.identify(request).await.expect_err("not applied yet");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("min_sequence"), "{refused:?}");

    // A delete on B leaves A's answers.
    cb.delete_identity(pb::DeleteIdentityRequest {
        identity_id: "ryw".into(),
        ..Default::default()
    })
    .await
    .expect("delete on B");
    eventually("A drops the deleted identity", || {
        let mut ca = ca.clone();
        async move { best(&mut ca, photo, 0).await.is_none() }
    })
    .await;

    // Gallery creation and drops propagate.
    ca.create_gallery(pb::CreateGalleryRequest {
        name: "shared".into(),
        ..Default::default()
    })
    .await
    .expect("create on A");
    eventually("B lists the new gallery", || {
        let mut cb = cb.clone();
        async move { gallery_names(&mut cb).await.contains(&"shared".to_string()) }
    })
    .await;
    cb.drop_gallery(pb::DropGalleryRequest {
        name: "shared".into(),
    })
    .await
    .expect("drop on B");
    eventually("A no longer lists the dropped gallery", || {
        let mut ca = ca.clone();
        async move { !gallery_names(&mut ca).await.contains(&"shared".to_string()) }
    })
    .await;

    // B killed; A enrolls meanwhile; B comes back with everything.
    b.kill();
    let late = &photos[2000];
    enroll(&mut ca, "while-b-was-down", late).await;
    let b = replica(&pg, &data_b);
    let mut cb = b.client().await;
    assert_eq!(
        best(&mut cb, late, 0).await.as_deref(),
        Some("while-b-was-down"),
        "a restarted replica loads what it missed"
    );
    assert_eq!(best(&mut cb, photo, 0).await, None);
    drop(a);
}

/// PostgreSQL restarted while both replicas take enrollments: calls fail with
/// UNAVAILABLE while it is down, and every enrollment that was acknowledged is on both
/// replicas afterwards, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_enrollment_loses_nothing_acknowledged() {
    let pg = PgServer::start();
    let (data_a, data_b) = (TempDir::new("restart-a"), TempDir::new("restart-b"));
    let (a, b) = (replica(&pg, &data_a), replica(&pg, &data_b));
    let photos = lfw_photos();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refused = std::sync::Arc::new(std::sync::Mutex::new(Vec::<tonic::Status>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for (w, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let mut client = server.client().await;
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        let photos = photos.clone();
        workers.spawn(async move {
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let id = format!("w{w}-{n}");
                let photo = &photos[(w * 500 + n) % photos.len()];
                let reply = client
                    .enroll(pb::EnrollRequest {
                        identity_id: id.clone(),
                        images: vec![raw_image(&lfw_crop_at(photo))],
                        ..Default::default()
                    })
                    .await;
                match reply {
                    Ok(_) => acked.lock().unwrap().push(id),
                    Err(status) => {
                        refused.lock().unwrap().push(status);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.pg_ctl("restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    while workers.join_next().await.is_some() {}

    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    eprintln!(
        "{} enrollments acknowledged, {} refused around the restart",
        acked.len(),
        refused.len()
    );
    assert!(
        acked.len() >= 10,
        "too little load to test: {}",
        acked.len()
    );
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    // A write after the restart on each replica: their followers have caught up with
    // everything before it once it is acknowledged.
    for (id, server, photo) in [
        ("after-a", &a, &photos[3000]),
        ("after-b", &b, &photos[3001]),
    ] {
        let mut client = server.client().await;
        let sequence = eventually_enrolled(&mut client, id, photo).await;
        for other in [&a, &b] {
            let mut c = other.client().await;
            let listed = list_all(&mut c, sequence).await;
            for id in &acked {
                assert_eq!(
                    listed.iter().filter(|l| *l == id).count(),
                    1,
                    "acknowledged {id} missing or duplicated"
                );
            }
        }
    }
}

/// Enrolls one more identity, retrying while the database comes back; its sequence.
async fn eventually_enrolled(client: &mut Client, id: &str, photo: &std::path::Path) -> u64 {
    let started = Instant::now();
    loop {
        let reply = client
            .enroll(pb::EnrollRequest {
                identity_id: id.into(),
                images: vec![raw_image(&lfw_crop_at(photo))],
                ..Default::default()
            })
            .await;
        match reply {
            Ok(r) => return r.into_inner().sequence,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("waiting for the database: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the database did not come back: {e:?}"),
        }
    }
}

/// Every identity id of the default gallery, once the replica has applied `sequence`.
async fn list_all(client: &mut Client, sequence: u64) -> Vec<String> {
    // An Identify with min_sequence makes the replica catch up first.
    let _ = client
        .identify(pb::IdentifyRequest {
            image: Some(raw_image(&lfw_crop_at(&lfw_photos()[0]))),
            min_sequence: sequence,
            ..Default::default()
        })
        .await
        .expect("caught up");
    common::all_identities(client, "")
        .await
        .into_iter()
        .map(|i| i.identity_id)
        .collect()
}

//! `server.io_threads_nice`: the threads that serve gRPC, decode and detect run niced;
//! the model's threads, and the ones its runtime starts, keep the process's priority.
#![cfg(target_os = "linux")]

mod common;

use common::{jpeg_image, lfw_crop, Server};
use vargid_proto::v1 as pb;

/// (thread name, nice value) of every thread of `pid`, from /proc.
fn threads(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let stat = std::fs::read_to_string(task.expect("task").path().join("stat"))
            .expect("/proc/PID/task/TID/stat");
        // "tid (comm) state ppid ...": the name may hold spaces, so split at the parens;
        // nice is the 19th field, the 17th after the name.
        let open = stat.find('(').expect("(comm");
        let close = stat.rfind(')').expect("comm)");
        let name = stat[open + 1..close].to_string();
        let nice = stat[close + 1..]
            .split_whitespace()
            .nth(16)
            .and_then(|n| n.parse().ok())
            .expect("nice field");
        out.push((name, nice));
    }
    out
}

#[tokio::test]
async fn io_threads_run_niced_and_the_model_keeps_its_priority() {
    let server = Server::start(&[("VARGID_SERVER__IO_THREADS_NICE", "7")]);
    let mut client = server.client().await;
    // One call, so that every thread the model and the pipeline start exists.
    let reply = client
        .embed(pb::EmbedRequest {
            images: vec![jpeg_image(&lfw_crop("Aaron_Peirsol", 1))],
        })
        .await
        .expect("Embed on a niced server")
        .into_inner();
    assert_eq!(reply.images.len(), 1);

    let threads = threads(server.pid());
    let own = threads
        .iter()
        .find(|(n, _)| n == "vargid")
        .map(|(_, nice)| *nice)
        .expect("the main thread");
    let runtime: Vec<_> = threads.iter().filter(|(n, _)| n == "vargid-rt").collect();
    let model: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("vargid-model"))
        .collect();
    assert!(
        !runtime.is_empty() && !model.is_empty(),
        "threads: {threads:?}"
    );
    assert!(
        runtime.iter().all(|(_, nice)| *nice == (own + 7).min(19)),
        "runtime threads niced: {threads:?}"
    );
    assert!(
        model.iter().all(|(_, nice)| *nice == own),
        "model threads at the process's priority: {threads:?}"
    );
    // The model's runtime starts threads of its own (OpenVINO's TBB workers, named
    // after the thread that loaded the model): none of them may be niced.
    assert!(
        threads
            .iter()
            .filter(|(n, _)| n != "vargid-rt")
            .all(|(_, nice)| *nice == own),
        "only the runtime's threads are niced: {threads:?}"
    );
}

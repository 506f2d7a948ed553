//! The client examples in examples/ run against the real server on loopback.

mod common;

use std::process::Command;

use common::{workspace_root, Server};

/// The training venv's python (scripts/setup-python.sh installs grpcio and grpcio-tools).
fn python() -> Command {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup-python.sh (make test does)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.current_dir(workspace_root());
    cmd
}

#[test]
fn python_enroll_then_identify() {
    let server = Server::start(&[]);
    let mut photos: Vec<String> = std::fs::read_dir(common::lfw_dir().join("images/Colin_Powell"))
        .expect("LFW photos of Colin Powell")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    photos.sort();
    let out = python()
        .args(["examples/python/enroll.py", "colin", &photos[0]])
        .args(["--name", "Colin Powell", "--address", &server.grpc])
        .output()
        .expect("running enroll.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("colin: 1 templates added, 1 in all"),
        "{stdout}"
    );

    let out = python()
        .args(["examples/python/identify.py", &photos[1]])
        .env("VARGID_ADDRESS", &server.grpc)
        .output()
        .expect("running identify.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("face 1 at"), "{stdout}");
    assert!(
        stdout.contains("colin") && stdout.contains("MATCH"),
        "{stdout}"
    );

    // A refused photo: the gRPC status and its message, exit status 1.
    let out = python()
        .args([
            "examples/python/enroll.py",
            "nobody",
            "README.md",
            "--address",
            &server.grpc,
        ])
        .output()
        .expect("running enroll.py");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INVALID_ARGUMENT") && stderr.contains("images[0]"),
        "{stderr}"
    );
}

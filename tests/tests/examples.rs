//! The client examples in examples/ (Python and Go) run against the real server on loopback.

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

/// `go` with the example module's versions only (go.mod and go.sum are committed).
fn go_example() -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(workspace_root().join("examples/go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false");
    cmd
}

#[test]
fn go_enroll_then_identify() {
    let generated = Command::new(workspace_root().join("examples/go/generate.sh"))
        .output()
        .expect("running examples/go/generate.sh");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let server = Server::start(&[]);
    let mut photos: Vec<String> = std::fs::read_dir(common::lfw_dir().join("images/Tony_Blair"))
        .expect("LFW photos of Tony Blair")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    photos.sort();
    let run = |args: &[&str]| {
        go_example()
            .arg("run")
            .arg(".")
            .args(args)
            .env("VARGID_ADDRESS", &server.grpc)
            .output()
            .expect("running the Go example")
    };
    let out = run(&[
        "enroll",
        "--name",
        "Tony Blair",
        "tony",
        &photos[0],
        &photos[1],
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("tony: 2 templates added, 2 in all"),
        "{stdout}"
    );

    let out = run(&["identify", &photos[2]]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("face 1 at"), "{stdout}");
    assert!(
        stdout.contains("tony") && stdout.contains("MATCH"),
        "{stdout}"
    );

    // A refused photo: the gRPC status code and the server's message, exit status 1.
    let readme = workspace_root().join("README.md");
    let out = run(&["enroll", "nobody", &readme.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("images[0]"),
        "{stderr}"
    );
}

//! The `vargid` command line against the real server on loopback: help and bad
//! flags, info and galleries, enroll (rejected photos with their reasons, resumed
//! after a kill), identify (table, JSON, annotated photos), verify, export and import
//! with their progress, API keys.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::tempfile_dir::TempDir;
use common::{binary, lfw_dir, Server};
use image::{imageops, ImageFormat, Rgb, RgbImage};
use vargid_proto::v1 as pb;

fn vargid(server: Option<&Server>, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("VARGID_API_KEY")
        .stdin(Stdio::null());
    if let Some(s) = server {
        cmd.env("VARGID_ADDRESS", &s.grpc);
    }
    cmd.output().expect("running vargid")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// LFW people with at least `photos` photos, first `count` by name, their paths sorted.
fn people(count: usize, photos: usize) -> Vec<(String, Vec<PathBuf>)> {
    let root = lfw_dir().join("images");
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .expect("LFW images")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|dir| {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .ok()?
                .map(|e| e.expect("entry").path())
                .collect();
            files.sort();
            (files.len() >= photos).then(|| {
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                (name, files)
            })
        })
        .take(count)
        .collect()
}

/// DIR/<person>/<photo> with the first `per_person` photos of each person (copies).
fn enroll_folder(dir: &Path, people: &[(String, Vec<PathBuf>)], per_person: usize) {
    for (name, files) in people {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for f in files.iter().take(per_person) {
            std::fs::copy(f, folder.join(f.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn help_is_readable_and_bad_flags_exit_2() {
    let out = vargid(None, &["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in [
        "serve",
        "hash-key",
        "completions",
        "enroll",
        "identify",
        "verify",
        "export",
        "import",
        "galleries",
        "info",
        "evaluate",
    ] {
        assert!(help.contains(command), "--help lists {command}:\n{help}");
        let out = vargid(None, &[command, "--help"]);
        assert!(out.status.success(), "{command} --help");
        assert!(
            text(&out.stdout).contains("Usage: vargid"),
            "{command} --help"
        );
    }
    let out = vargid(None, &["identify", "--no-such-flag", "x.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let out = vargid(None, &["identify"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing photo is a usage error"
    );
    let out = vargid(None, &["completions", "bash"]);
    assert!(out.status.success() && text(&out.stdout).contains("vargid"));
    // No server: a clear error, exit status 1.
    let out = Command::new(binary())
        .args(["info", "--address", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach the server"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn enroll_identify_verify_export_import() {
    let server = Server::start(&[]);
    let lfw = people(6, 3);
    let dir = TempDir::new("cli-enroll");
    enroll_folder(&dir.0, &lfw, 2);

    // Photos the server refuses, each for its own reason.
    let noise = dir.0.join("zz-rejects");
    std::fs::create_dir_all(&noise).unwrap();
    RgbImage::from_pixel(200, 200, Rgb([128, 128, 128]))
        .save_with_format(noise.join("grey.png"), ImageFormat::Png)
        .unwrap();
    std::fs::write(noise.join("broken.jpg"), b"not a jpeg at all").unwrap();
    let a = image::open(&lfw[0].1[0]).unwrap().to_rgb8();
    let b = image::open(&lfw[1].1[0]).unwrap().to_rgb8();
    let mut two = RgbImage::new(a.width() + b.width(), a.height().max(b.height()));
    imageops::replace(&mut two, &a, 0, 0);
    imageops::replace(&mut two, &b, i64::from(a.width()), 0);
    two.save_with_format(noise.join("two-people.png"), ImageFormat::Png)
        .unwrap();

    let out = vargid(
        Some(&server),
        &["enroll", dir.0.to_str().unwrap(), "--concurrency", "4"],
    );
    let summary = text(&out.stdout);
    eprintln!("{summary}\n{}", text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "one identity had no usable photo"
    );
    assert!(summary.starts_with("enrolled 6 identities ("), "{summary}");
    assert!(summary.contains("skipped 0, failed 1,"), "{summary}");
    let reason = |file: &str| {
        summary
            .lines()
            .find(|l| l.contains("rejected") && l.contains(file))
            .unwrap_or_else(|| panic!("no line for {file}: {summary}"))
            .to_string()
    };
    assert!(reason("grey.png").contains("no face found"));
    assert!(reason("two-people.png").contains("2 usable faces found"));
    assert!(reason("broken.jpg").contains("unsupported image format"));
    // Some LFW photos show a second person: refused for that reason alone, and the
    // identity is enrolled from its other photo.
    for line in summary.lines().filter(|l| l.contains("rejected /")) {
        if !line.contains("zz-rejects") {
            assert!(line.contains("usable faces found"), "{line}");
        }
    }
    assert!(
        text(&out.stderr).contains("enroll: 7/7 identities"),
        "plain progress without a terminal"
    );

    let info = |server: &Server| -> serde_json::Value {
        serde_json::from_slice(&vargid(Some(server), &["info", "--json"]).stdout)
            .expect("info JSON")
    };
    let templates = info(&server)["gallery_size"].as_u64().unwrap();
    assert!((6..=12).contains(&templates), "{templates} templates");
    assert!(
        summary.contains(&format!("enrolled 6 identities ({templates} photos)")),
        "{summary}"
    );

    // A second run skips what is enrolled.
    std::fs::remove_dir_all(&noise).unwrap();
    let out = vargid(Some(&server), &["enroll", dir.0.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("enrolled 0 identities (0 photos), skipped 6, failed 0"),
        "{}",
        text(&out.stdout)
    );

    // Identify: a third photo of each person finds that person first.
    let probes: Vec<String> = lfw
        .iter()
        .map(|(_, f)| f[2].display().to_string())
        .collect();
    let mut args = vec!["identify", "--json", "--top-k", "2"];
    args.extend(probes.iter().map(String::as_str));
    let out = vargid(Some(&server), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), lfw.len());
    let right = answers
        .iter()
        .zip(&lfw)
        .filter(|(a, (name, _))| a["faces"][0]["candidates"][0]["identity_id"] == name.as_str())
        .count();
    assert!(
        right >= 5,
        "{right} of 6 probes found their person: {answers:?}"
    );
    assert_eq!(
        answers[0]["faces"][0]["candidates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let table = text(&vargid(Some(&server), &["identify", &probes[0]]).stdout);
    assert!(
        table.contains("face 1") && table.contains(&lfw[0].0),
        "{table}"
    );
    // --annotate: the photo with its boxes, as PNG (a folder for several photos).
    let annotated = dir.0.join("annotated.png");
    let out = vargid(
        Some(&server),
        &[
            "identify",
            &probes[0],
            "--annotate",
            annotated.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drawn = image::open(&annotated)
        .expect("an annotated PNG")
        .into_rgb8();
    let original = image::open(&probes[0]).unwrap().into_rgb8();
    assert_eq!(drawn.dimensions(), original.dimensions());
    let green = drawn.pixels().filter(|p| p.0 == [0, 200, 0]).count();
    assert!(
        green > 100,
        "the matched face's box is drawn in green ({green} pixels)"
    );
    let folder = dir.0.join("annotated");
    let out = vargid(
        Some(&server),
        &[
            "identify",
            &probes[0],
            &probes[1],
            "--annotate",
            folder.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 2);

    // Verify: photo against photo, and against the enrolled identity.
    let (same_a, same_b) = (lfw[0].1[0].to_str().unwrap(), lfw[0].1[2].to_str().unwrap());
    let out = vargid(Some(&server), &["verify", same_a, same_b, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify JSON");
    assert!(v["score"].as_f64().unwrap() > 0.3, "{v}");
    let out = vargid(Some(&server), &["verify", same_b, "--identity", &lfw[0].0]);
    assert!(
        text(&out.stdout).starts_with("MATCH"),
        "{}",
        text(&out.stdout)
    );
    let out = vargid(Some(&server), &["verify", same_b, "--identity", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    // Export, then import into a new gallery: the same identities and templates.
    let file = dir.0.join("default.jsonl");
    let out = vargid(Some(&server), &["export", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not a terminal: a plain progress line with the gallery's size as the total.
    assert!(
        text(&out.stderr).contains("export: 6/6 identities"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        1 + 6
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = server.client().await;
        client
            .create_gallery(pb::CreateGalleryRequest {
                name: "copy".into(),
                ..Default::default()
            })
            .await
            .expect("create gallery");
    });
    let out = vargid(
        Some(&server),
        &["import", file.to_str().unwrap(), "--gallery", "copy"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("import: 6 identities, {templates} templates")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("import: 6/6 identities"),
        "{}",
        text(&out.stderr)
    );
    let out = vargid(Some(&server), &["galleries", "--json"]);
    let galleries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = galleries
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "copy")
        .expect("copy gallery");
    assert_eq!(copy["identity_count"], 6);
    assert_eq!(copy["face_count"], templates);
    assert_eq!(info(&server)["identity_count"], 12);
    assert!(text(&vargid(Some(&server), &["galleries"]).stdout).contains("copy"));
}

#[test]
fn enroll_resumes_after_a_kill() {
    let server = Server::start(&[]);
    let lfw = people(30, 2);
    let dir = TempDir::new("cli-resume");
    enroll_folder(&dir.0, &lfw, 2);
    let mut child = Command::new(binary())
        .args([
            "enroll",
            dir.0.to_str().unwrap(),
            "--concurrency",
            "1",
            "--use-largest-face",
        ])
        .env("VARGID_ADDRESS", &server.grpc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = || {
        runtime.block_on(async {
            let mut client = server.client().await;
            client
                .list_identities(pb::ListIdentitiesRequest::default())
                .await
                .expect("list")
                .into_inner()
                .total_size
        })
    };
    let started = Instant::now();
    while count() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "enroll made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = count();
    assert!(
        before < 30,
        "the kill came after the last identity: nothing to resume"
    );

    let out = vargid(
        Some(&server),
        &["enroll", dir.0.to_str().unwrap(), "--use-largest-face"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains(&format!("enrolled {} identities", 30 - before))
            && summary.contains(&format!("skipped {before}")),
        "{before} were enrolled before the kill: {summary}"
    );
    // Nothing twice: every identity holds its two templates once.
    runtime.block_on(async {
        let mut client = server.client().await;
        let page = client
            .list_identities(pb::ListIdentitiesRequest {
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.identities.len(), 30);
        assert!(page.identities.iter().all(|i| i.face_ids.len() == 2));
    });
}

#[test]
fn api_key_from_the_environment() {
    let dir = TempDir::new("cli-keys");
    let keys = dir.0.join("keys.toml");
    let key = "cli-reader-key-0123456789abcdef";
    let mut hash = Command::new(binary())
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    hash.stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let digest = text(&hash.wait_with_output().unwrap().stdout)
        .trim()
        .to_string();
    std::fs::write(
        &keys,
        format!("[[keys]]\nid = \"reader\"\nsha256 = \"{digest}\"\nrole = \"read\"\ngalleries = [\"*\"]\n"),
    )
    .unwrap();
    let server = Server::start(&[("VARGID_AUTH__KEYS_FILE", keys.to_str().unwrap())]);
    let out = vargid(Some(&server), &["info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing API key"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(binary())
        .args(["info", "--json"])
        .env("VARGID_ADDRESS", &server.grpc)
        .env("VARGID_API_KEY", key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

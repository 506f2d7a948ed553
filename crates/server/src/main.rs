//! `vargid [--config FILE]`: the face identification server.

use std::path::PathBuf;

use anyhow::{bail, Context};
use vargid_server::config::{Settings, CONFIG_FILE_VAR};
use vargid_server::{server, shutdown, telemetry};

const USAGE: &str = "usage: vargid [--config FILE] | vargid hash-key < KEY\n\
    Settings: built-in defaults, then FILE (or $VARGID_CONFIG), then VARGID_<SECTION>__<KEY>\n\
    environment variables. See config/vargid.example.toml.";

fn main() -> anyhow::Result<()> {
    // `vargid hash-key`: the keys file's sha256 of a key read from stdin.
    if std::env::args().nth(1).as_deref() == Some("hash-key") {
        let mut key = String::new();
        std::io::stdin()
            .read_line(&mut key)
            .context("reading the key from stdin")?;
        println!("{}", vargid_server::auth::key_digest_hex(&key));
        return Ok(());
    }
    let config_file = parse_args()?;
    let settings = Settings::load(config_file.as_deref())?;
    telemetry::init_logging(&settings.log);
    // FAISS searches one query at a time here; OpenMP threads would only compete
    // with inference for the cores. Set before any thread starts.
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        std::env::set_var("OMP_NUM_THREADS", "1");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .thread_name("vargid-rt")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(settings, shutdown::signal()))
}

fn parse_args() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut config = std::env::var_os(CONFIG_FILE_VAR).map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(
                    args.next()
                        .map(PathBuf::from)
                        .context("--config needs a file")?,
                );
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("vargid {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(config)
}

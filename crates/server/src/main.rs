//! `vargid`: the face identification server (`vargid serve`, the default) and a
//! command line client for it (`vargid enroll`, `identify`, `verify`, ...).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use vargid_client::ClientCommand;
use vargid_server::config::{Settings, CONFIG_FILE_VAR};
use vargid_server::{server, shutdown, telemetry, thread_priority};

/// Face identification over gRPC: the server, and a client for it.
///
/// Without a command, `vargid` runs the server. Server settings: built-in defaults,
/// then the --config file (or $VARGID_CONFIG), then VARGID_<SECTION>__<KEY>
/// environment variables; see config/vargid.example.toml. The client commands reach
/// the server at --address (or $VARGID_ADDRESS), with --api-key and --ca-cert when
/// the server asks for them.
#[derive(Parser, Debug)]
#[command(name = "vargid", version, propagate_version = true)]
struct Cli {
    /// Server configuration file (TOML), for running the server without `serve`.
    #[arg(long, short, env = CONFIG_FILE_VAR, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Server configuration file (TOML).
        #[arg(long, short, env = CONFIG_FILE_VAR, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the SHA-256 of an API key read from stdin, for the server's keys file.
    HashKey,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

/// A usage error in one line (clap's own spans several), exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let _ = writeln!(std::io::stderr(), "vargid: {message} (see vargid --help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        None => serve(cli.config),
        Some(Command::Serve { config }) => serve(config.or(cli.config)),
        Some(Command::HashKey) => hash_key(),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "vargid", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Client(command)) => client(*command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "vargid: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one line, without the repeats of nested transport
/// errors that each quote their cause.
fn causes(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `vargid hash-key`: the keys file's sha256 of a key read from stdin.
fn hash_key() -> anyhow::Result<()> {
    let mut key = String::new();
    std::io::stdin()
        .read_line(&mut key)
        .context("reading the key from stdin")?;
    println!("{}", vargid_server::auth::key_digest_hex(&key));
    Ok(())
}

fn client(command: ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(vargid_client::run(command))?;
    Ok(())
}

fn serve(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config_file.as_deref())?;
    telemetry::init_logging(&settings.log);
    // FAISS searches one query at a time here; OpenMP threads would only compete
    // with inference for the cores. Set before any thread starts.
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        std::env::set_var("OMP_NUM_THREADS", "1");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let nice = settings.server.io_threads_nice;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .thread_name("vargid-rt")
        // The runtime's threads serve gRPC, decode and detect; the model's threads are
        // started from the main thread and keep its priority.
        .on_thread_start(move || {
            if nice > 0 {
                if let Err(e) = thread_priority::lower_current_thread_priority(nice) {
                    tracing::warn!(error = %e, nice, "server.io_threads_nice not applied");
                }
            }
        })
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::run(settings, shutdown::signal()))
}

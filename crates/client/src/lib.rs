//! The client commands of the `vargid` command line: they talk to a running server
//! over gRPC (address, TLS and API key from flags or `VARGID_*` variables).

mod annotate;
mod concurrent;
mod connection;
mod enroll;
mod error;
mod evaluate;
mod identify;
mod info;
mod json;
mod labelled;
mod photo;
mod plot_font;
mod progress;
mod retry;
mod transfer;
mod verify;

use clap::Subcommand;

pub use connection::{Client, ConnectArgs};
pub use enroll::{EnrollArgs, SOURCE_KEY};
pub use error::ClientError;
pub use evaluate::EvaluateArgs;
pub use identify::IdentifyArgs;
pub use transfer::TransferArgs;
pub use verify::VerifyArgs;

/// Arguments of the commands that only list.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Commands that call a running server.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// What the server runs: version, model, execution provider, enrolled counts.
    Info(ListArgs),
    /// The galleries, with their sizes, index and threshold.
    Galleries(ListArgs),
    /// Enroll a folder of photos: one identity per sub-folder (or a CSV). Resumable.
    Enroll(EnrollArgs),
    /// Who is in each photo: every face, its best candidates and their scores.
    Identify(IdentifyArgs),
    /// Whether two photos (or a photo and an enrolled identity) show the same person.
    Verify(VerifyArgs),
    /// Write a gallery's identities and templates to a JSON Lines file.
    Export(TransferArgs),
    /// Add the identities of an export file to a gallery (same model only).
    Import(TransferArgs),
    /// Measure the model on a labelled folder (one sub-folder per person): 1:1 ROC and
    /// 1:N CMC/DET through the server, plots, and a suggested match threshold.
    Evaluate(EvaluateArgs),
}

impl ClientCommand {
    fn connect_args(&self) -> &ConnectArgs {
        match self {
            Self::Info(a) | Self::Galleries(a) => &a.connect,
            Self::Enroll(a) => &a.connect,
            Self::Identify(a) => &a.connect,
            Self::Verify(a) => &a.connect,
            Self::Export(a) | Self::Import(a) => &a.connect,
            Self::Evaluate(a) => &a.connect,
        }
    }
}

/// Connects to the server and runs the command.
pub async fn run(command: ClientCommand) -> Result<(), ClientError> {
    let mut client = command.connect_args().connect().await?;
    match command {
        ClientCommand::Info(a) => info::info(&mut client, a.json).await,
        ClientCommand::Galleries(a) => info::galleries(&mut client, a.json).await,
        ClientCommand::Enroll(args) => enroll::run(&client, args).await,
        ClientCommand::Identify(args) => identify::run(&mut client, args).await,
        ClientCommand::Verify(args) => verify::run(&mut client, args).await,
        ClientCommand::Export(args) => transfer::export(&mut client, args).await,
        ClientCommand::Import(args) => transfer::import(&mut client, args).await,
        ClientCommand::Evaluate(args) => evaluate::run(&mut client, args).await,
    }
}

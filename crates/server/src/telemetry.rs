//! Logging through `tracing`: text or JSON to stdout, filtered by RUST_LOG or the config.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if settings.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

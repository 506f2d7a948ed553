//! Loads the ONNX Runtime shared library once per process.
//!
//! `ort` is built with `load-dynamic`, so the library is opened at run time. We use
//! `ort::init_from`, which reports a missing or incompatible library as an error,
//! instead of `ort::init`, which panics.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use crate::error::ModelError;

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// The library to load: the explicit path if given, else `ORT_DYLIB_PATH`.
pub fn library_path(explicit: Option<&Path>) -> Result<PathBuf, ModelError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(ModelError::RuntimeLibraryUnset),
    }
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
/// Later calls return the first environment whatever path they pass.
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, ModelError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = library_path(library)?;
    let lib_err = |reason: String| ModelError::RuntimeLibrary {
        path: path.display().to_string(),
        reason,
    };
    if !path.is_file() {
        return Err(lib_err("no such file (run scripts/install-deps.sh)".into()));
    }
    let env = ort::init_from(&path)
        .map_err(|e| lib_err(e.to_string()))?
        .with_name("vargid")
        .build()
        .map_err(|e| lib_err(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// A session builder with the settings every model here shares: full graph
/// optimisation, `intra_threads` intra-op threads (0: one per core) and spinning.
/// Errors name `model`, the file the session is for.
pub fn session_builder(
    env: &Environment,
    model: &Path,
    intra_threads: usize,
    spinning: bool,
) -> Result<SessionBuilder, ModelError> {
    fn load_err(model: &Path, e: impl std::fmt::Display) -> ModelError {
        ModelError::Load {
            path: model.display().to_string(),
            reason: e.to_string(),
        }
    }
    Session::builder(env)
        .map_err(|e| load_err(model, e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| load_err(model, e))?
        .with_intra_threads(intra_threads)
        .map_err(|e| load_err(model, e))?
        .with_intra_op_spinning(spinning)
        .map_err(|e| load_err(model, e))
}

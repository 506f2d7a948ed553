//! A missing ONNX Runtime library is an error, not a panic (own test binary: the
//! library is loaded once per process).

use std::path::Path;

use vargid_model::{Embedder, EmbedderOptions, ModelError};

#[test]
fn missing_runtime_library_is_an_error() {
    let options = EmbedderOptions {
        onnxruntime_library: Some("/nonexistent/libonnxruntime.so".into()),
        ..Default::default()
    };
    let err = Embedder::load(Path::new("models/vargfacenet.onnx"), &options).unwrap_err();
    assert!(matches!(err, ModelError::RuntimeLibrary { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libonnxruntime.so"));
}

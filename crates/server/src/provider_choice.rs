//! Which execution provider runs the model: `model.execution_provider` as configured,
//! or, for `"auto"` (the default), OpenVINO where it was measured to pay and the CPU
//! provider everywhere else.
//!
//! Measured (docs/benchmarks.md, "OpenVINO"): on a 2-core Intel Xeon with AVX-512 the
//! OpenVINO build runs VarGFaceNet at about 2x the CPU provider's faces/s; on a 2-core
//! AMD EPYC with AVX2 only it was no faster. So "auto" takes OpenVINO when the CPU has
//! AVX-512 and its build is installed, and the server logs what it chose and why.

use std::path::Path;

use crate::config::ModelSettings;

/// The provider to run and why, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// "cpu", "openvino" or "cuda", as `model.execution_provider` spells them.
    pub provider: &'static str,
    pub reason: String,
}

/// What the CPU offers, as far as the choice is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub avx512: bool,
}

impl Cpu {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        Self { avx512 }
    }
}

/// The choice for `model` on `cpu`, with `openvino_library` the OpenVINO build's path.
pub fn choose(model: &ModelSettings, cpu: Cpu, openvino_library: &Path) -> Choice {
    let fixed = |provider: &'static str| Choice {
        provider,
        reason: format!("model.execution_provider = {provider:?}"),
    };
    match model.execution_provider.as_str() {
        "cuda" => return fixed("cuda"),
        "openvino" => return fixed("openvino"),
        "cpu" => return fixed("cpu"),
        _ => {}
    }
    let auto = |provider: &'static str, why: &str| Choice {
        provider,
        reason: format!("auto: {why}"),
    };
    if !cpu.avx512 {
        return auto(
            "cpu",
            "the CPU has no AVX-512, where OpenVINO was measured no faster",
        );
    }
    if !openvino_library.is_file() {
        return auto(
            "cpu",
            "the CPU has AVX-512 but the OpenVINO build is not installed \
             (scripts/install-ort-openvino.sh)",
        );
    }
    auto(
        "openvino",
        "the CPU has AVX-512 and the OpenVINO build is installed (about 2x the CPU provider there)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(provider: &str) -> ModelSettings {
        ModelSettings {
            execution_provider: provider.into(),
            ..ModelSettings::default()
        }
    }

    #[test]
    fn auto_takes_openvino_only_with_avx512_and_its_build() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let missing = Path::new("/nonexistent/libonnxruntime.so");
        let (with, without) = (Cpu { avx512: true }, Cpu { avx512: false });
        assert_eq!(choose(&model("auto"), with, &here).provider, "openvino");
        assert_eq!(choose(&model("auto"), without, &here).provider, "cpu");
        assert_eq!(choose(&model("auto"), with, missing).provider, "cpu");
        assert_eq!(choose(&model("cpu"), with, &here).provider, "cpu");
        assert_eq!(
            choose(&model("openvino"), without, missing).provider,
            "openvino"
        );
        assert!(choose(&model("auto"), without, &here)
            .reason
            .contains("AVX-512"));
    }
}

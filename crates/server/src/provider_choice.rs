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
    /// int8 dot products (AVX512-VNNI or AVX-VNNI), which int8 models need to pay.
    pub vnni: bool,
}

impl Cpu {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let (avx512, vnni) = (
            std::arch::is_x86_feature_detected!("avx512f"),
            std::arch::is_x86_feature_detected!("avx512vnni")
                || std::arch::is_x86_feature_detected!("avxvnni"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (avx512, vnni) = (false, false);
        Self { avx512, vnni }
    }
}

/// A warning for the start-up log when an int8 model runs on a CPU without VNNI.
///
/// Measured on a 2-core AMD EPYC with AVX2 only (docs/benchmarks.md, "int8 on
/// OpenVINO"): 1.1x the float32 model's raw speed on OpenVINO, slower end to end, and
/// 0.79 points lower LFW 1:N rank-1 through the service (from NNCF's symmetric
/// activation ranges, not 16-bit saturation: measured with 7-bit weights); ONNX
/// Runtime's CPU provider runs it at half float32's speed.
pub fn int8_warning(precision: &str, cpu: Cpu) -> Option<&'static str> {
    (precision == "int8" && !cpu.vnni).then_some(
        "int8 model on a CPU without VNNI: measured no faster than float32 there and \
         less accurate; use the float32 model (models/vargfacenet.onnx) on this CPU",
    )
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

    const AVX512_VNNI: Cpu = Cpu {
        avx512: true,
        vnni: true,
    };
    const AVX2: Cpu = Cpu {
        avx512: false,
        vnni: false,
    };

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
        let (with, without) = (AVX512_VNNI, AVX2);
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

    #[test]
    fn int8_without_vnni_is_warned_about() {
        assert!(int8_warning("int8", AVX2).is_some_and(|w| w.contains("VNNI")));
        assert_eq!(int8_warning("int8", AVX512_VNNI), None);
        assert_eq!(int8_warning("fp32", AVX2), None);
    }
}

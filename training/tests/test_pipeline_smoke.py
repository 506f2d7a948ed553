"""Every training step end to end on a 200-image subset: prepare, teacher, two
recursive distillation generations, export, LFW evaluation of teacher and student.

A smoke run (a few steps), not training: it checks the commands fit together.
Needs ../shared/data (or VARGID_FACES_DIR / VARGID_LFW_DIR) and the models that
scripts/prepare-models.sh writes to .deps/models.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vargface import bundle, distill, evaluate, prepare, quantize, teacher

ROOT = Path(__file__).resolve().parents[2]
FACES = Path(os.environ.get("VARGID_FACES_DIR", ROOT / "../shared/data/faces"))
LFW = Path(os.environ.get("VARGID_LFW_DIR", ROOT / "../shared/data/lfw"))
MODELS = ROOT / ".deps/models"

pytestmark = pytest.mark.skipif(
    not (FACES.is_dir() and LFW.is_dir() and (MODELS / "sface_2021dec_fp32.onnx").exists()),
    reason="needs ../shared/data and scripts/prepare-models.sh",
)


def test_every_step_on_200_images(tmp_path):
    archive = tmp_path / "prepared.zip"
    assert prepare.main(["--faces", str(FACES), "--out", str(archive), "--limit", "200",
                         "--detector", str(MODELS / "yunet_2023mar_fp32.onnx")]) == 0
    assert teacher.main(["--prepared", str(archive), "--teacher", str(MODELS / "sface_2021dec_fp32.onnx")]) == 0

    gen1, gen2 = tmp_path / "gen1", tmp_path / "gen2"
    common = ["--prepared", str(archive), "--epochs", "0.1", "--batch-size", "16", "--warmup-steps", "1"]
    assert distill.main(common + ["--out", str(gen1)]) == 0
    # Resuming a finished run changes nothing and still exports.
    assert distill.main(common + ["--out", str(gen1), "--resume"]) == 0
    # Generation 2 as the documented commands train: bfloat16 autocast.
    assert distill.main(common + ["--out", str(gen2), "--init", str(gen1 / "student.onnx"), "--bf16"]) == 0
    assert json.loads((gen2 / "run.json").read_text())["generation"] == 2
    # The consistent-teaching recipe: the teacher runs on every mixed, augmented batch.
    gen3 = tmp_path / "gen3"
    assert distill.main(common + ["--out", str(gen3), "--init", str(gen2 / "student.onnx"), "--generation", "3",
                                  "--teacher-online", str(MODELS / "sface_2021dec_fp32.onnx"), "--mixup", "1",
                                  "--mix", "cutmix", "--inst-on-mixed", "--relation-weight", "1",
                                  "--low-res", "0.5"]) == 0
    summary = json.loads((gen3 / "run.json").read_text())["summary"]
    assert "online teacher" in summary and "neighbourhood KL" in summary and "24-80 px" in summary
    # A clean-only teacher cache (half the teacher's time) serves online teaching only.
    clean = tmp_path / "clean.zip"
    clean.write_bytes(archive.read_bytes())
    assert teacher.main(["--prepared", str(clean), "--teacher", str(MODELS / "sface_2021dec_fp32.onnx"),
                         "--clean-only"]) == 0
    assert json.loads(zipfile.ZipFile(clean).read("teacher.json"))["shape"][1] == 1
    clean_common = ["--prepared", str(clean)] + common[2:] + ["--init", str(gen2 / "student.onnx")]
    with pytest.raises(SystemExit, match="no mirrors"):
        distill.main(clean_common + ["--out", str(tmp_path / "cached-from-clean")])
    assert distill.main(clean_common + ["--out", str(tmp_path / "online-from-clean"), "--teacher-online",
                                        str(MODELS / "sface_2021dec_fp32.onnx")]) == 0

    # The GPU run's bundle: packed here, its first steps run on the CPU from the
    # unpacked bundle alone (its own code), the weights joined and exported here.
    packed = tmp_path / "gpu-bundle.zip"
    assert bundle.main(["pack", "--prepared", str(archive), "--init", str(gen3 / "student.onnx"),
                        "--teacher", str(MODELS / "sface_2021dec_fp32.onnx"), "--out", str(packed)]) == 0
    assert packed.stat().st_size <= 64 * 2**20
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(packed) as z:
        z.extractall(unpacked)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    gpu_out = tmp_path / "gpu-out"
    subprocess.run(["sh", str(unpacked / "run.sh"), str(gpu_out), "--epochs", "0.1", "--batch-size", "16",
                    "--warmup-steps", "1", "--mixup", "1", "--inst-on-mixed", "--generation", "4"],
                   cwd=tmp_path, env=env, check=True)
    parts = json.loads((gpu_out / "weights/parts.json").read_text())["parts"]
    assert parts and all(p["bytes"] <= 16 * 2**20 for p in parts)
    joined = tmp_path / "joined.pt"
    assert bundle.main(["join", "--weights", str(gpu_out / "weights"), "--out", str(joined)]) == 0
    assert joined.read_bytes() == (gpu_out / "student.pt").read_bytes()

    # int8 for OpenVINO, calibrated on the training crops: marked int8, with its source's
    # model version, and close to the float32 model it came from on those crops.
    int8 = tmp_path / "student-int8.onnx"
    assert quantize.main(["--model", str(gen2 / "student.onnx"), "--prepared", str(archive),
                          "--out", str(int8), "--count", "32"]) == 0
    import numpy as np
    import onnx
    import onnxruntime as ort
    meta = [{p.key: p.value for p in onnx.load(str(m)).metadata_props} for m in (gen2 / "student.onnx", int8)]
    assert meta[1]["precision"] == "int8" and meta[1]["model_version"] == meta[0]["model_version"]
    crops = quantize.calibration_crops(archive, 8).transpose(0, 3, 1, 2).astype(np.float32)
    outputs = []
    for path in (gen2 / "student.onnx", int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        e = session.run(None, {session.get_inputs()[0].name: crops})[0]
        outputs.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    assert np.all(np.sum(outputs[0] * outputs[1], axis=1) > 0.9)

    # The accuracy options: asymmetric activation ranges, and the final Gemm in float32.
    mixed = tmp_path / "student-int8-mixed.onnx"
    assert quantize.main(["--model", str(gen2 / "student.onnx"), "--prepared", str(archive),
                          "--out", str(mixed), "--count", "8", "--preset", "mixed",
                          "--float-op", "Gemm", "--overflow-fix", "enable"]) == 0
    mixed_model = onnx.load(str(mixed))
    graph = mixed_model.graph
    quantized_inputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    assert gemms and not any(i in quantized_inputs for n in gemms for i in n.input)
    assert any(n.op_type == "Conv" and n.input[0] in quantized_inputs for n in graph.node)
    note = {p.key: p.value for p in mixed_model.metadata_props}["quantization"]
    assert "preset mixed" in note and "float Gemm" in note and "overflow fix enable" in note

    for model in (MODELS / "sface_2021dec_fp32.onnx", gen2 / "student.onnx"):
        figures = tmp_path / f"{model.parent.name}.json"
        assert evaluate.main(["--model", str(model), "--lfw", str(LFW), "--limit-folds", "2",
                              "--pairs-per-fold", "10", "--json", str(figures),
                              "--detector", str(MODELS / "yunet_2023mar_fp32.onnx")]) == 0
        result = json.loads(figures.read_text())
        assert result["pairs"] == 40 and 0.0 <= result["accuracy_mean"] <= 1.0
        # The LFW 1:N protocol on the same subset: every same-person pair's person
        # is enrolled once, their other photos are mated probes.
        ident = result["identification"]
        assert ident["gallery"] >= 1 and ident["mated_probes"] >= 1
        assert ident["gallery"] + ident["mated_probes"] + ident["non_mated_probes"] == result["images"]
        assert 0.0 <= ident["rank1"] <= 1.0 and 0.0 <= ident["fnir_at_fpir_0.01"] <= 1.0
    # The same faces shrunk to 40 px: small faces in a photo.
    small = tmp_path / "shrunk.json"
    assert evaluate.main(["--model", str(gen2 / "student.onnx"), "--lfw", str(LFW), "--limit-folds", "2",
                          "--pairs-per-fold", "10", "--json", str(small), "--shrink", "40",
                          "--detector", str(MODELS / "yunet_2023mar_fp32.onnx")]) == 0
    assert json.loads(small.read_text())["shrunk_to_px"] == 40

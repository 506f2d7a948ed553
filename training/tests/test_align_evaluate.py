"""Alignment, the LFW protocol's arithmetic and the dequantisation, on synthetic data
(the cross-language check against the service is tests/tests/alignment.rs)."""

import numpy as np

from vargface.align import ARCFACE_TEMPLATE, align, similarity_transform, warp_affine
from vargface.evaluate import (Pair, evaluate, fallback_landmarks, identification_metrics,
                               identification_split, read_pairs)
from vargface.thirdparty import dequantize_block


def test_similarity_transform_recovers_a_known_one():
    scale, angle = 1.7, np.deg2rad(-20)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE @ rot.T + [30.0, -12.0]
    m = similarity_transform(src)
    back = src @ m[:, :2].T + m[:, 2]
    assert np.allclose(back, ARCFACE_TEMPLATE, atol=1e-9)


def test_identity_warp_copies_and_edges_replicate():
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(warp_affine(img, np.array([[1.0, 0, 0], [0, 1.0, 0]])), img)
    shifted = warp_affine(img, np.array([[1.0, 0, 10.0], [0, 1.0, 0]]))
    assert np.array_equal(shifted[:, 0], img[:, 0])
    assert np.array_equal(shifted[:, 11], img[:, 1])


def test_template_landmarks_give_the_centre_crop():
    img = np.random.default_rng(1).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    crop = align(img, fallback_landmarks(250, 250))
    assert np.array_equal(crop, img[69:181, 69:181])


def test_ten_folds_and_tar(tmp_path):
    lines = ["10\t2"]
    for fold in range(10):
        lines += [f"P{fold}\t1\t2"] * 2 + [f"P{fold}\t1\tQ{fold}\t1"] * 2
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_pairs(tmp_path / "pairs.txt")
    assert len(pairs) == 40 and pairs[0] == Pair("P0/P0_0001.jpg", "P0/P0_0002.jpg", True, 0)
    rng = np.random.default_rng(2)
    emb = {}
    for p in pairs:  # same person: identical vectors; different: orthogonal-ish
        base = rng.normal(size=8)
        emb.setdefault(p.first, base)
        emb.setdefault(p.second, emb[p.first] if p.same else rng.normal(size=8) * 10 + 50 * np.eye(8)[p.fold % 8])
    result = evaluate(pairs, emb)
    assert len(result["fold_accuracies"]) == 10
    assert result["accuracy_mean"] >= 0.9
    assert 0.0 <= result["tar_at_far_1e-3"] <= 1.0


def test_blocked_dequantisation():
    q = np.array([[1, 2, 3, 4], [-1, -2, -3, -4]], dtype=np.int8)
    scale = np.array([[0.5, 2.0], [1.0, 1.0]], dtype=np.float32)
    zero = np.array([[1, 0], [0, -4]], dtype=np.int8)
    out = dequantize_block(q, scale, zero, axis=1, block_size=2)
    assert np.allclose(out, [[0.0, 0.5, 6.0, 8.0], [-1.0, -2.0, 1.0, 0.0]])


def test_identification_split_and_figures():
    names = ["A/A_0001.jpg", "A/A_0002.jpg", "A/A_0003.jpg", "B/B_0001.jpg", "B/B_0002.jpg",
             "C/C_0001.jpg", "D/D_0001.jpg", "E/E_0001.jpg"]
    split = identification_split(list(reversed(names)))
    assert split.gallery == ["A/A_0001.jpg", "B/B_0001.jpg"]
    assert split.mated == ["A/A_0002.jpg", "A/A_0003.jpg", "B/B_0002.jpg"]
    assert split.non_mated == ["C/C_0001.jpg", "D/D_0001.jpg", "E/E_0001.jpg"]

    axis = np.eye(4)
    emb = {"A/A_0001.jpg": axis[0], "A/A_0002.jpg": axis[0] + 0.1 * axis[2],
           "A/A_0003.jpg": axis[1] + 0.2 * axis[0],  # closer to B: a rank-1 miss
           "B/B_0001.jpg": axis[1], "B/B_0002.jpg": axis[1] + 0.5 * axis[3],
           "C/C_0001.jpg": axis[2], "D/D_0001.jpg": axis[3], "E/E_0001.jpg": axis[3] + 0.5 * axis[0]}
    result = identification_metrics(emb, split)
    assert result["rank1"] == 2 / 3
    assert (result["gallery"], result["mated_probes"], result["non_mated_probes"]) == (2, 3, 3)
    # FPIR=0.1 of 3 non-mated probes allows none above the threshold: the best
    # non-mated score (E against A, 0.447) is the threshold. A/A_0002 (0.995) and
    # B/B_0002 (0.894) are hits above it, A/A_0003 a miss: FNIR 1/3.
    assert abs(result["fpir_0.1_threshold"] - 0.5 / np.sqrt(1.25)) < 1e-9
    assert result["fnir_at_fpir_0.1"] == 1 / 3

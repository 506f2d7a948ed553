"""vargface.gap's arithmetic on synthetic crops and embeddings."""

import numpy as np

from vargface.evaluate import l2_normalise
from vargface.gap import gap, photo_properties


def test_photo_properties_of_plain_images():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8), 3, axis=3)
    props = photo_properties(grey)
    assert np.allclose(props["colour"], 0)
    mirrored = np.concatenate([grey[:, :, :4], grey[:, :, :4][:, :, ::-1]], axis=2)
    assert np.allclose(photo_properties(mirrored)["asymmetry"], 0)
    flat = np.full((1, 8, 8, 3), 90, dtype=np.uint8)
    assert np.allclose(photo_properties(flat)["sharpness"], 0)


def test_gap_counts_searches_the_student_alone_loses():
    # Ten people with three photos each (one enrolled, two probes) and four singletons.
    names = [f"P{p}/P{p}_{i:04d}.jpg" for p in range(10) for i in (1, 2, 3)]
    names += [f"S{p}/S{p}_0001.jpg" for p in range(4)]
    rng = np.random.default_rng(1)
    centre = l2_normalise(rng.normal(size=(14, 64)))
    person = [int(n[1]) if n[0] == "P" else 10 + int(n[1]) for n in names]
    teacher = l2_normalise(centre[person] + 0.05 * rng.normal(size=(len(names), 64)))
    student = teacher.copy()
    student[2] = centre[(person[2] + 1) % 10]  # P0's second probe now looks like P1
    crops = rng.integers(0, 256, (len(names), 8, 8, 3), dtype=np.uint8)
    result = gap(names, crops, student, teacher)
    assert result["searches"] == 20
    assert result["rank1"] == {"teacher": 1.0, "student": 0.95}
    assert result["student_wrong_teacher_right"] == 1
    for rows in result["by_quintile"].values():
        assert sum(r["searches"] for r in rows) == 20

"""The neighbourhood term of vargface.distill: zero when the student ranks the other
faces as the teacher does, and blind to each face's own centre."""

import torch
import torch.nn.functional as F

from vargface.distill import neighbourhood_kl as kl_to_centres


def neighbourhood_kl(student, teacher, centres, own, temperature):
    return kl_to_centres(student @ centres.T, teacher @ centres.T, own, temperature)


def test_zero_when_student_agrees_positive_when_not_and_own_centre_ignored():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(50, 8, generator=g), dim=-1)
    teacher = F.normalize(centres[:4] + 0.3 * torch.randn(4, 8, generator=g), dim=-1)
    own = [torch.arange(4)]
    assert neighbourhood_kl(teacher, teacher, centres, own, 0.1).item() < 1e-6
    other = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    assert neighbourhood_kl(other, teacher, centres, own, 0.1).item() > 0.1
    # A face's own centre does not count: replacing it changes nothing for that face.
    replaced = centres.clone()
    replaced[0] = F.normalize(torch.randn(8, generator=g), dim=0)
    first = [torch.arange(1)]
    before = neighbourhood_kl(other[:1], teacher[:1], centres, first, 0.1).item()
    assert abs(neighbourhood_kl(other[:1], teacher[:1], replaced, first, 0.1).item() - before) < 1e-6

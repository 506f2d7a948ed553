from vargface.model import VarGFaceNet
from vargface.summary import REFERENCE_MACS, REFERENCE_PARAMS, count_macs, count_parameters


def test_parameter_count_matches_reference_exactly():
    assert count_parameters(VarGFaceNet()) == REFERENCE_PARAMS == 5_198_292


def test_multiply_adds_within_5_percent_of_reference():
    macs = count_macs(VarGFaceNet())
    assert abs(macs / REFERENCE_MACS - 1) < 0.05
    assert macs == 512_593_440  # measured; the reference 0.5126 G rounds this


def test_embedding_size_only_changes_the_fc_and_its_bn():
    # FC 512->128 with bias and a 128-wide affine BN instead of 512-wide ones.
    delta = (512 * 512 + 512 + 2 * 512) - (512 * 128 + 128 + 2 * 128)
    assert count_parameters(VarGFaceNet(emb_size=128)) == REFERENCE_PARAMS - delta

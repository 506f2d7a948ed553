from vargface.parity import MAX_ABS_DIFF, MIN_COSINE, check_parity


def test_onnx_runtime_matches_pytorch_at_batch_1_7_32(exported_model):
    model, path = exported_model
    results = check_parity(model, path, batch_sizes=(1, 7, 32))
    assert [r.batch_size for r in results] == [1, 7, 32]
    for result in results:
        assert result.max_abs_diff < MAX_ABS_DIFF, str(result)
        assert result.min_cosine > MIN_COSINE, str(result)

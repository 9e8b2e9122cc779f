"""Token-budget text encoding (the GPU path of the text encoder), run here on the CPU in fp32 and bf16 against
sentence-transformers' own encode on the real default model."""
from __future__ import annotations

import numpy as np
import pytest

from embstore.encoders import device_text

TEXTS = ["What is the capital of France?", "How far is the moon?", "Who wrote Hamlet?", "a",
         "Define the word 'serendipity' and give an example of it used in a sentence about travelling abroad.",
         "How many bones are in the human body?", " ".join(["long"] * 400), "Why is the sky blue?"] * 5


def test_batches_keep_rows_times_longest_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 1000)
    plan = device_text.batches_by_budget(lengths, budget=2048, max_rows=64)
    rows = np.concatenate(plan)
    assert sorted(rows.tolist()) == list(range(1000))  # every row once
    for b in plan:
        assert len(b) <= 64 and (len(b) == 1 or len(b) * lengths[b].max() <= 2048)
    assert lengths[rows].tolist() == sorted(lengths.tolist(), reverse=True)  # longest first: padding stays small
    assert [len(b) for b in device_text.batches_by_budget(np.array([5000, 3]), budget=100)] == [1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("dtype, floor", [("float32", 0.99999), ("bfloat16", 0.995)])
def test_the_same_vectors_as_sentence_transformers_encode(dtype, floor):
    import torch

    from embstore.encoders import get_encoder

    model = get_encoder("minilm").model
    ref = model.encode(TEXTS, convert_to_numpy=True)
    got = device_text.encode(model, TEXTS, "cpu", dtype=getattr(torch, dtype), budget=512)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert cos.min() >= floor, cos.min()  # in the caller's order, not the sorted one


@pytest.mark.slow
def test_a_tokenizer_error_reaches_the_caller():
    from embstore.encoders import get_encoder

    model = get_encoder("minilm").model

    class Broken:
        def __getattr__(self, name):
            return getattr(model, name)

        def preprocess(self, texts):
            raise ValueError("tokenizer broke")

    with pytest.raises(ValueError, match="tokenizer broke"):
        device_text.encode(Broken(), TEXTS, "cpu", budget=64)

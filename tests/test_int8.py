"""precision=int8 (embstore/encoders/int8.py): the real MiniLM quantised by NNCF keeps a mean cosine >= 0.99 to its
fp32 torch vectors on generic sentences that are not its calibration set; the quantised model is made once and read
from the cache after (no second quantisation); int8 is an encoder of its own (fingerprint, default space), a space
never mixes precisions (an ingest of the other precision into it is refused in one line), and a query of one text
runs in the int8 model too. The spec parsing and the refusals need no model.

MiniLM is quantised once for the module, into a temporary cache (about a minute on 2 cores).
"""
from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from embstore import Store
from embstore.config import Settings
from embstore.encoders import canonical_spec, get_encoder, int8
from embstore.encoders.layers import SpecOptions, split_spec
from embstore.errors import EncoderError, InputError, SpaceMismatchError

INT8 = "minilm?precision=int8"

# generic sentences, none of them in the calibration set (checked below)
SENTENCES = [
    "The bus to the university was full, so I walked the last mile.",
    "How do I change the language of my keyboard?",
    "Our neighbours painted their fence bright yellow last weekend.",
    "What is the oldest tree in the world?",
    "The soup needs more pepper and a little lemon juice.",
    "Shares in the airline fell after it cut its profit forecast.",
    "Can I bring my bicycle on the train during rush hour?",
    "The museum guide spoke four languages and knew every painting by heart.",
    "This kettle boils water in under two minutes but the lid sticks.",
    "Who wrote the first dictionary of the English language?",
    "A thick fog covered the harbour until late in the morning.",
    "Please remind me to call the dentist tomorrow afternoon.",
    "The striker scored twice in the second half to win the cup.",
    "Why does bread go hard when it is left out?",
    "The town library lends tools as well as books.",
    "My phone screen cracked when it slipped off the table.",
    "The storm knocked out power to half the island for two days.",
    "Which bird can fly backwards?",
    "The festival's opening night sold out within an hour.",
    "I have read the manual twice and still cannot pair the speaker.",
    "Farmers expect a smaller wheat harvest because of the late frost.",
    "How many hours of sleep does a teenager need?",
    "The café on the corner makes the best hot chocolate in town.",
    "She trained for a year to swim across the lake.",
    "Refunds are issued to the original payment method within five days.",
    "What does a hedge fund actually do?",
    "The village school has only eleven pupils this year.",
    "Turn the dial to the right until you hear a click.",
    "The novel follows three sisters through a long hot summer.",
    "Is it normal for a new car to smell like plastic?",
    "The committee will announce the winners on Friday evening.",
    "A family of otters has returned to the river after forty years.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------------------------------------ no model

def test_precision_is_a_spec_option_written_one_way():
    assert split_spec(" minilm?precision=INT8 ") == ("minilm", SpecOptions(precision="int8"))
    assert canonical_spec("minilm?precision=fp32") == "minilm"  # the default precision is no option
    assert canonical_spec("minilm?precision=int8&layers=last4") == "minilm?layers=last4&precision=int8"
    assert SpecOptions("last4", precision="int8").suffix() == "_layers_last4_int8"
    assert SpecOptions(precision="int8") and not SpecOptions(precision="int8").features()


@pytest.mark.parametrize("spec, error, message", [
    ("minilm?precision=int4", EncoderError, "use fp32 or int8"),
    ("efficientnet-lite0?precision=int8", EncoderError, "int8 is for text encoders for now"),
    ("hash:64?precision=int8", EncoderError, "timm and sentence-transformers encoders only"),
])
def test_int8_refusals_are_one_line(spec, error, message):
    with pytest.raises(error, match=message) as e:
        get_encoder(spec)
    assert "\n" not in str(e.value)


def test_int8_runs_in_openvino_on_the_cpu_with_nncf(monkeypatch):
    with pytest.raises(InputError, match="runs on the CPU, and this run is on cuda; use --device cpu"):
        int8.check("cuda", "auto", INT8)
    with pytest.raises(InputError, match="runs in OpenVINO, not --runtime torch; use --runtime auto or openvino"):
        int8.check("cpu", "torch", INT8)
    int8.check("cpu", "openvino", INT8)  # installed here (the dev extra has nncf)
    from embstore import encoders

    monkeypatch.setitem(sys.modules, "nncf", None)  # as on a machine without it
    monkeypatch.delitem(encoders._cache, (INT8, "cpu", "auto"), raising=False)
    with pytest.raises(EncoderError, match=r"needs the package nncf: pip install 'embstore\[int8\]'"):
        int8.check("cpu", "auto", INT8)
    with pytest.raises(EncoderError, match="needs the package nncf"):
        get_encoder(INT8, "cpu", "auto")


def test_the_calibration_set_is_generic_text_apart_from_the_tests():
    texts = int8.calibration_texts()
    assert len(texts) >= 250 and len(set(texts)) == len(texts)
    assert not set(texts) & set(SENTENCES)
    assert min(map(len, texts)) < 10 and max(map(len, texts)) > 200  # search queries to paragraphs


# ------------------------------------------------------------------------------------------------ real MiniLM

@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    """The int8 MiniLM, compiled in a temporary cache; the number of quantisations made is in ``calls``."""
    from embstore import encoders

    cache = tmp_path_factory.mktemp("cache")
    calls: list[int] = []
    real = int8.quantize
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBSTORE_CACHE", str(cache))
        mp.setattr(int8, "quantize", lambda model, feeds: calls.append(len(feeds)) or real(model, feeds))
        for key in [k for k in encoders._cache if k[0] == INT8]:
            mp.delitem(encoders._cache, key)
        enc = get_encoder(INT8, "cpu", "auto")
        vectors = enc.encode_text(SENTENCES)
        yield {"enc": enc, "vectors": vectors, "calls": calls, "cache": cache}


@pytest.mark.slow
def test_int8_minilm_keeps_the_fp32_vectors(quantised):
    enc, vectors = quantised["enc"], quantised["vectors"]
    assert enc.runtime_in_use().startswith("openvino") and enc.runtime_in_use().endswith(" int8")
    import torch

    fp32 = get_encoder("minilm", "cpu", "torch")
    with torch.inference_mode():
        ref = fp32.model.encode(SENTENCES, convert_to_numpy=True)
    cos = cosines(vectors, ref)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.min(), cos.mean())
    assert cos.mean() < 0.99999  # they are int8's vectors, not the fp32 ones
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 384)
    # one text (a query) runs in the int8 model too, not in torch: the same vector as in the batch
    one = enc.encode_text(SENTENCES[:1])
    assert np.allclose(one, vectors[:1], atol=1e-5)


@pytest.mark.slow
def test_int8_is_quantised_once_and_read_from_the_cache(quantised):
    from embstore.encoders.text import SentenceTransformerEncoder

    assert quantised["calls"] == [len(int8.calibration_texts())]
    folder = quantised["enc"]._compiled.get().folder
    assert "-int8-" in folder.name and folder.parent == quantised["cache"] / "runtimes"
    stamp = (folder / "model.bin").stat().st_mtime_ns
    again = SentenceTransformerEncoder("all-MiniLM-L6-v2", "cpu", spec=INT8, options=split_spec(INT8)[1])
    assert np.allclose(again.encode_text(SENTENCES), quantised["vectors"], atol=1e-5)
    assert again._compiled.get().folder == folder
    assert quantised["calls"] == [len(int8.calibration_texts())]  # no second quantisation
    assert (folder / "model.bin").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_int8_has_its_own_fingerprint_and_space(quantised):
    enc, plain = quantised["enc"], get_encoder("minilm", "cpu", "torch")
    assert enc.fingerprint() != plain.fingerprint()
    assert enc.identity()["config"]["precision"] == "int8"
    assert enc.identity()["config"]["calibration_sha256"] == int8.calibration_sha()[:16]
    assert enc.identity()["weights_sha256"] == plain.identity()["weights_sha256"]
    assert (enc.default_space, enc.spec) == ("minilm_int8", INT8)


@pytest.mark.slow
def test_a_space_never_mixes_precisions(quantised, tmp_path):
    from embstore_cli.main import cli

    src = tmp_path / "texts.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([s] for s in SENTENCES[:8])
    settings = Settings.resolve(device="cpu")
    store = Store.open(tmp_path / "store", settings=settings)
    assert store.ingest(src, "docs").space == "minilm"
    r = store.ingest(src, "docs", encoder=INT8)  # a space of its own beside the fp32 one
    assert (r.space, r.embedded) == ("minilm_int8", 8)
    with pytest.raises(SpaceMismatchError, match="space 'minilm' of 'docs' was built with 'minilm'"):
        store.ingest(src, "docs", encoder=INT8, space="minilm")
    with pytest.raises(SpaceMismatchError, match="pass --space NEW_NAME"):
        store.ingest(src, "docs", encoder="minilm", space="minilm_int8")
    res = CliRunner().invoke(cli, ["ingest", str(src), "--store", str(tmp_path / "store"), "-c", "docs",
                                   "--encoder", INT8, "--space", "minilm", "--device", "cpu"])
    assert res.exit_code != 0 and "pass --space NEW_NAME" in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1
    # the recorded spec rebuilds the int8 encoder: a query's vector is the stored one (cosine 1, not fp32's)
    reopened = Store.open(tmp_path / "store", settings=settings)
    entry = reopened.space("docs", "minilm_int8")["encoder"]
    assert entry["spec"] == INT8 and entry["config"]["precision"] == "int8"
    hit = reopened.search("docs", SENTENCES[3], k=1, space="minilm_int8")[0]
    assert hit["text"] == SENTENCES[3] and hit["score"] == pytest.approx(1.0, abs=1e-4)
    ids, X = reopened.embeddings("docs", "minilm_int8")
    _, plain = reopened.embeddings("docs", "minilm")
    assert X.shape == plain.shape == (8, 384) and not np.allclose(X, plain, atol=1e-4)

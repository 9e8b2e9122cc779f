"""The compiled CPU runtimes (embstore/encoders/runtime.py): each installed runtime's vectors match the torch
encoder's for the real default models (cosine >= 0.999, same fingerprint); an export is made once and reused; a
partial or killed export is never loaded; without the runtime packages the torch path runs and says so once.

The cache tests use a tiny torch module (fast); the model tests load MiniLM and EfficientNet-Lite0 (marked slow).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from embstore.config import Settings
from embstore.encoders import runtime
from embstore.errors import EncoderError, InputError

from conftest import make_png

KINDS = [k for k in runtime.FASTEST_FIRST if runtime.installed(k)]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBSTORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runtimes"


@pytest.fixture()
def no_runtimes(monkeypatch):
    """As on a machine without openvino and onnxruntime: importing them fails, find_spec finds nothing."""
    for name in ("openvino", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(runtime, "_warned", set())


def tiny():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, x):
            return self.m(x)

    return Named().eval()


def compile_tiny(kind: str, sha: str = "ab" * 32):
    import torch

    return runtime.compile_model(kind, tiny(), {"x": torch.zeros(2, 8)}, {"x": {0: "batch"}}, sha, "tiny")


def test_auto_without_runtime_packages_runs_torch_and_warns_once(no_runtimes):
    with pytest.warns(RuntimeWarning, match="pip install openvino"):
        assert runtime.choose("auto", "cpu") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second choice says nothing
        assert runtime.choose("auto", "cpu") == "torch"
        assert runtime.choose("torch", "cpu") == "torch"


def test_a_runtime_asked_for_by_name_must_be_installed(no_runtimes):
    with pytest.raises(EncoderError, match="needs the package openvino: pip install openvino"):
        runtime.choose("openvino", "cpu")
    with pytest.raises(EncoderError, match="onnxruntime"):
        runtime.choose("onnx", "cpu")


def test_gpu_runs_torch(monkeypatch):
    assert runtime.choose("auto", "cuda") == "torch"
    with pytest.raises(InputError, match="runs on the CPU"):
        runtime.choose("openvino", "cuda:0")


def test_runtime_setting_from_argument_env_default(monkeypatch):
    monkeypatch.delenv("EMBSTORE_RUNTIME", raising=False)
    assert Settings.resolve().runtime == "auto"
    monkeypatch.setenv("EMBSTORE_RUNTIME", "torch")
    assert Settings.resolve().runtime == "torch"
    assert Settings.resolve(runtime="openvino").runtime == "openvino"
    monkeypatch.setenv("EMBSTORE_RUNTIME", "tensorrt")
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        Settings.resolve()


def test_cli_ingest_documents_runtime():
    from click.testing import CliRunner

    from embstore_cli.main import cli

    out = CliRunner().invoke(cli, ["ingest", "--help"]).output
    assert "--runtime [auto|torch|openvino|onnx]" in out and "EMBSTORE_RUNTIME" in out


@pytest.mark.parametrize("kind", KINDS)
def test_export_once_then_reused(kind, cache, monkeypatch):
    import torch

    first = compile_tiny(kind)
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    with torch.inference_mode():
        want = tiny()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(first.run({"x": x}), want, rtol=1e-4, atol=1e-5)
    files = {p: p.stat().st_mtime_ns for p in first.folder.iterdir() if p.name != "meta.json"}

    def no_second_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "_export", no_second_export)
    again = compile_tiny(kind)
    assert again.folder == first.folder
    assert {p: p.stat().st_mtime_ns for p in again.folder.iterdir() if p.name != "meta.json"} == files
    np.testing.assert_allclose(again.run({"x": x}), want, rtol=1e-4, atol=1e-5)
    assert [p.name for p in cache.iterdir()] == [first.folder.name]  # nothing else was left there


@pytest.mark.parametrize("kind", KINDS)
def test_partial_or_killed_export_is_never_loaded(kind, cache, monkeypatch):
    good = compile_tiny(kind)
    folder = good.folder
    model = next(p for p in folder.iterdir() if p.suffix in (".bin", ".onnx"))
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # cut short: its size no longer matches
    assert runtime.read_meta(folder, "ab" * 32) is None
    (folder / "meta.json").unlink()  # and no record at all
    (cache / f".tmp-{folder.name}-deadbeef").mkdir()  # a killed export's temporary folder, fresh
    again = compile_tiny(kind)  # exported again over the broken folder
    assert runtime.read_meta(again.folder, "ab" * 32) is not None
    assert again.run({"x": np.ones((1, 8), np.float32)}).shape == (1, 4)
    assert runtime.read_meta(folder, "cd" * 32) is None  # other weights never load this export

    import shutil

    shutil.rmtree(folder)
    if kind == "openvino":
        import openvino as ov

        def killed(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(ov, "save_model", killed)
    else:
        import torch

        monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        compile_tiny(kind)
    assert not folder.exists()  # the killed export left nothing that a later run would load
    assert [p.name for p in cache.glob(".tmp-*")] == [f".tmp-{folder.name}-deadbeef"]  # its own is gone too


# the real default models ---------------------------------------------------------------------------------------

TEXTS = ["Where is the Eiffel Tower?", "How many people live in Tokyo?", "ok", "?", "Das Wetter ist heute schön.",
         "日本語の文章も埋め込めます。", "Ünïcödé téxt wïth áccents and emoji 🚀", "Please reset my password.",
         "SELECT name, count(*) FROM users GROUP BY name;", "The striker scored twice in the second half.",
         "   leading and trailing spaces   ", "UPPER CASE SHOUTING TEXT", "Numbers: 3.14159, 2.71828",
         "Mix two eggs with flour and a pinch of salt.", "Jupiter is the largest planet in the solar system.",
         "It was the best of times, it was the worst of times.", "a b c d e f g h i j k l m n o p",
         " ".join(f"word{i}" for i in range(400))]  # past the 256-token window: truncated the same way


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EMBSTORE_CACHE", str(tmp_path_factory.mktemp("runtime-cache")))
    yield
    mp.undo()


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def text_torch(module_cache):
    from embstore.encoders.text import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", runtime="torch", spec="minilm")
    return enc, enc.encode_text(TEXTS, 8)


@pytest.fixture(scope="module")
def image_torch(module_cache, tmp_path_factory):
    from embstore.encoders import load_image
    from embstore.encoders.image import TimmEncoder, lite0_weights_path

    folder = tmp_path_factory.mktemp("images")
    enc = TimmEncoder("efficientnet_lite0", lite0_weights_path(), runtime="torch", spec="efficientnet-lite0")
    batch = [enc.preprocess(load_image(make_png(folder / f"{i}.png", i, size=40))) for i in range(runtime.MIN_ROWS)]
    return enc, batch, enc.encode_preprocessed(batch)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_text_runtime_matches_torch(kind, text_torch):
    from embstore.encoders.text import SentenceTransformerEncoder

    ref_enc, ref = text_torch
    enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", runtime=kind, spec="minilm")
    got = enc.encode_text(TEXTS, 4)  # several batches, sorted by length inside: the order comes back
    assert enc.runtime_in_use().startswith(kind)
    assert _cos(got, ref).min() >= 0.999
    assert enc.fingerprint() == ref_enc.fingerprint()  # an execution detail, not another space
    short = enc.encode_text(TEXTS[:3])  # under MIN_ROWS: torch, the same vectors
    assert _cos(short, ref[:3]).min() >= 0.9999


def test_text_batches_are_ordered_by_tokens_and_each_is_its_own_tokenization(text_torch):
    """The compiled runtimes get batches of equal token counts where they can: each batch is exactly the model's
    tokenization of its texts (padded to its longest), every row is in one batch, and the padding is what ordering
    by token count leaves (ordering by characters, as sentence-transformers does, leaves more)."""
    enc, _ = text_torch
    texts = TEXTS + [" ".join(["token"] * (i % 23)) + f" {'é' * (40 - i)}" for i in range(40)]
    batches = list(enc._batches(texts, 4, ["input_ids", "attention_mask"]))
    assert sorted(i for idx, _ in batches for i in idx) == list(range(len(texts)))
    padded = 0
    for idx, feats in batches:
        own = enc._example([texts[i] for i in idx], ["input_ids", "attention_mask"])
        assert feats.keys() == own.keys() and all(np.array_equal(feats[k], own[k]) for k in own)
        padded += int((feats["attention_mask"] == 0).sum())
    lengths = enc._example(texts)["attention_mask"].sum(1)

    def padding(order):
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum())
                   for b in (order[s:s + 4] for s in range(0, len(texts), 4)))
    assert padded == padding(np.argsort(-lengths, kind="stable"))  # the least batches of 4 can have
    assert padded < padding(np.argsort([-len(t) for t in texts], kind="stable"))  # ordered by characters


def _bf16_here() -> bool:
    if not runtime.installed("openvino"):
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.slow
@pytest.mark.skipif(not _bf16_here(), reason="OpenVINO with a CPU that computes in bf16")
def test_bf16_is_kept_only_where_it_is_faster_and_the_choice_is_recorded(module_cache, monkeypatch):
    """MiniLM passes the cosine probe in bf16; whether it runs in bf16 is then up to the race against fp32 (timings
    given here: on real CPUs either side wins), recorded beside the export and reused; a record made by an older rule
    (no race) is measured again."""
    import json

    from embstore.encoders.text import SentenceTransformerEncoder

    for done in runtime.cache_root().glob("*/precision-*.json"):  # (made by the tests above: measured again here)
        done.unlink()
    races = []

    def encoder(bf16_s: float, f32_s: float) -> SentenceTransformerEncoder:
        monkeypatch.setattr(runtime, "_race", lambda models, feed: races.append(sorted(models)) or
                            {"bf16": bf16_s, "f32": f32_s})
        enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", runtime="openvino", spec="minilm")
        enc.encode_text(TEXTS, 4)
        return enc

    enc = encoder(1.0, 0.9)  # bf16 slower: fp32
    assert enc.runtime_in_use().endswith("fp32") and races == [["bf16", "f32"]]
    [record_file] = runtime.cache_root().glob("*/precision-*.json")
    record = json.loads(record_file.read_text())
    assert record["precision"] == "f32" and record["seconds"] == {"bf16": 1.0, "f32": 0.9}
    assert record["probe_min_cosine"] >= runtime.PROBE_MIN_COSINE
    assert encoder(0.1, 1.0).runtime_in_use().endswith("fp32") and len(races) == 1  # recorded: no race again
    record_file.write_text(json.dumps({"precision": "f32", "probe_min_cosine": 1.0, "threshold": 0.9999}))
    assert encoder(0.5, 1.0).runtime_in_use().endswith("bf16") and len(races) == 2  # an older rule's record
    assert json.loads(record_file.read_text())["precision"] == "bf16"


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_image_runtime_matches_torch(kind, image_torch):
    import torch

    from embstore.encoders.image import TimmEncoder, lite0_weights_path

    ref_enc, batch, ref = image_torch
    enc = TimmEncoder("efficientnet_lite0", lite0_weights_path(), runtime=kind, spec="efficientnet-lite0")
    got = enc.encode_preprocessed(torch.stack(batch))
    assert enc.runtime_in_use().startswith(kind)
    assert "bf16" not in enc.runtime_in_use()  # the probe keeps this model in fp32 (bf16 gave 0.9968 on MNIST)
    assert _cos(got, ref).min() >= 0.999
    assert enc.fingerprint() == ref_enc.fingerprint()


@pytest.mark.slow
def test_text_without_runtime_packages_runs_torch(no_runtimes, text_torch):
    from embstore.encoders.text import SentenceTransformerEncoder

    _, ref = text_torch
    with pytest.warns(RuntimeWarning, match="pip install openvino"):
        enc = SentenceTransformerEncoder("all-MiniLM-L6-v2", spec="minilm")
    assert enc.runtime == "torch"
    np.testing.assert_allclose(enc.encode_text(TEXTS, 8), ref, atol=1e-5)
    assert enc.runtime_in_use() == "torch"

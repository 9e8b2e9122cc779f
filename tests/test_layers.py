"""Encoder spec options ``layers=`` and ``flip``: parsing, the vectors against timm's and transformers' own
intermediate outputs (tiny random models, torch runtime), and a layers space beside the plain one in a store."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_png, topic_rows, write_csv
from embstore import Store
from embstore.config import Settings
from embstore.encoders import canonical_spec, get_encoder
from embstore.encoders.layers import SpecOptions, select_layers, split_spec
from embstore.errors import EncoderError


def test_spec_options_parse_and_write_one_way():
    assert split_spec("efficientnet-lite0") == ("efficientnet-lite0", SpecOptions())
    assert split_spec(" minilm?layers=Last4 ") == ("minilm", SpecOptions("last4", False))
    assert split_spec("timm:resnet18@/w/r.pth?flip&layers=0,2,5") == ("timm:resnet18@/w/r.pth",
                                                                       SpecOptions("0,2,5", True))
    assert canonical_spec("efficientnet-lite0?flip=true&layers=all") == "efficientnet-lite0?layers=all&flip"
    assert canonical_spec("efficientnet-lite0?flip=false") == "efficientnet-lite0"
    assert SpecOptions("0,2", True).suffix() == "_layers_0_2_flip"
    assert select_layers("all", 4, "s") == [0, 1, 2, 3]
    assert select_layers("last2", 4, "s") == [2, 3]
    assert select_layers("3,1", 4, "s") == [1, 3]


@pytest.mark.parametrize("spec, message", [
    ("minilm?layer=all", "unknown encoder option 'layer=all'"),
    ("minilm?layers=top3", "use all, lastN"),
    ("minilm?layers=last0", "use all, lastN"),
    ("?layers=all", "no encoder before"),
    ("hash:64?layers=all", "timm and sentence-transformers encoders only"),
])
def test_bad_options_are_one_line_errors(spec, message):
    with pytest.raises(EncoderError, match=message):
        get_encoder(spec)


# ------------------------------------------------------------------------------------------------ tiny models

@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory):
    """timm's test_efficientnet (356k parameters), random weights in a .safetensors file: its spec."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path_factory.mktemp("timm") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"timm:test_efficientnet@{path}", path


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A 2-layer, 32-wide BERT with a 40-word vocabulary, saved as a sentence-transformers folder (mean pooling)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("st")
    words = sorted({w for r in topic_rows() for w in r["text"].split()})
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    hf = root / "hf"
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(hf)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=32)
    st = SentenceTransformer(modules=[transformer, Pooling(32, "mean")])
    st.save(str(root / "model"))
    return f"st:{root / 'model'}?layers=all", hf


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _joined(blocks):
    blocks = [b / np.linalg.norm(b, axis=1, keepdims=True) for b in blocks]
    joined = np.concatenate(blocks, 1)
    return joined * np.sqrt(joined.shape[1] / len(blocks))


def test_timm_layers_and_flip_are_timms_own_features(tiny_timm, tmp_path):
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    spec, path = tiny_timm
    images = [Image.open(make_png(tmp_path / f"{i}.png", i, size=40)).convert("RGB") for i in range(5)]
    layers = get_encoder(spec + "?layers=all", runtime="torch")
    flip = get_encoder(spec + "?flip", runtime="torch")
    both = get_encoder(spec + "?layers=last2&flip", runtime="torch")
    plain = get_encoder(spec, runtime="torch")
    # timm's own: the features_only model's stage maps, globally average-pooled, and the classifier-free model
    feats = timm.create_model("test_efficientnet", features_only=True)
    sd = load_file(str(path))
    feats.load_state_dict({k: v for k, v in sd.items() if k in feats.state_dict()})
    stock = timm.create_model("test_efficientnet", num_classes=0)
    stock.load_state_dict({k: v for k, v in sd.items() if not k.startswith("classifier")})
    x = torch.stack([plain.preprocess(im) for im in images])
    with torch.inference_mode():
        def blocks(x):
            return [m.mean(dim=(2, 3)).numpy() for m in feats.eval()(x)] + [stock.eval()(x).numpy()]
        own, own_flipped = blocks(x), blocks(torch.flip(x, dims=[3]))
    want = _joined(own)
    got = layers.encode_images(images)
    assert got.shape == (5, 16 + 24 + 32 + 48 + 64 + plain.dim) and layers.dim == got.shape[1]
    assert _cos(got, want).min() >= 0.999
    assert np.allclose(np.linalg.norm(got, axis=1), np.sqrt(layers.dim), rtol=1e-5)  # standardised scale
    assert np.allclose(got, want, atol=1e-4)
    mean_flip = [(a + b) / 2 for a, b in zip(own, own_flipped)]
    assert _cos(flip.encode_images(images), mean_flip[-1]).min() >= 0.999
    assert _cos(both.encode_images(images), _joined(mean_flip[-2:])).min() >= 0.999
    assert _cos(plain.encode_images(images), own[-1]).min() >= 0.999  # the plain vectors are the stock ones
    ids = {e.fingerprint() for e in (plain, layers, flip, both)}
    assert len(ids) == 4  # each option set is an encoder of its own
    assert "layers" not in plain.identity()["config"] and not plain.normalized
    cfg = layers.identity()["config"]
    assert cfg["layers"] == [0, 1, 2, 3, 4, 5] and cfg["block_dims"] == [16, 24, 32, 48, 64, plain.dim]
    assert (plain.default_space, layers.default_space, both.default_space) == (
        "test_efficientnet", "test_efficientnet_layers_all", "test_efficientnet_layers_last2_flip")


def test_text_layers_are_the_transformers_hidden_states(tiny_st):
    import torch
    from transformers import AutoTokenizer, BertModel

    spec, hf = tiny_st
    texts = [r["text"] for r in topic_rows()[:6]] + ["cat"]
    enc = get_encoder(spec, runtime="torch")
    got = enc.encode_text(texts, batch_size=3)  # batches sorted by length: the order comes back
    tok, model = AutoTokenizer.from_pretrained(hf), BertModel.from_pretrained(hf).eval()
    with torch.inference_mode():  # one text at a time: no padding in the reference
        want = np.stack([_joined([s[0].mean(0, keepdim=True).numpy() for s in model(
            **tok(t, return_tensors="pt"), output_hidden_states=True).hidden_states])[0] for t in texts])
    assert got.shape == (7, 3 * 32) and _cos(got, want).min() >= 0.999 and np.allclose(got, want, atol=1e-4)
    plain = get_encoder(spec.split("?")[0], runtime="torch").encode_text(texts)
    assert _cos(got[:, -32:], plain).min() >= 0.999  # the last block is the plain (mean-pooled) embedding
    with pytest.raises(EncoderError, match="flip is for images"):
        get_encoder(spec + "&flip", runtime="torch")


def test_a_layers_space_beside_the_plain_one(tiny_st, tmp_path):
    """A second ingest with the option makes a second space; the spec round-trips through the manifest (options in
    either order reach the same space), and fit and search work on it while the plain space is untouched."""
    spec, _ = tiny_st
    src = write_csv(tmp_path / "topics.csv", topic_rows())
    s = Store.open(tmp_path / "store", settings=Settings.resolve(runtime="torch"))
    s.ingest(src, "docs", encoder=spec.split("?")[0])
    plain_ids, plain_before = s.embeddings("docs")
    r = s.ingest(src, "docs", encoder=spec.replace("?layers=all", "?layers=ALL"))
    assert (r.space, r.embedded) == ("model_layers_all", 36)
    again = s.ingest(src, "docs", encoder=spec)  # the recorded spec, written another way before: nothing new
    assert (again.space, again.embedded) == ("model_layers_all", 0)
    reopened = Store.open(tmp_path / "store", settings=Settings.resolve(runtime="torch"))
    entry = reopened.space("docs", "model_layers_all")["encoder"]
    assert entry["spec"] == spec and entry["dim"] == 96 and entry["config"]["layers"] == [0, 1, 2]
    assert reopened.encoder_for("docs", "model_layers_all").fingerprint() == entry["fingerprint"]
    ids, X = reopened.embeddings("docs", "model_layers_all")
    assert X.shape == (36, 96) and sorted(ids) == sorted(plain_ids)
    assert np.array_equal(reopened.embeddings("docs", "model")[1], plain_before)
    hit = reopened.search("docs", topic_rows()[0]["text"], k=1, space="model_layers_all")[0]
    assert hit["text"] == topic_rows()[0]["text"] and hit["score"] == pytest.approx(1.0, abs=1e-4)
    rec = reopened.fit("docs", "label", "topic", space="model_layers_all", test_where="split = 'test'")
    assert rec["space"] == "model_layers_all" and rec["encoder"]["spec"] == spec and rec["n_train"] == 27
    with pytest.raises(Exception, match="pass --space"):
        reopened.fit("docs", "label", "topic2", test_where="split = 'test'")

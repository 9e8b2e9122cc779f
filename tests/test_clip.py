"""The open_clip encoder on a tiny randomly initialised configuration the project defines: its vectors equal
open_clip's own encode_image / encode_text; weights saved as a checkpoint file load back through the path real
weights take; an offline machine gets one line saying what to download, and no library log."""
from __future__ import annotations


import numpy as np
import pytest

from embstore import Store
from embstore.errors import EncoderError

from conftest import tiny_clip_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("clip")
    tiny_clip_config(tmp)
    rng = np.random.default_rng(0)
    (tmp / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)).save(tmp / "imgs" / f"{i}.png")
    return tmp


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_stored_vectors_equal_open_clips_own_and_a_checkpoint_file_loads_back(tiny):
    import open_clip
    import torch
    from PIL import Image

    from embstore.encoders.clip import OpenClipEncoder

    config = str(tiny / "tiny_clip.json")
    enc = OpenClipEncoder(config, "random")
    torch.save(enc.model.state_dict(), tiny / "tiny.pt")  # a checkpoint file, as a user would have one
    store = Store.open(tiny / "store")
    r = store.ingest(tiny / "imgs", "imgs", encoder=f"open_clip:{config}@{tiny / 'tiny.pt'}")
    assert r.added == 6
    # open_clip alone, from the same file: create_model_and_transforms(pretrained=FILE)
    model, _, preprocess = open_clip.create_model_and_transforms("tiny_clip", pretrained=str(tiny / "tiny.pt"))
    model.eval()
    paths = dict(store.sql("SELECT id, path FROM imgs").fetchall())
    ids, X = store.embeddings("imgs")
    with torch.inference_mode():
        ref = model.encode_image(torch.stack([preprocess(Image.open(paths[i]).convert("RGB")) for i in ids]),
                                 normalize=True).numpy()
        texts = ["a photo of a dog", "noise", "a red square"]
        ref_t = model.encode_text(open_clip.get_tokenizer("tiny_clip")(texts), normalize=True).numpy()
    assert cosines(X, ref).min() >= 0.999
    assert cosines(store.encoder_for("imgs").encode_text(texts), ref_t).min() >= 0.999
    # the file's weights are the random model's: the same fingerprint of weights
    assert store.space("imgs")["encoder"]["weights_sha256"] == enc.identity()["weights_sha256"]


def test_offline_a_tag_not_in_the_cache_is_one_line_saying_what_to_download(monkeypatch, capfd):
    from embstore.encoders.clip import OpenClipEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderError) as e:
        OpenClipEncoder("ViT-B-32", "openai")
    msg = str(e.value)
    assert "\n" not in msg and "huggingface-cli download timm/vit_base_patch32_clip_224.openai" in msg
    assert "open_clip:ViT-B-32@/path/to/open_clip_pytorch_model.bin" in msg
    err = capfd.readouterr().err
    assert "ERROR:root" not in err and "Failed to download" not in err  # the library's own log stays quiet

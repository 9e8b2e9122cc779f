"""Device image decoding (JPEGs decoded and preprocessed as tensors, as on a GPU with nvJPEG), run here on the CPU
with torchvision's decoder: the same vectors as the PIL path, other formats and rejected files on the CPU path, each
counted, broken files quarantined. Uses the real default image encoder (EfficientNet-Lite0)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from embstore import InputError, Store
from embstore.config import Settings
from embstore.ingest import device_decode

from conftest import tiny_clip_config

pytestmark = pytest.mark.slow


def smooth_image(rng: np.random.Generator, h: int, w: int) -> "object":
    from PIL import Image

    coarse = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.BILINEAR)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seven JPEGs of different sizes (one greyscale), a PNG, a file with a JPEG's first bytes that is no JPEG,
    and a truncated JPEG."""
    d = tmp_path_factory.mktemp("jpegs") / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(224, 224), (300, 200), (180, 420), (512, 384), (97, 131), (256, 256), (640, 480)]):
        img = smooth_image(rng, h, w)
        (img.convert("L") if k == 4 else img).save(d / f"j{k}.jpg", quality=92)
    smooth_image(rng, 200, 260).save(d / "p.png")
    (d / "fake.jpg").write_bytes(b"\xff\xd8\xff" + b"not a jpeg at all" * 40)
    whole = io.BytesIO()
    smooth_image(rng, 300, 300).save(whole, "JPEG")
    (d / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return d


def ingest(tmp_path, folder, monkeypatch, mode: str):
    monkeypatch.setenv("EMBSTORE_DECODE", mode)
    store = Store.open(tmp_path / mode, settings=Settings.resolve(device="cpu", batch_size=4, workers=2))
    return store, store.ingest(folder, "pics", encoder="efficientnet-lite0")


def test_device_decoding_gives_the_cpu_paths_vectors_and_counts_each_file(tmp_path, folder, monkeypatch):
    cpu_store, cpu = ingest(tmp_path, folder, monkeypatch, "cpu")
    dev_store, dev = ingest(tmp_path, folder, monkeypatch, "device")
    for r in (cpu, dev):
        assert (r.read, r.added, r.quarantined) == (10, 8, 2) and r.read == r.added + r.duplicates + r.quarantined
        assert r.reasons == {"broken image": 2}
    assert cpu.decoded == {}  # the CPU decoders: nothing to count
    # the JPEGs on the device decoder; the PNG and the two files it rejects went to the CPU path (the two broken
    # there too, so quarantined, not counted as decoded)
    assert dev.decoded == {"device": 7, "cpu": 1}
    ids_c, X_c = cpu_store.embeddings("pics")
    ids_d, X_d = dev_store.embeddings("pics")
    assert ids_c == ids_d
    cos = (X_c * X_d).sum(1) / np.linalg.norm(X_c, axis=1) / np.linalg.norm(X_d, axis=1)
    assert cos.min() >= 0.999, cos  # another JPEG decoder and tensor resizing: the same vectors within 0.999


def test_transforms_that_do_not_replay_on_tensors_stay_on_the_cpu(monkeypatch):
    from torchvision import transforms as T

    from embstore.encoders import get_encoder

    lite0 = get_encoder("efficientnet-lite0")
    steps = device_decode.TensorTransform.of(lite0.transform).steps
    assert [s for s, _ in steps] == ["resize", "crop", "float", "normalize"]
    assert device_decode.TensorTransform.of(T.Compose([T.RandomResizedCrop(224), T.ToTensor()])) is None
    assert device_decode.TensorTransform.of(T.Compose([T.ToTensor(), T.Resize(256)])) is None  # out of order
    monkeypatch.setenv("EMBSTORE_DECODE", "auto")
    assert device_decode.wanted("cuda:0") and not device_decode.wanted("cpu")
    monkeypatch.setenv("EMBSTORE_DECODE", "cpu")
    assert not device_decode.wanted("cuda")
    monkeypatch.setenv("EMBSTORE_DECODE", "gpu")
    with pytest.raises(InputError, match="EMBSTORE_DECODE is 'gpu'; use one of: auto, device, cpu"):
        device_decode.wanted("cpu")


def test_a_clip_space_decodes_on_the_device_too(tmp_path, folder, monkeypatch):
    spec = f"open_clip:{tiny_clip_config(tmp_path)}@random"
    out = {}
    for mode in ("cpu", "device"):
        monkeypatch.setenv("EMBSTORE_DECODE", mode)
        store = Store.open(tmp_path / mode, settings=Settings.resolve(device="cpu", batch_size=4, workers=2))
        r = store.ingest(folder, "pics", encoder=spec)
        out[mode] = (r, *store.embeddings("pics"))
    assert out["device"][0].decoded == {"device": 7, "cpu": 1} and out["cpu"][0].decoded == {}
    assert out["cpu"][1] == out["device"][1]
    X_c, X_d = out["cpu"][2], out["device"][2]
    assert ((X_c * X_d).sum(1)).min() >= 0.99  # (unit vectors; a 32-pixel model: resizing differences weigh more)


def test_a_jpeg_over_the_pixel_limit_is_quarantined_before_the_device_decodes_it(tmp_path, folder, monkeypatch):
    monkeypatch.setenv("EMBSTORE_MAX_PIXELS", str(300 * 300))  # j3 (512 x 384) and j6 (640 x 480) have more
    _, r = ingest(tmp_path, folder, monkeypatch, "device")
    assert (r.read, r.added, r.quarantined) == (10, 6, 4)
    assert r.reasons == {"broken image": 2, "image too large": 2}
    assert r.decoded == {"device": 5, "cpu": 1}

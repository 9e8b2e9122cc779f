"""Heads from label names: zero-shot (text prototypes) and few-shot (prototypes + Tip-Adapter's cache). The
estimators on synthetic CLIP-like data (the few-shot head is never below zero-shot and rises with each example);
as heads in a store with a tiny random open_clip model (saved, versioned, predicted, reloaded; with and without
labels); and with the real default text model, where the label names alone classify the topic texts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embstore import InputError, Store
from embstore.prototypes import FewShotHead, ZeroShotHead, templates_for

from conftest import TOPICS, tiny_clip_config, topic_rows, write_csv


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clip_like(rng, k=10, d=64):
    """Class directions; images share a modality offset (CLIP's gap) and lie near their class; each text
    prototype is its class direction plus noise (informative, not exact)."""
    mu = unit(rng.standard_normal((k, d)))
    gap = unit(rng.standard_normal(d))

    def images(y):
        return unit(mu[y] + 1.2 * gap + rng.standard_normal((len(y), d)) * 0.16).astype(np.float32)

    return images, unit(mu + rng.standard_normal((k, d)) * 0.12)


def test_few_shot_is_never_below_zero_shot_and_rises_with_each_example():
    rng = np.random.default_rng(0)
    acc: dict[int, list[float]] = {}
    for _ in range(6):
        images, protos = clip_like(rng)
        yte = rng.integers(0, 10, 2000)
        Xte = images(yte)
        zs = ZeroShotHead().set_prototypes(range(10), protos)
        acc.setdefault(0, []).append(float((zs.predict(Xte) == yte).mean()))
        for shots in (1, 2, 4, 8):
            ytr = np.repeat(np.arange(10), shots)
            fs = FewShotHead().set_prototypes(range(10), protos).fit(images(ytr), ytr)
            acc.setdefault(shots, []).append(float((fs.predict(Xte) == yte).mean()))
    for run in range(6):  # in every run, not only on average
        assert acc[1][run] >= acc[0][run] - 0.002
    means = [np.mean(acc[s]) for s in (0, 1, 2, 4, 8)]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_estimator_checks():
    protos = unit(np.eye(3, 8, dtype=np.float32))
    zs = ZeroShotHead(scale=10).set_prototypes(["a", "b", "c"], protos)
    assert zs.scale_ == 10 and ZeroShotHead().set_prototypes(["a"], protos[:1], 42.0).scale_ == 42.0
    p = zs.predict_proba(np.eye(3, 8))
    assert np.allclose(p.sum(1), 1) and list(zs.predict(np.eye(3, 8))) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="labels without a prototype: d"):
        zs.fit(np.eye(3, 8), ["a", "b", "d"])
    with pytest.raises(ValueError, match="needs its label prototypes first"):
        ZeroShotHead().fit(np.eye(3, 8), ["a", "b", "c"])
    with pytest.raises(ValueError, match="alpha must be >= 0 and beta > 0"):
        FewShotHead(beta=0).set_prototypes(["a", "b", "c"], protos).fit(np.eye(3, 8), ["a", "b", "c"])
    assert templates_for("image")[0] == "itap of a {}." and templates_for("text") == ["{}", "a text about {}."]
    with pytest.raises(InputError, match="must hold {} where the label name goes"):
        templates_for("image", ["a photo of a cat"])


# ------------------------------------------------------------------------------------------------ as heads

@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A collection of 24 small images in 3 labelled colours, in a tiny random open_clip space."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("protos")
    tiny_clip_config(tmp)
    rng = np.random.default_rng(1)
    rows = []
    for k, (colour, rgb) in enumerate({"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}.items()):
        for i in range(8):
            a = np.clip(np.asarray(rgb) + rng.integers(-25, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp / f"{colour}{i}.png")
            rows.append({"path": str(tmp / f"{colour}{i}.png"), "colour": colour})
    store = Store.open(tmp / "store")
    store.ingest(write_csv(tmp / "pics.csv", rows), "pics", image_column="path",
                 encoder=f"open_clip:{tmp / 'tiny_clip.json'}@random")
    return store


def test_a_zero_shot_head_from_label_names_alone_predicts_a_collection(pictures):
    rec = pictures.fit("pics", model="zeroshot", name="zs", params={"classes": "red, green ,blue",
                                                                     "templates": ["a {} square."]})
    assert rec["accuracy"] is None and rec["metrics"] == {} and rec["n_train"] == 0 and rec["version"] == 1
    assert rec["classes"] == ["red", "green", "blue"] and rec["prompts"]["templates"] == ["a {} square."]
    assert set(rec["arrays"]) == {"prototypes"} and rec["learned"]["scale_"] > 0  # the model's own logit scale
    out = pictures.predict("zs", "pics")
    assert out["predicted"] == 24 and sum(out["labels"].values()) == 24
    got = pictures.sql("SELECT label FROM predictions WHERE head = 'zs'").fetchall()
    assert len(got) == 24 and {g[0] for g in got} <= {"red", "green", "blue"}
    # what the saved head predicts equals the prototypes' nearest label, recomputed here
    enc = pictures.encoder_for("pics")
    P = unit(enc.encode_text(["a red square.", "a green square.", "a blue square."]))
    ids, X = pictures.embeddings("pics")
    want = dict(zip(ids, np.asarray(["red", "green", "blue"])[(X @ P.T).argmax(1)]))
    assert dict(pictures.sql("SELECT id, label FROM predictions WHERE head = 'zs'").fetchall()) == want
    with pytest.raises(InputError, match="needs the label names: --classes"):
        pictures.fit("pics", model="zeroshot", name="zs2", params={"classes": "red"})


def test_zero_and_few_shot_heads_with_labels_are_scored_saved_and_reloaded(pictures):
    zs = pictures.fit("pics", "colour", "zsl", model="zeroshot", params={"label_names": {"red": "crimson"}})
    fs = pictures.fit("pics", "colour", "fsl", model="fewshot", params={"alpha": 2.0})
    for rec in (zs, fs):
        assert 0 <= rec["accuracy"] <= 1 and rec["metrics"]["n_test"] == 5  # the held-out 0.2 of 24, stratified
    assert zs["prompts"]["label_names"] == ["blue", "green", "crimson"]  # classes sorted; red prompted so
    assert fs["prompts"]["label_names"] == ["blue", "green", "red"]
    assert zs["n_train"] == 0 and fs["n_train"] == 19 and set(fs["arrays"]) == {"prototypes", "cache_X", "cache_y"}
    assert fs["params"] == {"alpha": 2.0}
    a = pictures.predict("fsl", images=[pictures.sql("SELECT path FROM pics LIMIT 1").fetchall()[0][0]])
    b = Store.open(pictures.root).predict("fsl", images=[pictures.sql("SELECT path FROM pics LIMIT 1").fetchall()[0][0]])
    assert a["rows"] == b["rows"]  # reloaded from its files: the same answer
    with pytest.raises(InputError, match="zeroshot has no parameter 'C'"):
        pictures.fit("pics", "colour", model="zeroshot", params={"C": 1.0})


@pytest.mark.slow
def test_label_names_alone_classify_topic_texts_with_the_real_text_model(tmp_path):
    store = Store.open(tmp_path / "s")
    store.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs")  # the default encoder: MiniLM
    rec = store.fit("docs", "label", "zs", model="zeroshot", test_size=0.5)
    assert rec["accuracy"] >= 0.8, rec["metrics"]  # "animals", "finance", "sports" as the only supervision
    assert len(TOPICS) == rec["n_classes"] == 3


def test_prototype_heads_and_the_manifest_validate_against_the_schemas(pictures):
    from test_schemas import errors, validator

    pictures.fit("pics", model="zeroshot", name="zs_schema", params={"classes": "red,blue"})
    pictures.fit("pics", "colour", "fs_schema", model="fewshot")
    for name in ("zs_schema", "fs_schema"):
        folder = pictures.root / pictures.manifest["heads"][name]["versions"][-1]["path"]
        assert errors(validator("head.schema.json"), json.loads((folder / "head.json").read_text())) == []
    assert errors(validator("manifest.schema.json"), json.loads((pictures.root / "embstore.json").read_text())) == []


def test_zero_shot_from_the_command_line(pictures, tmp_path):
    from click.testing import CliRunner

    from embstore_cli.main import cli

    (tmp_path / "t.txt").write_text("a {} square.\n\nan image of {}\n")
    run = CliRunner().invoke(cli, ["fit", "--store", str(pictures.root), "-c", "pics", "--model", "zeroshot",
                                   "--classes", "red,green,blue", "--templates", str(tmp_path / "t.txt"),
                                   "--label-name", "red=scarlet", "--name", "cli_zs"])
    assert run.exit_code == 0, run.output
    assert "prompts: 2 templates (e.g. 'a scarlet square.')" in run.output and "not scored: no labelled items" in run.output
    rec = json.loads(CliRunner().invoke(cli, ["fit", "--store", str(pictures.root), "-c", "pics", "--model", "fewshot",
                                              "--label-column", "colour", "--param", "beta=3", "--json"]).stdout)
    assert rec["model"] == "fewshot" and rec["params"] == {"beta": 3} and rec["accuracy"] is not None
    bad = CliRunner().invoke(cli, ["fit", "--store", str(pictures.root), "-c", "pics", "--label-column", "colour",
                                   "--classes", "a,b"])
    assert bad.exit_code != 0 and "--classes shape the prompts of a zeroshot or fewshot head; --model auto has none" \
        in bad.output


def test_eval_on_a_clip_space_reports_zero_shot_beside_the_curve(pictures, tmp_path):
    out = pictures.eval("pics", "colour", samples=(1, 2), repeats=2, plot_dir=tmp_path)
    zs = out["zero_shot"]
    assert 0 <= zs["accuracy"] <= 1 and zs["n_test"] == 5 and zs["templates"] == 7
    assert (tmp_path / "pics_clip_tiny_clip_few_shot.png").exists() or list(tmp_path.glob("*.png"))
    # the figure equals a zero-shot head's score on the same held-out items
    rec = pictures.fit("pics", "colour", "zs_eval", model="zeroshot")
    assert rec["accuracy"] == pytest.approx(zs["accuracy"])


def test_a_query_takes_the_one_space_that_can_embed_it(pictures, tmp_path):
    """A collection with a CLIP space and an EfficientNet space: a text query goes to the CLIP one (the only one
    that embeds text); an image query asks, since both can; a vector goes by its dimension."""
    store = Store.open(tmp_path / "s")
    rows = [{"path": p, "colour": c} for p, c in pictures.sql("SELECT path, colour FROM pics").fetchall()]
    csv = write_csv(tmp_path / "p.csv", rows)
    clip_spec = pictures.space("pics")["encoder"]["spec"]
    store.ingest(csv, "pics", image_column="path", encoder=clip_spec)
    store.ingest(csv, "pics", image_column="path", encoder="efficientnet-lite0")
    assert sorted(store.collection("pics")["spaces"]) == ["clip_tiny_clip", "efficientnet_lite0"]
    hits = store.search("pics", "a red square", k=3)  # text: only the CLIP space can
    assert len(hits) == 3
    with pytest.raises(InputError, match="several spaces that can take an image query: clip_tiny_clip, "
                                         "efficientnet_lite0; pass --space"):
        store.search("pics", image=rows[0]["path"], k=3)
    assert store.search("pics", image=rows[0]["path"], k=1, space="efficientnet_lite0")[0]["score"] > 0.99
    with pytest.raises(InputError, match="no space of collection 'pics' can embed a vector of 5 dimensions"):
        store.search("pics", vector=[1, 0, 0, 0, 0])


def test_predict_without_a_head_picks_one_that_fits_the_input(tmp_path, topics_csv):
    store = Store.open(tmp_path / "s")
    store.ingest(topics_csv, "docs", encoder="hash:64")
    store.fit("docs", "label", "text_head", model="logreg", params={"C": 1.0})
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    store.ingest(tmp_path, "imgs", encoder="efficientnet-lite0")
    ids = [r[0] for r in store.sql("SELECT id FROM imgs ORDER BY path").fetchall()]
    write_csv(tmp_path / "l.csv", [{"id": i, "label": "dark" if k < 2 else "light"} for k, i in enumerate(ids)])
    store.fit("imgs", labels=tmp_path / "l.csv", name="image_head", model="centroid", test_size=0.5)
    assert store.predict(texts=["the cat in the barn"])["head"] == "text_head"  # the latest is image_head
    assert store.predict(collection="docs")["head"] == "text_head"
    assert store.predict(images=[str(tmp_path / "0.png")])["head"] == "image_head"


def test_sql_searches_across_modalities_in_a_clip_space(pictures, tmp_path):
    path = pictures.sql("SELECT path FROM pics ORDER BY path LIMIT 1").fetchall()[0][0]
    with pytest.raises(Exception, match="embed_image reads an image file outside the store: pass --allow-files"):
        pictures.sql(f"SELECT * FROM pics_nearest_image('{path}', 3)").fetchall()
    got = pictures.sql(f"SELECT path, score FROM pics_nearest_image('{path}', 3)", allow_files=True).fetchall()
    assert got[0][0] == path and got[0][1] == pytest.approx(1.0, abs=1e-4) and len(got) == 3
    by_text = pictures.sql("SELECT id FROM pics_nearest('a red square', 5)").fetchall()
    hits = pictures.search("pics", "a red square", k=5)
    assert [r[0] for r in by_text] == [h["id"] for h in hits]
    # a text collection in the same CLIP space: an image finds its texts
    texts = write_csv(tmp_path / "t.csv", [{"text": f"a {c} square"} for c in ("red", "green", "blue", "grey")])
    pictures.ingest(texts, "captions", encoder=pictures.space("pics")["encoder"]["spec"])
    rows = pictures.sql(f"SELECT text FROM captions_nearest_image('{path}', 4)", allow_files=True).fetchall()
    assert sorted(r[0] for r in rows) == ["a blue square", "a green square", "a grey square", "a red square"]
    assert pictures.search("captions", image=path, k=4)[0]["text"] == rows[0][0]


def test_random_weights_are_said_loudly_wherever_their_vectors_are_used(pictures, tmp_path):
    from click.testing import CliRunner

    from embstore_cli.main import cli

    store = str(pictures.root)
    runs = {
        "search": ["search", "--store", store, "-c", "pics", "a red square", "-k", "2"],
        "fit": ["fit", "--store", store, "-c", "pics", "--label-column", "colour", "--model", "centroid"],
        "predict": ["predict", "--store", store, "-c", "pics"],
        "eval": ["eval", "--store", store, "-c", "pics", "--label-column", "colour", "--samples", "1", "--repeats", "1"],
    }
    for what, args in runs.items():
        run = CliRunner().invoke(cli, args)  # (its output holds stderr too)
        assert run.exit_code == 0, (what, run.output)
        assert "has RANDOM weights: its vectors, searches and heads mean nothing" in run.output, what


def test_the_hash_encoders_spaces_take_text_and_image_queries(tmp_path, topics_csv):
    """The hash encoder records its library as "embstore": its spaces take both kinds of query (it was missed, so a
    collection with two hash spaces said none could embed a text query)."""
    store = Store.open(tmp_path / "s")
    store.ingest(topics_csv, "docs", encoder="hash:64")
    store.ingest(topics_csv, "docs", encoder="hash:32")
    with pytest.raises(InputError, match="several spaces that can take a text query: hash32, hash64; pass --space"):
        store.search("docs", "the cat", k=2)
    assert len(store.search("docs", vector=np.ones(32), k=2)) == 2  # a vector goes by its dimension
    assert store.sql("SELECT count(*) FROM docs_nearest('the cat', 3)").fetchall() == [(3,)]

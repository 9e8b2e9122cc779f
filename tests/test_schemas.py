"""schemas/*.schema.json describe exactly what embstore writes: validate the files of a real store against them."""
from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from embstore import Store

from conftest import HASH, TOPICS, make_png, topic_rows, write_csv

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(v: Draft202012Validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Store:
    """Every kind of entry: text and image collections, quarantine, row-hash and user ids, two spaces, heads of all
    models (string, integer and labels-file labels, several versions), predictions."""
    tmp = tmp_path_factory.mktemp("schemas")
    s = Store.open(tmp / "store")
    rows = topic_rows() + [{"text": "", "label": "animals", "split": "train"}]
    s.ingest(write_csv(tmp / "topics.csv", rows), "docs", encoder=HASH)
    s.ingest(tmp / "topics.csv", "docs", encoder="hash:32")  # a second space of the same collection
    ints = [{"id": f"i{n}_{k}", "text": t, "label": n} for n, texts in enumerate(TOPICS.values())
            for k, t in enumerate(texts)]
    s.ingest(write_csv(tmp / "ints.csv", ints), "ints", encoder=HASH)
    for i in range(4):
        make_png(tmp / "imgs" / ("a" if i < 2 else "b") / f"{i}.png", i)
    (tmp / "imgs" / "a" / "broken.png").write_bytes(b"garbage")
    s.ingest(tmp / "imgs", "imgs", encoder=HASH, index="HNSW32")  # a forced index factory, tuned efSearch
    rng = np.random.default_rng(0)
    s.ingest_vectors("vecs", rng.standard_normal((20, 8)).astype(np.float32), [f"v{i}" for i in range(20)],
                     metadata={"group": ["a", "b"] * 10}, name="mine")  # precomputed vectors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit("docs", "label", "topic", space="hash64", model="logreg", params={"C": 10.0})
        s.fit("docs", "label", "topic", space="hash64", model="knn", train_where="split = 'train'",
              test_where="split = 'test'")
        s.fit("docs", "label", "centroid32", space="hash32", model="centroid")
        s.fit("ints", "label", "ints_head", model="logreg", params={"C": 0.5})
        s.fit("ints", "label", "ints_head", model="logreg", params={"C": 5.0})  # same held-out items: compared with v1
        labels = write_csv(tmp / "labels.csv", [{"id": i, "label": f} for i, f in
                                                s.sql("SELECT id, folder FROM imgs").fetchall()])
        s.fit("imgs", labels=labels, name="img_head", model="knn", test_size=0.5, plot_dir=tmp / "plots")
        tagged = [{"text": r["text"], "tags": f"{r['label']}|{r['split']}"} for r in topic_rows()]
        s.ingest(write_csv(tmp / "tagged.csv", tagged), "tagged", encoder=HASH)
        s.fit("tagged", "tags", "tags_head", label_sep="|", model="logreg", params={"C": 1.0})  # multi-label
        s.fit("ints", "label", "stock_head", model="sklearn-logreg")
        s.fit("docs", "label", "auto_head", space="hash64")  # the default: auto, with its choice's record
        s.fit("docs", "label", "blend_head", space="hash64", model="blend")
        s.fit("docs", "label", "selftrain_head", space="hash64", model="selftrain")
    s.predict("topic", "docs")
    s.predict("topic", "docs")  # again: the first shard is retired (listed under "retired" for an hour)
    s.predict("tags_head", "tagged")
    s.predict("ints_head", "ints")
    s.predict("img_head", "imgs")
    return s.refresh()


def head_files(store: Store) -> list[Path]:
    return sorted(store.root.glob("heads/*/v*/head.json"))


def test_schemas_are_valid_draft_2020_12():
    for name in ("manifest.schema.json", "head.schema.json"):
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_manifest_validates(real_store):
    manifest = json.loads((real_store.root / "embstore.json").read_text())
    assert errors(validator("manifest.schema.json"), manifest) == []
    # the fixture reached every optional branch the schema describes
    docs = manifest["collections"]["docs"]
    assert set(docs["spaces"]) == {"hash64", "hash32"} and docs["id_column"] is None
    assert docs["ingests"][0]["quarantine_file"] is not None and docs["ingests"][1]["quarantine_file"] is not None
    assert manifest["collections"]["ints"]["id_column"] == "id"
    assert manifest["collections"]["imgs"]["modality"] == "image"
    assert manifest["collections"]["imgs"]["ingests"][0]["reasons"] == {"broken image": 1}
    assert len(manifest["heads"]["topic"]["versions"]) == 2
    assert set(manifest["heads"]) == {"topic", "centroid32", "ints_head", "img_head", "tags_head", "stock_head",
                                      "auto_head", "blend_head", "selftrain_head"}
    assert manifest["collections"]["tagged"]["predictions"]["tags_head"]["rows"] == 36
    retired = [r["file"] for r in manifest["retired"]]  # a replaced prediction shard, and key tables replaced by
    assert [f.split("/")[:4] for f in retired if "/predictions/" in f] == [["collections", "docs", "predictions",
                                                                           "topic"]]
    assert all("/keys-" in f for f in retired if "/predictions/" not in f)  # later ingests (new names each time)
    keys = [docs["keys"]] + [e for sp in docs["spaces"].values() for e in sp["keys"].values()]
    assert all(e["file"] not in retired and e["rows"] > 0 for e in keys)
    imgs = manifest["collections"]["imgs"]["spaces"]["hash64"]
    assert imgs["index_factory"] == "HNSW32" and imgs["index"]["param"] == "efSearch"
    assert docs["spaces"]["hash64"]["index"]["factory"] == "Flat" and docs["spaces"]["hash64"]["index"]["param"] is None
    vecs = manifest["collections"]["vecs"]
    assert vecs["modality"] == "vector" and vecs["content_column"] is None
    assert vecs["spaces"]["mine"]["encoder"]["spec"] == "external:mine"
    assert all("seq" in v for h in manifest["heads"].values() for v in h["versions"])


def test_manifest_is_consistent_with_the_files(real_store):
    m = json.loads((real_store.root / "embstore.json").read_text())
    for cname, c in m["collections"].items():
        for ingest in c["ingests"]:
            assert ingest["read"] == ingest["added"] + ingest["duplicates"] + ingest["quarantined"]
            assert sum(ingest["reasons"].values()) == ingest["quarantined"]
        n_items = sum(s["rows"] for s in c["item_shards"])
        assert n_items == sum(i["added"] for i in c["ingests"])
        for sname, sp in c["spaces"].items():
            assert sp["rows"] == sum(s["rows"] for s in sp["shards"]) == n_items
            assert sp["index"]["ntotal"] == sp["rows"]
            assert (real_store.root / sp["index"]["file"]).is_file()
            assert all(s["file"].startswith(f"collections/{cname}/spaces/{sname}/") for s in sp["shards"])
        for head, p in c["predictions"].items():
            assert p["rows"] == n_items and head in m["heads"]
            assert p["version"] == m["heads"][head]["versions"][-1]["version"]
        shards = c["item_shards"] + [s for sp in c["spaces"].values() for s in sp["shards"]] + \
            [s for p in c["predictions"].values() for s in p["shards"]]
        assert all((real_store.root / s["file"]).is_file() for s in shards)
    parts = [int(Path(s["file"]).stem.split("-")[1]) for c in m["collections"].values()
             for s in c["item_shards"] + [x for sp in c["spaces"].values() for x in sp["shards"]]
             + [x for p in c["predictions"].values() for x in p["shards"]]]
    assert len(set(parts)) == len(parts) and max(parts) < m["next_part"]
    retired = [r["file"] for r in m["retired"]]
    assert all((real_store.root / f).is_file() for f in retired) and not set(retired) & {
        s["file"] for c in m["collections"].values() for p in c["predictions"].values() for s in p["shards"]}
    on_disk = {str(f.relative_to(real_store.root)) for f in real_store.root.glob("collections/**/*.parquet")}
    listed = {s["file"] for c in m["collections"].values() for s in c["item_shards"]
              + [x for sp in c["spaces"].values() for x in sp["shards"]]
              + [x for p in c["predictions"].values() for x in p["shards"]]}
    assert on_disk == listed | {f for f in retired if f.endswith(".parquet")}  # nothing stray: listed or retired
    tables = {str(f.relative_to(real_store.root)) for f in real_store.root.glob("collections/**/keys-*.npy")}
    named = {e["file"] for c in m["collections"].values() for e in [c.get("keys")]
             + [x for sp in c["spaces"].values() for x in (sp.get("keys") or {}).values()] if e}
    assert tables == named | {f for f in retired if "/keys-" in f}  # key tables: named by the manifest or retired


def test_head_json_validates(real_store):
    v = validator("head.schema.json")
    files = head_files(real_store)
    assert len(files) == 11  # topic v1, v2, centroid32, ints_head v1, v2, img_head, tags_head, stock_head, auto, blend,
    # selftrain
    for f in files:
        head = json.loads(f.read_text())
        assert errors(v, head) == [], f
    heads = [json.loads(f.read_text()) for f in files]
    assert {h["model"] for h in heads} == {"logreg", "knn", "centroid", "blend", "sklearn-logreg", "selftrain"}
    assert [h["name"] for h in heads if "self_training" in h] == ["selftrain_head"]
    assert [h["name"] for h in heads if "auto" in h] == ["auto_head"]
    assert [h["name"] for h in heads if h["multilabel"]] == ["tags_head"]
    assert [h["name"] for h in heads if "plots" in h] == ["img_head"]
    assert [(h["name"], h["version"]) for h in heads if "vs_previous" in h] == [("ints_head", 2)]  # topic v2: other test
    assert all("accuracy_ci95" in h["metrics"] for h in heads)


def test_head_json_is_consistent(real_store):
    m = real_store.manifest
    for f in head_files(real_store):
        head = json.loads(f.read_text())
        assert f.parent == real_store.root / head["path"]
        assert len(head["classes"]) == head["n_classes"]
        assert set(head["metrics"]["per_label"]) == {str(c) for c in head["classes"]}
        if not head["multilabel"]:
            assert head["metrics"]["confusion"]["labels"] == head["classes"]
            matrix = head["metrics"]["confusion"]["matrix"]
            assert len(matrix) == head["n_classes"] and all(len(r) == head["n_classes"] for r in matrix)
            assert sum(map(sum, matrix)) == head["metrics"]["n_test"]
        for plot in head.get("plots", {}).values():
            assert os.path.isfile(plot)
        assert head["encoder"]["fingerprint"] == head["space_fingerprint"]
        assert head["encoder"] == m["collections"][head["collection"]]["spaces"][head["space"]]["encoder"]
        assert all((f.parent / a).is_file() for a in head["arrays"].values())
        right = np.load(f.parent / head["test_outcomes"], allow_pickle=False)
        assert right.dtype == bool and len(right) == head["metrics"]["n_test"]
        assert right.sum() == round(head["accuracy"] * head["metrics"]["n_test"])
        lo, hi = head["metrics"]["accuracy_ci95"]
        assert lo <= head["accuracy"] <= hi
        summary = next(x for x in m["heads"][head["name"]]["versions"] if x["version"] == head["version"])
        assert {k: head[k] for k in summary if k != "seq"} == {k: v for k, v in summary.items() if k != "seq"}
    ints = json.loads((real_store.root / "heads/ints_head/v1/head.json").read_text())
    assert ints["classes"] == [0, 1, 2] and ints["params"] == {"C": 0.5}
    ints2 = json.loads((real_store.root / "heads/ints_head/v2/head.json").read_text())
    assert ints2["test_data_sha256"] == ints["test_data_sha256"] and ints2["vs_previous"]["version"] == 1
    n, prev = ints2["metrics"]["n_test"], ints2["vs_previous"]
    assert round((ints2["accuracy"] - prev["accuracy"]) * n) == prev["only_this_right"] - prev["only_previous_right"]
    img = json.loads((real_store.root / "heads/img_head/v1/head.json").read_text())
    assert img["label_column"] is None and img["classes"] == ["a", "b"]
    tags = json.loads((real_store.root / "heads/tags_head/v1/head.json").read_text())
    assert tags["label_sep"] == "|" and tags["classes"] == ["animals", "finance", "sports", "test", "train"]


def test_every_ingest_record_says_when(real_store):
    manifest = json.loads((real_store.root / "embstore.json").read_text())
    missing = [name for name, c in manifest["collections"].items() for i in c["ingests"] if "at" not in i]
    assert missing == []


@pytest.mark.parametrize("mutate", [
    lambda m: m.pop("next_part"),
    lambda m: m.update(extra=1),
    lambda m: m.update(format_version=2),
    lambda m: m["collections"]["docs"].update(modality="audio"),
    lambda m: m["collections"]["docs"]["spaces"]["hash64"]["encoder"].update(dim="64"),
    lambda m: m["collections"]["docs"]["spaces"]["hash64"]["encoder"].pop("fingerprint"),
    lambda m: m["collections"]["docs"]["item_shards"][0].update(rows=-1),
    lambda m: m["collections"]["docs"]["ingests"][0].pop("quarantined"),
    lambda m: m["collections"].update({"bad-name": m["collections"]["docs"]}),
    lambda m: m["heads"]["topic"]["versions"][0].update(accuracy=1.5),
    lambda m: m["heads"]["topic"].update(versions=[]),
    lambda m: m["collections"]["docs"]["spaces"]["hash64"]["index"].pop("recall_at_10"),
    lambda m: m["collections"]["docs"]["spaces"]["hash64"]["index"].update(param="nprobe", value=None),
    lambda m: m["collections"]["imgs"]["spaces"]["hash64"]["index"].update(value=None),
], ids=["no next_part", "unknown key", "format 2", "modality", "dim as string", "no fingerprint", "negative rows",
        "no quarantined count", "bad collection name", "accuracy > 1", "no versions", "no recall",
        "param without value", "tuned index without value"])
def test_manifest_schema_rejects_wrong_documents(real_store, mutate):
    manifest = copy.deepcopy(json.loads((real_store.root / "embstore.json").read_text()))
    mutate(manifest)
    assert errors(validator("manifest.schema.json"), manifest) != []


@pytest.mark.parametrize("mutate", [
    lambda h: h.pop("space_fingerprint"),
    lambda h: h.update(model="svm"),
    lambda h: h.update(classes=["a"]),
    lambda h: h.update(classes=["a", 1]),
    lambda h: h["arrays"].pop("coef"),
    lambda h: h["arrays"].update(coef="coef.pkl"),
    lambda h: h["metrics"]["per_label"]["animals"].pop("support"),
    lambda h: h.update(params=None),
    lambda h: h.update(unexpected=True),
    lambda h: h.pop("learned"),
    lambda h: h["learned"].pop("C_"),
    lambda h: h["metrics"].pop("calibration"),
    lambda h: h.update(multilabel=True),
], ids=["no fingerprint", "unknown model", "one class", "mixed label types", "missing array", "pickle file",
        "no support", "params null", "unknown key", "no learned", "logreg without C_", "no calibration",
        "multilabel with single-label metrics"])
def test_head_schema_rejects_wrong_documents(real_store, mutate):
    head = json.loads((real_store.root / "heads/topic/v1/head.json").read_text())
    assert head["model"] == "logreg"
    mutate(head)
    assert errors(validator("head.schema.json"), head) != []


def test_fit_json_is_the_whole_head_record(tmp_path):
    from test_cli import run, run_json

    from conftest import HASH, topic_rows, write_csv

    store = tmp_path / "s"
    run("ingest", write_csv(tmp_path / "t.csv", topic_rows()), "--store", store, "-c", "docs", "--encoder", HASH)
    out = run_json("fit", "--store", store, "-c", "docs", "--label-column", "label", "--name", "h")
    assert errors(validator("head.schema.json"), out) == []
    assert out == json.loads((store / out["path"] / "head.json").read_text())


def test_check_passes_on_a_store_with_every_kind_of_entry(real_store):
    """Text, image and vector collections, two spaces, a forced HNSW index, heads of every model, replaced
    predictions (a retired shard): `embstore check` finds nothing wrong."""
    from embstore.check import check_store

    report = check_store(real_store.root)
    assert report.ok, [p.message for p in report.problems]
    assert report.counts["collections"] == 5 and report.counts["heads"] == 11

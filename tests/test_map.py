"""embstore map: a space's 2D projection kept in the store and reused until the space changes, and the offline HTML
page drawn from it (colours, rings on mistaken predictions, sampling, hover thumbnails, the filter box), checked in
its data and in a real headless Chromium."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from embstore import Store, space_map
from embstore.errors import InputError, NotFoundError
from embstore_cli.main import cli

from browser import shot
from conftest import HASH, make_png, topic_rows, write_csv

pytest.importorskip("plotly", reason="the map needs the serve extra (pip install -e '.[serve]')")

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "manifest.schema.json").read_text())
WRONG = "the goal and the match near the striker coach"  # a sports text labelled finance below


def rows_with_a_wrong_label() -> list[dict]:
    """The 36 topic rows and one more: a sports text labelled finance, held out of training (split test)."""
    return topic_rows() + [{"text": WRONG, "label": "finance", "split": "test"}]


@pytest.fixture()
def docs(tmp_path) -> Store:
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "topics.csv", rows_with_a_wrong_label()), "docs", encoder=HASH)
    return s


def figure(page) -> list[dict]:
    """The page's traces as plotly JSON."""
    return page.figure["data"]


def points(traces) -> int:
    return sum(len(t["x"]) for t in traces if t.get("meta") == "points")


def test_projection_is_kept_in_the_store_and_reused(docs):
    first = space_map.projection(docs, "docs", method="pca")
    assert (first.reused, first.kept, first.method, len(first.ids)) == (False, True, "pca", 37)
    entry = docs.space("docs")["projection"]
    assert entry["file"] == first.file and entry["points"] == 37 and entry["of"]["rows"] == 37
    assert (docs.root / first.file).exists()
    assert list(Draft202012Validator(SCHEMA).iter_errors(json.loads((docs.root / "embstore.json").read_text()))) == []
    again = space_map.projection(Store.open(docs.root), "docs")  # a new reader: read from the file
    assert (again.reused, again.kept, again.file) == (True, True, first.file)
    assert again.ids == first.ids and np.allclose(again.xy, first.xy)
    assert len({tuple(p) for p in np.round(first.xy, 3)}) > 30  # a real spread, not one point


def test_projection_is_computed_again_when_the_space_grows(docs, tmp_path):
    first = space_map.projection(docs, "docs", method="pca")
    more = write_csv(tmp_path / "more.csv", [{"text": f"the bank and the stock rates {i}", "label": "finance",
                                             "split": "train"} for i in range(5)])
    docs.ingest(more, "docs", encoder=HASH)
    grown = space_map.projection(docs, "docs", method="pca")
    assert (grown.reused, grown.kept, len(grown.ids)) == (False, True, 42)
    assert grown.file != first.file
    assert first.file in [r["file"] for r in docs.manifest["retired"]]  # kept for readers of the older snapshot
    assert space_map.projection(docs, "docs").reused


def test_a_deleted_collection_retires_its_projection(docs):
    proj = space_map.projection(docs, "docs", method="pca")
    docs.delete_collection("docs")
    assert proj.file in [r["file"] for r in docs.manifest["retired"]]


def test_a_locked_store_gets_its_map_without_keeping_the_projection(docs):
    from embstore.manifest import writer_lock

    with writer_lock(docs.root):
        proj = space_map.projection(docs, "docs", method="pca")
    assert (proj.kept, proj.not_kept, len(proj.ids)) == (False, "another process is writing the store", 37)
    assert "projection" not in Store.open(docs.root).space("docs")


def test_large_spaces_are_sampled_and_the_page_says_so(docs):
    page = space_map.map_page(docs, "docs", sample=10, method="pca")
    assert (page.shown, page.items) == (10, 37) and points(figure(page)) == 10
    assert "showing 10 of 37 items (a sample, seed 0)" in page.html
    assert docs.space("docs")["projection"]["points"] == 10
    assert space_map.map_page(docs, "docs", sample=5).reused  # fewer points: from the kept sample
    bigger = space_map.map_page(docs, "docs", sample=20)
    assert (bigger.reused, bigger.shown) == (False, 20)  # more points than kept: projected again
    with pytest.raises(InputError, match="sample must be"):
        space_map.map_page(docs, "docs", sample=0)


def test_colour_by_label_and_by_column(docs):
    by_label = figure(space_map.map_page(docs, "docs", method="pca"))
    assert sorted(t["name"] for t in by_label) == ["animals (12)", "finance (13)", "sports (12)"]
    by_split = figure(space_map.map_page(docs, "docs", color="split"))
    assert sorted(t["name"] for t in by_split) == ["test (10)", "train (27)"]
    for t in by_split:  # each point's hover names its own split
        assert all(cd[3] == t["name"].split()[0] for cd in t["customdata"])
    with pytest.raises(InputError, match="cannot colour by 'nope'.*columns text, label, split"):
        space_map.map_page(docs, "docs", color="nope")


def test_colour_by_predictions_rings_the_items_whose_prediction_is_not_their_label(docs):
    with pytest.raises(NotFoundError, match="no stored predictions of head 'topic'.*embstore predict"):
        space_map.map_page(docs, "docs", color="prediction:topic", method="pca")
    docs.fit("docs", "label", "topic", train_where="split = 'train'", model="logreg", params={"C": 10.0})
    docs.predict("topic", "docs")
    wrong = {r[0] for r in docs.sql("SELECT id FROM predictions p JOIN docs d USING (id) WHERE p.collection = 'docs' "
                                    "AND p.label <> d.label").fetchall()}
    wrong_id = docs.sql(f"SELECT id FROM docs WHERE text = '{WRONG}'").fetchall()[0][0]
    assert wrong_id in wrong  # (the head says sports)
    page = space_map.map_page(docs, "docs", color="prediction:topic")
    traces = figure(page)
    assert page.mismatches == len(wrong) and page.head == "topic"
    ringed = [t for t in traces if t.get("meta") == "mismatch"]
    assert len(ringed) == 1 and {cd[0] for cd in ringed[0]["customdata"]} == wrong
    assert ringed[0]["marker"]["symbol"] == "circle-open"
    sports = next(t for t in traces if t["name"].startswith("sports"))  # coloured by the prediction
    assert wrong_id in {cd[0] for cd in sports["customdata"]}
    by_label = space_map.map_page(docs, "docs")  # coloured by the label: the head that learnt it rings its mistakes
    assert by_label.color_column == "label" and by_label.mismatches == len(wrong)
    finance = next(t for t in figure(by_label) if t["name"].startswith("finance"))
    assert wrong_id in {cd[0] for cd in finance["customdata"]}


def test_image_collections_get_thumbnails_in_the_page(tmp_path):
    for n in range(6):
        make_png(tmp_path / "imgs" / ("a" if n < 3 else "b") / f"{n}.png", n)
    s = Store.open(tmp_path / "store")
    s.ingest(tmp_path / "imgs", "pics", encoder=HASH)
    page = space_map.map_page(s, "pics", method="pca")
    assert page.thumbnails == 6 and page.color_column == "folder"  # an image folder is its label
    thumbs = json.loads(re.search(r"THUMBS = (\{.*?\});", page.html).group(1))
    assert len(thumbs) == 6 and all(v.startswith("data:image/png;base64,") for v in thumbs.values())
    assert set(thumbs) == {cd[0] for t in figure(page) for cd in t["customdata"]}


def test_no_network_in_the_page(docs):
    html = space_map.map_html(docs, "docs")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing to fetch (the browser test checks)
    assert len(html) > 1_000_000  # plotly.js itself is inside


def test_method_choice(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    assert space_map.choose_method(None) == "pca"
    with pytest.raises(InputError, match="pip install umap-learn.*--method pca"):
        space_map.choose_method("umap")
    with pytest.raises(InputError, match="use auto, umap or pca"):
        space_map.choose_method("tsne")


def test_without_plotly_a_one_line_error_names_the_extra(docs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(InputError, match=re.escape("pip install 'embstore[serve]'")):
        space_map.map_html(docs, "docs")
    res = CliRunner().invoke(cli, ["map", "--store", str(docs.root), "-c", "docs", "-o", str(tmp_path / "m.html")])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        "Error: the map needs plotly, which is not installed: pip install 'embstore[serve]'"]
    assert not (tmp_path / "m.html").exists()


def test_cli_writes_the_page_and_reports_it(docs, tmp_path):
    out = tmp_path / "map.html"
    args = ["map", "--store", str(docs.root), "-c", "docs", "--method", "pca", "--sample", "20", "-o", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote {out} (") and "showing 20 of 37 items of docs.hash64; PCA projection kept" \
        in res.output, res.output
    res = CliRunner().invoke(cli, args + ["--json"])
    report = json.loads(res.output)
    assert (report["out"], report["shown"], report["items"], report["method"], report["reused"]) == \
        (str(out), 20, 37, "pca", True)
    assert report["bytes"] == out.stat().st_size


@pytest.mark.slow
def test_umap_when_installed(docs):
    pytest.importorskip("umap", reason="umap-learn is not installed (pip install umap-learn)")
    proj = space_map.projection(docs, "docs")
    assert (proj.method, proj.kept, len(proj.ids)) == ("umap", True, 37)
    assert docs.space("docs")["projection"]["method"] == "umap"
    assert space_map.projection(docs, "docs", method="umap").reused


@pytest.mark.parametrize("webgl", [False, True], ids=["svg", "webgl"])
def test_map_in_a_browser(page, docs, tmp_path, monkeypatch, webgl):
    if webgl:
        monkeypatch.setattr(space_map, "GL_FROM", 10)  # the WebGL path, drawn as for 10,000+ points
    docs.fit("docs", "label", "topic", train_where="split = 'train'", model="logreg", params={"C": 10.0})
    docs.predict("topic", "docs")
    out = tmp_path / "map.html"
    out.write_text(space_map.map_html(docs, "docs", color="prediction:topic"), encoding="utf-8")
    page.goto(out.as_uri())
    page.wait_for_function("() => { const gd = document.getElementById('map'); return gd && gd._fullLayout; }")
    count = "() => document.getElementById('map').data.filter(t => t.meta === 'points')" \
            ".reduce((n, t) => n + t.x.length, 0)"
    assert page.evaluate(count) == 37
    kinds = page.evaluate("() => document.getElementById('map')._fullData.map(t => t.type)")
    assert set(kinds) == {"scattergl" if webgl else "scatter"}
    if webgl:
        assert page.locator("#map canvas").count() > 0
    else:
        assert page.locator("#map svg .scatterlayer .point").count() >= 37
    page.fill("#filter", "yields")  # one word of the finance texts
    expected = sum("yields" in r["text"] for r in rows_with_a_wrong_label())
    page.wait_for_function(f"() => ({count})() === {expected}")
    assert page.text_content("#visible") == f"{expected} items match"
    page.fill("#filter", "striker coach")  # the one mislabelled text: its point and its ring
    page.wait_for_function(f"() => ({count})() === 1")
    shown = page.evaluate("() => document.getElementById('map').data.map(t => [t.meta, t.customdata.map(c => c[1])])")
    assert sorted(m for m, texts in shown if texts) == ["mismatch", "points"]
    assert all(texts == [WRONG] for _, texts in shown if texts)
    page.fill("#filter", "")
    page.wait_for_function(f"() => ({count})() === 37")
    assert page.errors == []
    assert shot(page, f"map_{'webgl' if webgl else 'svg'}", tmp_path).stat().st_size > 10_000


def test_image_thumbnail_shows_on_hover_in_a_browser(page, tmp_path):
    for n in range(4):
        make_png(tmp_path / "imgs" / str(n % 2) / f"{n}.png", n)
    s = Store.open(tmp_path / "store")
    s.ingest(tmp_path / "imgs", "pics", encoder=HASH)
    out = tmp_path / "pics.html"
    out.write_text(space_map.map_html(s, "pics"), encoding="utf-8")
    page.goto(out.as_uri())
    page.wait_for_function("() => { const gd = document.getElementById('map'); return gd && gd._fullLayout; }")
    box = page.evaluate("() => { const gd = document.getElementById('map'), t = gd._fullData[0], "
                        "r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis; "
                        "return [r.left + xa._offset + xa.l2p(t.x[0]), r.top + ya._offset + ya.l2p(t.y[0])]; }")
    page.mouse.move(*box)
    page.wait_for_selector("#thumb", state="visible")
    assert page.get_attribute("#thumb img", "src").startswith("data:image/png;base64,")
    assert page.errors == []

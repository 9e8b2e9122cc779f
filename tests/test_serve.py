"""embstore serve: the HTTP service over real hash-encoder stores, through FastAPI's TestClient, and the search page
in a real headless Chromium against the real CLI's uvicorn server."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from browser import shot
from conftest import HASH, TOPICS, make_png, topic_rows, write_csv

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from embstore import Store  # noqa: E402
from embstore.serve import create_app  # noqa: E402
from embstore.serve.limits import Limits  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with collection ``docs`` (36 topic texts, head ``topic``) and ``pics`` (12 images in folders a/ and
    b/, head ``shape``), and a TestClient on its service. Tests must not change the store."""
    tmp = tmp_path_factory.mktemp("served")
    s = Store.open(tmp / "store")
    s.ingest(write_csv(tmp / "topics.csv", topic_rows()), "docs", encoder=HASH)
    s.fit("docs", "label", "topic", model="centroid")
    for n in range(12):
        make_png(tmp / "pics" / ("a" if n % 2 else "b") / f"img{n}.png", n)
    s.ingest(tmp / "pics", "pics", encoder=HASH)
    s.fit("pics", "folder", "shape", model="knn")
    with TestClient(create_app(s.root, limits=Limits(body_bytes=200_000, k=50, rows=100, sql_chars=500))) as c:
        c.tmp = tmp
        yield c


def ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_search_by_text_id_vector_and_where(served):
    hits = ok(served.get("/api/search", params={"collection": "docs", "q": "stock bank rates", "k": 5}))["results"]
    assert len(hits) == 5 and {h["label"] for h in hits} == {"finance"}
    first = hits[0]
    like = ok(served.post("/api/search", json={"collection": "docs", "id": first["id"], "k": 3}))["results"]
    assert len(like) == 3 and first["id"] not in [h["id"] for h in like]  # the item itself is not an answer
    row = ok(served.post("/api/sql", json={"query": f"SELECT embedding FROM docs__hash64 WHERE id = '{first['id']}'"}))
    vector = row["rows"][0][0]
    assert len(vector) == 64
    by_vec = ok(served.post("/api/search", json={"collection": "docs", "vector": vector, "k": 1}))["results"]
    assert by_vec[0]["id"] == first["id"] and by_vec[0]["score"] == pytest.approx(1.0, abs=1e-5)
    sports = ok(served.post("/api/search", json={"collection": "docs", "text": "stock bank rates", "k": 4,
                                                 "where": "label = 'sports'"}))["results"]
    assert len(sports) == 4 and {h["label"] for h in sports} == {"sports"}


def test_image_upload_search_thumbnail_and_predict(served):
    png = (served.tmp / "pics" / "a" / "img3.png").read_bytes()
    out = ok(served.post("/api/search/image", data={"collection": "pics", "k": "3"},
                         files={"file": ("q.png", png, "image/png")}))
    top = out["results"][0]
    assert top["path"].endswith("img3.png") and top["score"] == pytest.approx(1.0, abs=1e-5)
    r = served.get(f"/api/items/pics/{top['id']}/image", params={"size": 16})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    from PIL import Image

    assert max(Image.open(io.BytesIO(r.content)).size) <= 16
    assert served.get("/api/items/pics/nope/image").json()["kind"] == "NotFoundError"
    text_item = ok(served.get("/api/search", params={"collection": "docs", "q": "cat", "k": 1}))["results"][0]
    r = served.get(f"/api/items/docs/{text_item['id']}/image")
    assert r.status_code == 400 and "not images" in r.json()["error"]

    pred = ok(served.post("/api/predict/image", data={"head": "shape"},
                          files=[("files", ("x.png", png, "image/png"))]))
    assert pred["rows"] == [{"input": "x.png", "label": "a", "confidence": pytest.approx(pred["rows"][0]["confidence"])}]
    texts = ok(served.post("/api/predict", json={"texts": ["the stock and the bank", "the goal of the striker"],
                                                   "head": "topic"}))
    assert texts["head"] == "topic" and [r["label"] for r in texts["rows"]] == ["finance", "sports"]
    r = served.post("/api/search/image", data={"collection": "pics"}, files={"file": ("x.png", b"not a png")})
    assert r.status_code == 400 and r.json()["kind"] == "InputError" and "cannot read image" in r.json()["error"]


def test_sql_is_read_only_and_sees_only_the_store(served):
    out = ok(served.post("/api/sql", json={"query": "SELECT label, count(*) AS n FROM docs GROUP BY ALL ORDER BY 1"}))
    assert out["columns"] == ["label", "n"] and out["rows"] == [[t, 12] for t in sorted(TOPICS)]
    refused = {
        "CREATE TABLE t AS SELECT 1": 403,
        "SELECT * FROM read_csv('/etc/passwd')": 400,
        "COPY docs TO '/tmp/leak.csv'": 403,
        "SET enable_external_access = true": 403,
        "ATTACH '/tmp/other.duckdb'": 403,
        "SELECT embed_image('pics', '/etc/hostname')": 400,
    }
    for query, status in refused.items():
        r = served.post("/api/sql", json={"query": query})
        assert r.status_code == status, (query, r.text)
        body = r.json()
        assert set(body) == {"error", "kind"} and "\n" not in body["error"], query
        assert "--allow-files" not in body["error"] and "--write" not in body["error"], body
        assert "root:" not in r.text  # nothing of /etc/passwd comes back
    assert not Path("/tmp/leak.csv").exists()


def test_a_request_leaves_nothing_for_the_next(served):
    """SQL requests share one read-only database (one cursor each): a variable, a refused statement or a failed
    query of one request is not seen by the next."""
    assert ok(served.post("/api/sql", json={"query": "SET VARIABLE x = 42; SELECT getvariable('x') AS x"}))["rows"] \
        == [[42]]
    assert ok(served.post("/api/sql", json={"query": "SELECT getvariable('x') AS x"}))["rows"] == [[None]]
    for query in ("CREATE TEMP VIEW docs AS SELECT 1 AS id", "CREATE MACRO m(x) AS x", "DROP VIEW docs",
                  "SET threads = 1; CREATE TEMP TABLE t AS SELECT 1", "SELECT error('boom') FROM docs"):
        assert served.post("/api/sql", json={"query": query}).status_code in (400, 403), query
    out = ok(served.post("/api/sql", json={"query": "SELECT count(*) FROM docs UNION ALL SELECT count(*) FROM "
                                                    "duckdb_views() WHERE NOT internal AND temporary"}))
    assert out["rows"] == [[36], [0]]  # the store's views are the shared database's own: no TEMP view is left
    assert served.post("/api/sql", json={"query": "SELECT * FROM read_csv('/etc/passwd')"}).status_code == 400


def test_sql_and_where_requests_reuse_one_database(tmp_path, monkeypatch):
    """Many SQL requests and searches with a where, some at once, make the snapshot's database once (a DuckDB
    connection to make its views, one to open it read-only), not a connection each; their answers stay right."""
    import duckdb

    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    made, connect = [], duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **kw: made.append(a) or connect(*a, **kw))
    with TestClient(create_app(s.root)) as c:
        def one(n: int) -> None:
            if n % 2:
                out = ok(c.post("/api/sql", json={"query": f"SELECT count(*) FROM docs WHERE label = '{label}'"}))
                assert out["rows"] == [[12]]
            else:
                hits = ok(c.post("/api/search", json={"collection": "docs", "text": "stock bank", "k": 5,
                                                      "where": f"label = '{label}'"}))["results"]
                assert len(hits) == 5 and {h["label"] for h in hits} == {label}

        from concurrent.futures import ThreadPoolExecutor

        for label in sorted(TOPICS):
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, range(12)))
        assert len(made) == 2, made
        assert ok(c.post("/api/sql", json={"query": "SET threads = 1; SELECT count(*) FROM docs"}))["rows"] == [[36]]
        assert len(made) == 3  # a query with settings: a connection of its own


def test_token_is_required_when_set(served):
    with TestClient(create_app(served.app.state.service.snapshots.root, token="s3cret")) as c:
        assert c.get("/").status_code == 200  # the page holds no data
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = c.get("/api/info", headers=headers)
            assert r.status_code == 401 and r.json()["kind"] == "Unauthorized"
            assert c.post("/api/sql", json={"query": "SELECT 1"}, headers=headers).status_code == 401
        assert ok(c.get("/api/info", headers={"Authorization": "Bearer s3cret"}))["collections"]["docs"]["items"] == 36


def test_size_limits(served):
    r = served.get("/api/search", params={"collection": "docs", "q": "cat", "k": 51})
    assert r.status_code == 400 and r.json()["kind"] == "LimitError" and "k must be from 1 to 50" in r.json()["error"]
    big = b"x" * 300_000
    r = served.post("/api/search/image", data={"collection": "pics"}, files={"file": ("big.png", big)})
    assert r.status_code == 413 and r.json()["kind"] == "TooLargeError"

    def chunks():
        for _ in range(30):
            yield b"y" * 10_000
    r = served.post("/api/sql", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "at most 200,000" in r.json()["error"]
    r = served.post("/api/sql", json={"query": "SELECT 1 " + " " * 600})
    assert r.status_code == 413 and r.json()["kind"] == "TooLargeError"
    out = ok(served.post("/api/sql", json={"query": "SELECT * FROM range(500)", "limit": 7}))
    assert len(out["rows"]) == 7 and out["truncated"] is True
    assert ok(served.post("/api/sql", json={"query": "SELECT * FROM range(500)"}))["rows"].__len__() == 100
    assert served.post("/api/sql", json={"query": "SELECT 1", "limit": 101}).json()["kind"] == "LimitError"


def test_errors_are_one_line_json(served):
    cases = [
        (served.get("/api/search", params={"collection": "nope", "q": "cat"}), 404, "NotFoundError", "no collection"),
        (served.post("/api/search", json={"collection": "docs", "text": "cat", "where": "nosuch = 1"}), 400,
         "InputError", "bad --where predicate"),
        (served.post("/api/search", json={"collection": "docs", "text": "cat", "where": "label = 1"}), 400,
         "InputError", "bad --where predicate 'label = 1': Conversion Error"),
        (served.post("/api/search", json={"collection": "docs"}), 400, "InputError", "exactly one of"),
        (served.post("/api/search", json={"text": "cat"}), 400, "InputError", "collection"),
        (served.post("/api/predict", json={"texts": ["x"], "head": "nope"}), 404, "NotFoundError", "no head"),
        (served.post("/api/sql", json={"query": "SELECT nosuch FROM docs"}), 400, "InputError", "SQL error"),
        (served.get("/api/nothing"), 404, "NotFound", "Not Found"),
    ]
    for r, status, kind, words in cases:
        assert r.status_code == status, r.text
        assert r.json()["kind"] == kind and words in r.json()["error"] and "\n" not in r.json()["error"], r.text


def test_openapi_page_works_offline(served):
    page = served.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert served.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert {"/api/search", "/api/sql", "/api/predict", "/api/info", "/map"} <= set(ok(served.get("/openapi.json"))["paths"])


def test_map_is_the_space_map_page(served):
    """/map serves embstore map's own self-contained page for the collection (plotly embedded: tests/test_map.py loads it offline in a browser)."""
    manifest = (served.tmp / "store" / "embstore.json").read_bytes()
    r = served.get("/map", params={"collection": "docs", "color": "split"})
    assert (served.tmp / "store" / "embstore.json").read_bytes() == manifest  # the service keeps no projection
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "embstore map: docs" in r.text and "Plotly" in r.text and "split" in r.text
    assert served.get("/map", params={"collection": "nope"}).json()["kind"] in ("NotFoundError", "InputError")


def test_reload_after_an_ingest_commits(tmp_path):
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    with TestClient(create_app(s.root, reload="inline")) as c:
        count = lambda: ok(c.post("/api/sql", json={"query": "SELECT count(*) FROM docs"}))
        first = count()
        assert first["rows"] == [[36]] and count()["snapshot"] == first["snapshot"]  # no commit: not reopened
        assert ok(c.get("/api/search", params={"collection": "docs", "q": "zebra", "k": 1}))["results"][0]["text"] \
            != "the zebra grazes"
        zebra = {"collection": "docs", "text": "zebra", "k": 3, "where": "text LIKE '%zebra%'"}
        assert ok(c.post("/api/search", json=zebra))["results"] == []
        # the ingest runs beside the service in a process of its own, as it would (a writer inside the test's
        # process, beside the service's threads, crashed the interpreter in the full suite)
        more = write_csv(tmp_path / "b.csv", [{"text": "the zebra grazes", "label": "animals", "split": "x"}]
                         + [{"text": f"extra row {i}", "label": "x", "split": "x"} for i in range(5)])
        writer = subprocess.Popen([sys.executable, "-m", "embstore_cli.main", "ingest", str(more), "--store",
                                   str(s.root), "-c", "docs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = []
        while writer.poll() is None:  # requests while the ingest runs: each sees a committed state only
            seen.append(count()["rows"][0][0])
        assert writer.returncode == 0, writer.stdout.read().decode()
        assert set(seen) <= {36, 42}
        after = count()
        assert after["rows"] == [[42]] and after["snapshot"] > first["snapshot"]
        hit = ok(c.get("/api/search", params={"collection": "docs", "q": "zebra grazes", "k": 1}))["results"][0]
        assert hit["text"] == "the zebra grazes"
        assert ok(c.get("/api/info"))["collections"]["docs"]["items"] == 42
        # the where and the SQL run on the new snapshot's database: its views name the new shards
        assert [h["text"] for h in ok(c.post("/api/search", json=zebra))["results"]] == ["the zebra grazes"]
        assert ok(c.post("/api/sql", json={"query": "SELECT count(*) FROM docs__hash64"}))["rows"] == [[42]]


def test_a_background_reload_keeps_answering_from_the_last_snapshot_until_the_next_is_ready(tmp_path, monkeypatch):
    from embstore.serve.snapshots import Snapshot

    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    app = create_app(s.root)  # reload="background", the default
    snapshots = app.state.service.snapshots
    with TestClient(app) as c:
        count = lambda: ok(c.post("/api/sql", json={"query": "SELECT count(*) FROM docs"}))
        zebra = {"collection": "docs", "text": "zebra", "k": 3, "where": "text LIKE '%zebra%'"}
        first = count()
        assert first["rows"] == [[36]] and ok(c.post("/api/search", json=zebra))["results"] == []
        started, release = threading.Event(), threading.Event()
        prepare = Snapshot.prepare_like

        def held(self, older):  # the next snapshot's preparation, held until the test lets it go on
            started.set()
            assert release.wait(60)
            prepare(self, older)

        monkeypatch.setattr(Snapshot, "prepare_like", held)
        more = write_csv(tmp_path / "b.csv", [{"text": "the zebra grazes", "label": "animals", "split": "x"}]
                         + [{"text": f"extra row {i}", "label": "x", "split": "x"} for i in range(5)])
        subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(more), "--store", str(s.root),
                        "-c", "docs"], check=True, capture_output=True)
        during = count()  # sees the commit, starts the next snapshot beside it, answers from the last one
        assert started.wait(30)
        assert during["rows"] == [[36]] and during["snapshot"] == first["snapshot"]
        info = ok(c.get("/api/info"))
        assert info["collections"]["docs"]["items"] == 36 and info["snapshot"]["reloading"] is True
        assert ok(c.post("/api/search", json=zebra))["results"] == []  # the whole last snapshot, its where too
        release.set()
        assert snapshots.wait(60)
        ready = snapshots.current()
        # made before any request reached it: the index and the where map the last snapshot had used
        assert ("docs", "hash64") in ready.loaded and ("docs", "hash64") in ready.where_maps
        after = count()
        assert after["rows"] == [[42]] and after["snapshot"] == first["snapshot"] + 1
        assert [h["text"] for h in ok(c.post("/api/search", json=zebra))["results"]] == ["the zebra grazes"]
        assert ok(c.get("/api/info"))["snapshot"]["reloading"] is False


def test_a_space_no_request_used_lately_is_not_prepared_for_the_next_snapshot(tmp_path, monkeypatch):
    from embstore.serve import snapshots as snapshots_module

    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    app = create_app(s.root)
    snapshots = app.state.service.snapshots
    with TestClient(app) as c:
        ok(c.post("/api/search", json={"collection": "docs", "text": "zebra", "k": 3}))
        assert ("docs", "hash64") in snapshots.current().loaded
        monkeypatch.setattr(snapshots_module, "IDLE_S", -1.0)  # every use is now "long ago"
        subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(write_csv(tmp_path / "b.csv", [
            {"text": f"extra row {i}", "label": "x", "split": "x"} for i in range(6)])), "--store", str(s.root),
            "-c", "docs"], check=True, capture_output=True)
        ok(c.get("/api/info"))
        assert snapshots.wait(30)
        fresh = snapshots.current()
        assert fresh.serial == 2 and fresh.loaded == frozenset()  # not prepared; its first search loads it
        assert len(ok(c.post("/api/search", json={"collection": "docs", "text": "zebra", "k": 3}))["results"]) == 3
        assert ("docs", "hash64") in fresh.loaded


def test_a_background_reload_that_fails_keeps_the_last_snapshot_warns_once_and_is_tried_again(tmp_path, monkeypatch,
                                                                                             caplog):
    from embstore.serve import snapshots as snapshots_module
    from embstore.serve.snapshots import Snapshot

    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    app = create_app(s.root)
    snapshots = app.state.service.snapshots
    monkeypatch.setattr(snapshots_module, "RETRY_S", 0.0)
    prepare, failures = Snapshot.prepare_like, []

    def failing(self, older):
        failures.append(1)
        raise OSError("disk went away")

    with TestClient(app) as c:
        count = lambda: ok(c.post("/api/sql", json={"query": "SELECT count(*) FROM docs"}))
        first = count()
        monkeypatch.setattr(Snapshot, "prepare_like", failing)
        subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(write_csv(tmp_path / "b.csv", [
            {"text": f"extra row {i}", "label": "x", "split": "x"} for i in range(6)])), "--store", str(s.root),
            "-c", "docs"], check=True, capture_output=True)
        with caplog.at_level("WARNING", logger="embstore.serve"):
            for _ in range(3):  # each sees the commit, tries the reload, which fails: the last snapshot answers
                assert count()["rows"] == [[36]]
                assert snapshots.wait(30)
        assert len(failures) == 3
        warned = [r for r in caplog.records if "reloading the store failed" in r.getMessage()]
        assert len(warned) == 1 and "disk went away" in warned[0].getMessage()
        error = snapshots.reload_error
        assert error["error"] == "OSError: disk went away" and error["attempts"] == 3 and error["since"] > 0
        # what a monitor polling info sees (its own request may start one more attempt: RETRY_S is 0 here)
        assert ok(c.get("/api/info"))["snapshot"]["reload_error"]["error"] == "OSError: disk went away"
        assert snapshots.wait(30)  # (the attempt that request may have started: it ends before prepare is restored)
        monkeypatch.setattr(Snapshot, "prepare_like", prepare)
        count()
        assert snapshots.wait(30)
        after = count()
        assert after["rows"] == [[42]] and after["snapshot"] == first["snapshot"] + 1
        assert ok(c.get("/api/info"))["snapshot"]["reload_error"] is None


def test_a_reload_that_keeps_failing_backs_off_and_a_new_commit_is_tried_at_once(tmp_path, monkeypatch):
    from embstore.serve import snapshots as snapshots_module

    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "a.csv", topic_rows()), "docs", encoder=HASH)
    app = create_app(s.root)
    snapshots = app.state.service.snapshots
    monkeypatch.setattr(snapshots_module, "RETRY_S", 3600.0)  # one failure: no retry within this test
    opened, real_open = [], snapshots_module.Store.open

    def failing_open(*args, **kwargs):  # Store.open itself fails (e.g. the manifest names a missing file)
        opened.append(1)
        raise OSError("manifest unreadable")

    def ingest(name):
        subprocess.run([sys.executable, "-m", "embstore_cli.main", "ingest", str(write_csv(tmp_path / name, [
            {"text": f"{name} row {i}", "label": "x", "split": "x"} for i in range(6)])), "--store", str(s.root),
            "-c", "docs"], check=True, capture_output=True)

    with TestClient(app) as c:
        count = lambda: ok(c.post("/api/sql", json={"query": "SELECT count(*) FROM docs"}))["rows"]
        assert count() == [[36]]
        monkeypatch.setattr(snapshots_module.Store, "open", failing_open)
        ingest("b.csv")
        for _ in range(3):  # the first request starts the reload, which fails; the next ones are within the backoff
            assert count() == [[36]]
            assert snapshots.wait(30)
        assert len(opened) == 1 and snapshots.reload_error["attempts"] == 1
        monkeypatch.setattr(snapshots_module.Store, "open", real_open)
        assert count() == [[36]] and snapshots.wait(30) and len(opened) == 1  # still backing off
        ingest("c.csv")  # a new commit is tried at once, and lands
        count()
        assert snapshots.wait(30)
        assert count() == [[48]] and snapshots.reload_error is None


# ------------------------------------------------------------------------------------------------ a real server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    """``embstore serve`` (the real CLI, uvicorn) on a free 127.0.0.1 port over a topic store; its base URL."""
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "topics.csv", topic_rows()), "docs", encoder=HASH)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", "from embstore_cli.main import main; main()", "serve", "--store", str(s.root), "--port",
                             str(port)], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "api/info", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"embstore serve exited: {proc.stderr.read()}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_search_page_in_a_browser(server, page, tmp_path):
    info = json.loads(urllib.request.urlopen(server + "api/info").read())
    assert info["collections"]["docs"]["items"] == 36
    page.goto(server)
    page.wait_for_selector("#collection option[value=docs]", state="attached")
    target = TOPICS["finance"][5]
    page.fill("#q", target)
    page.press("#q", "Enter")
    page.wait_for_selector(".card")
    cards = page.locator(".card")
    assert cards.count() == 10
    assert cards.first.locator(".text").inner_text() == target
    assert "finance" in cards.first.inner_text()
    assert "10 results in docs.hash64" in page.inner_text("#status")
    cards.nth(1).locator("a.like").click()  # more like the second card
    page.wait_for_function("document.querySelectorAll('.card').length === 10 && "
                           "!document.getElementById('status').textContent.startsWith('searching')")
    assert page.errors == []
    assert shot(page, "serve_search", tmp_path).stat().st_size > 10_000

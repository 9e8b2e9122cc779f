"""Fault injection: real CLI processes SIGKILLed at seeded moments spread over an ingest (20 kills), a fit, an
index build, a collection's predict (reserving, writing its shards outside the lock, listing them) and a delete,
each followed by the same command again. After every kill the store opens, holds whole commits only
and keeps what was there before; at the end it equals the store of an uninterrupted run (same ids in the same order,
same vectors, same index, same head), with nothing left of the killed runs.

The commands run in processes forked from a "zygote" that has imported the CLI and what it needs (a new Python per
run would spend seconds on imports, a kill's worth of work, on this test's budget). A moment is measured from the
moment the command takes the store's writer lock (its pid appears in the lock file), or a file it writes appears.
``EMBSTORE_FAULT_KILLS`` sets the number of ingest kills (default 20).
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embstore import Store
from embstore.manifest import LOCK, read_manifest
from embstore.sweep import leftovers

from conftest import HASH, committed, store_contents, write_csv

ROWS, STEP = 3000, 100  # 30 commits of 100 rows, then the key tables, the index and the ingest's record
KILLS = int(os.environ.get("EMBSTORE_FAULT_KILLS", "20"))
SEED = 16

ZYGOTE = r"""
import json, os, sys
import embstore_cli.main as cli_main
import embstore.heads, embstore.index, faiss, sklearn.linear_model, torch  # what the commands import, once
for line in sys.stdin:
    args, out = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(out + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        try:
            cli_main.cli.main(args, prog_name="embstore")
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        os._exit(0)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Zygote:
    """A process that forks a CLI run per ``start``; ``finish`` gives its exit code (-9: killed)."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.n = tmp, 0
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, **env})

    def start(self, *args) -> tuple[int, Path]:
        self.n += 1
        out = self.tmp / f"run-{self.n}.txt"
        self.proc.stdin.write(json.dumps([[str(a) for a in args], str(out)]) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline()), out

    def finish(self) -> int:
        return int(self.proc.stdout.readline())

    def run(self, *args) -> tuple[int, str]:
        """Run to its end: the exit code, and stdout (stderr is in the file beside it, ``.err``)."""
        _, out = self.start(*args)
        return self.finish(), out.read_text()

    def close(self) -> None:
        self.proc.kill()  # idle between runs (its interpreter's exit would take seconds)
        self.proc.wait(30)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has finished
    except FileNotFoundError:
        return False


def wait_until(pid: int, ready, seconds: float = 120) -> bool:
    """Poll until ``ready()``; False when the process ended first."""
    end = time.monotonic() + seconds
    while not ready():
        if not _exists(pid):
            return False
        assert time.monotonic() < end, "the command never got there"
        time.sleep(0.002)
    return True


def holds_lock(root: Path, pid: int):
    def ready() -> bool:
        try:
            return f'"pid": {pid},' in (root / LOCK).read_text()
        except FileNotFoundError:
            return False
    return ready


def kill_after(z: Zygote, pid: int, ready, delay: float) -> bool:
    """SIGKILL the run ``delay`` s after ``ready()``; whether it was killed (False: it finished first)."""
    if wait_until(pid, ready):
        end = time.monotonic() + delay
        while time.monotonic() < end and _exists(pid):
            time.sleep(0.001)
        if _exists(pid):
            os.kill(pid, signal.SIGKILL)
    return z.finish() == -signal.SIGKILL


@pytest.fixture()
def zygote(tmp_path):
    z = Zygote(tmp_path, {"EMBSTORE_COMMIT_ROWS": str(STEP)})
    yield z
    z.close()


def corpus(tmp_path: Path) -> Path:
    rng = random.Random(SEED)
    words = "cat dog horse stock bond bank goal match team river hill rain sun moon star tree leaf stone".split()
    return write_csv(tmp_path / "corpus.csv", [
        {"id": f"r{i}", "text": " ".join(rng.choice(words) for _ in range(6)) + f" n{i}", "label": rng.choice("abc")}
        for i in range(ROWS)])


def assert_whole(root: Path) -> int:
    """The store opens and holds whole commits: items and vectors agree, ids unique, counts true to the files."""
    if not (root / "embstore.json").exists():
        return 0  # (killed while it made the store: the next run makes it)
    s = Store.open(root, create=False)
    coll = s.manifest["collections"].get("docs")
    if coll is None:
        return 0
    items, vectors, distinct = s.sql("SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM docs__hash64), "
                                     "(SELECT count(DISTINCT id) FROM docs)").fetchall()[0]
    assert items == vectors == distinct == coll["spaces"]["hash64"]["rows"] and items % STEP == 0
    for shard in coll["item_shards"] + coll["spaces"]["hash64"]["shards"]:
        assert pq.read_metadata(root / shard["file"]).num_rows == shard["rows"]
    return items


def assert_same_store(root: Path, ref: Path) -> None:
    """``root`` equals ``ref``: items, vectors by id in the same (index) order, counts, key tables, index."""
    a, b = Store.open(root, create=False), Store.open(ref, create=False)
    a_items, a_vectors, a_rows = store_contents(a)
    b_items, b_vectors, b_rows = store_contents(b)
    assert a_items == b_items and a_rows == b_rows == len(a_items) == ROWS
    a_ids, a_x = a.embeddings("docs")
    b_ids, b_x = b.embeddings("docs")
    assert a_ids == b_ids  # the same order: the index's
    np.testing.assert_array_equal(a_x, b_x)
    assert a.known_ids("docs", b_ids) == set(b_ids)  # the key tables know every item
    ia, ib = (s.manifest["collections"]["docs"]["spaces"]["hash64"]["index"] for s in (a, b))
    assert {k: ia[k] for k in ("factory", "ntotal", "param", "value")} == \
        {k: ib[k] for k in ("factory", "ntotal", "param", "value")}
    for q in ("cat dog horse", "bank stock bond rain", "moon star n17"):
        assert [(h["id"], round(h["score"], 5)) for h in a.search("docs", q, k=10)] == \
            [(h["id"], round(h["score"], 5)) for h in b.search("docs", q, k=10)]
    assert_nothing_left(root)


def assert_nothing_left(root: Path) -> None:
    assert list(leftovers(root, read_manifest(root))) == []
    assert [p for p in root.rglob("*") if p.name.endswith(".tmp")] == []
    # ---- embstore check, from the `check` branch (embstore/check.py): asserted only once that module exists ----
    if importlib.util.find_spec("embstore.check") is not None:
        from embstore.check import check_store

        assert check_store(root, repair=False).problems == []


# ------------------------------------------------------------------------------------------------ ingest
def test_an_ingest_killed_at_20_moments_then_rerun_equals_an_uninterrupted_one(tmp_path, zygote):
    src, root, ref = corpus(tmp_path), tmp_path / "store", tmp_path / "ref"
    ingest = ("ingest", src, "-c", "docs", "--encoder", HASH, "--json")
    pid, _ = zygote.start(*ingest, "--store", ref)
    assert wait_until(pid, holds_lock(ref, pid))
    t = time.monotonic()
    assert zygote.finish() == 0
    steps = ROWS // STEP + 1  # each chunk's commit, then the closing one (key tables, index, the ingest's record)
    gap = (time.monotonic() - t) / steps  # between two commits of the uninterrupted run
    rng = random.Random(SEED)
    # a moment is a step of the uninterrupted run and a fraction of it: one in each KILLS-th of the run, the last
    # one in the closing step
    moments = [(i + rng.random()) * steps / KILLS for i in range(KILLS - 1)] + [steps - 1 + rng.random()]
    at_kill, before = [], 0
    for moment in moments:
        rows = min(int(moment), steps - 1) * STEP  # killed once that many rows are committed, `delay` later
        delay = (moment % 1) * gap
        killed = False
        while not killed:  # (a run that got through before its moment is no kill: the next one is)
            pid, _ = zygote.start(*ingest, "--store", root)
            killed = kill_after(zygote, pid, lambda: holds_lock(root, pid)() and committed(root) >= rows, delay)
            now = assert_whole(root)
            assert now >= before  # nothing committed is ever lost
            before = now
            assert len(at_kill) < 3 * KILLS, "the runs got through before their moments"
            at_kill.append(now if killed else None)
    assert len([n for n in at_kill if n is not None]) == KILLS
    assert len(set(at_kill) - {None}) >= KILLS // 2  # spread over the run
    assert at_kill[-1] == ROWS  # the last one in the closing step
    code, out = zygote.run(*ingest, "--store", root)
    assert code == 0, out
    report = json.loads(out)
    assert report["read"] == ROWS == report["added"] + report["duplicates"] and report["quarantined"] == 0
    assert_same_store(root, ref)
    assert len(read_manifest(root)["collections"]["docs"]["item_shards"]) == ROWS // STEP  # no shard twice


def test_a_run_killed_while_it_made_the_store_leaves_a_folder_the_next_run_makes_it_in(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / LOCK).write_text("")
    (root / ".embstore.json.4242.tmp").write_bytes(b"{")  # killed before the manifest's rename
    s = Store.open(root)
    assert s.manifest["collections"] == {} and sorted(p.name for p in root.iterdir()) == [LOCK, "embstore.json"]


# ------------------------------------------------------------------------------------------------ fit
def test_a_fit_killed_then_rerun_keeps_the_earlier_head_and_equals_an_uninterrupted_one(tmp_path, zygote):
    src, root, ref = corpus(tmp_path), tmp_path / "store", tmp_path / "ref"
    for where in (root, ref):
        assert zygote.run("ingest", src, "--store", where, "-c", "docs", "--encoder", HASH)[0] == 0
        assert zygote.run("fit", "--store", where, "-c", "docs", "--label-column", "label", "--name", "topic",
                          "--model", "logreg", "--param", "C=1")[0] == 0
    fit = ("fit", "-c", "docs", "--label-column", "label", "--name", "topic", "--model", "logreg", "--param", "C=10",
           "--json")
    code, out = zygote.run(*fit, "--store", ref)
    assert code == 0, out
    first = Store.open(root).head_versions("topic")
    v2 = root / "heads" / "topic" / "v2"
    moments = [  # as it takes the lock, once it has made the version's folder, as it writes the version's arrays
        lambda pid: holds_lock(root, pid),
        lambda pid: lambda: holds_lock(root, pid)() and v2.exists(),
        lambda pid: lambda: holds_lock(root, pid)() and any(v2.glob("*.npy"))]
    pristine = tmp_path / "pristine"
    shutil.copytree(root, pristine)
    for ready in moments:
        for _ in range(5):  # a fast fit can pass a moment between two polls: then again, from the same store
            pid, _ = zygote.start(*fit, "--store", root)
            if kill_after(zygote, pid, ready(pid), 0.0):
                break
            shutil.rmtree(root)
            shutil.copytree(pristine, root)
        else:
            pytest.fail("the fit ended before it could be killed at that moment, 5 times")
        s = Store.open(root, create=False)  # opens; the earlier version is there and predicts as before
        assert s.head_versions("topic") == first
        assert s.predict("topic", texts=["cat dog horse"])["rows"] == Store.open(root).predict(
            "topic", texts=["cat dog horse"], version=1)["rows"]
    code, out = zygote.run(*fit, "--store", root)
    assert code == 0, out
    got = json.loads(out)
    a, b = Store.open(root).head_versions("topic"), Store.open(ref).head_versions("topic")
    keys = ("version", "model", "n_classes", "accuracy", "macro_f1", "evaluated_on")
    assert [{k: v[k] for k in keys} for v in a] == [{k: v[k] for k in keys} for v in b]
    assert a[-1]["version"] == 2 == got["version"]
    texts = ["cat dog horse n1", "bank stock rain", "team goal star"]
    assert Store.open(root).predict("topic", texts=texts) == Store.open(ref).predict("topic", texts=texts)
    assert_nothing_left(root)


# ------------------------------------------------------------------------------------------------ index
def test_an_index_build_killed_then_rerun_keeps_the_old_index_and_equals_an_uninterrupted_one(tmp_path, zygote):
    src, root, ref = corpus(tmp_path), tmp_path / "store", tmp_path / "ref"
    for where in (root, ref):
        assert zygote.run("ingest", src, "--store", where, "-c", "docs", "--encoder", HASH)[0] == 0
    build = ("index", "-c", "docs", "--factory", "IVF16,Flat", "--json")
    pid, _ = zygote.start(*build, "--store", ref)
    assert wait_until(pid, holds_lock(ref, pid))
    t = time.monotonic()
    assert zygote.finish() == 0
    span = time.monotonic() - t
    old = read_manifest(root)["collections"]["docs"]["spaces"]["hash64"]["index"]
    exact = [h["id"] for h in Store.open(root).search("docs", "cat dog horse", k=10)]
    rng = random.Random(SEED)
    kills, delays = 0, [(i + rng.random()) / 4 * span for i in range(4)]
    for attempt in range(12):
        if not delays:
            break
        pid, _ = zygote.start(*build, "--store", root)
        if kill_after(zygote, pid, holds_lock(root, pid), delays[0]):
            kills += 1
            delays.pop(0)
        else:  # got through first (this build ran faster than the measured one): the moment, earlier
            delays[0] /= 2
        entry = read_manifest(root)["collections"]["docs"]["spaces"]["hash64"]["index"]
        assert (root / entry["file"]).exists()  # the index the manifest names is there: the old one, or
        assert entry == old or entry["factory"] == "IVF16,Flat"  # the new one when the kill came after its commit
        if entry == old:  # searched as before
            assert [h["id"] for h in Store.open(root).search("docs", "cat dog horse", k=10)] == exact
    assert kills == 4, kills
    code, out = zygote.run(*build, "--store", root)
    assert code == 0, out
    assert_same_store(root, ref)


# ------------------------------------------------------------------------------------------------ predict
def predictions_of(root: Path) -> list[tuple]:
    """The stored predictions of head topic on docs, whole: one version, one row per item, each shard as listed."""
    s = Store.open(root, create=False)
    entry = s.manifest["collections"]["docs"]["predictions"]["topic"]
    for shard in entry["shards"]:
        assert pq.read_metadata(root / shard["file"]).num_rows == shard["rows"]
    rows = s.sql("SELECT id, version, label, round(confidence, 5) FROM predictions WHERE collection = 'docs' AND "
                 "head = 'topic' ORDER BY id").fetchall()
    assert len(rows) == entry["rows"] == ROWS and len({r[0] for r in rows}) == ROWS and {r[1] for r in rows} == \
        {entry["version"]}
    assert {r[0] for r in rows} == {i for (i,) in s.sql("SELECT id FROM docs").fetchall()}
    return rows


def test_a_predict_killed_then_rerun_keeps_the_earlier_predictions_and_equals_an_uninterrupted_one(tmp_path, zygote):
    """A collection's predict reserves its part numbers under the lock, writes its shards without it, and lists them
    in a last commit: killed in each of the three, the store keeps the earlier predictions whole (or, killed after
    the last commit, the new ones), and the same command again stores the uninterrupted run's predictions once."""
    import shutil

    src, template = corpus(tmp_path), tmp_path / "template"
    assert zygote.run("ingest", src, "--store", template, "-c", "docs", "--encoder", HASH)[0] == 0
    fit = ("fit", "--store", template, "-c", "docs", "--label-column", "label", "--name", "topic",
           "--model", "logreg")
    assert zygote.run(*fit, "--param", "C=1")[0] == 0
    predict = ("predict", "-c", "docs", "--head", "topic", "--json")
    assert zygote.run(*predict, "--store", template)[0] == 0  # version 1's predictions, then a version 2 to predict
    assert zygote.run(*fit, "--param", "C=10")[0] == 0
    first = predictions_of(template)
    ref = tmp_path / "ref"
    shutil.copytree(template, ref)
    code, out = zygote.run(*predict, "--store", ref)
    assert code == 0 and json.loads(out)["predicted"] == ROWS, out
    want = predictions_of(ref)
    assert {r[1] for r in first} == {1} and {r[1] for r in want} == {2}
    shards = ROWS // STEP

    def written(root: Path) -> int:
        return len(list((root / "collections/docs/predictions/topic").glob("part-*.parquet")))

    moments = {  # as it reserves its part numbers; among the shards it writes outside the lock; as it lists them
        "reserving": lambda root, pid: holds_lock(root, pid),
        "writing": lambda root, pid: lambda: written(root) >= shards + 5,
        "committing": lambda root, pid: lambda: holds_lock(root, pid)() and written(root) >= 2 * shards}
    for name, ready in moments.items():
        for attempt in range(5):
            root = tmp_path / f"{name}-{attempt}"
            shutil.copytree(template, root)
            pid, _ = zygote.start(*predict, "--store", root)
            killed = kill_after(zygote, pid, ready(root, pid), 0.0)
            now = predictions_of(root)  # the store opens, its predictions whole: the earlier ones or the new ones
            assert now == first or now == want
            code, out = zygote.run(*predict, "--store", root)
            assert code == 0, out
            assert predictions_of(root) == want
            assert_nothing_left(root)
            if killed:
                break
        assert killed, f"every predict got through before the moment {name!r}"


# ------------------------------------------------------------------------------------------------ delete
def contents_of(root: Path, collection: str) -> tuple:
    """A collection's items, its vectors (as bytes, by id) and its row count, comparable with ==."""
    items, vectors, rows = store_contents(Store.open(root, create=False), collection)
    return items, {i: v.tobytes() for i, v in vectors.items()}, rows


def test_a_delete_killed_then_rerun_removes_the_collection_whole_and_keeps_the_rest(tmp_path, zygote):
    """``delete -c docs`` killed at moments spread over it (from each time the same store: items, a head, its
    predictions, a quarantine file, and another collection): the store opens with docs whole or gone, the other
    collection and the head as they were; the same command again leaves docs gone with nothing of it left over
    (its quarantine folder too) and the store passing check."""
    import shutil

    src, template = corpus(tmp_path), tmp_path / "template"
    assert zygote.run("ingest", src, "--store", template, "-c", "docs", "--encoder", HASH)[0] == 0
    bad = write_csv(tmp_path / "bad.csv", [{"id": "r0", "text": "other text", "label": "a"}])
    assert zygote.run("ingest", bad, "--store", template, "-c", "docs")[0] == 1  # r0 again, changed: quarantined
    other = write_csv(tmp_path / "other.csv", [{"text": f"other row {i}"} for i in range(50)] + [{"text": " "}])
    assert zygote.run("ingest", other, "--store", template, "-c", "other", "--encoder", HASH)[0] == 0
    assert zygote.run("fit", "--store", template, "-c", "docs", "--label-column", "label", "--name", "topic")[0] == 0
    assert zygote.run("predict", "--store", template, "-c", "docs", "--head", "topic")[0] == 0
    assert (template / "quarantine" / "docs").is_dir() and (template / "quarantine" / "other").is_dir()
    kept = contents_of(template, "other")
    heads = Store.open(template).head_versions("topic")
    delete = ("delete", "-c", "docs", "--yes", "--json")
    ref = tmp_path / "ref"
    shutil.copytree(template, ref)
    pid, _ = zygote.start(*delete, "--store", ref)
    assert wait_until(pid, holds_lock(ref, pid))
    t = time.monotonic()
    assert zygote.finish() == 0
    span = time.monotonic() - t
    rng = random.Random(SEED)
    delays = [0.0] + [(i + rng.random()) / 3 * span for i in range(3)]
    kills, states = 0, set()
    for attempt in range(12):
        if not delays:
            break
        root = tmp_path / f"run-{attempt}"
        shutil.copytree(template, root)
        pid, _ = zygote.start(*delete, "--store", root)
        if kill_after(zygote, pid, holds_lock(root, pid), delays[0]):
            kills += 1
            delays.pop(0)
        else:  # got through first: the moment, earlier
            delays[0] /= 2
        s = Store.open(root, create=False)
        if "docs" in s.manifest["collections"]:  # killed before its commit: whole
            assert assert_whole(root) == ROWS
            assert len(s.sql("SELECT id FROM predictions WHERE collection = 'docs'").fetchall()) == ROWS
            assert [h["id"] for h in s.search("docs", "cat dog horse", k=3)]  # (an index it removed: built anew)
            states.add("whole")
        else:
            assert s.sql("SELECT count(*) FROM predictions WHERE collection = 'docs'").fetchall() == [(0,)]
            states.add("gone")
        assert contents_of(root, "other") == kept and s.head_versions("topic") == heads
        code, out = zygote.run(*delete, "--store", root)
        assert code == 0 or ("gone" in states and "no collection 'docs'" in out), out
        s = Store.open(root, create=False)
        assert "docs" not in s.manifest["collections"] and not (root / "quarantine" / "docs").exists()
        assert contents_of(root, "other") == kept and s.head_versions("topic") == heads
        assert_nothing_left(root)
    assert kills == 4, kills

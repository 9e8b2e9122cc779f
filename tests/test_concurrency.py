"""Concurrent use, through real processes: a second writer waits for the first (saying who it waits for) or, with
``--no-wait``, stops in one line; a lock file left by a killed writer never blocks; another host's lock is never
taken over; a writer's forked children do not keep its lock; and readers during an ingest see whole commits.

Writers run as subprocesses (the real CLI, or a small script holding the lock), never as threads of the test."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from embstore import Store, StoreLockedError
from embstore.config import Settings
from embstore.manifest import LOCK, read_manifest
from embstore_cli.main import cli

from conftest import HASH, topic_rows, write_csv

# holds ROOT's writer lock until a line comes on stdin (or, with a second argument, forks a child that lives on
# and exits at once, as a writer killed while its image decoders run)
HOLDER = """
import os, sys, time
from pathlib import Path
from embstore.manifest import writer_lock
with writer_lock(Path(sys.argv[1])):
    if len(sys.argv) > 2:
        if os.fork() == 0:
            print("child", flush=True)  # (running: its at-fork handlers are done)
            time.sleep(float(sys.argv[2]))
            os._exit(0)
        print("held", flush=True)
        os._exit(0)
    print("held", flush=True)
    sys.stdin.readline()
"""


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "embstore_cli.main", *map(str, args)]


def hold(root: Path, child_s: float | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), *([str(child_s)] if child_s else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(30) == 0


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True, env=env)


def one_line(res) -> str:
    err = res.stderr.strip()
    assert res.exit_code == 2 and err.startswith("Error: ") and "\n" not in err, res.output
    return err


@pytest.fixture()
def docs(tmp_path):
    s = Store.open(tmp_path / "store")
    s.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "docs", encoder=HASH)
    s.fit("docs", "label", "topic", model="logreg", params={"C": 10.0})
    return s


def wait_for(path: Path, words: str, proc: subprocess.Popen, seconds: float = 60) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        text = path.read_text() if path.exists() else ""
        if words in text:
            return text
        assert proc.poll() is None, (proc.returncode, text)
        time.sleep(0.05)
    raise AssertionError(f"{words!r} never came: {text!r}")


# ------------------------------------------------------------------------------------------------ waiting
def test_a_second_writer_waits_saying_for_whom_and_goes_on_when_the_lock_frees(tmp_path, docs):
    src = write_csv(tmp_path / "more.csv", [{"text": f"a new cat text number {i}", "label": "animals"}
                                            for i in range(5)])
    holder = hold(docs.root)
    err = tmp_path / "err.txt"
    with open(err, "w") as e:
        writer = subprocess.Popen(cli_command("ingest", src, "--store", docs.root, "-c", "docs", "--json"),
                                  stdout=subprocess.PIPE, stderr=e, text=True)
    try:
        said = wait_for(err, "waiting...", writer)
        assert said.strip() == (f"store {docs.root} is being written by pid {holder.pid} on host "
                                f"{socket.gethostname()} since {json.loads((docs.root / LOCK).read_text())['since']}"
                                "; waiting... (--no-wait to stop instead)")
        time.sleep(0.5)
        assert writer.poll() is None  # still waiting, nothing written meanwhile
        assert read_manifest(docs.root)["collections"]["docs"]["item_shards"] == docs.manifest["collections"]["docs"][
            "item_shards"]
    finally:
        release(holder)
    out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and json.loads(out)["added"] == 5
    assert (docs.root / LOCK).read_text() == ""  # released cleanly: no record left to report


@pytest.mark.parametrize("args", [
    ("ingest", "{csv}", "-c", "docs"),
    ("fit", "-c", "docs", "--label-column", "label", "--name", "topic", "--model", "logreg", "--param", "C=10"),
    ("index", "-c", "docs", "--factory", "HNSW8"),
    ("predict", "--head", "topic", "-c", "docs"),
    ("delete", "-c", "docs", "--yes"),
])
def test_no_wait_stops_every_writing_command_in_one_line(docs, tmp_path, args):
    csv = write_csv(tmp_path / "more.csv", [{"text": "another cat text", "label": "animals"}])
    before = read_manifest(docs.root)
    holder = hold(docs.root)
    try:
        res = run(*[a.format(csv=csv) for a in args], "--store", docs.root, "--no-wait", "--json")
        err = one_line(res)
        assert err.startswith(f"Error: store {docs.root} is being written by pid {holder.pid} on host "
                              f"{socket.gethostname()} since ")
        assert err.endswith("one writer at a time: run the command again when it has finished (or without "
                            "--no-wait to wait for it)")
        assert json.loads(res.stdout)["type"] == "StoreLockedError"
    finally:
        release(holder)
    after = read_manifest(docs.root)
    assert {k: v for k, v in after.items() if k not in ("updated", "next_part", "reserved")} == \
        {k: v for k, v in before.items() if k not in ("updated", "next_part")}


def test_lock_wait_gives_up_after_the_configured_seconds(docs, tmp_path, monkeypatch):
    assert Settings.resolve().lock_wait == float("inf")
    holder = hold(docs.root)
    try:
        t = time.monotonic()
        res = run("index", "-c", "docs", "--store", docs.root, env={"EMBSTORE_LOCK_WAIT": "0.6"})
        assert 0.6 <= time.monotonic() - t < 30
        said, err = res.stderr.strip().split("\n")  # that it waits, then that it gave up
        assert said.endswith("waiting... (--no-wait to stop instead)") and res.exit_code == 2
        assert err.startswith("Error: ") and f"pid {holder.pid}" in err
        assert "after waiting 0.6 s (EMBSTORE_LOCK_WAIT); one writer at a time" in err
        monkeypatch.setenv("EMBSTORE_LOCK_WAIT", "0")
        with pytest.raises(StoreLockedError, match="without --no-wait"):
            Store.open(docs.root).reindex("docs")
    finally:
        release(holder)
    for bad in ("soon", "-1", "nan"):
        assert "EMBSTORE_LOCK_WAIT" in one_line(run("index", "-c", "docs", "--store", docs.root,
                                                    env={"EMBSTORE_LOCK_WAIT": bad}))


# ------------------------------------------------------------------------------------------------ stale locks
def test_a_lock_file_left_by_a_dead_writer_never_blocks_and_is_reported(docs, tmp_path):
    pid = dead_pid()
    (docs.root / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "2026-01-01T00:00:00Z"}))
    stray = docs.root / "collections" / "docs" / "items" / ".part-000777.parquet.tmp"
    stray.write_bytes(b"half a shard")
    t = time.monotonic()
    res = run("index", "-c", "docs", "--store", docs.root, "--no-wait")
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t < 30
    assert (f"store {docs.root}: took over the writer lock left by pid {pid} on host {socket.gethostname()} since "
            "2026-01-01T00:00:00Z, which is no longer running; what it left unfinished is swept") in res.stderr
    assert not stray.exists()
    (docs.root / LOCK).write_text("pid 4242")  # an older embstore's record (never emptied): said nothing
    res = run("index", "-c", "docs", "--store", docs.root, "--no-wait")
    assert res.exit_code == 0 and res.stderr == "", res.output


def test_another_hosts_lock_is_never_taken_over(docs):
    record = json.dumps({"pid": os.getpid(), "host": "elsewhere.example", "since": "2026-01-01T00:00:00Z"})
    (docs.root / LOCK).write_text(record)
    err = one_line(run("index", "-c", "docs", "--store", docs.root, "--no-wait"))
    assert f"by pid {os.getpid()} on host elsewhere.example since 2026-01-01T00:00:00Z;" in err
    assert err.endswith(f"if that process is gone, delete {docs.root / LOCK}")
    res = run("index", "-c", "docs", "--store", docs.root, env={"EMBSTORE_LOCK_WAIT": "0.3"})
    assert res.exit_code == 2 and "after waiting 0.3 s" in res.stderr.splitlines()[-1]
    assert (docs.root / LOCK).read_text() == record  # untouched
    (docs.root / LOCK).unlink()  # as the message says, once that process is known to be gone
    assert run("index", "-c", "docs", "--store", docs.root, "--no-wait").exit_code == 0


def test_a_killed_writers_forked_children_do_not_keep_its_lock(docs):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(docs.root), "20"], stdout=subprocess.PIPE, text=True)
    said = ""
    while "held" not in said or "child" not in said:  # (the two may share a line)
        said += holder.stdout.readline()
        assert holder.poll() is None or "held" in said, said
    assert holder.wait(30) == 0  # gone, while its child sleeps on with a copy of the lock's descriptor
    res = run("index", "-c", "docs", "--store", docs.root, "--no-wait")
    assert res.exit_code == 0, res.output


def test_a_process_never_waits_for_its_own_lock(docs):
    with docs.writing():
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()} .*this process"):
            Store.open(docs.root).reindex("docs")


# ------------------------------------------------------------------------------------------------ snapshots
def test_queries_during_an_ingest_see_whole_commits(tmp_path):
    n, step = 4000, 100
    src = write_csv(tmp_path / "big.csv", [{"id": f"r{i}", "text": f"text {i} about cat {i % 7} dog {i % 11}"}
                                           for i in range(n)])
    root = tmp_path / "store"
    warm = Store.open(root)  # what a first query loads (DuckDB, FAISS, the encoder) is loaded before the writer starts
    warm.ingest(write_csv(tmp_path / "t.csv", topic_rows()), "warm", encoder=HASH)
    warm.sql("SELECT count(*) FROM warm").fetchall()
    warm.search("warm", "the cat", k=5)
    env = {**os.environ, "EMBSTORE_COMMIT_ROWS": str(step)}
    writer = subprocess.Popen(cli_command("ingest", src, "--store", root, "-c", "docs", "--encoder", HASH),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    while True:
        done = writer.poll() is not None
        s = Store.open(root)
        if "docs" in s.manifest["collections"]:
            con = s.connect()
            items, vectors, ids = con.execute(
                "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM docs__hash64), "
                "(SELECT count(DISTINCT id) FROM docs)").fetchone()
            con.close()
            hits = s.search("docs", "text about cat 3", k=5)
            assert items == vectors == ids and items % step == 0, (items, vectors, ids)
            assert len(hits) == min(5, items)
            seen.append(items)
        if done:
            break
    assert writer.returncode == 0, writer.stderr.read()
    assert seen[-1] == n and seen == sorted(seen)
    assert len(set(seen) - {0, n}) >= 2, seen  # queries ran while commits were coming

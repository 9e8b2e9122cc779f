"""The README's screenshot of the search page, taken from a real store with the same headless Chromium the tests use.

    python docs/screenshots.py --store S --collection C --query "..." [--out docs/serve_search.png]

Starts `embstore serve` on a free 127.0.0.1 port over the store (read-only), opens its page in Debian's Chromium
through Playwright (`pip install -e '.[serve]'`, `apt-get install chromium`), types the query into the search box
and writes a screenshot of the result cards. The README's image: the TREC training questions (`../shared/datasets/
trec/train.csv`, encoder `minilm`, a `qtype` head fitted on `label`), made with the command in the README.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True)
    p.add_argument("--collection", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "serve_search.png")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=900)
    a = p.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("no Chromium on this machine: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen([sys.executable, "-c", "from embstore_cli.main import main; main()", "serve", "--store", a.store, "--port",
                             str(port)], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "api/info", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    sys.exit(f"embstore serve exited: {proc.stderr.read()}")
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": a.width, "height": a.height})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.wait_for_selector(f"#collection option[value={a.collection}]", state="attached")
            page.select_option("#collection", a.collection)
            page.fill("#q", a.query)
            page.press("#q", "Enter")
            page.wait_for_function("document.querySelectorAll('.card').length > 0 && "
                                   "!document.getElementById('status').textContent.startsWith('searching')",
                                   timeout=120_000)
            page.screenshot(path=str(a.out))
            browser.close()
        if errors:
            sys.exit(f"the page logged errors: {errors}")
        print(f"wrote {a.out}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()

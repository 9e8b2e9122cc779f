"""Quarantine: the rows an ingest (or a repair) rejects, each with its reason, appended to one JSONL file per run
under ``STORE/quarantine/<collection>/``; taken back (the file deleted, its first records returned) when the run
keeps no collection, so no quarantine folder is left for a collection that does not exist."""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

TAKEN_BACK = 100  # quarantine records an ingest that keeps no collection hands back in its report


class Quarantine:
    """Rejected rows, each with its reason, appended to one JSONL file per ingest run."""

    def __init__(self, root: Path, collection: str, source: str):
        self.rel = f"quarantine/{collection}/{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = root / self.rel
        self.source = source
        self.reasons: Counter[str] = Counter()
        self.count = 0

    def add(self, row: int | None, reason: str, data: Any, line: int | None = None, source: str | None = None) -> None:
        """``row``: the 1-based data row among the rows that parsed; ``line``: the file line of a row that did not;
        ``source``: the file, when the ingest reads several."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"source": source or self.source, "row": row, "reason": reason, "data": data}
        if line is not None:
            record["line"] = line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self.reasons[reason.split(":")[0]] += 1
        self.count += 1

    @staticmethod
    def take_back(root: Path, rel: str, keep: int = TAKEN_BACK) -> list[dict[str, Any]]:
        """Delete an ingest's quarantine file (and its collection's quarantine folder, left empty) and return its
        first ``keep`` records, each ``data`` cut to 1,000 characters of its JSON: for an ingest whose collection is
        not kept, so that no quarantine folder is left for a collection that does not exist."""
        path, records = root / rel, []
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if len(records) == keep:
                        break
                    record = json.loads(line)
                    shown = json.dumps(record.get("data"), default=str, ensure_ascii=False)
                    if len(shown) > 1000:
                        record["data"] = shown[:997] + "..."
                    records.append(record)
        except FileNotFoundError:
            return records
        path.unlink()
        for folder in (path.parent, path.parent.parent):  # quarantine/<collection>, then quarantine/
            try:
                folder.rmdir()
            except OSError:
                break  # not empty
        return records

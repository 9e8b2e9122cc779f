"""The README documents every command the CLI registers."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from embstore_cli.main import cli

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    if not README.exists():
        pytest.skip(f"{README} does not exist yet: the README is written in another change")
    return README.read_text(encoding="utf-8")


def test_cli_registers_the_designed_commands():
    assert {"ingest", "fit", "predict", "search", "sql", "info"} <= set(cli.commands)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_readme_mentions_every_command(readme, command):
    assert re.search(rf"\bembstore {re.escape(command)}\b", readme), \
        f"README.md never shows `embstore {command}`"

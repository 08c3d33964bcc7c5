"""The operations guide cannot drift from the code: it names every setting (key, variable and
default) and every command."""

from __future__ import annotations

from pathlib import Path

import click

from adapters.cli import main
from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "pages" / "operations.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "mpi") -> list[str]:
    found = []
    for name, command in group.commands.items():
        found.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
    return found


def test_every_setting_is_in_the_operations_guide_with_its_variable() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in OPERATIONS.splitlines()
            if line.startswith("| `")}
    for key, field in Settings.model_fields.items():
        assert key in rows, key
        assert f"`MPI_{key.upper()}`" in rows[key], key
        assert (field.description or "") in rows[key], key


def test_every_command_is_in_the_operations_guide() -> None:
    missing = [name for name in commands(main) if f"`{name}" not in OPERATIONS]
    assert missing == []

"""Commands of this concern (filled in as they are built)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

"""How a fuzzed input's handling is judged: every corrupted input must end in a one-line reason (a
refusal naming the file, or a skip recorded by prepare), never a traceback, and never at the cost of
what an earlier run wrote."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mammoseg.core.errors import MammosegError

OUTCOMES = ("accepted", "skipped", "refused", "traceback", "wrong")
"""accepted: read without complaint (only where the input may still be valid); skipped: recorded in
prepare_report.csv; refused: a one-line error naming the file; traceback: any other exception;
wrong: a refusal of valid input, an acceptance of invalid input, an error without the file's name
or on several lines, or earlier output changed."""

FAILED = ("traceback", "wrong")
REFUSE, ACCEPT, EITHER = "refuse", "accept", "either"


class Corruption(NamedTuple):
    """What was done to a valid input, the bytes (or edit) it gives, and what a strict reader must do."""

    label: str
    data: Any
    expect: str


class Outcome(NamedTuple):
    kind: str
    detail: str = ""


def judge(call: Callable[[], Any], *, names: list[str], expect: str,
          check: Callable[[Any], str | None] | None = None) -> Outcome:
    """Run one case. A refusal must be one line naming one of `names`; `check` inspects an accepted
    result and returns what is wrong with it, if anything."""
    try:
        result = call()
    except MammosegError as exc:
        message = str(exc)
        if "\n" in message or not any(n in message for n in names):
            return Outcome("wrong", f"refusal not one line naming {names[0] if names else '-'}: {message!r}")
        if expect == ACCEPT:
            return Outcome("wrong", f"valid input refused: {message}")
        return Outcome("refused")
    except Exception:  # noqa: BLE001 - the point is to catch everything that is not a user error
        return Outcome("traceback", traceback.format_exc(limit=-4))
    if expect == REFUSE:
        return Outcome("wrong", "invalid input accepted")
    problem = check(result) if check else None
    return Outcome("wrong", problem) if problem else Outcome("accepted")


def run_cli(args: list[str]) -> tuple[int, str]:
    """`mammoseg ARGS` in this process, exactly as the console script runs it: (exit status, stderr)."""
    from click.testing import CliRunner

    from mammoseg.cli import main

    logger = logging.getLogger("mammoseg")
    logging_state = (logger.handlers[:], logger.level, logger.propagate)  # the command sets up its own
    with CliRunner().isolation() as streams:
        saved = sys.argv
        sys.argv = ["mammoseg", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
            logger.handlers[:], logger.propagate = logging_state[0], logging_state[2]
            logger.setLevel(logging_state[1])
        err = streams[1].getvalue().decode(errors="replace")
    return code, err


def judge_cli(args: list[str], *, names: list[str], keep: list[Path] | None = None, expect: str = REFUSE) -> Outcome:
    """A command that must exit 2 with one `error: <file>: <problem>` line and leave `keep` as it was
    (or, where `expect` allows, succeed without changing `keep`)."""
    before = {p: p.read_bytes() for p in keep or [] if p.is_file()}
    try:
        code, err = run_cli(args)
    except Exception:  # noqa: BLE001
        return Outcome("traceback", traceback.format_exc(limit=-4))
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    changed = [str(p) for p, data in before.items() if p.read_bytes() != data]
    if "Traceback" in err:
        return Outcome("traceback", f"exit {code}\n{err[-2000:]}")
    if code == 0 and expect == EITHER and not changed:
        return Outcome("accepted")
    if code != 2 or len(errors) != 1 or not any(n in errors[0] for n in names):
        return Outcome("wrong", f"exit {code}, stderr {err[-600:]!r}")
    if changed:
        return Outcome("wrong", f"refused but changed {changed}")
    return Outcome("refused")

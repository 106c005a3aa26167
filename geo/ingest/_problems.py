"""Build the `details` list and the one-sentence message of an ingestion error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

from geo.errors import TooLargeError, ValidationError

# Where a problem sits: a CSV row, a vector feature, a YAML item, a zip entry or a band.
LOCATION_KEYS = ("row", "feature", "item", "entry", "band")
# Enough for the user to fix a whole column in one go without flooding a job record.
MAX_DETAILS = 50


def problem(file: str, problem_text: str, *, field: str | None = None, **where: Any) -> dict:
    """Return one `details` entry: file, optional location (row/feature/...), field, problem."""
    detail: dict[str, Any] = {"file": file}
    for key in LOCATION_KEYS:
        if where.get(key) is not None:
            detail[key] = where[key]
    if field is not None:
        detail["field"] = field
    detail["problem"] = problem_text
    return detail


def sentence(detail: dict) -> str:
    """Return a detail as one readable sentence naming file, location, field and problem."""
    parts = [str(detail.get("file", "upload"))]
    for key in LOCATION_KEYS:
        if key in detail:
            value = detail[key]
            parts.append(f"{key} {value!r}" if key == "entry" else f"{key} {value}")
    if "field" in detail:
        parts.append(f"field {detail['field']!r}")
    return ", ".join(parts) + ": " + str(detail["problem"])


def fail(details: list[dict], *, too_large: bool = False) -> NoReturn:
    """Raise a ValidationError (or TooLargeError) whose message is the first detail's sentence."""
    shown = details[:MAX_DETAILS]
    message = sentence(shown[0])
    if len(details) > 1:
        message += f" (and {len(details) - 1} more problem{'s' if len(details) > 2 else ''})"
    if not message.endswith("."):
        message += "."
    error_class = TooLargeError if too_large else ValidationError
    raise error_class(message, shown)


def fail_one(file: str, problem_text: str, *, too_large: bool = False, **where: Any) -> NoReturn:
    """Raise an error for a single problem (see `problem` for the arguments)."""
    fail([problem(file, problem_text, **where)], too_large=too_large)


# --- collecting row problems across columns ---------------------------------------------
# Row-level checks (a bad number, a missing code, an unparsable date) report through
# `fail_rows`. Inside `collecting()` they are gathered instead of raised, so that one
# refusal (and a dry run) lists the problems of every column at once; `raise_collected`
# then raises them together before anything is written.
_collected: ContextVar[list[dict] | None] = ContextVar("collected_problems", default=None)


@contextmanager
def collecting() -> Iterator[list[dict]]:
    """Gather row problems raised through `fail_rows` until the block ends, then raise them."""
    token = _collected.set([])
    try:
        try:
            yield _collected.get() or []
        except ValidationError as exc:
            # A file-level refusal after some row problems: report both, file-level first.
            gathered = _collected.get() or []
            if gathered and exc.details and isinstance(exc.details, list):
                fail([*exc.details, *gathered])
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            # A consequence of a row already reported (a missing value used further on):
            # the reported problems are the answer; without any, it is a real bug.
            if _collected.get():
                fail(_collected.get() or [])
            raise
        raise_collected()
    finally:
        _collected.reset(token)


def fail_rows(details: list[dict]) -> None:
    """Raise the row problems at once, or gather them inside `collecting()`."""
    if not details:
        return
    gathered = _collected.get()
    if gathered is None:
        fail(details)
    gathered.extend(details)


def raise_collected() -> None:
    """Raise what `collecting()` gathered so far, if anything."""
    gathered = _collected.get()
    if gathered:
        fail(list(gathered))

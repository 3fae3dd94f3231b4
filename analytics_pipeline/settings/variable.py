"""One environment variable: its name, type, default, expected form and what it is for.

A `Variable` is the only way the package reads the environment (`read`): an unset or blank value
is the default; anything else is parsed, and a value that does not parse is a ConfigurationError
naming the variable, the value (masked for secrets) and the form expected. The same declaration
writes its row of the table in docs/OPERATIONS.md (settings/docs.py), so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from analytics_pipeline.errors import ConfigurationError

T = TypeVar("T")

# Who reads a variable other than this package (the docs table says so).
PIPELINE = "pipeline"
DAGSTER = "Dagster"
TRACKING = "event tracking"


@dataclass(frozen=True)
class Variable(Generic[T]):
    """A declared environment variable.

    parse: turns the stripped, non-empty text into the value; raises ValueError (or
        ConfigurationError, with its own message) when it cannot.
    form: the expected form, as a reader should write it ("a whole number >= 1").
    default_doc: the default as the docs table shows it (None as the value: "unset").
    doc: what the variable is for.
    reader: PIPELINE when the settings object parses it; DAGSTER or TRACKING when that code reads
        the value itself (the settings only hand it over), so the table can say so.
    secret: the value never appears in a message.
    strip: surrounding whitespace is not part of the value (False for keys, whose every
        character counts: a salt that lost a space would change every pseudonym).
    """

    name: str
    default: T
    parse: Callable[[str], T]
    form: str
    default_doc: str
    doc: str
    reader: str = PIPELINE
    secret: bool = False
    strip: bool = True

    def read(self, environ: Mapping[str, str] | None = None) -> T:
        """The value in `environ` (the process environment unless given), parsed."""
        env = os.environ if environ is None else environ
        raw = env.get(self.name, "")
        if self.strip:
            raw = raw.strip()
        if not raw:
            return self.default
        try:
            return self.parse(raw)
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(self.refusal(raw, str(exc))) from None

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The text as set (None when unset), for code that reads the variable itself."""
        env = os.environ if environ is None else environ
        return env.get(self.name)

    def refusal(self, raw: str, why: str = "") -> str:
        """The message for a value that cannot be used: variable, value, expected form."""
        shown = "<secret>" if self.secret else repr(raw)
        because = f" ({why})" if why else ""
        return (
            f"{self.name}={shown} cannot be used{because}: expected {self.form}; unset it for "
            f"the default ({self.default_doc}). It sets: {self.doc}"
        )


def whole_number(minimum: int) -> Callable[[str], int]:
    """A parser of integers >= `minimum` ("25"; not "25.0", not "ten")."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("not a whole number") from None
        if value < minimum:
            raise ValueError(f"below {minimum}")
        return value

    return parse


def seconds(minimum: float) -> Callable[[str], float]:
    """A parser of finite numbers of seconds >= `minimum` ("10", "2.5")."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        if value < minimum:
            raise ValueError(f"below {minimum:g}")
        return value

    return parse


def iso_date(raw: str) -> dt.date | None:
    """A parser of YYYY-MM-DD dates."""
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError("not a date") from None


def choice(*options: str) -> Callable[[str], str]:
    """A parser of one of `options`, case-insensitively."""

    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"not one of {', '.join(options)}")
        return value

    return parse


def web_url(raw: str) -> str | None:
    """A parser of http(s) URLs with a host."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http(s) URL")
    return raw


def path(raw: str) -> Path | None:
    """A parser of file system paths (as written: relative ones stay relative)."""
    return Path(raw)


def text(raw: str) -> str:
    """Any non-empty text, as written (stripped)."""
    return raw


def optional_text(raw: str) -> str | None:
    """Any non-empty text; the default (unset) is None."""
    return raw

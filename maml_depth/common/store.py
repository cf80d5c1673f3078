"""The resumable results store of every grid (sweeps, the nonlinear experiment, the
full-budget claims): one JSON record per point, ``<out>/store/<key>.json``.

A point is a JSON-able parameter dict; its key is

    sha256( canonical_json({"package_version": <version>, "point": <point>}) )

with :func:`canonical_json` = sorted keys, no whitespace, ASCII, finite floats only.

Only the driver writes records, each atomically (write to a temporary file, then rename),
so a reader sees either nothing or a whole record; a record's file name is its point's key,
so a re-run can never duplicate it. Every record carries a checksum; a record that is
truncated, corrupted, edited, or whose key does not match its point is *corrupt*: the driver
recomputes it, and :func:`load_frame` skips it with a warning, never reads it silently.

Record schema (``schema = 1``)::

    {
      "schema": 1,
      "key": "<sha256 hex>",              # = point_key(point, package_version)
      "package_version": "0.1.0",
      "point": {...},                     # the point's parameters
      "status": "ok" | "failed",
      "error": null | "<ExceptionType>: <one line>",   # why it failed (divergence, ...)
      "result": null | {...},             # what the grid's task returned
      "timing": {"seconds": float, "host": str, "pid": int, "attempts": int,
                 "finished": "<UTC ISO time>"},
      "checksum": "<sha256 hex>"          # of canonical_json(record without "checksum")
    }

Everything except ``timing`` (and hence ``checksum``) is a deterministic function of the
point on CPU. Non-finite numbers are stored as ``null``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from maml_depth._io import atomic_write_text
from maml_depth.errors import ConfigError, InvalidArgumentError

SCHEMA_VERSION = 1


def _check_finite(obj: Any) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise InvalidArgumentError(f"canonical JSON needs finite numbers, got {obj!r}")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_finite(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _check_finite(v)


def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free, ASCII JSON (the form that is hashed)."""
    _check_finite(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def sha256_hex(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_version() -> str:
    """The installed package's version (part of every point's key)."""
    from maml_depth import __version__

    return __version__


def point_key(point: Mapping[str, Any], version: str | None = None) -> str:
    """The sha256 key of a point's canonical configuration plus the package version."""
    v = package_version() if version is None else version
    return sha256_hex(canonical_json({"package_version": v, "point": dict(point)}))
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int, "key": str, "package_version": str, "point": dict, "status": str,
    "error": (str, type(None)), "result": (dict, type(None)), "timing": dict, "checksum": str,
}

State = Literal["missing", "valid", "corrupt"]


class CorruptRecordWarning(UserWarning):
    """A stored record failed its checks and was ignored (it will be recomputed)."""


def corrupt_message(store: Store, corrupt: Mapping[str, str]) -> str:
    """One line listing (up to five) corrupt records of ``store`` and why."""
    return (f"{len(corrupt)} corrupt record(s) in {store.dir} ignored: "
            + "; ".join(f"{k[:12]}…: {r}" for k, r in list(corrupt.items())[:5]))


def finite_or_none(obj: Any) -> Any:
    """Replace non-finite floats (recursively) with ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def record_checksum(record: Mapping[str, Any]) -> str:
    """sha256 of a record's canonical JSON without its ``checksum`` field."""
    return sha256_hex(canonical_json({k: v for k, v in record.items() if k != "checksum"}))


def make_record(key: str, point: Mapping[str, Any], outcome: Mapping[str, Any], *,
                version: str, attempts: int = 1) -> dict[str, Any]:
    """Assemble a checksummed record from a runner outcome (see the module docstring)."""
    timing = dict(outcome.get("timing") or {})
    timing["attempts"] = int(attempts)
    rec: dict[str, Any] = finite_or_none({
        "schema": SCHEMA_VERSION,
        "key": key,
        "package_version": version,
        "point": dict(point),
        "status": outcome["status"],
        "error": outcome.get("error"),
        "result": outcome.get("result"),
        "timing": timing,
    })
    rec["checksum"] = record_checksum(rec)
    return rec


def check_record(obj: Any, key: str) -> str | None:
    """Why ``obj`` is not a valid record for ``key`` (``None`` when it is)."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for name, typ in _FIELDS.items():
        if name not in obj:
            return f"missing field {name!r}"
        if not isinstance(obj[name], typ):
            return f"field {name!r} has the wrong type"
    if obj["schema"] != SCHEMA_VERSION:
        return f"schema {obj['schema']} (expected {SCHEMA_VERSION})"
    if obj["checksum"] != record_checksum(obj):
        return "checksum mismatch (the file was altered or damaged)"
    if obj["key"] != key:
        return f"its key {obj['key'][:12]}… does not match its file name"
    try:
        if point_key(obj["point"], obj["package_version"]) != key:
            return "its key is not the hash of its point"
    except ValueError as exc:
        return f"its point cannot be hashed ({exc})"
    if obj["status"] not in ("ok", "failed"):
        return f"unknown status {obj['status']!r}"
    return None


class Store:
    """Records of ``<out>/store``; see the module docstring."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.dir = self.out / "store"

    def path(self, key: str) -> Path:
        """The file of the record with ``key`` (64 hex digits; anything else raises
        :class:`InvalidArgumentError`)."""
        if not _KEY_RE.match(key):
            raise InvalidArgumentError(f"key: not a record key (64 hex digits), got {key!r}")
        return self.dir / f"{key}.json"

    def keys(self) -> list[str]:
        """Keys of the record files present (valid or not), sorted."""
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json") if _KEY_RE.match(p.stem))

    def read(self, key: str) -> tuple[State, dict[str, Any] | None, str | None]:
        """``("missing", None, None)``, ``("valid", record, None)`` or
        ``("corrupt", None, reason)``."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "missing", None, None
        except (OSError, UnicodeDecodeError) as exc:
            return "corrupt", None, f"unreadable ({exc})"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return "corrupt", None, f"not valid JSON (truncated?): {exc.msg} at char {exc.pos}"
        reason = check_record(obj, key)
        if reason is not None:
            return "corrupt", None, reason
        return "valid", obj, None

    def write(self, record: Mapping[str, Any]) -> Path:
        """Atomically write a record made by :func:`make_record` (checked first)."""
        reason = check_record(record, str(record.get("key")))
        if reason is not None:
            raise InvalidArgumentError(f"record: refusing to store an invalid record: {reason}")
        return atomic_write_text(self.path(record["key"]),
                                 json.dumps(record, indent=1, sort_keys=True,
                                            allow_nan=False) + "\n")

    def scan(self, keys: Iterable[str] | None = None
             ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """``(valid records by key, corrupt reasons by key)`` for ``keys`` (default: all
        record files present)."""
        valid: dict[str, dict[str, Any]] = {}
        corrupt: dict[str, str] = {}
        for key in (self.keys() if keys is None else keys):
            state, rec, reason = self.read(key)
            if state == "valid" and rec is not None:
                valid[key] = rec
            elif state == "corrupt":
                corrupt[key] = reason or "corrupt"
        return valid, corrupt

    def clean_temporaries(self) -> int:
        """Remove temporary files left by an interrupted atomic write (hold the lock)."""
        n = 0
        if self.dir.is_dir():
            for p in self.dir.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
        return n

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the store, released by the OS even when the driver is killed."""
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        with open(self.out / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"--out: another run is writing to {str(self.out)!r}; wait for it or "
                    f"choose another folder") from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

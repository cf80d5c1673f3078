"""The sweep's records as a table: :func:`load_frame` and the row layout of a sweep record.

The store itself (record schema, checksums, the lock) is the shared resumable store
:mod:`maml_depth.common.store`, re-exported here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from maml_depth.common.store import (
    SCHEMA_VERSION,
    CorruptRecordWarning,
    Store,
    canonical_json,
    check_record,
    corrupt_message,
    finite_or_none,
    make_record,
    record_checksum,
)
from maml_depth.errors import InvalidArgumentError
from maml_depth.sweep.config import RESULT_FIELDS

__all__ = [
    "SCHEMA_VERSION",
    "CorruptRecordWarning",
    "Store",
    "check_record",
    "finite_or_none",
    "load_frame",
    "make_record",
    "record_checksum",
    "records_to_rows",
]

_TEXT_FIELDS = ("theory_kind", "theory_note", "converged", "convergence",
                "convergence_reason")


def _flat(v: Any) -> Any:
    return canonical_json(v) if isinstance(v, list | dict) else v


def records_to_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flatten records to table rows: ``key``, the point's parameters (list values as
    compact JSON strings), ``status``, ``error``, the result fields (the convergence report
    as compact JSON, its ``reason`` also as ``convergence_reason``), ``seconds``,
    ``package_version``."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"key": rec["key"]}
        row.update({k: _flat(v) for k, v in rec["point"].items()})
        row["status"] = rec["status"]
        row["error"] = rec["error"]
        res = rec.get("result") or {}
        for f in RESULT_FIELDS:
            v = res.get(f)
            row[f] = math.nan if v is None and f not in _TEXT_FIELDS else _flat(v)
        conv = res.get("convergence")
        row["convergence_reason"] = conv.get("reason") if isinstance(conv, dict) else None
        row["seconds"] = rec["timing"].get("seconds")
        row["package_version"] = rec["package_version"]
        rows.append(row)
    return rows


def load_frame(out: str | os.PathLike[str], keys: Iterable[str] | None = None, *,
               on_corrupt: Literal["warn", "raise", "skip"] = "warn") -> Any:
    """The stored records of ``out`` as a :class:`pandas.DataFrame`, one row per valid
    record (columns: see :func:`records_to_rows`), in the order of ``keys`` when given.

    A corrupt record is never read: it is left out with a :class:`CorruptRecordWarning`
    (``on_corrupt="warn"``), left out silently (``"skip"``), or raises
    :class:`~maml_depth.errors.InvalidArgumentError` (a ``ValueError``).
    """
    import pandas as pd

    store = Store(out)
    wanted = None if keys is None else list(keys)
    valid, corrupt = store.scan(wanted)
    if corrupt:
        msg = corrupt_message(store, corrupt)
        if on_corrupt == "raise":
            raise InvalidArgumentError(msg)
        if on_corrupt == "warn":
            warnings.warn(msg, CorruptRecordWarning, stacklevel=2)
    order = wanted if wanted is not None else sorted(valid)
    rows = records_to_rows(valid[k] for k in order if k in valid)
    return pd.DataFrame(rows)

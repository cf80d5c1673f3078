"""Figure data computed once and cached, so re-rendering takes seconds.

A figure's data is a :class:`FigureData`: named numpy arrays (``.npz``) and JSON metadata
(``.json``) — settings, sample sizes, timings. The cache key is
``<figure>-<budget>-v<version>-<budget fingerprint>``: a new figure version or any changed
budget number means new data. Both files are written atomically (:mod:`maml_depth._io`);
the JSON is written last and records the SHA-256 of the ``.npz``, so an interrupted or
mismatched pair reads as a miss, never as wrong data.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maml_depth._io import atomic_write_bytes, atomic_write_json
from maml_depth.paper_figures.budget import FigureBudget

__all__ = ["CACHE_FORMAT", "FigureCache", "FigureData", "cache_key"]

#: bump when the on-disk layout changes
CACHE_FORMAT = 1


@dataclass
class FigureData:
    """What a figure plots: ``arrays`` (numpy, float or int) and JSON-able ``meta``."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def put(self, key: str, value: Any) -> None:
        """Store the array ``value`` under ``key``."""
        self.arrays[key] = np.asarray(value)


def cache_key(figure: str, budget: FigureBudget, version: int) -> str:
    """``<figure>-<budget>-v<version>-<fingerprint>``."""
    return f"{figure}-{budget.name}-v{version}-{budget.fingerprint()}"


class FigureCache:
    """A folder of ``<key>.npz`` + ``<key>.json`` pairs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        """The ``.npz`` (arrays) and ``.json`` (metadata) files of the cache entry ``key``."""
        return self.root / f"{key}.npz", self.root / f"{key}.json"

    def load(self, key: str) -> FigureData | None:
        """The cached data, or None when missing, incomplete or from another format."""
        npz, js = self.paths(key)
        try:
            doc = json.loads(js.read_text(encoding="utf-8"))
            raw = npz.read_bytes()
        except (OSError, ValueError):
            return None
        if doc.get("format") != CACHE_FORMAT or doc.get("key") != key:
            return None
        if doc.get("sha256") != hashlib.sha256(raw).hexdigest():
            return None
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return FigureData(arrays, dict(doc.get("meta", {})))

    def save(self, key: str, data: FigureData) -> tuple[Path, Path]:
        """Write the pair atomically (arrays first, then the JSON that vouches for them)."""
        npz, js = self.paths(key)
        buf = io.BytesIO()
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in data.arrays.items()}
        save_npz: Any = np.savez_compressed
        save_npz(buf, **arrays)
        raw = buf.getvalue()
        atomic_write_bytes(npz, raw)
        atomic_write_json(js, {"format": CACHE_FORMAT, "key": key,
                               "sha256": hashlib.sha256(raw).hexdigest(),
                               "arrays": sorted(data.arrays), "meta": data.meta})
        return npz, js

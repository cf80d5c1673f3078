"""The results store: checksummed records, corruption detected, pandas-readable."""

from __future__ import annotations

import json
import math

import pytest

from maml_depth.sweep import CorruptRecordWarning, Store, load_frame, make_record

from .common import tiny_config


def _outcome(loss: float = 1.5, status: str = "ok"):
    result = {"post_loss": loss, "post_loss_se": math.nan, "eval_tasks": 20}
    return {"status": status, "error": None if status == "ok" else "ValueError: x",
            "result": result if status == "ok" else None,
            "timing": {"seconds": 0.1, "host": "h", "pid": 1}}


@pytest.fixture
def points():
    return tiny_config().expand()


def test_roundtrip_and_frame(tmp_path, points):
    store = Store(tmp_path)
    for i, p in enumerate(points):
        store.write(make_record(p.key, p.params, _outcome(1.0 + i), version="0.1.0"))
    assert store.keys() == sorted(p.key for p in points)
    state, rec, _ = store.read(points[0].key)
    assert state == "valid" and rec["result"]["post_loss_se"] is None  # NaN stored as null
    text = store.path(points[0].key).read_text()
    assert "NaN" not in text
    frame = load_frame(tmp_path, [p.key for p in points])
    assert list(frame["key"]) == [p.key for p in points]
    assert list(frame["post_loss"]) == [1.0, 2.0, 3.0, 4.0]
    assert list(frame["depth"]) == [1, 1, 2, 2] and set(frame["status"]) == {"ok"}


def test_write_refuses_a_bad_record(tmp_path, points):
    p = points[0]
    rec = make_record(p.key, p.params, _outcome(), version="0.1.0")
    rec["result"]["post_loss"] = 7.0  # checksum no longer matches
    with pytest.raises(ValueError, match="checksum"):
        Store(tmp_path).write(rec)


def test_damaged_records_are_detected_not_read(tmp_path, points):
    store = Store(tmp_path)
    for p in points:
        store.write(make_record(p.key, p.params, _outcome(), version="0.1.0"))
    a, b, c, d = (store.path(p.key) for p in points)
    a.write_text(a.read_text()[:40])                     # truncated
    rec = json.loads(b.read_text())
    rec["result"]["post_loss"] = 0.0                      # edited, checksum stale
    b.write_text(json.dumps(rec))
    c.write_text(d.read_text())                           # another point's record
    (store.dir / ".x.json.123.tmp").write_text("{")       # debris of an interrupted write
    states = {p.key: store.read(p.key)[0] for p in points}
    assert [states[p.key] for p in points] == ["corrupt", "corrupt", "corrupt", "valid"]
    assert "JSON" in store.read(points[0].key)[2]
    assert "checksum" in store.read(points[1].key)[2]
    assert "file name" in store.read(points[2].key)[2]
    with pytest.warns(CorruptRecordWarning, match="3 corrupt"):
        frame = load_frame(tmp_path)
    assert list(frame["key"]) == [points[3].key]
    with pytest.raises(ValueError, match="corrupt"):
        load_frame(tmp_path, on_corrupt="raise")
    assert store.clean_temporaries() == 1


def test_lock_is_exclusive(tmp_path):
    from maml_depth.errors import ConfigError

    store = Store(tmp_path)
    with store.lock():
        with pytest.raises(ConfigError, match="another run"):
            with Store(tmp_path).lock():
                pass
    with store.lock():
        pass

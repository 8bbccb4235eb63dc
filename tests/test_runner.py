"""The resumable item runner: caching, failure isolation, process pool."""

from __future__ import annotations

import json

from vcmtool.runner import Item, run_items, safe_key


def square(p: dict) -> dict:
    if p["x"] == 3:
        raise ValueError("three is corrupt")
    return {"y": p["x"] ** 2}


def test_failures_isolated_and_resume_skips_done(tmp_path):
    items = [Item(safe_key(f"n{i}"), {"x": i}) for i in range(6)]
    out = list(run_items(square, items, tmp_path, workers=2))
    assert sorted(o.result["y"] for o in out if o.ok) == [0, 1, 4, 16, 25]
    bad = [o for o in out if not o.ok]
    assert len(bad) == 1 and "three is corrupt" in bad[0].error
    assert json.loads((tmp_path / f"{bad[0].item.key}.error.json").read_text())["error"]
    again = list(run_items(square, items, tmp_path, workers=1))
    assert sum(o.cached for o in again) == 5 and sum(not o.ok for o in again) == 1


def test_damaged_record_recomputed(tmp_path):
    items = [Item("a", {"x": 2})]
    list(run_items(square, items, tmp_path))
    (tmp_path / "a.json").write_text("{trunc")
    (o,) = run_items(square, items, tmp_path)
    assert not o.cached and o.result == {"y": 4}

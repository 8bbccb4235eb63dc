"""Run independent work items on a local process pool or a Ray cluster, resumably.

Shared by ``jrd build-dataset``, ``bench`` and ``batch``: each item has a stable key; its
result is written atomically to ``STATE/<key>.json`` the moment it finishes, so a run killed
with kill -9 or Ctrl-C resumes by skipping every key already on disk. A failing item is
recorded as ``<key>.error.json`` and never stops the others; failed items are retried on the
next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vcmtool.atomic import write_text_atomic
from vcmtool.errors import UsageError, VcmError

ENGINES = ("process", "ray")


@dataclass(frozen=True)
class Item:
    key: str
    payload: dict[str, Any]


@dataclass
class Outcome:
    item: Item
    result: dict[str, Any] | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def safe_key(text: str) -> str:
    """A file-name-safe key that stays readable and unique (hash suffix)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-60:].strip("_.") or "item"
    return f"{stem}-{hashlib.md5(text.encode()).hexdigest()[:10]}"


def _guarded(fn: Callable[[dict], dict], payload: dict) -> tuple[dict | None, str | None]:
    try:
        return fn(payload), None
    except VcmError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - one bad item must not stop the batch
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return None, last


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def done(self, key: str) -> dict | None:
        p = self.path / f"{key}.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged record is recomputed, never trusted

    def record(self, key: str, result: dict | None, error: str | None) -> None:
        err = self.path / f"{key}.error.json"
        if error is None:
            write_text_atomic(self.path / f"{key}.json", json.dumps(result))
            err.unlink(missing_ok=True)
        else:
            write_text_atomic(err, json.dumps({"key": key, "error": error}))


def run_items(
    fn: Callable[[dict], dict],
    items: list[Item],
    state_dir: Path,
    workers: int = 1,
    engine: str = "process",
    address: str | None = None,
    desc: str = "items",
) -> Iterator[Outcome]:
    """Yield an Outcome per item (cached ones first). ``fn`` must be a top-level function."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if len({it.key for it in items}) != len(items):
        raise UsageError("duplicate work items (same key twice)")
    state = StateDir(state_dir)
    todo: list[Item] = []
    for it in items:
        prev = state.done(it.key)
        if prev is not None:
            yield Outcome(it, prev, cached=True)
        else:
            todo.append(it)
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=desc, unit="item", disable=None)
    try:
        if engine == "ray":
            gen = _run_ray(fn, todo, workers, address)
        elif workers <= 1:
            gen = ((it, *_guarded(fn, it.payload)) for it in todo)
        else:
            gen = _run_pool(fn, todo, workers)
        for it, result, error in gen:
            try:
                state.record(it.key, result, error)
            except (OSError, VcmError) as e:  # a full disk must not stop the other items
                why = getattr(e, "strerror", None) or str(e)
                error = f"{error + '; ' if error else ''}result not recorded in {state.path} ({why})"
                result = None
            bar.update(1)
            yield Outcome(it, result, error)
    finally:
        bar.close()


def _watch_parent(parent: int) -> None:
    """Worker initializer: exit when the batch process is gone (kill -9 leaves no orphans)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_pool(fn, todo: list[Item], workers: int):
    # forkserver: onnxruntime/torch thread pools in the parent make plain fork unsafe.
    # Preloading the pipeline in the server saves every worker ~1 s of imports.
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["vcmtool.pipeline"])
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    pending: dict[Future, Item] = {}
    queue = list(reversed(todo))
    try:
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                it = queue.pop()
                pending[pool.submit(_guarded, fn, it.payload)] = it
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                it = pending.pop(fut)
                try:
                    result, error = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died (OOM, segfault)
                    result, error = None, f"worker failed: {e}"
                yield it, result, error
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(fn, todo: list[Item], workers: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'ray==2.60.0'") from None
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = max(1, workers)
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        ray.init(**kw)
        started = True
    remote = ray.remote(_guarded)
    refs = {remote.remote(fn, it.payload): it for it in todo}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                it = refs.pop(ref)
                try:
                    result, error = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a Ray worker died
                    result, error = None, f"ray task failed: {e}"
                yield it, result, error
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()

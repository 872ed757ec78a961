"""Shared helpers: run the `framework` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FRAMEWORK = [sys.executable, "-m", "framework.cli"]


def run_framework(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``framework ARGS`` in ``cwd``; returns the completed process (text output).
    ``timeout`` guards against a hung run; it is no speed check, so it is generous enough for a
    machine loaded with training runs beside the suite (where a 240 s guard on a launcher sweep
    once timed out)."""
    return subprocess.run(
        [*FRAMEWORK, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first: with parallel workers (``make test`` runs ``-n auto``) a
    long test that starts last would leave the other workers idle until it ends."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny networks run fastest on one intra-op thread; on a loaded 2-core machine a second
    thread only contends (seen here: an Adam step 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def framework_cli():
    return run_framework


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> str:
    """One folder of generated offline datasets for the whole session (each made once)."""
    return str(tmp_path_factory.mktemp("datasets"))

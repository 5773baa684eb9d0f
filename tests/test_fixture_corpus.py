"""Every module of the fixture corpus against its ground truth (expected/wasm, expected/aot).

``test_shared_*`` sweep ../shared/fixtures (skipped when absent; present in CI);
``test_data_*`` run the same checks on the tests/data subset, from a clone alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from corpus_checks import check_native, check_wasm  # noqa: E402

NATIVE_SUFFIXES = (".aot", ".aot.wasm", ".o")


def _native_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "aot").iterdir() if p.name.endswith(NATIVE_SUFFIXES))


def _sweep(root: Path) -> tuple[int, list[str]]:
    """Check every module that has a ground-truth file (in ../shared that is every module:
    the count is compared with the number of expected files)."""
    problems: list[str] = []
    count = 0
    for p in sorted((root / "wasm").glob("*.wasm")):
        if not (root / "expected" / "wasm" / f"{p.name}.module.expected.json").exists():
            continue
        count += 1
        problems += [f"{p.name}: {b}" for b in check_wasm(root, p)]
    for p in _native_files(root):
        if not (root / "expected" / "aot" / f"{p.name}.expected.json").exists():
            continue
        count += 1
        problems += [f"{p.name}: {b}" for b in check_native(root, p)]
    return count, problems


@pytest.mark.fixtures
def test_shared_corpus_function_tables(shared_fixtures):
    count, problems = _sweep(shared_fixtures)
    expected = len(list((shared_fixtures / "expected" / "wasm").glob("*.json"))) + \
        len(list((shared_fixtures / "expected" / "aot").glob("*.json")))
    assert count == expected          # every input with ground truth was read
    assert problems == []


def test_data_subset_function_tables(data_dir):
    count, problems = _sweep(data_dir)
    assert count >= 40
    assert problems == []


@pytest.mark.fixtures
def test_shared_every_native_kind_present(shared_fixtures):
    names = [p.name for p in _native_files(shared_fixtures)]
    for suffix in NATIVE_SUFFIXES:
        assert any(n.endswith(suffix) for n in names), suffix

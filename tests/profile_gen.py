"""Realistic agent sample batches for tests and ``bench/profiles_scale.py``.

Stacks follow a fixed set of call paths through a real AOT module's functions (as a
program's do): caller frames are return addresses at fixed call sites, the leaf PC is drawn
anew inside the leaf function's real code range for every sample (so no two samples are
alike), the root frames are host (Envoy) PCs, and each pod has its own text base (ASLR).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

HOST_BASE = 0x55D0_0000_0000


def aot_ranges(module: Any) -> list[tuple[int, int]]:
    """(text offset, size) of each defined function with native code."""
    return [(f.text_offset, f.size) for f in module.functions
            if not f.imported and f.text_offset is not None and f.size and f.size > 8]


class StackModel:
    def __init__(self, ranges: list[tuple[int, int]], seed: int, paths: int = 120,
                 depth: tuple[int, int] = (2, 9)) -> None:
        self.rng = random.Random(seed)
        self.ranges = ranges
        self.paths = []
        for _ in range(paths):
            fns = [self.rng.randrange(len(ranges)) for _ in range(self.rng.randint(*depth))]
            calls = [ranges[f][0] + self.rng.randrange(4, ranges[f][1]) for f in fns[1:]]
            host = [HOST_BASE + self.rng.randrange(1 << 20) for _ in range(self.rng.randint(2, 5))]
            self.paths.append((fns[0], calls, host))
        # a few hot paths take most samples, as in real profiles
        self.cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(paths)))

    def stack(self, text_base: int) -> list[int]:
        leaf, calls, host = self.rng.choices(self.paths, cum_weights=self.cum)[0]
        start, size = self.ranges[leaf]
        pcs = [text_base + start + self.rng.randrange(size)]
        pcs += [text_base + c for c in calls]
        return pcs + host

    def batch(self, n: int, *, module_id: str, text_base: int, text_size: int, t0: float,
              rate_hz: float = 100.0, threads: int = 2) -> dict[str, Any]:
        """``n`` samples at ``rate_hz`` per thread from ``t0`` on."""
        step = threads / rate_hz
        return {"modules": [{"id": module_id, "text_base": text_base, "text_size": text_size}],
                "samples": [{"stack": self.stack(text_base), "count": 1,
                             "timestamp": round(t0 + (i // threads) * step, 4),
                             "thread": f"worker_{i % threads}"} for i in range(n)]}

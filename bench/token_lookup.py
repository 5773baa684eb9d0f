"""What checking the token in the database on every request costs (revocation on the next
request) against the old 5-second cache, side by side in one run.

    .venv/bin/python bench/token_lookup.py [--n 20000] [--db postgresql://…]

Prints the per-lookup time of ``TokenCache(ttl=0)`` (what ``wasmprof serve`` does now) and
``TokenCache(ttl=5)`` (the old behaviour: a revoked token kept working up to 5 s), with
distinct tokens cycling so a cache cannot answer from one entry, plus CPU time, peak RSS and
the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wasmprof.config import resolve_store  # noqa: E402
from wasmprof.server.security import TokenCache  # noqa: E402
from wasmprof.store.state import open_store  # noqa: E402
from wasmprof.store.tokens import create_token  # noqa: E402


def run(cache: TokenCache, tokens: list[str], n: int) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        assert cache.get(tokens[i % len(tokens)]) is not None
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="lookups per variant")
    ap.add_argument("--tokens", type=int, default=50, help="distinct tokens cycled")
    ap.add_argument("--db", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = open_store(resolve_store(d, args.db))
        tokens = [create_token(store.db, f"bench-{i}", {"read"})[1] for i in range(args.tokens)]
        print(f"backend {store.db.dialect}, {args.n} lookups over {args.tokens} tokens, "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        rows = []
        for label, ttl in (("every request (ttl=0, now)", 0.0), ("5 s cache (before)", 5.0)):
            wall, cpu = run(TokenCache(store.db, ttl=ttl), tokens, args.n)
            rows.append((label, wall, cpu))
        base = rows[1][1]
        for label, wall, cpu in rows:
            print(f"  {label:30s} {wall * 1e6:8.1f} µs/lookup wall  {cpu * 1e6:8.1f} µs CPU  "
                  f"({wall / base:5.1f}x the cached lookup)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

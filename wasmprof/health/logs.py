"""WAMR memory blocks in posted logs → health samples (hooked into the log ingest).

``CrashService.ingest_log`` wraps its input with :meth:`LogMemoryTap.wrap` (the chunks
pass through unchanged to the crash scanner while :class:`~wasmprof.ingest.wamr_memory.
MemoryBlockScanner` looks for blocks, constant memory) and calls :meth:`LogMemoryTap.store`
after the crashes are stored: the blocks become points of ``log:<source>`` series, per
plugin when the log's ``plugin`` parameter or a ``wasm log <plugin> …`` record just before
the block names one, else per process (plugin ""). A failure here is logged and never
fails the ingest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import IO, Any

from wasmprof.health import store
from wasmprof.ingest.wamr_memory import MemoryBlockScanner, block_samples, tap

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class LogMemoryTap:
    def __init__(self, *, source: str, plugin: str | None) -> None:
        self.source = source or "upload"
        self.plugin = plugin
        self.scanner = MemoryBlockScanner()

    def wrap(self, stream: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
        read = getattr(stream, "read", None)
        chunks: Iterable[bytes] = iter(lambda: read(CHUNK), b"") if read else stream
        return tap(chunks, self.scanner)

    def store(self, db: Any, *, received: float, names: store.PluginNames | None = None
              ) -> dict[str, Any]:
        """Store the blocks found; a summary for the ingest answer."""
        try:
            blocks = self.scanner.finish()
            if not blocks:
                return {"blocks": 0, "samples": 0}
            samples = block_samples(blocks, received=received, plugin=self.plugin)
            rec = store.record(db, samples, source=f"log:{self.source}", origin="wamr",
                               ts=received, names=names)
            return {"blocks": len(blocks), "partial_blocks": sum(b.partial for b in blocks),
                    "samples": rec.points, "plugins": rec.plugins,
                    "per_process": sum(1 for b in blocks if not (self.plugin or b.plugin)),
                    "source": f"log:{self.source}"}
        except Exception:  # noqa: BLE001 - health data must never fail a log ingest
            log.exception("storing WAMR memory blocks of %s failed", self.source)
            return {"blocks": 0, "samples": 0, "error": "storing memory samples failed"}

"""CPU profile history for ``wasmprof serve --demo``, built from the bundled real perf
recordings and posted through the real ingest path (what ``POST /api/v1/samples`` runs).

``samples/profile-history.json`` (see its ``about``) names a plugin, its pods and versions;
each version has the AOT module it runs, a real ``perf script`` recording of that build
(with the perf map WAMR wrote) and the recording's run log. The history is one agent JSON
batch per pod and window over the last ``hours``:

- every sample's stack is a stack of the version's recording, leaf first, as an in-process
  agent would see it: kernel frames dropped, AOT code as PCs in the pod's own copy of the
  module text (each pod has its own text base, as with ASLR), the leaf PC drawn anew inside
  its function's code range (so no two samples are alike, as the benchmarks' generator
  does), runtime frames named as perf named them;
- samples per window follow the requests the pod served (a daily cycle with noise) times the
  CPU per request the recording measured (its sample count / the ``rounds`` its run log
  printed), so a version whose build costs more shows as a step in CPU over time;
- a version with ``rollout_hours_ago`` replaces the previous one on each pod at that time:
  a canary pod first, then the others.

Times are pseudo-random but fixed by ``seed``; nothing here writes to the store directly.
"""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

HOUR = 3600.0
DAY = 86400.0
#: Where each pod's copy of the module text starts (pods apart by POD_STRIDE).
TEXT_BASE = 0x7F3A_4000_0000
POD_STRIDE = 0x0000_2000_0000

_ROUNDS = re.compile(r"\brounds=(\d+)")

Frame = tuple[int, str, bool]          # (pc, symbol, kernel)


@dataclass(slots=True)
class Recording:
    """One version's recording: its stacks (leaf first) and the AOT text it ran."""

    stacks: list[tuple[Frame, ...]]
    text_lo: int                       # address of AOT text offset 0 in the recording
    text_hi: int                       # end of the last function
    functions: list[tuple[int, int]]   # (start, size) of each function, sorted
    per_round: float                   # samples per request (CPU per request)

    def function_at(self, pc: int) -> tuple[int, int] | None:
        import bisect
        i = bisect.bisect_right(self.functions, (pc, math.inf)) - 1
        if i >= 0 and self.functions[i][0] <= pc < self.functions[i][0] + self.functions[i][1]:
            return self.functions[i]
        return None


def read_recording(script: bytes, perf_map: bytes, run_log: str, aot_text_offset0: int) -> Recording:
    """Parse a ``perf script`` recording, its perf map and run log with the library's
    readers. ``aot_text_offset0``: the AOT text offset of ``aot_func#0`` (from the module)."""
    from wasmprof.ingest.perf_map import parse_perf_map
    from wasmprof.ingest.perf_script import is_kernel_dso, iter_blocks, split_frame_line
    pmap = parse_perf_map(perf_map.decode("utf-8", "replace"), "perf map")
    funcs = sorted((e.start, e.size) for e in pmap.entries if e.aot_index is not None)
    first = next(e for e in pmap.entries if e.aot_index == 0)
    stacks: list[tuple[Frame, ...]] = []
    for blocks in iter_blocks(io.BytesIO(script)):
        for block in blocks:
            lines = block.decode("utf-8", "replace").split("\n")
            frames = []
            for line in lines[1:]:
                got = split_frame_line(line)
                if got is None:
                    continue
                pc, sym, dso = got
                frames.append((pc, sym.split("+0x", 1)[0], is_kernel_dso(dso, pc)))
            if frames:
                stacks.append(tuple(frames))
    m = _ROUNDS.search(run_log)
    rounds = int(m.group(1)) if m else len(stacks)
    return Recording(stacks=stacks, text_lo=first.start - aot_text_offset0,
                     text_hi=max(s + n for s, n in funcs), functions=funcs,
                     per_round=len(stacks) / max(rounds, 1))


def agent_stack(rec: Recording, frames: tuple[Frame, ...], base: int,
                rng: random.Random) -> list[Any]:
    """The stack an in-process agent reports for one recorded sample (see the module doc)."""
    out: list[Any] = []
    for pc, sym, kernel in frames:
        if kernel:
            continue
        if rec.text_lo <= pc < rec.text_hi:
            if not out:                                   # the leaf: anywhere in its function
                fn = rec.function_at(pc)
                if fn is not None:
                    pc = fn[0] + rng.randrange(fn[1])
            out.append(base + pc - rec.text_lo)
        elif sym and sym != "[unknown]":
            out.append({"name": sym})
        else:
            out.append(pc)
    return out


def load(t_utc: float) -> float:
    """Requests relative to the day's mean: low at night, a peak in the afternoon (UTC)."""
    hour = (t_utc % DAY) / HOUR
    return 1.0 + 0.45 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)


@dataclass(slots=True)
class Batch:
    """One agent JSON batch to post."""

    plugin: str
    version: str
    pod: str
    start: float
    body: bytes
    samples: int


def history_batches(spec: dict[str, Any], recordings: dict[str, Recording], modules: dict[str, str],
                    now: float) -> list[Batch]:
    """The batches of ``spec`` ending at ``now``, in time order. ``recordings``: version →
    its Recording; ``modules``: version → the module id the agent names."""
    versions = spec["versions"]
    pods = [str(p) for p in spec["pods"]]
    threads = [str(t) for t in spec.get("threads") or ["worker_0", "worker_1"]]
    window = float(spec.get("window_minutes", 10)) * 60
    n = int(float(spec.get("hours", 12)) * HOUR // window)
    start = math.floor((now - n * window) / window) * window
    rng = random.Random(int(spec.get("seed", 1)))
    base_cost = recordings[versions[0]["version"]].per_round
    per_window = float(spec.get("samples_per_window", 90))
    out: list[Batch] = []
    for w in range(n):
        w0 = start + w * window
        for k, pod in enumerate(pods):
            v = versions[0]
            for cand in versions[1:]:
                ago = (cand.get("rollout_hours_ago") or {}).get(pod)
                if ago is not None and w0 >= now - float(ago) * HOUR:
                    v = cand
            rec = recordings[v["version"]]
            count = max(1, round(per_window * load(w0) * rng.uniform(0.85, 1.15)
                                 * rec.per_round / base_cost))
            base = TEXT_BASE + k * POD_STRIDE
            times = sorted(w0 + rng.random() * window for _ in range(count))
            samples = []
            for t in times:
                stack = agent_stack(rec, rng.choice(rec.stacks), base, rng)
                if stack:
                    samples.append({"stack": stack, "count": 1, "timestamp": round(t, 3),
                                    "thread": rng.choice(threads)})
            body = orjson.dumps({"modules": [{"id": modules[v["version"]], "text_base": base,
                                              "text_size": rec.text_hi - rec.text_lo}],
                                 "samples": samples})
            out.append(Batch(spec["plugin"], v["version"], pod, w0, body, len(samples)))
    return out


def load_profile_history(svc: Any, root: Path, now: float, labels: dict[str, str]) -> dict[str, Any]:
    """Replay ``root/profile-history.json`` into the store; returns counts, errors and the
    recordings it used (the generic profile loader skips those)."""
    from wasmprof.binary.loader import load_module
    from wasmprof.errors import WasmprofError
    out: dict[str, Any] = {"batches": 0, "samples": 0, "errors": [], "used": set()}
    path = root / "profile-history.json"
    if not path.is_file():
        return out
    try:
        spec = orjson.loads(path.read_bytes())
        recordings, modules = {}, {}
        for v in spec["versions"]:
            rec_path = root / "profiles" / v["recording"]
            stem = v["recording"].split(".perf-script", 1)[0]
            pmap = next((root / "profiles").glob(f"{stem}.perf-*.map"))
            run_log = root / "profiles" / f"{stem}.run.log"
            aot = load_module(str(root / "modules" / v["module"]))
            offset0 = min(f.text_offset for f in aot.functions
                          if not f.imported and f.text_offset is not None)
            recordings[v["version"]] = read_recording(
                rec_path.read_bytes(), pmap.read_bytes(),
                run_log.read_text() if run_log.is_file() else "", offset0)
            modules[v["version"]] = v["module"].rsplit(".", 1)[0]
            out["used"] |= {rec_path.name, pmap.name}
        batches = history_batches(spec, recordings, modules, now)
    except (OSError, KeyError, TypeError, ValueError, StopIteration, WasmprofError) as e:
        out["errors"].append(f"profile-history.json: {type(e).__name__}: {e}")
        return out
    extra = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    for b in batches:
        try:
            svc.profiles.ingest(b.body, fmt="agent-json", aux=None, plugin=b.plugin,
                                version=b.version, labels={**labels, **extra, "pod": b.pod},
                                name=f"agent batch {b.pod}")
        except WasmprofError as e:
            out["errors"].append(str(e))
            continue
        out["batches"] += 1
        out["samples"] += b.samples
    return out

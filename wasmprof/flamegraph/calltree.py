"""Call tree with self/total weights per frame, built from a SymbolizedProfile.

Nodes are keyed by (label, native) under their parent: the default *function* granularity of
flame graphs. Each node remembers how resolved it was (worst status seen, a reason), its
module and file, whether it was inlined, and a ``lines`` histogram ((file, line) → weight)
so outputs can show "fib.c:12 (60%)" without splitting the graph per line.

Identical stacks are aggregated before insertion, so building costs one tree walk per
distinct stack, not per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from wasmprof.model import Frame, FrameStatus
from wasmprof.profiles import SymbolizedProfile, SymbolizedSample, frame_label, sample_group

_STATUS_RANK = {FrameStatus.EXACT: 0, FrameStatus.FUNCTION_ONLY: 1,
                FrameStatus.INDEX_ONLY: 2, FrameStatus.UNKNOWN: 3}


@dataclass(slots=True, eq=False)
class Node:
    name: str
    native: bool = False
    kernel: bool = False
    inlined: bool = False
    module: str | None = None
    file: str | None = None
    status: FrameStatus = FrameStatus.EXACT
    reason: str | None = None
    wasm_index: int | None = None
    self_weight: int = 0
    total: int = 0
    children: dict[tuple[str, bool], Node] = field(default_factory=dict)
    lines: dict[tuple[str | None, int], int] = field(default_factory=dict)

    def sorted_children(self) -> list[Node]:
        return sorted(self.children.values(), key=lambda n: n.name)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        stack = [(depth, self)]
        while stack:
            d, n = stack.pop()
            yield d, n
            stack.extend((d + 1, c) for c in reversed(n.sorted_children()))

    def count_nodes(self) -> int:
        return sum(1 for _ in self.walk())

    @property
    def kind(self) -> str:
        """Color class: kernel, native (host), inlined, wasm or unresolved."""
        if self.native:
            return "kernel" if self.kernel else "native"
        if self.status in (FrameStatus.UNKNOWN, FrameStatus.INDEX_ONLY):
            return "unresolved"
        return "inlined" if self.inlined else "wasm"


@dataclass(slots=True)
class CallTree:
    root: Node
    unit: str = "samples"
    name: str | None = None
    start: float | None = None
    end: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.root.total

    def depth(self) -> int:
        return max(d for d, _ in self.root.walk())


def _touch(node: Node, frame: Frame, weight: int) -> None:
    node.total += weight
    if frame.line is not None:
        k = (frame.file, frame.line)
        node.lines[k] = node.lines.get(k, 0) + weight
    if _STATUS_RANK[frame.status] > _STATUS_RANK[node.status]:
        node.status = frame.status
        node.reason = frame.reason
    elif node.reason is None and frame.reason:
        node.reason = frame.reason


def build_call_tree(samples: Iterable[SymbolizedSample], *, name: str = "all",
                    unit: str = "samples", label: Callable[[Frame], str] = frame_label,
                    group: Callable[[SymbolizedSample], str | None] | None = None) -> CallTree:
    """Root-first tree of ``samples``. ``group`` adds a first level (thread, plugin...)."""
    agg: dict[tuple[int, str | None], list] = {}
    for s in samples:
        g = group(s) if group else None
        k = (id(s.stack), g)
        e = agg.get(k)
        if e is None:
            agg[k] = [s.stack, g, s.count]
        else:
            e[2] += s.count
    root = Node(name=name)
    for stack, g, weight in agg.values():
        root.total += weight
        node = root
        if g is not None:
            key = (g, False)
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = Node(name=g, status=FrameStatus.EXACT,
                                                  reason="group")
            child.total += weight
            node = child
        for frame in reversed(stack):
            lbl = label(frame)
            key = (lbl, frame.native)
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = Node(
                    name=lbl, native=frame.native, kernel=frame.kernel, inlined=frame.inlined,
                    module=frame.module,
                    file=frame.file, status=frame.status, reason=frame.reason,
                    wasm_index=frame.wasm_index)
            elif child.file is None and frame.file:
                child.file = frame.file
            _touch(child, frame, weight)
            node = child
        node.self_weight += weight
    if not agg:
        root.status = FrameStatus.UNKNOWN
    return CallTree(root=root, unit=unit, name=name)


def tree_from_profile(profile: SymbolizedProfile, *, group_by: str | None = None) -> CallTree:
    """``group_by``: None, ``"thread"``, ``"process"`` or a sample label name (e.g.
    ``"plugin"``): see :func:`wasmprof.profiles.sample_group`."""
    group: Callable[[SymbolizedSample], str | None] | None = None
    if group_by:
        def group(s: SymbolizedSample) -> str | None:
            return sample_group(s, group_by)
    tree = build_call_tree(profile.samples, name=profile.name or "all", unit=profile.unit,
                           group=group)
    tree.start, tree.end = profile.start, profile.end
    tree.notes = list(profile.notes)
    return tree


@dataclass(slots=True)
class FunctionStats:
    name: str
    native: bool
    module: str | None
    self_weight: int = 0
    total: int = 0


def function_table(profile: SymbolizedProfile,
                   label: Callable[[Frame], str] = frame_label) -> dict[tuple[str, bool], FunctionStats]:
    """Per function (label, native): self weight (leaf) and total weight (samples whose stack
    holds the function at least once: recursion is counted once per sample)."""
    agg: dict[int, list] = {}
    for s in profile.samples:
        e = agg.get(id(s.stack))
        if e is None:
            agg[id(s.stack)] = [s.stack, s.count]
        else:
            e[1] += s.count
    out: dict[tuple[str, bool], FunctionStats] = {}
    for stack, weight in agg.values():
        seen: set[tuple[str, bool]] = set()
        for i, f in enumerate(stack):
            key = (label(f), f.native)
            st = out.get(key)
            if st is None:
                st = out[key] = FunctionStats(key[0], f.native, f.module)
            if i == 0:
                st.self_weight += weight
            if key not in seen:
                seen.add(key)
                st.total += weight
    return out


def _merge_into(parent: Node, node: Node) -> None:
    """Add ``node``'s subtree under ``parent`` (merging equal keys)."""
    pending = [(parent, node)]
    while pending:
        dst_parent, src = pending.pop()
        key = (src.name, src.native)
        dst = dst_parent.children.get(key)
        if dst is None:
            dst = dst_parent.children[key] = Node(
                name=src.name, native=src.native, kernel=src.kernel, inlined=src.inlined,
                module=src.module,
                file=src.file, status=src.status, reason=src.reason, wasm_index=src.wasm_index)
        dst.total += src.total
        dst.self_weight += src.self_weight
        for k, v in src.lines.items():
            dst.lines[k] = dst.lines.get(k, 0) + v
        if _STATUS_RANK[src.status] > _STATUS_RANK[dst.status]:
            dst.status, dst.reason = src.status, src.reason
        pending.extend((dst, c) for c in src.children.values())


def focus_tree(tree: CallTree, matches: Callable[[str], bool]) -> CallTree:
    """The sub-trees rooted at the outermost frames whose name ``matches``, merged under a
    new root (drill-down into frames that were too narrow to draw)."""
    root = Node(name=f"{tree.root.name} (focused)")
    stack = [tree.root]
    while stack:
        node = stack.pop()
        for child in node.children.values():
            if matches(child.name):
                _merge_into(root, child)
                root.total += child.total
            else:
                stack.append(child)
    out = CallTree(root=root, unit=tree.unit, name=root.name, start=tree.start, end=tree.end,
                   notes=list(tree.notes))
    out.notes.append(f"focused: {root.total:,} of {tree.total:,} {tree.unit} "
                     "pass through the focused frames")
    return out

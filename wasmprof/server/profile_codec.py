"""Compact encodings of the profile store: frame/stack ids and a bucket's (stack, count) pairs.

- :func:`frame_id` / :func:`stack_id`: signed 63-bit ids from a BLAKE2b hash of the content
  (a frame's resolved fields; a stack's frame ids, leaf first), so every replica computes the
  same id for the same content without asking the database.
- :func:`encode_counts` / :func:`decode_counts`: one bucket row's pairs as
  ``b"C1"`` + zlib(n × int64 stack id, sorted | n × uint32 count) (``b"C2"``: uint64 counts
  when one exceeds 2^32). Sorted ids and small counts compress well; decoding is two
  ``numpy.frombuffer`` calls, so a query sums millions of pairs in milliseconds.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import orjson

_MASK = (1 << 63) - 1


def _hash63(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") & _MASK


def frame_id(content: Sequence) -> int:
    """Id of a frame content tuple (JSON-serializable values)."""
    return _hash63(b"F" + orjson.dumps(list(content)))


def pack_ids(ids: Sequence[int]) -> bytes:
    return np.asarray(ids, dtype="<i8").tobytes()


def unpack_ids(data: bytes) -> tuple[int, ...]:
    return tuple(np.frombuffer(data, dtype="<i8").tolist())


def stack_id(frame_ids: Sequence[int]) -> int:
    return _hash63(b"S" + pack_ids(frame_ids))


def encode_counts(counts: Mapping[int, int]) -> bytes:
    ids = np.fromiter(counts.keys(), dtype="<i8", count=len(counts))
    vals = np.fromiter(counts.values(), dtype="<u8", count=len(counts))
    return encode_arrays(ids, vals)


def encode_arrays(ids: np.ndarray, vals: np.ndarray) -> bytes:
    order = np.argsort(ids, kind="stable")
    ids, vals = ids[order].astype("<i8"), vals[order]
    wide = bool(len(vals)) and int(vals.max()) >= 1 << 32
    body = ids.tobytes() + vals.astype("<u8" if wide else "<u4").tobytes()
    return (b"C2" if wide else b"C1") + zlib.compress(body, 1)


def decode_counts(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(stack ids int64, counts int64) of one row."""
    blob = bytes(blob)
    tag, body = blob[:2], zlib.decompress(blob[2:])
    width = 8 if tag == b"C2" else 4
    if tag not in (b"C1", b"C2") or len(body) % (8 + width):
        raise ValueError("damaged profile count row")
    n = len(body) // (8 + width)
    ids = np.frombuffer(body, dtype="<i8", count=n)
    vals = np.frombuffer(body, dtype="<u8" if width == 8 else "<u4", offset=8 * n, count=n)
    return ids, vals.astype(np.int64)


def merge_rows(blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the pairs of several rows: (distinct stack ids, counts)."""
    parts = [decode_counts(b) for b in blobs]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ids = np.concatenate([p[0] for p in parts])
    vals = np.concatenate([p[1] for p in parts])
    return sum_pairs(ids, vals)


def sum_pairs(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the exact int64 sum of their values."""
    if not len(keys):
        return keys.astype(np.int64), vals.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], vals[order].astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(k[1:] != k[:-1]) + 1))
    return k[starts], np.add.reduceat(v, starts)

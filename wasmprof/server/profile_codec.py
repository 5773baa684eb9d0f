"""Compact encodings of the profile store: frame/stack ids and a bucket's (stack, count) pairs.

- :func:`frame_id` / :func:`stack_id`: signed 63-bit ids from a BLAKE2b hash of the content
  (a frame's resolved fields; a stack's frame ids, leaf first), so every replica computes the
  same id for the same content without asking the database.
- :func:`encode_counts` / :func:`decode_many`: one bucket row's pairs as ``b"C3"`` + packed
  (int64 stack id, uint32 count) records (``b"C4"``: uint64 counts); a query joins the
  bytes of all its rows and decodes them with one ``numpy.frombuffer``, so it sums millions
  of pairs in milliseconds.
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


_REC4 = np.dtype([("id", "<i8"), ("n", "<u4")])       # 12 bytes per (stack, count)
_REC8 = np.dtype([("id", "<i8"), ("n", "<u8")])       # counts of 2^32 and more


def encode_counts(counts: Mapping[int, int]) -> bytes:
    ids = np.fromiter(counts.keys(), dtype="<i8", count=len(counts))
    vals = np.fromiter(counts.values(), dtype="<u8", count=len(counts))
    return encode_arrays(ids, vals)


def encode_arrays(ids: np.ndarray, vals: np.ndarray) -> bytes:
    """``b"C3"`` + (int64 stack id, uint32 count) records sorted by id (``b"C4"``: uint64
    counts). Uncompressed on purpose: ids are hashes (zlib saved under 20%) and a query then
    reads any number of rows with one ``frombuffer`` over their joined bytes."""
    order = np.argsort(ids, kind="stable")
    wide = bool(len(vals)) and int(vals.max()) >= 1 << 32
    rec = np.empty(len(ids), dtype=_REC8 if wide else _REC4)
    rec["id"] = ids[order]
    rec["n"] = vals[order]
    return (b"C4" if wide else b"C3") + rec.tobytes()


def decode_many(blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of many rows, concatenated (not summed): (stack ids, counts) as int64."""
    parts: dict[bytes, list[bytes]] = {}
    for b in blobs:
        b = bytes(b)
        parts.setdefault(b[:2], []).append(b[2:])
    ids, vals = [], []
    for tag, payloads in parts.items():
        if tag in (b"C3", b"C4"):
            dt = _REC4 if tag == b"C3" else _REC8
            body = b"".join(payloads)
            if len(body) % dt.itemsize:
                raise ValueError("damaged profile count row")
            rec = np.frombuffer(body, dtype=dt)
            ids.append(rec["id"].astype(np.int64))
            vals.append(rec["n"].astype(np.int64))
        elif tag in (b"C1", b"C2"):                   # zlib-compressed columns (first format)
            width = 8 if tag == b"C2" else 4
            for p in payloads:
                body = zlib.decompress(p)
                if len(body) % (8 + width):
                    raise ValueError("damaged profile count row")
                n = len(body) // (8 + width)
                ids.append(np.frombuffer(body, dtype="<i8", count=n).astype(np.int64))
                vals.append(np.frombuffer(body, dtype="<u8" if width == 8 else "<u4",
                                          offset=8 * n, count=n).astype(np.int64))
        else:
            raise ValueError("damaged profile count row")
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ids), np.concatenate(vals)


def merge_rows(blobs: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Sum the pairs of several rows: (distinct stack ids, counts)."""
    return sum_pairs(*decode_many(blobs))


def sum_pairs(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the exact int64 sum of their values."""
    if not len(keys):
        return keys.astype(np.int64), vals.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], vals[order].astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(k[1:] != k[:-1]) + 1))
    return k[starts], np.add.reduceat(v, starts)

"""Finding copies among a dataset's images: exact duplicates, near duplicates, label conflicts.

Each worker fingerprints the output square it has just made (no second decode): it shrinks it
once to 32x32 RGB and derives from that
- `key`: a BLAKE2 of the 32x32 thumbnail and the decoded size. Images with the same pixels have
  the same key; the few that share a key are decoded again and compared by `pixel_digest`, a
  BLAKE2 of the whole decoded array: equal digests are exact duplicates, the same pixels
  whatever the bytes. (Hashing every full array in the workers cost 0.4 ms per Caltech-sized
  image, a third of the whole per-image work; the 32x32 key costs microseconds.)
- `phash`: a 64-bit DCT perceptual hash: the 2-D DCT of the 32x32 grayscale, and each of the
  8x8 lowest frequencies set to 1 when above their median. Low frequencies are what
  re-encoding, resizing, a few percent of crop and a brightness change leave alone (brightness
  moves only the DC term, which stays above the median).
- `thumb`: the 16x16 RGB thumbnail, to check near-duplicate candidates (below).

Two images are near duplicates when their pHashes differ in at most `NEAR_THRESHOLD` bits and
their 16x16 colour thumbnails, mean removed, correlate at `MIN_CORRELATION` or more. The hash
finds the candidates; the thumbnail check rejects the distinct images whose hashes happen to be
close (look-alikes that share a colour palette and a layout). Groups are transitive
(union-find): if a ~ b and b ~ c, then a, b and c are one group.

Comparing every pair would be quadratic (470 million pairs for Caltech256's 30,607 images).
Instead the 64 bits are cut into `NEAR_THRESHOLD + 1` bands: two hashes within the threshold
differ in at most that many bits, so at least one band is equal in both (pigeonhole), and only
images sharing a band value are compared in full. No pair within the threshold is missed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from preprocessing.image_io import BadImage, decode_file

HASH_NAME = "pHash (64-bit DCT of 32x32 grayscale)"
# Measured on 3 x 2,000 generated photos (tests/helpers.py photo_like, 20 shared palettes per
# set) with 3 x 200 planted copies of each kind, output size 256: JPEG quality 60 differs in
# <= 6 bits, half size <= 8, brightness +15 <= 12, 1.5% cropped per side <= 12 (2% per side:
# 99th percentile 10-12, a few up to 16 and missed); every copy's thumbnail correlates at
# >= 0.946. Of the 6 million distinct pairs, 231 are within 12 bits; none of them correlates
# above 0.937.
NEAR_THRESHOLD = 12  # bits out of 64
MIN_CORRELATION = 0.945
THUMB = 16  # thumbnail side in pixels

EXACT = "exact"
NEAR = "near"


def pixel_digest(pixels: np.ndarray) -> bytes:
    """16 bytes that are equal exactly when two decoded arrays hold the same pixels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).data)
    return h.digest()


def file_digest(path: str, size: int) -> bytes | None:
    """`pixel_digest` of a file decoded as for a `size` output; None if it no longer decodes."""
    try:
        return pixel_digest(decode_file(path, size)[0])
    except BadImage:
        return None


def shrink(pixels: np.ndarray) -> np.ndarray:
    """The 32x32 RGB uint8 image every other fingerprint is taken from."""
    # INTER_AREA averages every source pixel, so the result does not depend on the input size.
    return cv2.resize(pixels, (32, 32), interpolation=cv2.INTER_AREA)


def phash(small: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of a `shrink`-ed RGB image, as an int."""
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    low = cv2.dct(gray)[:8, :8].ravel()
    middle = np.partition(low, (31, 32))  # the median of 64 values, 10x cheaper than np.median
    bits = low > (middle[31] + middle[32]) / 2
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def thumbnail(small: np.ndarray) -> np.ndarray:
    """The THUMB x THUMB RGB uint8 thumbnail of a `shrink`-ed image (checks candidates)."""
    return cv2.resize(small, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two thumbnails with their means removed (a brightness shift cancels)."""
    x = a.astype(np.float32).ravel()
    y = b.astype(np.float32).ravel()
    x -= x.mean()
    y -= y.mean()
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    # Two flat thumbnails (a blank image and its copy) have no pattern to compare: equal means
    # the same flat colour up to a brightness shift.
    return float(x @ y) / norm if norm > 0 else float(np.array_equal(x, y))


@dataclass(frozen=True)
class Fingerprint:
    """What the audit keeps of one image (about 800 bytes)."""

    key: bytes
    phash: int
    thumb: np.ndarray
    size: tuple[int, int]  # (stored pixels, file bytes): the largest is a group's reference


def fingerprint(square: np.ndarray, shape: tuple, size: tuple[int, int]) -> Fingerprint:
    """The audit's fingerprint of one image.

    Args:
        square: the cropped, resized square written to the dataset (all images are compared
            at one size).
        shape: the shape of the array as decoded (part of the key: exact copies share it).
        size: (pixels the file stores, its bytes): what decides which copy is the largest.
    """
    small = shrink(square)
    key = hashlib.blake2b(repr(tuple(shape)).encode() + small.tobytes(), digest_size=16)
    return Fingerprint(
        key=key.digest(),
        phash=phash(small),
        thumb=thumbnail(small),
        size=(int(size[0]), int(size[1])),
    )


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return (a ^ b).bit_count()


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving keeps trees flat
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _bands(threshold: int) -> list[tuple[int, int]]:
    """(shift, mask) of `threshold + 1` contiguous bands covering the 64 bits."""
    count = threshold + 1
    edges = [round(64 * k / count) for k in range(count + 1)]
    return [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:], strict=False)]


def near_pairs(hashes: list[int], threshold: int = NEAR_THRESHOLD) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most `threshold` bits, without comparing
    every pair (see the module docstring)."""
    if not 0 <= threshold < 64:
        raise ValueError(f"threshold must be in 0..63, got {threshold}")
    values = np.array(hashes, dtype=np.uint64)
    pairs: set[tuple[int, int]] = set()
    for shift, mask in _bands(threshold):
        keys = (values >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            if end - start < 2:
                continue
            members = order[start:end]
            block = values[members]
            distance = np.bitwise_count(block[:, None] ^ block[None, :])
            for a, b in zip(*np.nonzero(np.triu(distance <= threshold, k=1)), strict=True):
                i, j = int(members[a]), int(members[b])
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


@dataclass(frozen=True)
class Group:
    """Images that are copies of one another.

    Attributes:
        members: indices into the audited images, the reference first (the most pixels, then
            the most bytes: the one `--dedupe` keeps), then in index order.
        distances: pHash bits between each member and the reference (0 for the reference).
        exact: for each member, whether its pixels equal the reference's.
    """

    members: tuple[int, ...]
    distances: tuple[int, ...]
    exact: tuple[bool, ...]

    @property
    def kind(self) -> str:
        """`exact` when every member has the reference's pixels, else `near`."""
        return EXACT if all(self.exact) else NEAR


def find_groups(
    prints: list[Fingerprint],
    digest_of: Callable[[int], bytes | None],
    threshold: int = NEAR_THRESHOLD,
) -> list[Group]:
    """Groups the audited images into copies of one another (only groups of two or more).

    Args:
        prints: the `fingerprint` of each image.
        digest_of: index -> `pixel_digest` of that image decoded again (None if it no longer
            decodes); called only for images that share a `key` with another.
        threshold: the most pHash bits two near duplicates may differ in.

    Returns:
        Groups, largest first (ties: lowest member index first).
    """
    n = len(prints)
    hashes = [p.phash for p in prints]
    sizes = [p.size for p in prints]
    sets = _UnionFind(n)
    by_key = defaultdict(list)
    for i, p in enumerate(prints):
        by_key[p.key].append(i)
    digests: dict[int, bytes | None] = {}
    copy = set()  # exact copies of an earlier image: left out of the near search
    for indices in by_key.values():
        if len(indices) < 2:
            continue
        first: dict[bytes, int] = {}
        for i in indices:
            digests[i] = digest_of(i)
            if digests[i] is not None:
                sets.union(first.setdefault(digests[i], i), i)
                if first[digests[i]] != i:
                    copy.add(i)
    unique = [i for i in range(n) if i not in copy]
    for a, b in near_pairs([hashes[i] for i in unique], threshold):
        i, j = unique[a], unique[b]
        if correlation(prints[i].thumb, prints[j].thumb) >= MIN_CORRELATION:
            sets.union(i, j)
    members = defaultdict(list)
    for i in range(n):
        members[sets.find(i)].append(i)
    groups = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        ref = max(indices, key=lambda i: (sizes[i], -i))
        ordered = [ref] + [i for i in indices if i != ref]
        groups.append(
            Group(
                members=tuple(ordered),
                distances=tuple(hamming(hashes[ref], hashes[i]) for i in ordered),
                exact=tuple(
                    digests.get(i) is not None and digests.get(i) == digests.get(ref)
                    for i in ordered
                ),
            )
        )
    groups.sort(key=lambda g: (-len(g.members), min(g.members)))
    return groups


@dataclass
class Audit:
    """The audit of one set of images: which are copies, and where the copies went.

    Attributes:
        files: each image's name as reported (relative path).
        paths: each image's file, for the pictures.
        classes: each image's class label.
        splits: `train`, `val`, or "" for an image left out (`notes` says why).
        groups: `find_groups` over the images.
        notes: index -> why that image was left out.
    """

    files: list[str]
    paths: list[str]
    classes: list[str]
    splits: list[str]
    groups: list[Group]
    notes: dict[int, str]

    def spans_classes(self, group: Group) -> bool:
        """Whether the group's copies are filed under two or more classes (a label conflict)."""
        return len({self.classes[i] for i in group.members}) > 1

    def across_split(self, group: Group) -> bool:
        """Whether copies of the group are in both train and val (leakage)."""
        return {"train", "val"} <= {self.splits[i] for i in group.members}

    def counts(self) -> dict:
        """The audit's numbers, as `audit.json` and a run's `dataset.json` keep them."""
        per_class: dict[str, int] = {}
        for label, split in zip(self.classes, self.splits, strict=True):
            if split:
                per_class[label] = per_class.get(label, 0) + 1
        kinds = {}
        for kind in (EXACT, NEAR):
            groups = [g for g in self.groups if g.kind == kind]
            kinds[kind] = {
                "groups": len(groups),
                "files": sum(len(g.members) for g in groups),
                "span_classes": sum(self.spans_classes(g) for g in groups),
                "across_split": sum(self.across_split(g) for g in groups),
            }
        left_out: dict[str, int] = {}
        for note in self.notes.values():
            left_out[note] = left_out.get(note, 0) + 1
        least = min(per_class.values(), default=0)
        return {
            "hash": HASH_NAME,
            "near_threshold_bits": NEAR_THRESHOLD,
            "min_correlation": MIN_CORRELATION,
            "images": len(self.files),
            "exact_duplicates": kinds[EXACT],
            "near_duplicates": kinds[NEAR],
            "left_out": left_out,
            "images_per_class": per_class,
            "imbalance": round(max(per_class.values()) / least, 3) if least else None,
        }

    def lines(self) -> list[str]:
        """The summary for the log: one line per finding kind, or one line when all is clean."""
        counts = self.counts()
        n = counts["images"]
        if n < 2:
            return [f"audit: {n} image{'s' if n != 1 else ''}, nothing to compare"]
        lines = []
        if not self.groups:
            lines.append(
                f"audit: no exact or near duplicates among {n} images ({HASH_NAME}, at most "
                f"{NEAR_THRESHOLD} bits apart)"
            )
        for name in (EXACT, NEAR):
            c = counts[f"{name}_duplicates"]
            if c["groups"]:
                lines.append(
                    f"audit: {c['groups']} {name}-duplicate groups ({c['files']} files), "
                    f"{c['span_classes']} span two or more classes, {c['across_split']} left "
                    "across the split"
                )
        for note, count in sorted(counts["left_out"].items()):
            lines.append(f"audit: left out {count} files: {note}")
        per_class = counts["images_per_class"]
        if per_class:
            lines.append(
                f"audit: {len(per_class)} classes of {min(per_class.values())} to "
                f"{max(per_class.values())} images (imbalance {counts['imbalance']:.1f}x)"
            )
        return lines

"""The seed project's preprocessing, serial: what `keras-googlenet preprocess` is compared with.

For every file of every class folder: `cv2.imread`, the centred square, `cv2.resize` to the
output size with INTER_AREA, `cv2.imwrite` under a uuid name. No format sniffing, no EXIF,
no skipped-file bookkeeping, no mean: the least a preprocessor can do.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


def run(input_dir: Path, output_dir: Path, size: int = 256) -> dict:
    """Preprocesses `input_dir` into `output_dir`; returns images written and seconds."""
    import cv2

    cv2.setNumThreads(1)  # serial, as the seed ran it
    start = time.perf_counter()
    written = 0
    output_dir.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            img = cv2.imread(str(path))
            if img is None:
                continue
            h, w = img.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            img = img[top : top + side, left : left + side]
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(output_dir / f"{uuid.uuid4().hex}.jpg"), img)
            written += 1
    return {"images": written, "seconds": time.perf_counter() - start, "pid": os.getpid()}

"""The seed project's input pipeline in torch: what the tf.data training pipeline is compared with.

A `torch.utils.data.DataLoader` over the processed folder's train.csv, 2 worker processes, each
image read with `cv2.imread` (BGR to RGB), augmented with albumentations (RandomCrop 224,
HorizontalFlip), turned into a float CHW tensor, batched by the default collate.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path


def measure(root: Path, batches: int, warmup: int, batch_size: int, workers: int = 2) -> dict:
    """Images/s of `batches` batches after `warmup` untimed ones (workers already started)."""
    import albumentations as A
    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(1)  # the loader's processes are the parallelism, as in the seed

    with open(root / "train.csv", newline="") as f:
        rows = [(root / "train" / r["image"], int(r["class"])) for r in csv.DictReader(f)]
    augment = A.Compose([A.RandomCrop(224, 224), A.HorizontalFlip(p=0.5)])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            path, label = rows[i]
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            image = augment(image=image)["image"]
            tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
            return tensor, label

    loader = torch.utils.data.DataLoader(
        Images(),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=True,
    )
    it = _forever(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    seconds = time.perf_counter() - start
    return {"images_per_second": batches * batch_size / seconds, "torch": torch.__version__}


def _forever(loader):
    while True:
        yield from loader

"""torchvision's GoogLeNet training step: what `model.fit`'s step is compared with.

`torchvision.models.googlenet(aux_logits=True, init_weights=True)` (batch norm in every conv
block, both auxiliary heads), SGD with Nesterov momentum and weight decay, the loss
main + 0.3 * (aux1 + aux2) as in the paper, random uint8 images normalized on the fly like our
model's first layer does. bf16: `torch.autocast("cpu", torch.bfloat16)` around the forward pass.
Each step is timed on its own after the warm-up; the figure is images over their summed time.
"""

from __future__ import annotations

import os
import time


def measure(size: int, bf16: bool, batch: int, steps: int, warmup: int, classes: int = 256):
    """Images/s of `steps` training steps after `warmup` untimed ones."""
    import contextlib

    import torch
    import torchvision

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    model = torchvision.models.googlenet(
        num_classes=classes, aux_logits=True, init_weights=True, transform_input=False
    )
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=2e-4
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    mean = torch.tensor([124.0, 117.0, 104.0]).view(1, 3, 1, 1)

    def step():
        x = (images.float() - mean) / 64.0
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            out = model(x)
            loss = loss_fn(out.logits, labels) + 0.3 * (
                loss_fn(out.aux_logits1, labels) + loss_fn(out.aux_logits2, labels)
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(warmup):
        step()
    seconds = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds += time.perf_counter() - start
    return {"images_per_second": steps * batch / seconds, "torch": torch.__version__}

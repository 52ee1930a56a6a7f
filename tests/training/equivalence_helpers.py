"""Short SGD runs of the tiny presets, one process or two (gloo on 127.0.0.1), for the equivalence tests.

A run follows ``examples/train.py``'s step: ``accelerator.prepare`` (DDP with two processes), the micro-batches of
a step under their loss normaliser (``refseg.training.distributed.loss_normalized_batches``),
``accelerator.accumulate`` and ``accelerator.backward``. Dropout is off, so every difference between two runs is
the math of the world size or of the accumulation.
"""

from __future__ import annotations

import os
import socket
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

MODEL_TYPES = ("instalign", "instancevg", "metris", "presence_plurality", "rela")
SIZE, LENGTH, STEPS, LR = 64, 7, 3, 0.01
INSTANCES = (1, 0, 3, 2, 1, 2, 0, 1, 3, 1, 2, 1)  # per sample: no-target, single and multi-target samples


def build_model(model_type: str) -> nn.Module:
    """The seeded tiny preset with every dropout and drop-path probability at 0, in training mode."""
    from transformers import AutoConfig, AutoModel

    import refseg  # noqa: F401  (registers the Auto classes)

    config = type(AutoConfig.for_model(model_type)).preset("tiny")
    torch.manual_seed(0)
    model = AutoModel.from_config(config)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, float) and ("drop" in name.lower() or isinstance(module, nn.Dropout)):
                setattr(module, name, 0.0)
    return model.train()


def make_samples(model_type: str, count: int) -> list[dict]:
    """``count`` fixed samples with 0-3 rectangle instances each (and a letterboxed image every third one)."""
    generator = torch.Generator().manual_seed(7)
    samples = []
    for index in range(count):
        n = INSTANCES[index % len(INSTANCES)]
        masks = torch.zeros(n, SIZE, SIZE)
        for k in range(n):
            y, x = torch.randint(0, SIZE - 16, (2,), generator=generator).tolist()
            h, w = torch.randint(6, 16, (2,), generator=generator).tolist()
            masks[k, y : y + h, x : x + w] = 1.0
        ids = torch.randint(5, 100, (LENGTH,), generator=generator)
        ids[0] = 0 if model_type in ("instalign", "instancevg") else 2
        attention = torch.ones(LENGTH, dtype=torch.long)
        attention[LENGTH - index % 3 :] = 0
        sample = {
            "pixel_values": torch.randn(3, SIZE, SIZE, generator=generator),
            "input_ids": ids,
            "attention_mask": attention,
            "mask_labels": masks,
        }
        if model_type == "presence_plurality":
            pixel_mask = torch.ones(SIZE, SIZE, dtype=torch.long)
            if index % 3 == 2:
                pixel_mask[:, 48:] = 0
                sample["mask_labels"] = masks * pixel_mask
            sample["pixel_mask"] = pixel_mask
        samples.append(sample)
    return samples


def collate(samples: list[dict]) -> dict:
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "mask_labels"}
    batch["mask_labels"] = [s["mask_labels"] for s in samples]
    return batch


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().double() for p in model.parameters()])


def train(
    model_type: str,
    per_device_batch: int,
    accumulation: int = 1,
    normalize: bool = True,
    sync_batchnorm: bool = True,
    freeze_batchnorm: bool = False,
    steps: int = STEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` SGD steps; returns the flat parameters before and after (the same on every process).

    ``normalize=False, sync_batchnorm=False`` is the step before refseg's global normalisation;
    ``freeze_batchnorm`` runs BatchNorm on its running statistics (the batch then never couples samples).
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from torch.utils.data import DataLoader

    from refseg.training.distributed import loss_normalized_batches
    from refseg.training.sync_batchnorm import convert_sync_batchnorm, has_batchnorm

    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=accumulation,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    model = build_model(model_type)
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    if sync_batchnorm and accelerator.num_processes > 1 and has_batchnorm(model):
        model = convert_sync_batchnorm(model, accelerator.device.type)
    start = flat_parameters(model)
    global_batch = per_device_batch * accumulation * accelerator.num_processes
    samples = make_samples(model_type, global_batch * steps)
    loader = DataLoader(samples, batch_size=per_device_batch, shuffle=False, collate_fn=collate)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    config = accelerator.unwrap_model(model).config
    pairs = (
        loss_normalized_batches(loader, config, accelerator, accumulation)
        if normalize
        else ((batch, None) for batch in loader)
    )
    for batch, normalizer in pairs:
        with accelerator.accumulate(model), normalizer or nullcontext():
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    return start, flat_parameters(accelerator.unwrap_model(model))


def relative_difference(start: torch.Tensor, reference: torch.Tensor, other: torch.Tensor) -> float:
    """``|other - reference| / |reference - start|``: the gap as a share of the run's movement."""
    return float((other - reference).norm() / (reference - start).norm())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batchnorm_statistics(batch: int = 4, channels: int = 3) -> dict[str, torch.Tensor]:
    """A ``CrossProcessBatchNorm`` in training on this process's share of a fixed ``(batch, C, 5, 5)`` input.

    Returns the full batch's output and input gradient (gathered over the processes), the running statistics
    and the affine gradients (summed over the processes, as DDP would before averaging).
    """
    from refseg.training.sync_batchnorm import CrossProcessBatchNorm

    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(batch, channels, 5, 5, generator=generator) * 3 + 1
    weights = torch.randn(batch, channels, 5, 5, generator=generator)
    torch.manual_seed(0)
    norm = CrossProcessBatchNorm(channels).train()
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    share = batch // world
    x = inputs[rank * share : (rank + 1) * share].clone().requires_grad_(True)
    out = norm(x)
    (out * weights[rank * share : (rank + 1) * share]).sum().backward()
    grads = torch.cat([norm.weight.grad, norm.bias.grad])
    outs, input_grads = [out.detach()], [x.grad]
    if world > 1:
        torch.distributed.all_reduce(grads)
        outs = [torch.empty_like(out) for _ in range(world)]
        input_grads = [torch.empty_like(x) for _ in range(world)]
        torch.distributed.all_gather(outs, out.detach().contiguous())
        torch.distributed.all_gather(input_grads, x.grad.contiguous())
    return {
        "output": torch.cat(outs),
        "input_grad": torch.cat(input_grads),
        "affine_grad": grads,
        "running_mean": norm.running_mean.clone(),
        "running_var": norm.running_var.clone(),
    }


def _worker(rank: int, world_size: int, port: int, out: str, runs: list[tuple[str, dict]]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")  # Accelerate takes the initialised group over
    from accelerate.state import AcceleratorState

    results = {}
    for name, kwargs in runs:
        if name == "batchnorm":
            results[name] = batchnorm_statistics(**kwargs)
            continue
        results[name] = train(**kwargs)
        AcceleratorState._reset_state(reset_partial_state=False)
    if rank == 0:
        torch.save(results, out)


def train_two_processes(runs: dict[str, dict], out: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each ``runs`` entry (``train`` keyword arguments; the entry ``"batchnorm"``: ``batchnorm_statistics``)
    in two gloo processes; their rank-0 results."""
    torch.multiprocessing.spawn(
        _worker, args=(2, free_port(), str(out), list(runs.items())), nprocs=2, join=True
    )
    return torch.load(out)

"""Yardsticks the performance benchmarks share: a float32 matmul's GFLOP/s and an extractor's FLOPs per sample."""

from __future__ import annotations

import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import ExtractorModule


def now(device: torch.device) -> float:
    """perf_counter once the device's queued work is done (a GPU runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def matmul_gflops(device: torch.device, n: int, rounds: int, seconds: float = 0.4) -> list[float]:
    """float32 (n x n) @ (n x n) GFLOP/s, `rounds` times: products repeated for about `seconds` each."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b  # warm-up
    rates = []
    for _ in range(rounds):
        reps, start = 0, now(device)
        while reps < 3 or now(device) - start < seconds:
            a @ b
            reps += 1
        rates.append(2 * n**3 * reps / (now(device) - start) / 1e9)
    return rates


def flops_per_sample(module: ExtractorModule, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per sample of `module` on `batch`, counted on the CPU: they do not
    depend on the device.

    oneDNN is off while counting: its fused LSTM kernel (mkldnn_rnn_layer) has no FLOP formula,
    whereas PyTorch's own LSTM runs as matmuls that FlopCounterMode counts.
    """
    x, y = batch[0].cpu(), batch[1].cpu()  # a WindowBatch (day batches, augmentation) carries more fields
    module = module.cpu()
    counter = FlopCounterMode(display=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags warn "TF32 acceleration on top of oneDNN ..."
        with torch.backends.mkldnn.flags(enabled=False):
            with counter, torch.inference_mode():
                module.net.eval()(x)
            forward = counter.get_total_flops()
            with counter:  # FlopCounterMode counts from zero on each entry
                module.loss(module.net.train()(x).logits, y).backward()
    return forward / len(x), counter.get_total_flops() / len(x)

#!/usr/bin/python3
"""PyTorch side of bench/step: one training step of the Fashion-MNIST CNN and MLP
(tools/fmnist_parity.py's models, examples/fmnist.c's names), QAT (fused, fbgemm
qconfig, prepared, observers and fake-quant on) and float, at batches 64 and 256 and
at 1 and 2 threads.

A step is examples/fmnist.c's: forward, cross-entropy (mean), zero_grad (in place,
set_to_none=False, as qg_sgd_zero_grad), backward, SGD step (lr 0.05, momentum 0.9,
weight decay 1e-4, no Nesterov; the lr schedule is left out). Each cell starts from a
fresh model and optimizer (torch.manual_seed(0)) on one fixed batch of N(0, 1) images
and random labels, warms up 5 steps, then times each step; it stops early once its
timed steps pass 4 s (at least 3 steps), which keeps the run to about 2 minutes.

Prints one machine-readable line per cell,
    step <model> <mode> <batch> <threads> <median ms> <best ms>
and notes as lines starting with '#'.

usage: python3 bench/torch_step.py [iterations]
"""
import math
import os
import sys
import time

try:
    import torch
    import torch.ao.quantization as tq
    import torch.nn.functional as F
except ImportError as e:  # python3-torch not installed
    print("# PyTorch not available: %s" % e)
    sys.exit(0)

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from fmnist_parity import CNN, MLP  # noqa: E402

WARMUP, BUDGET_S, MIN_ITERS = 5, 4.0, 3


def build(cls, mode):
    torch.manual_seed(0)
    m = cls().train()
    if mode == "qat":
        m = tq.fuse_modules_qat(m, m.groups)
        m.qconfig = tq.get_default_qat_qconfig("fbgemm")
        tq.prepare_qat(m, inplace=True)
    return m.train()


def bench(cls, mode, batch, iters):
    m = build(cls, mode)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)

    def step():
        loss = F.cross_entropy(m(x), y)  # reduction="mean"
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return loss

    for _ in range(WARMUP):
        step()
    ts = []
    while len(ts) < iters and (len(ts) < MIN_ITERS or sum(ts) < BUDGET_S):
        t0 = time.perf_counter()
        loss = step()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return 1e3 * ts[len(ts) // 2], 1e3 * ts[0], len(ts), loss.item()


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print("# torch %s, mkldnn %s, quantized engines %s" % (
        torch.__version__, torch.backends.mkldnn.is_available(), ",".join(torch.backends.quantized.supported_engines)))
    for kind, cls in (("cnn", CNN), ("mlp", MLP)):
        for mode in ("qat", "float"):
            for batch in (64, 256):
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    med, best, n, loss = bench(cls, mode, batch, iters)
                    if n < iters:
                        print("# %s %s %d %d: %d of %d steps (time budget)" % (kind, mode, batch, threads, n, iters))
                    if not math.isfinite(loss):
                        print("# %s %s %d %d: the loss is %s" % (kind, mode, batch, threads, loss))
                    print("step %s %s %d %d %.4f %.4f" % (kind, mode, batch, threads, med, best), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch side of bench/conv: conv2d forward + backward (input, weight and bias
gradients) on the Fashion-MNIST CNN's shapes, at 1 and 2 threads.

Prints one machine-readable line per cell,
    conv <shape index> <bias 0/1> <threads> <median ms> <best ms>
and notes as lines starting with '#'. Shapes and their order match bench/conv.c.

usage: python3 bench/conv_torch.py [warmup iters]
"""
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # python3-torch not installed
    print("# PyTorch not available: %s" % e)
    sys.exit(0)

SHAPES = [  # (N, C, K, H, W, k), as in bench/conv.c
    (64, 1, 32, 28, 28, 3),
    (64, 32, 64, 14, 14, 3),
]


def bench(shape, bias, warmup, iters):
    n, c, k, h, w, ks = shape
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=g, requires_grad=True)
    wt = torch.randn(k, c, ks, ks, generator=g, requires_grad=True)
    b = torch.randn(k, generator=g, requires_grad=True) if bias else None
    dy = torch.randn(n, k, h, w, generator=g)
    times = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        y = F.conv2d(x, wt, b, padding=ks // 2)
        y.backward(dy)
        t1 = time.perf_counter()
        # gradients accumulate as in qgrad's bench (leaf .grad += ...)
        if it >= warmup:
            times.append((t1 - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    warmup = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    print("# torch %s, mkldnn %s" % (torch.__version__, torch.backends.mkldnn.is_available()))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for si, shape in enumerate(SHAPES):
            for bias in (0, 1):
                med, best = bench(shape, bias, warmup, iters)
                print("conv %d %d %d %.4f %.4f" % (si, bias, threads, med, best), flush=True)


if __name__ == "__main__":
    main()

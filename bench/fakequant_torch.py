#!/usr/bin/python3
"""PyTorch's side of bench/fakequant.c: torch.fused_moving_avg_obs_fake_quant on the
cases the C program passes, timed the same way.

    /usr/bin/python3 bench/fakequant_torch.py THREADS MIN_SECONDS CASE...

CASE is name:d0,d1,...:mode with mode "pt" (per tensor, quint8 affine [0, 127] as
FusedMovingAvgObsFakeQuantize's default activation) or "pc" (per channel along axis 0,
qint8 symmetric [-128, 127], the default weight). Prints one line per case,

    case NAME FWD_GBS FWDBWD_GBS

GB/s = bytes of x (4 per element) per second: forward alone (x requires grad, as in
training, so the mask is computed), and forward + backward. Each figure is the best of
5 batches of at least MIN_SECONDS. Prints "note: ..." and exits 0 when PyTorch is
missing."""
import sys
import time

try:
    import torch
except ImportError:
    print("note: PyTorch is not installed for %s; no reference column" % sys.executable)
    sys.exit(0)


def best_rate(fn, nbytes, min_seconds):
    fn()  # warm up (the first call also initialises the running min/max)
    best = 0.0
    for _ in range(5):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn()
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        best = max(best, nbytes * reps / dt / 1e9)
    return best


def main():
    threads, min_seconds = int(sys.argv[1]), float(sys.argv[2])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    for spec in sys.argv[3:]:
        name, dims, mode = spec.split(":")
        shape = [int(d) for d in dims.split(",")]
        x = torch.randn(*shape, generator=g).requires_grad_()
        on = torch.tensor([1], dtype=torch.long)
        if mode == "pc":
            mn, mx = torch.tensor([]), torch.tensor([])
            args = (-128, 127, 0, True, True)
        else:
            mn, mx = torch.tensor(float("inf")), torch.tensor(float("-inf"))
            args = (0, 127, 0, False, False)
        sc, zp = torch.tensor([1.0]), torch.tensor([0], dtype=torch.int32)
        gout = torch.ones_like(x)

        def fwd():
            return torch.fused_moving_avg_obs_fake_quant(x, on, on, mn, mx, sc, zp, 0.01, *args)

        def fwd_bwd():
            fwd().backward(gout)

        nbytes = 4 * x.numel()
        print("case %s %.3f %.3f" % (name, best_rate(fwd, nbytes, min_seconds), best_rate(fwd_bwd, nbytes, min_seconds)),
              flush=True)


if __name__ == "__main__":
    main()

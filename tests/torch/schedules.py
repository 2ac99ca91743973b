"""Compares nnc's learning-rate schedules with torch.optim.lr_scheduler over 100 steps.

Usage: schedules.py <test_schedule executable>. The executable prints nnc's rates
(tests/unit/test_schedule.c, --print and --plateau); this script steps PyTorch's schedulers the
way a training loop does (the rate used by step t is read before scheduler.step()) and compares
each rate with |nnc - torch| <= 1e-6 |torch| + 1e-9. Exit 77 (skipped) when torch is missing,
except under CI=true, where that is a failure.
"""
import os
import subprocess
import sys

try:
    import torch
except ImportError:
    if os.environ.get("CI") == "true":
        print("torch is missing (scripts/setup installs python3-torch)")
        sys.exit(1)
    print("skipped: torch is not installed")
    sys.exit(77)

import warnings

from torch.optim import lr_scheduler as S

# SequentialLR steps its schedulers with an explicit epoch, which torch 1.13 warns about.
warnings.filterwarnings("ignore", category=UserWarning, module="torch.optim.lr_scheduler")

STEPS = 100


def optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def torch_rates(lr, make, steps_per_epoch=0):
    opt = optimizer(lr)
    sched = make(opt)
    rates = []
    for t in range(STEPS):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if not steps_per_epoch or (t + 1) % steps_per_epoch == 0:
            sched.step()
    return rates


def torch_plateau(lr, kwargs, losses):
    opt = optimizer(lr)
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    rates = []
    for loss in losses:
        sched.step(loss)
        rates.append(opt.param_groups[0]["lr"])
    return rates


def nnc_rates(exe, args):
    out = subprocess.run([exe] + [str(a) for a in args], check=True, capture_output=True, text=True)
    return [float(x) for x in out.stdout.split()]


def sequential(first, then, milestone):
    return lambda o: S.SequentialLR(o, [first(o), then(o)], milestones=[milestone])


CASES = [
    # (spec, lr, total_steps, steps_per_epoch, torch scheduler factory)
    ("step(step_size=7, gamma=0.5)", 0.1, 0, 0, lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    ("step(step_size=3, gamma=0.1, per_epoch=1)", 1.0, 0, 10,
     lambda o: S.StepLR(o, step_size=3, gamma=0.1)),
    ("exponential(gamma=0.97)", 0.05, 0, 0, lambda o: S.ExponentialLR(o, gamma=0.97)),
    ("cosine", 0.1, STEPS, 0, lambda o: S.CosineAnnealingLR(o, T_max=STEPS)),
    ("cosine(eta_min=0.001)", 0.1, STEPS, 0, lambda o: S.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001)),
    ("warmup(warmup=10, start_factor=0.1)", 0.1, 0, 0,
     lambda o: S.LinearLR(o, start_factor=0.1, total_iters=10)),
    ("cosine(warmup=10, start_factor=0.1)", 0.1, STEPS, 0,
     sequential(lambda o: S.LinearLR(o, start_factor=0.1, total_iters=10),
                lambda o: S.CosineAnnealingLR(o, T_max=STEPS - 10), 10)),
    ("exponential(warmup=5, start_factor=0.2, gamma=0.9)", 1.0, 0, 0,
     sequential(lambda o: S.LinearLR(o, start_factor=0.2, total_iters=5),
                lambda o: S.ExponentialLR(o, gamma=0.9), 5)),
]

# Losses that improve, stall, improve by less than the 1e-4 threshold, and stall again.
LOSSES = [1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.69995, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5]
LOSSES += [0.5] * 20 + [0.4 - 0.01 * i for i in range(10)] + [0.31] * 25
PLATEAUS = [
    ("plateau", 0.1, {}),
    ("plateau(patience=2, factor=0.5, cooldown=1, min_lr=0.01)", 0.1,
     {"patience": 2, "factor": 0.5, "cooldown": 1, "min_lr": 0.01}),
    ("plateau(patience=0, threshold=0.1)", 1.0, {"patience": 0, "threshold": 0.1}),
]


def compare(name, got, want):
    if len(got) != len(want):
        print(f"FAIL {name}: {len(got)} rates, torch has {len(want)}")
        return False
    worst = max(range(len(want)), key=lambda i: abs(got[i] - want[i]) - 1e-6 * abs(want[i]))
    ok = all(abs(g - w) <= 1e-6 * abs(w) + 1e-9 for g, w in zip(got, want))
    print(f"{'ok  ' if ok else 'FAIL'} {name}: worst at {worst}: nnc {got[worst]:.9g} torch {want[worst]:.9g}")
    return ok


def main():
    exe = sys.argv[1]
    ok = True
    for spec, lr, total, spe, make in CASES:
        want = torch_rates(lr, make, spe)
        got = nnc_rates(exe, ["--print", spec, lr, STEPS, total, spe])
        ok &= compare(spec, got, want)
    for spec, lr, kwargs in PLATEAUS:
        want = torch_plateau(lr, kwargs, LOSSES)
        got = nnc_rates(exe, ["--plateau", spec, lr] + LOSSES)
        ok &= compare(spec, got, want)
    print("torch", torch.__version__, "all match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

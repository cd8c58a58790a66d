#!/usr/bin/env python3
"""Reference values for tests/test_optim.cpp, computed with PyTorch.

Runs torch.optim's SGD, Adam, AdamW and RMSprop, torch.nn.utils' gradient clipping and
torch.optim.lr_scheduler's schedules on fixed inputs and prints C++ literals. The output
replaces the block between the "BEGIN GENERATED" and "END GENERATED" markers in
tests/test_optim.cpp. Rerun with any PyTorch that has these APIs (the values in the test
came from Debian's python3-torch, PyTorch 1.13):

    python3 tests/data/optim_reference.py > reference.inc

Every optimiser case uses the same two parameters and five steps of fixed gradients.
Parameter B has no gradient at step 3 (p.grad = None), so the step is skipped for it, as
in PyTorch. Cases run in float64 (and two in float32, suffixed "_f32"). Each optimiser is
used in its default single-tensor ("for-loop") implementation.
"""
import math

import torch

P0 = {"A": [0.5, -1.25, 2.0], "B": [-0.3, 0.8]}
# One gradient per step and parameter; None = no gradient that step (the step skips it).
GRADS = [
    {"A": [0.9, -0.4, 2.5], "B": [1.2, 0.0]},
    {"A": [-1.5, 0.3, 0.1], "B": [0.4, 0.9]},
    {"A": [0.2, -0.05, -3.0], "B": None},
    {"A": [0.05, 0.6, 0.4], "B": [-2.0, 0.1]},
    {"A": [-0.7, -0.2, 0.02], "B": [0.3, -0.3]},
]

# name -> (constructor, keyword arguments). The C++ test builds the same cases by name.
CASES = [
    ("sgd", torch.optim.SGD, dict(lr=0.1)),
    ("sgd_momentum", torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    ("sgd_momentum_dampening", torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("sgd_nesterov", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd_nesterov_wd", torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("sgd_wd_maximize", torch.optim.SGD, dict(lr=0.1, weight_decay=0.2, maximize=True)),
    ("adam", torch.optim.Adam, dict(lr=0.01)),
    ("adam_betas_wd", torch.optim.Adam, dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1)),
    ("adam_amsgrad", torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True)),
    ("adam_amsgrad_wd_maximize", torch.optim.Adam,
     dict(lr=0.02, weight_decay=0.3, amsgrad=True, maximize=True)),
    ("adamw", torch.optim.AdamW, dict(lr=0.01)),
    ("adamw_amsgrad", torch.optim.AdamW, dict(lr=0.05, betas=(0.7, 0.95), weight_decay=0.5, amsgrad=True)),
    ("rmsprop", torch.optim.RMSprop, dict(lr=0.01)),
    ("rmsprop_centered", torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, centered=True)),
    ("rmsprop_momentum", torch.optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    ("rmsprop_centered_momentum_wd", torch.optim.RMSprop,
     dict(lr=0.02, alpha=0.8, eps=1e-4, weight_decay=0.1, momentum=0.5, centered=True)),
    ("rmsprop_maximize", torch.optim.RMSprop, dict(lr=0.01, maximize=True)),
    ("sgd_nesterov_f32", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("adam_amsgrad_f32", torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True)),
]


def lit(x):
    """A C++ double literal that parses back to exactly x (repr is round-trip exact)."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(float(x))
    return r if ("." in r or "e" in r or "n" in r) else r + ".0"


def lits(xs):
    return "{" + ", ".join(lit(x) for x in xs) + "}"


def run_case(name, ctor, kwargs):
    dtype = torch.float32 if name.endswith("_f32") else torch.float64
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in P0.items()}
    opt = ctor([params["A"], params["B"]], **kwargs)
    steps = []
    for g in GRADS:
        for k, p in params.items():
            p.grad = None if g[k] is None else torch.tensor(g[k], dtype=dtype)
        opt.step()
        steps.append([x for k in ("A", "B") for x in params[k].detach().tolist()])
    state = []
    for k in ("A", "B"):
        st = opt.state[params[k]]
        for key in sorted(st):
            if st[key] is None:  # SGD without momentum stores momentum_buffer = None
                continue
            if key == "step":
                state.append((k, key, [float(st[key])]))
            else:
                state.append((k, key, st[key].tolist()))
    return steps, state


def print_optimisers():
    print("// Parameters A (3 elements) and B (2) after each of the 5 steps, flattened as A then B,")
    print("// and the final per-parameter state (PyTorch's state keys and values).")
    print("const TorchCase kTorchCases[] = {")
    for name, ctor, kwargs in CASES:
        steps, state = run_case(name, ctor, kwargs)
        print(f'    {{"{name}",')
        print("     {" + ",\n      ".join(lits(s) for s in steps) + "},")
        print("     {" + ",\n      ".join(f'{{{"0" if k == "A" else "1"}, "{key}", {lits(v)}}}'
                                          for k, key, v in state) + "}},")
    print("};")


def print_clipping():
    grads = {"A": [0.9, -0.4, 2.5], "B": [1.2, -3.1]}
    rows = []
    for label, fn in [
        ("norm2_max1", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 1.0)),
        ("norm2_max100", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 100.0)),
        ("norm_inf_max2", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 2.0, norm_type=math.inf)),
        ("norm1_max3", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 3.0, norm_type=1.0)),
        ("norm3_max0.5", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.5, norm_type=3.0)),
        ("value_1", lambda ps: torch.nn.utils.clip_grad_value_(ps, 1.0)),
    ]:
        ps = [torch.zeros(len(grads[k]), dtype=torch.float64, requires_grad=True) for k in ("A", "B")]
        for p, k in zip(ps, ("A", "B")):
            p.grad = torch.tensor(grads[k], dtype=torch.float64)
        total = fn(ps)
        total = float("nan") if total is None else float(total)
        after = [x for p in ps for x in p.grad.tolist()]
        rows.append((label, total, after))
    print("// Gradients A = " + lits(grads["A"]) + ", B = " + lits(grads["B"]) +
          ": the returned total norm (nan for clip_grad_value_) and the gradients after.")
    print("const TorchClip kTorchClip[] = {")
    for label, total, after in rows:
        tot = "std::numeric_limits<double>::quiet_NaN()" if math.isnan(total) else lit(total)
        print(f'    {{"{label}", {tot}, {lits(after)}}},')
    print("};")


def schedule_lrs(make, base_lr=0.1, steps=10):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    scheds = make(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        for s in scheds:
            s.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def print_schedules():
    S = torch.optim.lr_scheduler
    rows = [
        ("step", lambda o: [S.StepLR(o, step_size=3, gamma=0.5)]),
        ("exponential", lambda o: [S.ExponentialLR(o, gamma=0.9)]),
        ("cosine", lambda o: [S.CosineAnnealingLR(o, T_max=4, eta_min=0.001)]),
        ("cosine_long", lambda o: [S.CosineAnnealingLR(o, T_max=10)]),
        ("linear", lambda o: [S.LinearLR(o, start_factor=0.25, total_iters=4)]),
        ("linear_end", lambda o: [S.LinearLR(o, start_factor=0.5, end_factor=0.1, total_iters=6)]),
        ("linear_then_exponential", lambda o: [S.LinearLR(o, start_factor=0.1, total_iters=3),
                                               S.ExponentialLR(o, gamma=0.9)]),
    ]
    print("// The learning rate after construction and after each of 10 steps, base lr 0.1.")
    print("const TorchSchedule kTorchSchedules[] = {")
    for label, make in rows:
        print(f'    {{"{label}", {lits(schedule_lrs(make))}}},')
    print("};")


if __name__ == "__main__":
    print(f"// ---- BEGIN GENERATED by tests/data/optim_reference.py with PyTorch {torch.__version__} ----")
    print_optimisers()
    print_clipping()
    print_schedules()
    print("// ---- END GENERATED ----")

"""PyTorch side of bench/compare: the same workloads as bench_core.cpp, timed the same way.

Run with Debian's interpreter and PyTorch at its fastest on this kind of machine:
    OPENBLAS_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx512 /usr/bin/python3 bench/torch_bench.py
Prints one line per workload: name, median milliseconds over the repetitions.
TORCH_BENCH_FILTER=REGEX times only the workloads whose names match.
"""
import json
import os
import re
import statistics
import sys
import time

import torch

torch.set_num_threads(2)
REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def timed(fn, reps=REPS, warmup=3):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


WANTED = re.compile(os.environ.get("TORCH_BENCH_FILTER", "."))
results = {}


def measure(name, fn, **timing):
    if WANTED.search(name):
        results[name] = timed(fn, **timing)


def chain(a, x, b):
    return torch.nn.functional.softplus(a * x + b) * torch.sigmoid(x) - torch.log1p(torch.exp(-torch.abs(x)))


n = 1 << 22
g = torch.Generator().manual_seed(1)
a, x, b = (torch.randn(n, generator=g) for _ in range(3))
measure("BM_ChainForward", lambda: chain(a, x, b))

ag, xg, bg = (t.clone().requires_grad_() for t in (a, x, b))
seed = torch.ones(n)


def chain_fb():
    y = chain(ag, xg, bg)
    y.backward(seed)
    ag.grad = xg.grad = bg.grad = None


measure("BM_ChainForwardBackward", chain_fb)

for i, (M, K, N) in enumerate([(64, 784, 512), (256, 784, 1024), (1024, 1024, 1024)]):
    A = torch.randn(M, K, requires_grad=True)
    B = torch.randn(K, N, requires_grad=True)
    G = torch.randn(M, N)

    def mm():
        C = A @ B
        C.backward(G)
        A.grad = B.grad = None

    measure(f"BM_MatmulForwardBackward/{i}", mm)

for i, (xs, ws) in enumerate([((64, 1, 28, 28), (64, 1, 3, 3)), ((64, 64, 14, 14), (128, 64, 3, 3))]):
    X = torch.randn(*xs, requires_grad=True)
    W = torch.randn(*ws, requires_grad=True)
    bias = torch.randn(ws[0], requires_grad=True)

    def conv():
        y = torch.nn.functional.conv2d(X, W, bias, stride=2, padding=1)
        y.backward(torch.ones_like(y))
        X.grad = W.grad = bias.grad = None

    measure(f"BM_Conv2dForwardBackward/{i}", conv)

# Autodiff bookkeeping: 10k scalar multiplications recorded, then backward.
s = torch.tensor(1.0, requires_grad=True)


def scalar_chain_record():
    y = s
    for _ in range(10000):
        y = y * 1.0001
    return y


def scalar_chain_backward():
    scalar_chain_record().backward()
    s.grad = None


# The noise of one SGLD step on 64 MNIST images.
measure("BM_NormalDraws", lambda: torch.randn(64, 784), reps=max(REPS, 50), warmup=10)

measure("BM_ScalarChainRecord/10000", scalar_chain_record, reps=5)
measure("BM_ScalarChainRecordAndBackward/10000", scalar_chain_backward, reps=5)

# examples/gan_mlp_mnist's training step (examples/common/mlp_gan.hpp), written as fast
# as PyTorch allows: real and fake in one D pass, D frozen during the G step, and the
# multi-tensor (foreach) Adam, about 9% faster here than the default per-parameter loop.
torch.manual_seed(0)
nn = torch.nn
G = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784), nn.Tanh())
D = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
real = torch.rand(64, 784) * 2 - 1
sign = torch.cat([torch.ones(64, 1), -torch.ones(64, 1)])
softplus = torch.nn.functional.softplus


def gan_step():
    z = torch.randn(64, 64)
    fake = G(z)
    logits = D(torch.cat([real, fake.detach()]))
    loss_d = 2 * softplus(-sign * logits).mean()
    opt_D.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_D.step()
    D.requires_grad_(False)
    loss_g = softplus(-D(fake)).mean()
    opt_G.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_G.step()
    D.requires_grad_(True)
    return loss_d.item(), loss_g.item()


measure("BM_GanMlpStep", gan_step, reps=max(REPS, 30), warmup=10)

# Latent-space Langevin and MALA through the same nets (bench_models.cpp): chains z [64, 64]
# on U(z) = -D(G(z)) + |z|^2/2, the gradient at the current state kept from the last step,
# the nets' parameters frozen (autograd.grad then computes only what reaches z).
G.requires_grad_(False)
D.requires_grad_(False)
EPS = 0.01


def latent_energy_grad(z):
    z = z.detach().requires_grad_(True)
    u = -D(G(z)).squeeze(1) + 0.5 * (z * z).sum(1)
    (gz,) = torch.autograd.grad(u.sum(), z)
    return u.detach(), gz


chain_z = torch.randn(64, 64)
chain = list((chain_z,) + latent_energy_grad(chain_z))


def langevin_step():
    z, _, gz = chain
    zp = z - EPS / 2 * gz + EPS ** 0.5 * torch.randn_like(z)
    chain[:] = (zp,) + latent_energy_grad(zp)


def mala_step():
    z, u, gz = chain
    zp = z - EPS / 2 * gz + EPS ** 0.5 * torch.randn_like(z)
    up, gp = latent_energy_grad(zp)
    fwd = (zp - z + EPS / 2 * gz).square().sum(1)
    bwd = (z - zp + EPS / 2 * gp).square().sum(1)
    accept = torch.rand(64).log() < u - up - (bwd - fwd) / (2 * EPS)
    chain[:] = (torch.where(accept[:, None], zp, z), torch.where(accept, up, u), torch.where(accept[:, None], gp, gz))


measure("BM_LatentLangevinStep", langevin_step, reps=max(REPS, 50), warmup=10)
measure("BM_LatentMalaStep", mala_step, reps=max(REPS, 50), warmup=10)

# Data-space SGLD on 64 images 1x28x28 with a small conv energy (bench_models.cpp).
torch.manual_seed(0)
E = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),
                  nn.Flatten(), nn.Linear(64 * 7 * 7, 1))
E.requires_grad_(False)
sgld_x = [torch.rand(64, 1, 28, 28)]


def sgld_step():
    x = sgld_x[0].requires_grad_(True)
    (gx,) = torch.autograd.grad(E(x).sum(), x)
    sgld_x[0] = (x.detach() - 1.0 * gx + 0.01 * torch.randn_like(x)).clamp_(0, 1)


measure("BM_SgldConvStep", sgld_step, reps=max(REPS, 30), warmup=5)

# examples/ebgan_mnist's training step (examples/common/ebgan_nets.hpp): PyTorch-GAN's EBGAN
# conv auto-encoder energy and conv generator, batch 64, 12.7 GFLOP. Real and fake go through
# the auto-encoder in separate passes (it has BatchNorm), the auto-encoder is frozen in the
# G step, foreach Adam as above. BatchNorm eps at PyTorch's default, as ember_examples::Ebgan.
torch.manual_seed(0)
eb_G = nn.Sequential(nn.Linear(62, 128 * 7 * 7), nn.Unflatten(1, (128, 7, 7)),
                     nn.Upsample(scale_factor=2), nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),
                     nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2),
                     nn.Conv2d(32, 1, 3, 1, 1), nn.Tanh())
eb_enc = nn.Sequential(nn.Conv2d(1, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 14 * 14, 32))
eb_dec = nn.Sequential(nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 64 * 14 * 14), nn.BatchNorm1d(64 * 14 * 14),
                       nn.ReLU(), nn.Unflatten(1, (64, 14, 14)), nn.Upsample(scale_factor=2), nn.Conv2d(64, 1, 3, 1, 1))
eb_D = list(eb_enc.parameters()) + list(eb_dec.parameters())
eb_opt_G = torch.optim.Adam(eb_G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
eb_opt_D = torch.optim.Adam(eb_D, lr=2e-4, betas=(0.5, 0.999), foreach=True)
eb_real = torch.rand(64, 1, 28, 28) * 2 - 1
eb_offdiag = 1 - torch.eye(64)


def eb_energy(x):
    code = eb_enc(x)
    return (eb_dec(code) - x).square().flatten(1).mean(1), code


def eb_pulling_away(s):
    u = s / s.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return ((u @ u.t()).square() * eb_offdiag).sum() / (64 * 63)


def ebgan_step():
    fake = eb_G(torch.randn(64, 62))
    d_real, _ = eb_energy(eb_real)
    d_fake, _ = eb_energy(fake.detach())
    loss_d = d_real.mean() + torch.relu(1.0 - d_fake).mean()
    eb_opt_D.zero_grad(set_to_none=True)
    loss_d.backward()
    eb_opt_D.step()
    for p in eb_D:
        p.requires_grad_(False)
    d_gen, code = eb_energy(fake)
    loss_g = d_gen.mean() + 0.1 * eb_pulling_away(code)
    eb_opt_G.zero_grad(set_to_none=True)
    loss_g.backward()
    eb_opt_G.step()
    for p in eb_D:
        p.requires_grad_(True)
    return loss_d.item(), loss_g.item()


measure("BM_EbganStep", ebgan_step, reps=min(REPS, 7), warmup=2)

print(json.dumps(results))

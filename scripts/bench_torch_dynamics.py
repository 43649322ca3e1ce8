#!/usr/bin/env python3
"""PyTorch CPU side of the per-iteration cost of the eight dynamics (benches/protocol.rs,
lines `iteration:<key>`, is noiselab's side).

Same workload as the Rust bench: LeNet in float32 on the first --images (1,200) training
images of the real FashionMNIST subset (x / 255), a GD phase of --gd-steps (300) full-batch
steps of η = 0.1, then each dynamics in noiselab's order for --iterations (30) iterations
(SGD ten times as many)
from that θ with η = 0.07 and the released code's conventions that the bench sets
(`NoiseConfig { units: Gradient, covariance: Minibatches, batch_size: 20 }`, GLD leading
not norm-matched; src/config.rs `NoiseConfig::spec`, docs/METHOD.md §2 Table 1).
Only each dynamics' loop is timed; the GD phase is timed separately, as in the Rust bench.

θ starts from tests/fixtures/lenet_reference.f64 (PyTorch's default LeNet init, seed 0,
as scripts/bench_torch.py), not noiselab's `init_theta(seed 0)`: same architecture and
parameter order, different numbers. Each iteration t (counted from 0) of every dynamics:

  gd           θ ← θ − η·g0, g0 the full-batch gradient (one forward + backward).
  sgd          θ ← θ − η·g_B, B 20 indices drawn without replacement afresh every step.
  gld_const    θ ← θ − η·g0 + n, n = η·σ·ξ, σ = 1e-3 (gradient units), ξ ~ N(0, I_D).
  gld_dynamic  n = s·ξ, s² = η²·Tr C_m / D, C_m re-estimated every iteration.
  gld_diag     n = s·√(diag C_m)⊙ξ, s² = η²·Tr C_m / Tr diag C_m (= η²), every iteration.
  gld_leading  n = η·Σ_j √γ_j·ξ_j·v_j, (γ_j, v_j) the top 20 of C_m by the Gram trick
               (eigh of the 60 × 60 c·A·Aᵀ, v = Aᵀe/‖Aᵀe‖), refreshed when t % 10 == 0.
  gld_hessian  n = s·Σ_j √λ_j·ξ_j·u_j, (λ_j, u_j) the top 20 of H (negative λ clamped to 0),
               s² = η²·Tr C_m / Σ_j λ_j, both refreshed when t % 10 == 0.
  gld_eig1     the same with the top 1 eigenpair of H.

C_m is noiselab's `minibatches` estimate: the K = ⌊N/20⌋ (60) minibatch gradients of a
fresh random partition, centred on their mean: rows A, C_m = c·AᵀA, c = 1/(K − 1); its K × D
gradient matrix is built by torch.func (vmap of grad over the minibatches) or by a loop of
K backward passes, whichever is faster here (best of 3 at θ_GD, printed). As in
noiselab (src/estimators/point.rs `AtPoint::gradient`), when C_m was estimated at this
iteration from a partition of all N samples, g0 is the mean of its K batch gradients
instead of another forward + backward (GLD dynamic and diag every iteration, GLD
leading and Hessian at their refreshes).

Hessian eigenpairs: scipy's ARPACK eigsh (which="LA", float32, tol 1e-5, noiselab's HVP
tolerance for f32) on exact HVPs by double backprop through one retained gradient graph
per refresh. The start vector follows noiselab's warm start (src/estimators/lanczos.rs):
a ±1 vector at the first refresh, then the sum of the previous eigenvectors plus 1e-3 of a
normalised ±1 vector. Tolerances are not quite the same test: ARPACK asks every Ritz
residual to be ≤ tol·|λ_j|, noiselab's Lanczos ≤ tol·|λ_1| (looser for the small λ_j) and
stops at 120 (k = 20) or 60 (k = 1) HVPs.

Prints `iteration:<key>\t<seconds per iteration>\t<detail>` lines (and the GD phase's
`gd_phase_iteration` line) as the Rust bench does; the detail gives the mean realised
‖n_t‖ of the GLD variants and the HVPs the Hessian refreshes took.

    python3 scripts/bench_torch_dynamics.py [--data DIR] [--images N] [--threads T]
        [--iterations I] [--gd-steps S] [--only KEY[,KEY]] [--json FILE]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from torch_lenet import LeNet, read_idx  # noqa: E402

KEYS = ["gd", "sgd", "gld_const", "gld_dynamic", "gld_diag", "gld_leading", "gld_hessian", "gld_eig1"]
GD_ETA = 0.1
ETA = 0.07
BATCH = 20
SIGMA = 1e-3
TOP_K = 20
HVP_TOL = 1e-5
REFRESH = {"gld_const": 1, "gld_dynamic": 1, "gld_diag": 1, "gld_leading": 10, "gld_hessian": 10, "gld_eig1": 10}


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


class Problem:
    """LeNet's mean cross-entropy on (x, y); θ is one flat float32 tensor that the model's
    parameters are views of, so an in-place update of θ is the model's update."""

    def __init__(self, x, y, theta):
        self.x, self.y = x, y
        self.model = LeNet()
        self.theta = theta.clone()
        self.params = list(self.model.parameters())
        self.names = [name for name, _ in self.model.named_parameters()]
        offset = 0
        for p in self.params:
            p.data = self.theta[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        self.dim = offset
        self.batch_gradients = self.batch_gradients_vmap

    def gradient(self):
        """g0, the full-batch gradient."""
        return flat(torch.autograd.grad(F.cross_entropy(self.model(self.x), self.y), self.params))

    def batch_gradient(self, idx):
        """g_B of the samples idx."""
        return flat(torch.autograd.grad(F.cross_entropy(self.model(self.x[idx]), self.y[idx]), self.params))

    def batch_gradients_vmap(self, order):
        """K × D matrix of the minibatch gradients of the K rows of order (vmap of grad)."""
        params = {name: p.detach() for name, p in zip(self.names, self.params)}

        def batch_loss(p, xb, yb):
            return F.cross_entropy(functional_call(self.model, p, (xb,)), yb)

        g = vmap(grad(batch_loss), in_dims=(None, 0, 0))(params, self.x[order], self.y[order])
        return torch.cat([g[name].reshape(len(order), -1) for name in self.names], 1)

    def batch_gradients_loop(self, order):
        """The same matrix by one backward pass per minibatch."""
        return torch.stack([self.batch_gradient(idx) for idx in order])

    def hessian_top(self, k, start):
        """(values, K × D vectors, HVPs used) of the k largest eigenpairs of H by ARPACK on
        double-backprop HVPs through one retained gradient graph."""
        g = flat(torch.autograd.grad(F.cross_entropy(self.model(self.x), self.y), self.params, create_graph=True))
        count = [0]

        def matvec(u):
            count[0] += 1
            v = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32).reshape(-1))
            return flat(torch.autograd.grad(g, self.params, grad_outputs=v, retain_graph=True)).numpy()

        op = sla.LinearOperator((self.dim, self.dim), matvec=matvec, dtype=np.float32)
        values, vectors = sla.eigsh(op, k=k, which="LA", tol=HVP_TOL, v0=start.numpy())
        order = np.argsort(values)[::-1].copy()
        return torch.from_numpy(values[order].copy()), torch.from_numpy(vectors[:, order].T.copy()), count[0]


def read_subset(data, n):
    (_, rows, cols), pixels = read_idx(data / "train-images-idx3-ubyte.gz", 0x803, 3)
    (_,), labels = read_idx(data / "train-labels-idx1-ubyte.gz", 0x801, 1)
    x = torch.tensor(pixels[: n * rows * cols].reshape(n, 1, rows, cols) / 255.0, dtype=torch.float32)
    return x, torch.tensor(labels[:n].astype(np.int64))


class Noise:
    """The GLD noise of one dynamics along one trajectory: its factor (shape and scale),
    recomputed when t % refresh == 0, and a fresh draw every iteration."""

    def __init__(self, key, problem, gen):
        self.key, self.problem, self.gen = key, problem, gen
        self.refresh = REFRESH[key]
        self.scale = 0.0
        self.diag_sqrt = None
        self.values = None
        self.vectors = None
        self.hvps = 0
        self.norms = []
        self.partition_mean = None

    def centred_minibatch_gradients(self):
        """(A, c): C_m = c·AᵀA from the K minibatch gradients of a fresh random partition."""
        n = len(self.problem.y)
        k = n // BATCH
        order = torch.randperm(n, generator=self.gen)[: k * BATCH].reshape(k, BATCH)
        g = self.problem.batch_gradients(order)
        mean = g.mean(0)
        if k * BATCH == n:
            self.partition_mean = mean
        return g - mean, 1.0 / (k - 1)

    def rademacher(self):
        return torch.randint(0, 2, (self.problem.dim,), generator=self.gen).float() * 2 - 1

    def update_factor(self):
        d = self.problem.dim
        if self.key == "gld_const":
            self.scale = ETA * SIGMA
        elif self.key == "gld_dynamic":
            a, c = self.centred_minibatch_gradients()
            self.scale = ETA * (c * a.pow(2).sum().item() / d) ** 0.5
        elif self.key == "gld_diag":
            a, c = self.centred_minibatch_gradients()
            self.diag_sqrt = (c * a.pow(2).sum(0)).sqrt()
            # Norm-matched: s² = η²·Tr C_m / Tr diag C_m, and the two traces are one.
            self.scale = ETA
        elif self.key == "gld_leading":
            a, c = self.centred_minibatch_gradients()
            values, e = torch.linalg.eigh(c * (a @ a.T))
            values, e = values.flip(0), e.flip(1)
            keep = min(TOP_K, int((values > max(values[0].item(), 0.0) * 1e-12).sum()))
            w = e[:, :keep].T @ a
            self.values = values[:keep]
            self.vectors = w / w.norm(dim=1, keepdim=True)
            self.scale = ETA
        else:
            k = TOP_K if self.key == "gld_hessian" else 1
            start = self.rademacher()
            if self.vectors is not None:
                start = self.vectors.sum(0) + 1e-3 * start / start.norm()
            values, self.vectors, hvps = self.problem.hessian_top(k, start)
            self.values = values.clamp(min=0.0)
            self.hvps += hvps
            a, c = self.centred_minibatch_gradients()
            shape_trace = self.values.sum().item()
            tr_cm = c * a.pow(2).sum().item()
            self.scale = ETA * (tr_cm / shape_trace) ** 0.5 if shape_trace > 0 else 0.0

    def take_gradient(self):
        """g0 when this iteration's C_m came from a partition of all samples, else None."""
        g, self.partition_mean = self.partition_mean, None
        return g

    def sample(self, t):
        if t % self.refresh == 0:
            self.update_factor()
        if self.values is not None:
            xi = torch.randn(len(self.values), generator=self.gen)
            n = (self.scale * self.values.sqrt() * xi) @ self.vectors
        else:
            n = self.scale * torch.randn(self.problem.dim, generator=self.gen)
            if self.diag_sqrt is not None:
                n *= self.diag_sqrt
        self.norms.append(n.norm().item())
        return n


def run(problem, theta_gd, key, iterations):
    """Seconds per iteration and a detail line for `iterations` iterations of `key`."""
    problem.theta.copy_(theta_gd)
    gen = torch.Generator().manual_seed(KEYS.index(key))
    noise = Noise(key, problem, gen) if key in REFRESH else None
    n_samples = len(problem.y)
    start = time.perf_counter()
    for t in range(iterations):
        # The noise first, as noiselab's engine: its partition may give g0.
        n = noise.sample(t) if noise else None
        g = noise.take_gradient() if noise else None
        if key == "sgd":
            g = problem.batch_gradient(torch.randperm(n_samples, generator=gen)[:BATCH])
        elif g is None:
            g = problem.gradient()
        with torch.no_grad():
            problem.theta.sub_(ETA * g)
            if n is not None:
                problem.theta.add_(n)
    per = (time.perf_counter() - start) / iterations
    assert torch.isfinite(problem.theta).all(), f"{key} diverged"
    detail = f"{iterations} iterations"
    if noise:
        detail += f", mean ‖n‖ {np.mean(noise.norms):.3e}"
        if noise.hvps:
            detail += f", {noise.hvps} HVPs, λ1 {noise.values[0].item():.4e}"
    return per, detail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/fashion-mnist-subset")
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--gd-steps", type=int, default=300)
    ap.add_argument("--only", default=",".join(KEYS), help="comma-separated dynamics keys")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    only = args.only.split(",")
    unknown = [k for k in only if k not in KEYS]
    if unknown:
        ap.error(f"unknown dynamics {', '.join(unknown)} (keys: {', '.join(KEYS)})")
    if args.images // BATCH < 2:
        ap.error(f"--images must give at least 2 minibatches of {BATCH}")
    torch.set_num_threads(args.threads)
    x, y = read_subset(args.data, args.images)
    blob = np.fromfile(ROOT / "tests/fixtures/lenet_reference.f64", dtype="<f8")
    problem = Problem(x, y, torch.tensor(blob[:11330], dtype=torch.float32))
    print(f"# torch {torch.__version__}, LeNet, {len(y)} training images, float32, {torch.get_num_threads()} threads")
    result = {"torch": torch.__version__, "images": len(y), "threads": torch.get_num_threads(),
              "gd_steps": args.gd_steps, "iterations": args.iterations, "iteration": {}}

    start = time.perf_counter()
    for _ in range(args.gd_steps):
        g = problem.gradient()
        with torch.no_grad():
            problem.theta.sub_(GD_ETA * g)
    if args.gd_steps:
        gd_iter = (time.perf_counter() - start) / args.gd_steps
        result["gd_phase_iteration"] = gd_iter
        print(f"gd_phase_iteration\t{gd_iter:.4f}\t{args.gd_steps} steps of η = {GD_ETA}")
    theta_gd = problem.theta.clone()

    k = len(y) // BATCH
    order = torch.arange(k * BATCH).reshape(k, BATCH)
    timings = {}
    for name, method in [("vmap", problem.batch_gradients_vmap), ("loop", problem.batch_gradients_loop)]:
        method(order)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            method(order)
            times.append(time.perf_counter() - start)
        timings[name] = min(times)
    fastest = min(timings, key=timings.get)
    problem.batch_gradients = getattr(problem, f"batch_gradients_{fastest}")
    result["minibatch_gradients"] = fastest
    measured = ", ".join(f"{name} {t:.4f} s" for name, t in timings.items())
    print(f"# {k}×{BATCH} minibatch gradient matrix: {measured}, using {fastest}")

    for key in KEYS:
        if key not in only:
            continue
        # SGD's iteration is a few milliseconds: ten times as many iterations time it
        # (as benches/protocol.rs does).
        per, detail = run(problem, theta_gd, key, args.iterations * (10 if key == "sgd" else 1))
        result["iteration"][key] = {"seconds": per, "detail": detail}
        print(f"iteration:{key}\t{per:.4f}\t{detail}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

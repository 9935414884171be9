"""The seed's diffusion-model dashboard: a small diffusion model learns the swiss roll.

Run a server first (``streamvis_server --rest_port 8080 --bokeh_port 5006 --run_name swissroll``),
then ``python examples/swissroll.py localhost:8080``, and open http://localhost:5006.
``--synthetic`` sends a stand-in whose numbers only drift (the benchmarks' workload: the same
calls, no training).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamvis import Client, ColorSpec, GridSpec

LAYOUT = dict(
    mu=(0, 0, 1, 1),
    rbf_centers=(0, 1, 1, 1),
    mu_alphas=(0, 2, 1, 1),
    loss=(1, 0, 1, 1),
    sigma_alphas=(1, 1, 1, 1),
    psamples=(1, 2, 1, 1),
)
TIMESTEPS, HIDDEN, BATCH, SAMPLES = 40, 16, 400, 1000  # the stand-in's sizes


def swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of a 2-D swiss roll, shape (n, 2)."""
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    return (np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 4).astype(np.float32)


class Synthetic:
    """Stand-in for a diffusion model: parameters that drift toward a target as it 'trains'."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centers = self.rng.normal(size=(HIDDEN, 2)).astype(np.float32)
        self.target = swissroll(HIDDEN, self.rng)
        self.alphas = np.linspace(1.0, 0.02, TIMESTEPS, dtype=np.float32)

    def step(self, step: int) -> dict[str, np.ndarray]:
        """Advance one training step and return the arrays the dashboard shows."""
        rng = self.rng
        self.centers += 0.02 * (self.target - self.centers) + rng.normal(
            0, 0.01, self.centers.shape
        ).astype(np.float32)
        decay = np.exp(-step / 300)
        loss = (self.alphas * (0.2 + decay) + rng.normal(0, 0.02, TIMESTEPS)).astype(np.float32)
        angle = np.linspace(0, np.pi, TIMESTEPS, dtype=np.float32)[:, None] + step / 50
        mu_alphas = np.stack(
            [np.cos(angle) * self.centers[:, 0], np.sin(angle) * self.centers[:, 1]], axis=-1
        )
        sigma_alphas = np.abs(mu_alphas) * self.alphas[:, None, None]
        x = rng.normal(size=(BATCH, 1, 2)).astype(np.float32)
        drift = (self.target[rng.integers(0, HIDDEN, BATCH)][:, None, :] - x) * (1 - self.alphas)[
            None, :, None
        ]
        mu = np.stack(
            [x + 0 * drift, x + 0.3 * drift], axis=-1
        )  # (batch, timestep, spatial, 2 points)
        return dict(
            loss=loss,
            rbf_centers=self.centers.copy(),
            mu_alphas=mu_alphas.astype(np.float32),
            sigma_alphas=sigma_alphas.astype(np.float32),
            mu=mu.astype(np.float32),
        )

    def samples(self) -> np.ndarray:
        """(SAMPLES, TIMESTEPS + 1, 2): noise at step 0 becoming a swiss roll by the last step."""
        clean = swissroll(SAMPLES, self.rng)
        noise = self.rng.normal(size=(SAMPLES, 2)).astype(np.float32)
        w = np.linspace(0, 1, TIMESTEPS + 1, dtype=np.float32)[None, :, None]
        return (1 - w) * noise[:, None, :] + w * clean[:, None, :]


class Adam:
    """Adam, for a dict of numpy parameters."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
        self.lr, self.b1, self.b2, self.n = lr, b1, b2, 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.n += 1
        for k, g in grads.items():
            m = self.m.setdefault(k, np.zeros_like(g))
            v = self.v.setdefault(k, np.zeros_like(g))
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            step = self.lr * (m / (1 - self.b1**self.n))
            params[k] -= step / (np.sqrt(v / (1 - self.b2**self.n)) + 1e-8)


class Diffusion:
    """A denoising diffusion model of the swiss roll, trained as it runs (numpy, a few ms a step).

    Noised points x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t < TIMESTEPS, go through
    radial basis features around HIDDEN (32) learned centers (``rbf_centers``); per timestep,
    one set of weights predicts the noise (``mu_alphas``), another the log spread of what it
    misses (``sigma_alphas``, a Gaussian likelihood). ``loss`` is each timestep's noise error;
    ``mu`` the reverse step each point of a grid takes, per timestep; ``psamples`` points
    drawn from noise through every reverse step.
    """

    HIDDEN, WIDTH, PER_T = 32, 0.5, 64

    def __init__(self, seed: int = 0) -> None:
        self.rng = rng = np.random.default_rng(seed)
        self.betas = np.linspace(1e-3, 0.2, TIMESTEPS)
        self.alphas = 1 - self.betas
        self.abar = np.cumprod(self.alphas)
        h = self.HIDDEN
        self.params = {
            "c": rng.normal(size=(h, 2)) * 1.5,
            "W": np.zeros((TIMESTEPS, h + 1, 2)),  # noise weights, and a bias
            "S": np.zeros((TIMESTEPS, h + 1, 2)),  # log spread weights, and a bias
        }
        self.adam = Adam(0.05)
        grid = np.linspace(-3, 3, 20)
        self.probe = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)  # BATCH points

    def _features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = x[:, None, :] - self.params["c"][None]
        phi = np.exp(-(d * d).sum(-1) / (2 * self.WIDTH**2))
        return np.concatenate([phi, np.ones((len(x), 1))], 1), phi, d

    def _reverse_mean(self, x: np.ndarray, t: int) -> np.ndarray:
        features, _, _ = self._features(x)
        noise = features @ self.params["W"][t]
        return (x - self.betas[t] / np.sqrt(1 - self.abar[t]) * noise) / np.sqrt(self.alphas[t])

    def step(self, step: int) -> dict[str, np.ndarray]:
        """One training step on a fresh batch; the arrays the dashboard shows."""
        p, h, n = self.params, self.HIDDEN, self.PER_T
        x0 = swissroll(TIMESTEPS * n, self.rng).astype(np.float64)
        eps = self.rng.normal(size=x0.shape)
        abar = np.repeat(self.abar, n)[:, None]
        features, phi, d = self._features(np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps)
        f = features.reshape(TIMESTEPS, n, -1)
        miss = np.einsum("tbh,thd->tbd", f, p["W"]) - eps.reshape(TIMESTEPS, n, 2)
        spread = np.einsum("tbh,thd->tbd", f, p["S"])
        g_noise = miss / n  # of the sum over timesteps of the mean squared error
        g_spread = (1 - miss * miss * np.exp(-2 * spread)) / (2 * n)
        g_phi = np.einsum("tbd,thd->tbh", g_noise, p["W"][:, :h])
        g_phi += np.einsum("tbd,thd->tbh", g_spread, p["S"][:, :h])
        grads = {
            "W": np.einsum("tbh,tbd->thd", f, g_noise),
            "S": np.einsum("tbh,tbd->thd", f, g_spread),
            "c": np.einsum("nh,nhk->hk", g_phi.reshape(-1, h) * phi, d) / self.WIDTH**2,
        }
        self.adam.update(p, grads)
        start = np.broadcast_to(self.probe[:, None, :], (len(self.probe), TIMESTEPS, 2))
        end = np.stack([self._reverse_mean(self.probe, t) for t in range(TIMESTEPS)], 1)
        return dict(
            loss=(miss * miss).mean(axis=(1, 2)).astype(np.float32),
            rbf_centers=p["c"].astype(np.float32),
            mu_alphas=p["W"][:, :h].astype(np.float32),
            sigma_alphas=p["S"][:, :h].astype(np.float32),
            mu=np.stack([start, end], -1).astype(np.float32),  # (grid, timestep, xy, 2 ends)
        )

    def samples(self) -> np.ndarray:
        """(SAMPLES, TIMESTEPS + 1, 2): noise at step 0 becoming a swiss roll by the last step."""
        x = self.rng.normal(size=(SAMPLES, 2))
        path = [x]
        for t in range(TIMESTEPS - 1, -1, -1):
            x = self._reverse_mean(x, t)
            if t:
                x = x + np.sqrt(self.betas[t]) * self.rng.normal(size=x.shape)
            path.append(x)
        return np.stack(path, 1).astype(np.float32)


Model = Synthetic | Diffusion


def send_step(client: Client, model: Model, step: int, arrays: dict[str, np.ndarray]) -> None:
    """Send one training step's arrays: the seed's calls, exactly, each at this step."""
    client.set_step(step)
    client.tandem_lines("loss", step, arrays["loss"], "Viridis256")
    client.scatter("rbf_centers", arrays["rbf_centers"], spatial_dim=1, append=False)
    client.scatter(
        "mu_alphas",
        arrays["mu_alphas"],
        spatial_dim=2,
        append=False,
        color=ColorSpec("Viridis256", dim=0),
    )
    client.scatter(
        "sigma_alphas",
        arrays["sigma_alphas"],
        spatial_dim=2,
        append=False,
        color=ColorSpec("Viridis256", 0),
    )
    client.multi_lines(
        "mu", arrays["mu"], line_dims=(0, 1), spatial_dim=2, append=False,
        grid=GridSpec(dim=1, num_columns=8, padding_factor=1.2),
    )  # fmt: skip
    if step % 100 == 0:
        client.scatter(
            "psamples", model.samples(), spatial_dim=2, append=False,
            color=ColorSpec("Viridis256", 1),
            grid=GridSpec(dim=1, num_columns=8, padding_factor=1.2),
        )  # fmt: skip


def run(client: Client, steps: int, delay: float = 0.0, model: Model | None = None) -> None:
    """Train ``model`` (a new Diffusion by default) ``steps`` steps, sending the dashboard
    of each through ``client``."""
    client.set_layout(LAYOUT)
    model = Diffusion() if model is None else model
    for step in range(steps):
        send_step(client, model, step, model.step(step))
        if delay:
            time.sleep(delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "address", nargs="?", default="localhost:8080", help="server ingest host:port"
    )
    parser.add_argument("--run", default="swissroll", help="run name")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between steps")
    parser.add_argument(
        "--synthetic", action="store_true", help="send the stand-in: no training, same calls"
    )
    args = parser.parse_args()
    with Client(args.address, args.run) as client:
        run(client, args.steps, args.delay, Synthetic() if args.synthetic else Diffusion())
        client.flush(timeout=30)


if __name__ == "__main__":
    main()

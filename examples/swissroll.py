"""The seed's diffusion-model dashboard, driven by synthetic data that evolves every step.

Run a server first (``streamvis_server --rest_port 8080 --bokeh_port 5006 --run_name swissroll``),
then ``python examples/swissroll.py localhost:8080``, and open http://localhost:5006.
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
TIMESTEPS, HIDDEN, BATCH, SAMPLES = 40, 16, 400, 1000


def swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of a 2-D swiss roll, shape (n, 2)."""
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    return (np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 4).astype(np.float32)


class Model:
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


def run(client: Client, steps: int, delay: float = 0.0) -> None:
    """Send ``steps`` steps of the dashboard through ``client``."""
    client.set_layout(LAYOUT)
    model = Model()
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
    args = parser.parse_args()
    with Client(args.address, args.run) as client:
        run(client, args.steps, args.delay)
        client.flush(timeout=30)


if __name__ == "__main__":
    main()

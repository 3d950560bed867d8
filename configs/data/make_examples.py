"""Write the two small synthetic data sets the CSV and npz example configs train on (seeded: same files each time).

    python configs/data/make_examples.py

houses.csv: 400 rows of area (m2), rooms, age (years), distance (km) and a price
(thousands) that is a known function of them plus noise, a regression target.
trends.npz: 600 sequences x (N, 24, 2) of two noisy channels whose first
channel rises, falls or stays flat; y (N,) is that class (0, 1, 2).
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def houses(rng: np.random.Generator, n: int = 400) -> str:
    area = rng.uniform(30, 200, n)
    rooms = np.clip(np.round(area / 30 + rng.normal(0, 0.7, n)), 1, 8)
    age = rng.uniform(0, 80, n)
    distance = rng.gamma(2.0, 3.0, n)
    price = 2.0 * area + 15 * rooms - 0.8 * age - 6 * np.sqrt(distance) * 5 + rng.normal(0, 10, n) + 100
    rows = ["area,rooms,age,distance,price"]
    rows += [f"{a:.1f},{r:.0f},{g:.1f},{d:.2f},{p:.1f}" for a, r, g, d, p in zip(area, rooms, age, distance, price)]
    return "\n".join(rows) + "\n"


def trends(rng: np.random.Generator, n: int = 600, steps: int = 24):
    y = rng.integers(0, 3, n)
    slope = np.array([1.0, -1.0, 0.0])[y][:, None] * rng.uniform(0.5, 1.5, (n, 1))
    t = np.linspace(0, 1, steps)[None, :]
    first = slope * t + rng.normal(0, 0.3, (n, steps))
    second = np.sin(2 * np.pi * (t + rng.uniform(0, 1, (n, 1)))) + rng.normal(0, 0.3, (n, steps))
    return np.stack([first, second], axis=-1).astype(np.float32), y


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    (HERE / "houses.csv").write_text(houses(rng))
    x, y = trends(rng)
    np.savez_compressed(HERE / "trends.npz", x=x, y=y)
    print(f"wrote {HERE / 'houses.csv'} and {HERE / 'trends.npz'}")

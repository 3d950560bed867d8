"""Write the README's prediction inputs from the real MNIST test split (netcli's cache; `netcli data fetch mnist`).

    python examples/make_digits.py

- examples/digits/<class>.png: the first test image of each class, 28x28 white ink on black, as MNIST is
- examples/scan.png: test image 0 (a 7) as a scan would be: 112x112, dark ink on a light background
- examples/batch.npy: test images 0-3 as the mnist configs' input, (4, 1, 28, 28) float32 in [0, 1]
"""
from pathlib import Path

import numpy as np
from PIL import Image

from netcli.data.mnist import MNIST

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    x, y = MNIST.arrays()["test_x"], MNIST.arrays()["test_y"]
    (HERE / "digits").mkdir(exist_ok=True)
    for k in range(10):
        Image.fromarray(x[np.flatnonzero(y == k)[0]]).save(HERE / "digits" / f"{k}.png")
    Image.fromarray(255 - x[0]).resize((112, 112), Image.BILINEAR).save(HERE / "scan.png")
    np.save(HERE / "batch.npy", (x[:4, None] / 255).astype(np.float32))

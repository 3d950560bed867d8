"""The playground's prediction round trip: POST a drawing to `netcli ui`, get the probabilities back.

    python benchmarks/ui_playground.py runs/mnist_cnn [--n 200] [--index 0]

Starts the UI's server over the run's runs directory, then sends what the page sends while you
draw: a 280x280 PNG of the drawing pad (here: MNIST test image INDEX, scaled up 10x like the
page's "Load a test image" button draws it), over one kept-alive connection, and times each
answer. Prints the median, 90th percentile and worst round trip, and the server's own share.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a classifier run on MNIST (or runs/<name> for its newest run)")
    ap.add_argument("--n", type=int, default=200, help="timed predictions")
    ap.add_argument("--index", type=int, default=0, help="which test image to draw")
    args = ap.parse_args()

    from netcli.runs import find_run
    from netcli.ui import make_server

    run_dir = find_run(args.run).resolve()
    root = run_dir.parent.parent
    server = make_server(root, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = f"/api/runs/{run_dir.relative_to(root).as_posix()}"
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1])

    def call(method: str, url: str, body: bytes | None = None, kind: str = "application/json") -> dict:
        conn.request(method, url, body, {"Content-Type": kind} if body is not None else {})
        r = conn.getresponse()
        out = json.loads(r.read())
        if r.status != 200:
            raise SystemExit(f"{url}: {r.status} {out.get('error')}")
        return out

    image = np.array(call("GET", f"{path}/test/{args.index}")["image"])  # (28, 28) in [0, 1]
    pad = Image.fromarray((image * 255).round().astype(np.uint8)).resize((280, 280), Image.BILINEAR).convert("RGBA")
    buf = io.BytesIO()
    pad.save(buf, format="PNG")
    png = buf.getvalue()
    for _ in range(5):  # the model is loaded on the first one
        call("POST", f"{path}/predict", png, "image/png")
    wall, server_ms = [], []
    for _ in range(args.n):
        t0 = time.perf_counter()
        r = call("POST", f"{path}/predict", png, "image/png")
        wall.append((time.perf_counter() - t0) * 1000)
        server_ms.append(r["ms"])
    server.shutdown()
    w = np.array(wall)
    print(f"{run_dir}: test image {args.index} read as {r['labels'][0]} ({max(r['probabilities'][0]):.3f}); "
          f"{len(png):,} B PNG, {args.n} round trips")
    print(f"round trip ms: median {np.median(w):.1f}  p90 {np.percentile(w, 90):.1f}  max {w.max():.1f}  "
          f"(server: median {np.median(server_ms):.1f})")


if __name__ == "__main__":
    main()

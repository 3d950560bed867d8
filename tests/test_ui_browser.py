"""`netcli ui` in a real browser: Debian's chromium driven by Playwright (`pip install -e ".[test]"`,
`apt-get install chromium`; both done by .ci/run).

Each test opens the page of a live server over real tiny runs and reads what the page shows:
the runs table, a run's curves against its metrics.jsonl, a curve growing while a run trains,
a digit drawn on the pad with mouse events against `netcli predict`, two runs compared, the
playgrounds, and a table of 1,000 runs. Screenshots of every page go to $NETCLI_UI_SCREENSHOTS (the
README's come from `NETCLI_UI_SCREENSHOTS=docs`, see the README) or the test's tmp folder.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api as playwright

from netcli.runs import read_metrics
from netcli.runs_table import list_runs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors  # no uncaught script error on any page


def rid(root: Path, run_dir: Path) -> str:
    return run_dir.relative_to(root).as_posix()


def series_points(pg, selector: str = "polyline[data-series]") -> dict[str, list]:
    return pg.eval_on_selector_all(selector, "els => Object.fromEntries(els.map(e => [e.dataset.series, JSON.parse(e.dataset.points)]))")


def records_by_series(records: list[dict]) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in records:
        out.setdefault(f"{r['split']}/{r['name']}", []).append([r["step"], r["value"]])
    return out


# -- runs ---------------------------------------------------------------------------------------


def test_runs_page_lists_every_run(ui_runs, ui_server, page):
    root, runs = ui_runs
    page.goto(ui_server)
    page.wait_for_selector("table.runs tbody tr")
    rows = page.eval_on_selector_all("table.runs tbody tr", "rs => rs.map(r => [r.dataset.id, "
                                     "r.children[3].innerText, r.children[4].innerText])")
    expect = {rid(root, Path(r.path)): (r.status, r.model) for r in list_runs(root)
              if Path(r.path).resolve().is_relative_to(root.resolve())}
    assert {i: (s, m) for i, s, m in rows} == expect
    cell = page.inner_text(f"tr[data-id='{rid(root, runs['a'])}'] td:nth-child(7)")
    assert cell == f"accuracy {json.loads((runs['a'] / 'eval.json').read_text())['metrics']['accuracy']:.4g}"


def test_run_page_draws_every_logged_point(ui_runs, ui_server, page):
    root, runs = ui_runs
    page.goto(f"{ui_server}#/run/{rid(root, runs['a'])}")
    page.wait_for_selector("#confusion td[data-count]")
    records = read_metrics(runs["a"] / "metrics.jsonl")
    page.wait_for_function(f"document.getElementById('charts').dataset.records == {len(records)}")
    assert series_points(page) == records_by_series(records)
    # the loss chart holds train, train (epoch mean) and val loss
    assert set(series_points(page, "[data-metric=loss] polyline")) == {"train/loss", "train_epoch/loss", "val/val_loss"}
    ev = json.loads((runs["a"] / "eval.json").read_text())
    cells = page.eval_on_selector_all("#confusion td[data-count]", "ts => ts.map(t => +t.dataset.count)")
    assert cells == [c for row in ev["confusion_matrix"] for c in row]
    assert page.text_content("#config") == (runs["a"] / "config.yaml").read_text()
    assert "best.npz" in page.inner_text("#details")


def test_epoch_axis_shows_the_per_epoch_points(ui_runs, ui_server, page):
    root, runs = ui_runs
    page.goto(f"{ui_server}#/run/{rid(root, runs['a'])}")
    page.wait_for_selector("polyline[data-series]")
    page.select_option("select.by", "epoch")
    got = series_points(page)
    expect: dict[str, list] = {}
    for r in read_metrics(runs["a"] / "metrics.jsonl"):
        if r["split"] != "train":
            expect.setdefault(f"{r['split']}/{r['name']}", []).append([r["epoch"] + 1, r["value"]])
    assert got == expect


LIVE = """\
name: live
seed: 0
data: {dataset: mnist, limit: 20000, batch_size: 16, val_fraction: 0.05}
model:
  type: classifier
  layers: [{type: conv2d, filters: 8, kernel: 3, padding: 1}, relu, {type: maxpool2d, size: 2}, flatten,
           {type: dense, units: 10}]
optimizer: {type: adam, lr: 1.0e-3}
train: {epochs: 50, log_every: 5}
"""


def test_a_training_run_appears_and_its_curve_grows_live(tmp_path, page):
    from uirig import LiveServer

    root = tmp_path / "runs"
    root.mkdir()
    (tmp_path / "live.yaml").write_text(LIVE)
    server = LiveServer(root)
    proc = None
    try:
        page.goto(server.url)
        page.wait_for_selector("#count")
        proc = subprocess.Popen([sys.executable, "-c", "from netcli.cli import main; main()", "train",
                                 str(tmp_path / "live.yaml"), "--runs-dir", str(root), "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        # the new run shows up without a reload, as running
        page.wait_for_selector("table.runs tbody tr .status.running", timeout=30_000)
        page.click("table.runs tbody tr a[href^='#/run/']")
        log = next(root.glob("live/*/metrics.jsonl"), None)
        seen: dict[int, float] = {}  # lines in the file -> when the test first saw that many
        lag, shown_over_time = [], [0]
        deadline = time.time() + 60
        while time.time() < deadline and len(shown_over_time) < 5:
            log = log or next(root.glob("live/*/metrics.jsonl"), None)
            if log is not None:
                seen.setdefault(log.read_bytes().count(b"\n"), time.time())
            shown = int(page.get_attribute("#charts", "data-records") or 0)
            if shown > shown_over_time[-1]:
                shown_over_time.append(shown)
            for lines, t in list(seen.items()):
                if 0 < lines <= shown:
                    lag.append(time.time() - t)
                    del seen[lines]
            time.sleep(0.05)
        assert len(shown_over_time) == 5, f"the curve grew {len(shown_over_time) - 1} times in 60 s"
        assert max(lag) < 2.0, lag  # new points shown within 2 s of being written
        print(f"live curve: {len(lag)} line counts, shown after {np.median(lag):.2f} s (median), {max(lag):.2f} s (max)")
        # the page drew exactly what the file holds so far
        page.wait_for_timeout(1500)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130, proc.stderr.read().decode()
        run_dir = log.parent
        page.wait_for_selector(".status.interrupted", timeout=10_000)
        records = read_metrics(log)
        page.wait_for_function(f"document.getElementById('charts').dataset.records == {len(records)}")
        assert series_points(page) == records_by_series(records)
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        server.stop()


def test_compare_two_runs(ui_runs, ui_server, page):
    root, runs = ui_runs
    a, b = rid(root, runs["a"]), rid(root, runs["b"])
    page.goto(ui_server)
    page.check(f"tr[data-id='{a}'] input.pick")
    page.check(f"tr[data-id='{b}'] input.pick")
    page.click("#compare")
    page.wait_for_selector("#config-diff")
    diff = page.eval_on_selector_all("#config-diff tr", "rs => rs.slice(1).map(r => [...r.children].map(c => c.innerText))")
    assert ["optimizer.lr", "0.01", "0.05"] in diff
    assert ["name", '"tiny"', '"tiny_fast"'] in diff
    got = series_points(page)
    for run_dir, run in ((runs["a"], a), (runs["b"], b)):
        for key, points in records_by_series(read_metrics(run_dir / "metrics.jsonl")).items():
            assert got[f"{run}:{key}"] == points


def test_a_thousand_runs_are_all_on_the_page(ui_runs, tmp_path, page):
    """Every one of 1,000 runs is a row (how fast the page draws them: benchmarks/many_runs.py)."""
    from uirig import LiveServer

    root = tmp_path / "many"
    src = ui_runs[1]["a"]
    made = set()
    for i in range(1000):
        d = root / f"exp{i % 25}" / f"20260101-{i:06d}"
        d.mkdir(parents=True)
        for name in ("config.yaml", "summary.json", "metrics.jsonl", "eval.json"):
            shutil.copy(src / name, d / name)
        made.add(rid(root, d))
    server = LiveServer(root)
    try:
        page.goto(server.url)
        page.wait_for_function("document.querySelectorAll('table.runs tbody tr').length === 1000")
        rows = page.eval_on_selector_all("table.runs tbody tr", "rs => rs.map(r => [r.dataset.id, r.children[3].innerText])")
    finally:
        server.stop()
    assert {i for i, _ in rows} == made and {status for _, status in rows} == {"finished"}


# -- playground: generative models and sequences ---------------------------------------------------


def grid_pixels(data_url: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_ddpm_playground_generates_with_the_chosen_ddim_steps(ui_runs, ui_server, page, tmp_path):
    from PIL import Image

    from netcli.app.sample import sample_run

    root, runs = ui_runs
    page.goto(f"{ui_server}#/play/{rid(root, runs['ddpm'])}")
    page.fill("#n", "9")
    page.fill("#seed", "4")
    page.fill("#steps", "4")
    page.evaluate("""() => { window.progressSeen = [];
        new MutationObserver(() => window.progressSeen.push(document.getElementById('status').textContent))
          .observe(document.getElementById('status'), {childList: true}); }""")
    page.click("#go")
    page.wait_for_selector("#status[data-done]")
    assert "4 / 4 steps" in page.evaluate("window.progressSeen")  # progress was shown on the way
    png = sample_run(runs["ddpm"], n=9, seed=4, steps=4, out=tmp_path / "s.png")["png"]
    np.testing.assert_array_equal(grid_pixels(page.get_attribute("#grid", "src")), np.array(Image.open(png)))


def test_vae_playground_samples_and_walks_between_two_test_digits(ui_runs, ui_server, page):
    root, runs = ui_runs
    page.goto(f"{ui_server}#/play/{rid(root, runs['vae'])}")
    page.click("#go")
    page.wait_for_selector("#status[data-done]")
    assert grid_pixels(page.get_attribute("#grid", "src")).ndim == 2
    page.click("#pick")
    page.wait_for_selector("#frames img")
    frames = page.eval_on_selector_all("#frames img", "is => is.map(i => i.src)")
    assert len(frames) == 16 and len(set(frames)) > 1  # the decodes change along the line
    page.fill("#slider", "9")
    page.dispatch_event("#slider", "input")
    assert page.get_attribute("#frame", "src") == frames[9]
    assert page.eval_on_selector_all("#frames img.on", "is => is.length") == 1


def test_sequence_playground_shows_per_token_outputs(ui_runs, ui_server, page):
    from netcli.trained import load_run

    root, runs = ui_runs
    page.goto(f"{ui_server}#/play/{rid(root, runs['reverse'])}")
    page.fill("#seq", "905172")
    page.wait_for_function("document.querySelectorAll('#tokens table tr').length === 4 && "
                           "[...document.querySelectorAll('#tokens tr:nth-child(2) td')].map(t => t.innerText).join('') === '905172'")
    shown = page.eval_on_selector_all("#tokens tr:nth-child(3) td", "ts => ts.map(t => +t.innerText)")
    assert shown == load_run(runs["reverse"]).predict(np.array([[9, 0, 5, 1, 7, 2]]))[0].tolist()
    page.fill("#seq", "12x")
    page.wait_for_function("document.getElementById('seq-error').textContent.length > 0")


# -- playground: drawing a digit ------------------------------------------------------------------


def draw(page, image: list[list[float]], threshold: float = 0.5) -> int:
    """Trace an image on the drawing pad with the mouse, one stroke per run of inked pixels in each row.

    Returns how many predictions the page had shown before the last stroke ended (while drawing).
    """
    box = page.locator("#pad").bounding_box()
    h, w = len(image), len(image[0])
    sx, sy = box["width"] / w, box["height"] / h
    strokes = []
    for r, row in enumerate(image):
        c = 0
        while c < w:
            if row[c] > threshold:
                c0 = c
                while c + 1 < w and row[c + 1] > threshold:
                    c += 1
                strokes.append((r, c0, c))
            c += 1
    shown = 0
    for i, (r, c0, c1) in enumerate(strokes):
        y = box["y"] + (r + 0.5) * sy
        page.mouse.move(box["x"] + (c0 + 0.5) * sx, y)
        page.mouse.down()
        page.mouse.move(box["x"] + (c1 + 0.5) * sx, y, steps=max(2, c1 - c0))
        if i == len(strokes) - 1:
            shown = int(page.get_attribute("#prediction", "data-count") or 0)
        page.mouse.up()
    return shown


def cli_predict(run_dir: Path, image: Path) -> dict:
    """`netcli predict RUN IMAGE --format json --top-k 10`, run as a user runs it: {class name: probability}."""
    out = subprocess.run([sys.executable, "-c", "from netcli.cli import main; main()", "predict", str(run_dir),
                          str(image), "--format", "json", "--top-k", "10"], capture_output=True, text=True, check=True)
    (row,) = json.loads(out.stdout)
    return dict(row["top_k"])


def posted_image(page, path: Path) -> Path:
    """The PNG the page sent with its last prediction, saved to ``path``."""
    import base64

    data = page.evaluate("""async () => { const b = new Uint8Array(await window.lastPosted.arrayBuffer());
        let s = ""; for (const x of b) s += String.fromCharCode(x); return btoa(s); }""")
    path.write_bytes(base64.b64decode(data))
    return path


def test_a_real_test_digit_drawn_with_the_mouse_is_read_as_netcli_predict_reads_it(ui_runs, ui_server, page, tmp_path):
    root, runs = ui_runs
    run = runs["digits"]
    page.goto(f"{ui_server}#/play/{rid(root, run)}")
    page.wait_for_selector("#pad")
    sample = json.loads(page.evaluate(f"fetch('/api/runs/{rid(root, run)}/test/7').then(r => r.text())"))
    during = draw(page, sample["image"])
    assert during >= 1  # the probabilities updated while drawing, before the last stroke ended
    page.wait_for_selector("#prediction[data-state=done]")
    shown = page.inner_text("#prediction")
    bars = page.eval_on_selector_all(".bar", "bs => bs.map(b => [b.children[0].innerText, parseFloat(b.querySelector('.p').innerText)])")
    probabilities = cli_predict(run, posted_image(page, tmp_path / "drawn.png"))
    assert shown == max(probabilities, key=probabilities.get)
    for name, percent in bars:
        assert abs(percent - 100 * probabilities[name]) <= 0.051, (name, percent, probabilities)
    # the test image itself, loaded with the button, is read like the file
    page.click("#clear")
    page.evaluate("Math.random = () => 0.5")
    page.click("#test")
    page.wait_for_function("document.getElementById('test-label').textContent.startsWith('test image')")
    page.wait_for_selector("#prediction[data-state=done]")
    probabilities = cli_predict(run, posted_image(page, tmp_path / "test.png"))
    assert page.inner_text("#prediction") == max(probabilities, key=probabilities.get)


def test_a_prediction_round_trip_from_the_page(ui_runs, ui_server, page):
    root, runs = ui_runs
    page.goto(f"{ui_server}#/play/{rid(root, runs['digits'])}")
    page.wait_for_selector("#pad")
    sample = json.loads(page.evaluate(f"fetch('/api/runs/{rid(root, runs['digits'])}/test/3').then(r => r.text())"))
    draw(page, sample["image"])
    times = []
    for _ in range(20):
        page.evaluate("document.getElementById('prediction').dataset.state = 'x'")
        box = page.locator("#pad").bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.down()
        page.mouse.up()
        page.wait_for_selector("#prediction[data-state=done]")
        times.append(float(page.get_attribute("#latency", "data-ms")))
    print(f"playground round trip (tiny CNN): median {np.median(times):.1f} ms, max {max(times):.1f} ms")
    assert np.median(times) < 100


# -- screenshots ------------------------------------------------------------------------------------


def test_screenshots_of_every_page(ui_runs, page, tmp_path):
    """Each page, drawn from real runs: $NETCLI_UI_RUNS (the README's: see there) or the tiny ones."""
    from uirig import LiveServer

    from netcli.ui.api import RunsAPI
    from netcli.ui.playground import Playground

    root = Path(os.environ.get("NETCLI_UI_RUNS") or ui_runs[0])
    folder = Path(os.environ.get("NETCLI_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    records = sorted(list_runs(root), key=lambda r: r.stamp, reverse=True)  # newest first
    play = Playground(RunsAPI(root))

    def kind(r):
        try:
            return play.describe(Path(r.path))["kind"]
        except Exception:  # a run without a checkpoint, or an older checkpoint format
            return None

    by_kind = {}
    for r in records:
        by_kind.setdefault(kind(r), r)
    clf = by_kind["image_classifier"]
    same = [r for r in records if r.name == clf.name]
    pair = same[:2] if len(same) > 1 else [r for r in records if r.model == "classifier"][:2]
    server = LiveServer(root)
    try:
        def shot(fragment: str, ready: str, name: str, before=None):
            page.goto(server.url + fragment)
            page.wait_for_selector(ready)
            if before:
                before()
            page.wait_for_timeout(300)
            page.screenshot(path=str(folder / f"ui_{name}.png"), full_page=True)

        shot("#/", "table.runs tbody tr", "runs")
        shot(f"#/run/{rid(root, Path(clf.path))}", "polyline[data-series]", "run")
        shot("#/compare?" + "&".join(f"run={rid(root, Path(r.path))}" for r in pair), "#config-diff, #diff p", "compare")

        def draw_test_digit():
            sample = json.loads(page.evaluate(f"fetch('/api/runs/{rid(root, Path(clf.path))}/test/0').then(r => r.text())"))
            draw(page, sample["image"])
            page.wait_for_selector("#prediction[data-state=done]")

        shot(f"#/play/{rid(root, Path(clf.path))}", "#pad", "playground", draw_test_digit)
        for k in ("vae", "generator"):
            if k in by_kind:
                def generate():
                    page.click("#go")
                    page.wait_for_selector("#status[data-done]", timeout=300_000)
                    if k == "vae":
                        page.click("#pick")
                        page.wait_for_selector("#frames img")
                        page.fill("#slider", "7")
                        page.dispatch_event("#slider", "input")

                shot(f"#/play/{rid(root, Path(by_kind[k].path))}", "#go", f"playground_{k}", generate)
    finally:
        server.stop()
    assert {p.name for p in folder.glob("ui_*.png")} >= {"ui_runs.png", "ui_run.png", "ui_compare.png", "ui_playground.png"}

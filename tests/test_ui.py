"""`netcli ui` over HTTP: the API's answers, reading metrics on from an offset, and every refusal.

The runs are real tiny runs (tests/uirig.py); the server is the real one on a free port.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from netcli.runs import read_metrics, read_metrics_after
from netcli.runs_table import list_runs


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One raw HTTP request (the path is sent exactly as given); (status, headers, body)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def get_json(url, path):
    status, _, body = request(url, "GET", path)
    assert status == 200, body
    return json.loads(body)


def post_json(url, path, obj):
    status, _, body = request(url, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def run_id(root: Path, run_dir: Path) -> str:
    return run_dir.relative_to(root).as_posix()


# -- answers ---------------------------------------------------------------------------


def test_runs_lists_every_run_with_its_record(ui_runs, ui_server):
    root, runs = ui_runs
    got = get_json(ui_server, "/api/runs")["runs"]
    expect = [r.to_dict() for r in list_runs(root) if Path(r.path).resolve().is_relative_to(root.resolve())]
    assert [{k: v for k, v in g.items() if k != "id"} for g in got] == expect
    assert {g["id"] for g in got} == {run_id(root, d) for d in runs.values()}  # the symlinked run is not listed
    assert {g["status"] for g in got} == {"finished"}


def test_run_detail_has_config_eval_and_checkpoints(ui_runs, ui_server):
    root, runs = ui_runs
    d = get_json(ui_server, f"/api/runs/{run_id(root, runs['a'])}")
    assert d["config"] == (runs["a"] / "config.yaml").read_text()
    assert d["eval"] == json.loads((runs["a"] / "eval.json").read_text())
    assert len(d["eval"]["confusion_matrix"]) == 2
    assert {c["name"] for c in d["checkpoints"]} == {"best.npz", "last.npz"}
    last = next(c for c in d["checkpoints"] if c["name"] == "last.npz")
    assert last["step"] == json.loads((runs["a"] / "summary.json").read_text())["steps"]


def test_metrics_api_reads_on_from_the_offset_it_returned(ui_runs, ui_server):
    root, runs = ui_runs
    rid = run_id(root, runs["a"])
    first = get_json(ui_server, f"/api/runs/{rid}/metrics?after=0")
    assert first["records"] == read_metrics(runs["a"] / "metrics.jsonl")
    assert first["next"] == (runs["a"] / "metrics.jsonl").stat().st_size
    again = get_json(ui_server, f"/api/runs/{rid}/metrics?after={first['next']}&file={first['file']}")
    assert again["records"] == [] and again["next"] == first["next"] and not again["reset"]


def test_read_metrics_after_waits_for_whole_lines_and_notices_a_rewrite(tmp_path):
    path = tmp_path / "metrics.jsonl"
    line = lambda step: json.dumps({"step": step, "split": "train", "name": "loss", "value": 1.0 / step}) + "\n"  # noqa: E731
    path.write_text(line(1) + line(2))
    r = read_metrics_after(path, 0)
    assert [x["step"] for x in r["records"]] == [1, 2] and r["next"] == path.stat().st_size
    with open(path, "a") as f:  # a writer halfway through a line
        f.write(line(3)[:10])
    r2 = read_metrics_after(path, r["next"], r["file"])
    assert r2["records"] == [] and r2["next"] == r["next"]
    with open(path, "a") as f:
        f.write(line(3)[10:])
    r3 = read_metrics_after(path, r2["next"], r2["file"])
    assert [x["step"] for x in r3["records"]] == [3] and not r3["reset"]
    # a resume cuts the log and renames a new file in: readers start again from 0
    tmp = tmp_path / "new.jsonl"
    tmp.write_text(line(1) + line(2) + line(3) + line(4))
    os.replace(tmp, path)
    r4 = read_metrics_after(path, r3["next"], r3["file"])
    assert r4["reset"] and [x["step"] for x in r4["records"]] == [1, 2, 3, 4]
    # a small read limit: the rest comes on the next call
    part = read_metrics_after(path, 0, max_bytes=len(line(1)) + 3)
    assert [x["step"] for x in part["records"]] == [1] and part["more"]


def test_predict_over_http_is_the_models_prediction(ui_runs, ui_server):
    from netcli.trained import load_run

    root, runs = ui_runs
    model = load_run(runs["a"])
    x = np.random.default_rng(1).normal(size=(3, 1, 4, 4)).round(3)
    status, r = post_json(ui_server, f"/api/runs/{run_id(root, runs['a'])}/predict", {"array": x.tolist()})
    assert status == 200, r
    np.testing.assert_allclose(r["probabilities"], model.predict_proba(x), atol=1e-6)
    assert r["classes"] == model.predict(x).tolist()


def test_sequence_classifier_gives_per_token_outputs(ui_runs, ui_server):
    from netcli.trained import load_run

    root, runs = ui_runs
    tokens = [3, 1, 4, 1, 5, 9]
    status, r = post_json(ui_server, f"/api/runs/{run_id(root, runs['reverse'])}/predict", {"array": tokens})
    assert status == 200, r
    assert r["classes"] == load_run(runs["reverse"]).predict(np.array([tokens])).tolist()
    assert np.array(r["probabilities"]).shape == (1, 6, 10)


def test_ddpm_sample_over_http_is_netcli_samples_grid(ui_runs, ui_server, tmp_path):
    from netcli.app.sample import sample_run

    root, runs = ui_runs
    rid = run_id(root, runs["ddpm"])
    status, _, body = request(ui_server, "POST", f"/api/runs/{rid}/sample",
                              json.dumps({"n": 4, "seed": 7, "steps": 3, "stream": True}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200
    lines = [json.loads(x) for x in body.splitlines()]
    progress, result = lines[:-1], lines[-1]
    assert [p["done"] for p in progress] == [1, 2, 3] and {p["total"] for p in progress} == {3}
    png = sample_run(runs["ddpm"], n=4, seed=7, steps=3, out=tmp_path / "grid.png")["png"]
    ours = np.array(Image.open(io.BytesIO(base64.b64decode(result["grid"].split(",", 1)[1]))))
    np.testing.assert_array_equal(ours, np.array(Image.open(png)))


def test_vae_interpolation_between_two_chosen_test_digits(ui_runs, ui_server):
    from netcli.app.sample import interpolation
    from netcli.trained import load_run

    root, runs = ui_runs
    rid = run_id(root, runs["vae"])
    info = get_json(ui_server, f"/api/runs/{rid}/playground")
    assert info["kind"] == "vae" and info["test_samples"] == 200
    status, r = post_json(ui_server, f"/api/runs/{rid}/sample", {"interpolate": True, "a": 3, "b": 11, "n": 5})
    assert status == 200, r
    a, b = (np.array(get_json(ui_server, f"/api/runs/{rid}/test/{i}")["image"]).reshape(784) for i in (3, 11))
    frames = interpolation(load_run(runs["vae"]).model, a.astype(np.float32), b.astype(np.float32), 5)
    first = np.array(Image.open(io.BytesIO(base64.b64decode(r["images"][0].split(",", 1)[1]))))
    np.testing.assert_allclose(first / 255, frames[0].reshape(28, 28), atol=1 / 255 + 1e-3)



def test_a_model_that_cannot_do_what_is_asked_is_refused_as_netcli_sample_refuses_it(ui_runs, ui_server):
    """One capability check (app/sample.generate through the model's require) for the page and the CLI."""
    from netcli.app.sample import sample_run
    from netcli.errors import UserError

    root, runs = ui_runs
    messages = []
    for run, interpolate in ((runs["digits"], False), (runs["ddpm"], True)):
        status, r = post_json(ui_server, f"/api/runs/{run_id(root, run)}/sample", {"n": 4, "interpolate": interpolate})
        with pytest.raises(UserError) as cli:
            sample_run(run, n=4, interpolate=interpolate)
        assert status == 400 and r["error"] == str(cli.value), (r, str(cli.value))
        messages.append(r["error"])
    assert messages == ["sample needs a model that can sample or reconstruct (autoencoder, ddpm, vae); "
                        "a classifier model cannot",
                        "interpolate needs a model that can encode and decode (vae); a ddpm model cannot"]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/files/../outside/secret.txt", "/files/%2e%2e/outside/secret.txt", "/files/link_out/secret.txt",
    "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/api/runs/evil", "/api/runs/evil/metrics",
    "/api/runs/..%2F..%2Foutside/metrics", "/static/..%2Fserver.py", "/files/a%00b"])
def test_paths_outside_the_runs_directory_are_refused(ui_runs, ui_server, path):
    status, _, body = request(ui_server, "GET", path)
    assert status in (400, 404), (path, status)
    assert b"not for the page" not in body and b"root:" not in body
    assert "error" in json.loads(body)
    assert get_json(ui_server, "/api/runs")["runs"]  # still serving


def test_files_under_the_runs_directory_are_served(ui_runs, ui_server):
    root, runs = ui_runs
    status, headers, body = request(ui_server, "GET", f"/files/{run_id(root, runs['a'])}/config.yaml")
    assert status == 200 and body == (runs["a"] / "config.yaml").read_bytes()


def bad_requests(root, runs):
    cnn = f"/api/runs/{run_id(root, runs['digits'])}"
    ddpm = f"/api/runs/{run_id(root, runs['ddpm'])}"
    png = io.BytesIO()
    Image.new("L", (28, 28)).save(png, format="PNG")
    js = {"Content-Type": "application/json"}
    return [
        (413, "POST", f"{cnn}/predict", None, {"Content-Type": "image/png", "Content-Length": str(4 << 20 | 1)}),
        (411, "POST", f"{cnn}/predict", None, {"Content-Type": "image/png"}),
        (400, "POST", f"{cnn}/predict", b"{not json", js),
        (400, "POST", f"{cnn}/predict", b"[1, 2]", js),
        (400, "POST", f"{cnn}/predict", b"\x89PNG\r\n\x1a\nthis is no picture", {"Content-Type": "image/png"}),
        (400, "POST", f"{cnn}/predict", json.dumps({"image": "data:image/png;base64,@@@"}).encode(), js),
        (400, "POST", f"{cnn}/predict", json.dumps({"array": [[1, 2], [3]]}).encode(), js),
        (400, "POST", f"{cnn}/predict", json.dumps({"array": np.zeros((2, 5)).tolist()}).encode(), js),
        (400, "POST", f"{cnn}/predict", json.dumps({"array": "NaN"}).encode(), js),
        (400, "POST", f"{cnn}/predict", json.dumps({"nothing": 1}).encode(), js),
        (400, "POST", f"{cnn}/sample", b"{}", js),
        (400, "POST", f"{ddpm}/sample", json.dumps({"n": 10_000}).encode(), js),
        (400, "POST", f"{ddpm}/sample", json.dumps({"steps": 0}).encode(), js),
        (400, "POST", f"{ddpm}/sample", json.dumps({"n": "many"}).encode(), js),
        (400, "GET", f"{cnn}/metrics?after=-5", None, {}),
        (400, "GET", f"{cnn}/metrics?after=abc", None, {}),
        (400, "GET", f"{cnn}/test/99999999", None, {}),
        (400, "GET", "/api/compare?run=" + run_id(root, runs["a"]), None, {}),
        (404, "GET", "/api/runs/no/such/run", None, {}),
        (404, "GET", "/nothing-here", None, {}),
        (405, "GET", f"{cnn}/predict", None, {}),
        (405, "PUT", f"{cnn}/config.yaml", b"x", {}),
        (405, "DELETE", f"{cnn}", None, {}),
        (403, "GET", "/api/runs", None, {"Host": "evil.example:8765"}),
    ]


def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(ui_runs, ui_server):
    root, runs = ui_runs
    for status, method, path, body, headers in bad_requests(root, runs):
        got, _, answer = request(ui_server, method, path, body, headers)
        assert got == status, (method, path, got, answer[:200])
        message = json.loads(answer)["error"]
        assert message and "\n" not in message and "Traceback" not in message, message
        assert get_json(ui_server, "/api/runs")["runs"]


def test_nothing_under_the_runs_directory_is_written(ui_runs, ui_server):
    from uirig import snapshot

    root, runs = ui_runs
    before = snapshot(root)
    rid = run_id(root, runs["vae"])
    for path in ["/", "/api/runs", f"/api/runs/{rid}", f"/api/runs/{rid}/metrics", f"/api/runs/{rid}/playground",
                 f"/api/runs/{rid}/test/0"]:
        request(ui_server, "GET", path)
    post_json(ui_server, f"/api/runs/{rid}/sample", {"n": 4})
    post_json(ui_server, f"/api/runs/{run_id(root, runs['a'])}/predict", {"array": np.zeros((1, 4, 4)).tolist()})
    for _, method, path, body, headers in bad_requests(root, runs):
        request(ui_server, method, path, body, headers)
    time.sleep(0.05)
    assert snapshot(root) == before


def test_the_page_and_its_assets_come_from_the_package(ui_server):
    status, headers, body = request(ui_server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for asset in ("app.js", "chart.js", "style.css"):
        assert f"/static/{asset}".encode() in body
        s, h, b = request(ui_server, "GET", f"/static/{asset}")
        assert s == 200 and b and b"http://" not in b.replace(b"http://www.w3.org/2000/svg", b"")  # no CDN


def test_it_binds_127_0_0_1_by_default(tmp_path):
    from netcli.ui import make_server

    server = make_server(tmp_path, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


# -- the command ---------------------------------------------------------------------------------


def test_netcli_ui_serves_until_interrupted(ui_runs):
    import signal
    import subprocess
    import sys

    root, runs = ui_runs
    proc = subprocess.Popen([sys.executable, "-c", "from netcli.cli import main; main()", "ui", "--runs-dir", str(root),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"netcli ui: {root} at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert {r["id"] for r in get_json(url, "/api/runs")["runs"]} == {run_id(root, d) for d in runs.values()}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_netcli_ui_refuses_a_missing_runs_dir_and_a_busy_port(tmp_path):
    import socket

    from tinyrun import invoke

    r = invoke("ui", "--runs-dir", tmp_path / "nope")
    assert r.exit_code == 2 and r.output.strip() == f"error: {tmp_path / 'nope'}: no such runs directory " \
                                                     "(train a run first, or pass --runs-dir)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = invoke("ui", "--runs-dir", tmp_path, "--port", port)
    assert r.exit_code == 2 and r.output.startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert len(r.output.strip().splitlines()) == 1


def test_resolve_under_refuses_absolute_paths_dotdot_and_symlinks_out(tmp_path):
    from netcli.ui.api import BadRequest, resolve_under

    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (root / "up").symlink_to(tmp_path)
    (root / "inside").symlink_to(root / "a")
    assert resolve_under(root, "a") == root / "a"
    assert resolve_under(root, "inside") == root / "a"  # a symlink that stays inside is fine
    for bad in ("/etc/passwd", "../x", "a/../../x", "up", "up/secret", "a\\..\\x", "a\0"):
        with pytest.raises(BadRequest):
            resolve_under(root, bad)


def test_a_diverged_runs_nan_reaches_the_page_as_null(ui_runs, tmp_path):
    import shutil

    from uirig import LiveServer

    src = ui_runs[1]["a"]
    run = tmp_path / "runs" / "nan" / "20260101-000000"
    shutil.copytree(src, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["metrics"]["train_loss"] = float("nan")
    (run / "summary.json").write_text(json.dumps(summary))
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 99, "epoch": 3, "split": "train", "name": "loss", "value": float("inf")}) + "\n")
    server = LiveServer(tmp_path / "runs")
    try:
        status, _, body = request(server.url, "GET", "/api/runs/nan/20260101-000000")
        assert status == 200 and json.loads(body)["summary"]["metrics"]["train_loss"] is None
        records = get_json(server.url, "/api/runs/nan/20260101-000000/metrics")["records"]
        assert records[-1] == {"step": 99, "epoch": 3, "split": "train", "name": "loss", "value": None}
    finally:
        server.stop()

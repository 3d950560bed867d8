"""The UI's HTTP server: the standard library's ThreadingHTTPServer, one thread a request.

    GET  /                               the page (static/index.html); its views live in the URL's #fragment
    GET  /static/NAME                    the page's assets, from this package only
    GET  /files/PATH                     a file under the runs directory (sample grids), nothing outside it
    GET  /api/runs                       every run: status, model, best metric, epochs, wall time
    GET  /api/runs/ID                    one run: its record, config, summary, eval, checkpoints, samples
    GET  /api/runs/ID/metrics?after=N    metrics.jsonl's records from byte N on, and the offset to ask next
    GET  /api/compare?run=A&run=B        config keys that differ, metrics side by side
    GET  /api/runs/ID/playground         what the run's playground offers
    GET  /api/runs/ID/test/INDEX         a test-split sample and its label
    POST /api/runs/ID/predict            image (PNG body, or JSON {"image": data URL} / {"array": ...}) -> JSON
    POST /api/runs/ID/sample             JSON {"n", "seed", "steps", ...} -> images; NDJSON progress with "stream"

Safe by default: it binds 127.0.0.1; a request whose Host is not this server (DNS rebinding) is
refused; request bodies are size-limited; a bad request gets a 4xx with a one-line message and
the server keeps serving; nothing under the runs directory is written.
"""
from __future__ import annotations

import json
import math
import mimetypes
import socket
import sys
import threading
import traceback
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import UserError
from ..runs import json_default
from .api import BadRequest, NotFound, RunsAPI, query_int

MAX_BODY = 4 << 20  # bytes: a drawn or uploaded image is a few kB
STATIC = {p.name: p for p in resources.files(__package__).joinpath("static").iterdir() if p.is_file()}
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class UIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: RunsAPI, playground):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)
        self.api, self.playground = api, playground
        host = address[0]
        self.any_host = host in ("0.0.0.0", "::", "")  # bound to every interface: the user chose to be reachable
        self.names = LOCAL_NAMES | {host, socket.gethostname()}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"  # keep-alive: a playground's predictions reuse one connection
    timeout = 60  # seconds a connection may sit idle or trickle a request
    disable_nagle_algorithm = True  # small answers go out at once (with Nagle, a kept-alive client waited 40 ms)
    server_version = "netcli-ui"

    def log_message(self, fmt: str, *args) -> None:  # quiet: errors are answered, not printed
        pass

    # -- dispatch ------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        self._body_read = method == "GET"  # until read_body has read it, an error answer closes the connection
        try:
            self._check_host()
            url = urlsplit(self.path)
            route, args = self._route(method, unquote(url.path))
            route(*args, query=parse_qs(url.query))
        except HTTPError as e:
            self._error(e.status, str(e))
        except (BadRequest, UserError, ValueError) as e:  # a malformed request or input the model cannot take
            self._error(HTTPStatus.BAD_REQUEST, str(e).splitlines()[0] if str(e) else e.__class__.__name__)
        except NotFound as e:
            self._error(HTTPStatus.NOT_FOUND, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500, keep serving, say what went wrong on stderr
            traceback.print_exc(file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{e.__class__.__name__}: {e}")

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not self.server.any_host and name not in self.server.names:
            raise HTTPError(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server")

    def _route(self, method: str, path: str) -> tuple[Callable, tuple]:
        parts = [p for p in path.split("/") if p]
        gets: dict[str, Callable] = {"metrics": self.get_metrics, "playground": self.get_playground}
        posts: dict[str, Callable] = {"predict": self.post_predict, "sample": self.post_sample}
        allowed = "GET"
        if not parts:
            route = (self.get_static, ("index.html",))
        elif parts[0] == "static" and len(parts) == 2:
            route = (self.get_static, (parts[1],))
        elif parts[0] == "files" and len(parts) > 1:
            route = (self.get_file, ("/".join(parts[1:]),))
        elif parts[:2] == ["api", "runs"] and len(parts) == 2:
            route = (self.get_runs, ())
        elif parts[:2] == ["api", "compare"] and len(parts) == 2:
            route = (self.get_compare, ())
        elif parts[:2] == ["api", "runs"] and len(parts) >= 4 and parts[-2] == "test":
            route = (self.get_test, ("/".join(parts[2:-2]), parts[-1]))
        elif parts[:2] == ["api", "runs"] and len(parts) >= 4 and parts[-1] in posts:
            route, allowed = (posts[parts[-1]], ("/".join(parts[2:-1]),)), "POST"
        elif parts[:2] == ["api", "runs"] and len(parts) >= 4 and parts[-1] in gets:
            route = (gets[parts[-1]], ("/".join(parts[2:-1]),))
        elif parts[:2] == ["api", "runs"] and len(parts) >= 3:
            route = (self.get_run, ("/".join(parts[2:]),))
        else:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such page or API: {path}")
        if method != allowed:
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {allowed}, not {method}")
        return route

    # -- answers -----------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, to_json(obj), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        if not self._body_read:
            self.close_connection = True  # the body was not read: the connection cannot carry another request
        try:
            self._json({"error": message, "status": int(status)}, status)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def read_body(self) -> bytes:
        """The request body, at most MAX_BODY bytes (411 without a Content-Length, 413 above the limit)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunked encoding")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        if int(length) > MAX_BODY:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"request body of {int(length):,} bytes is over the limit of {MAX_BODY:,}")
        body = self.rfile.read(int(length))
        self._body_read = True
        if len(body) != int(length):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "request body shorter than its Content-Length")
        return body

    def read_json(self, body: bytes) -> dict:
        try:
            obj = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"request body is not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise BadRequest("request body must be a JSON object")
        return obj

    # -- GET ----------------------------------------------------------------------------
    def get_static(self, name: str, query) -> None:
        if name not in STATIC:
            raise NotFound(f"no asset {name!r}")
        self._send(HTTPStatus.OK, STATIC[name].read_bytes(), _content_type(name))

    def get_file(self, rel: str, query) -> None:
        path = self.server.api.file(rel)
        self._send(HTTPStatus.OK, path.read_bytes(), _content_type(path.name),
                   {"Content-Disposition": "inline", "Content-Security-Policy": "default-src 'none'; sandbox"})

    def get_runs(self, query) -> None:
        self._json(self.server.api.runs())

    def get_run(self, run_id: str, query) -> None:
        self._json(self.server.api.run(run_id))

    def get_metrics(self, run_id: str, query) -> None:
        after = query_int(query, "after", 0)
        file_id = (query.get("file") or [None])[-1]
        self._json(self.server.api.metrics(run_id, after, file_id))

    def get_compare(self, query) -> None:
        self._json(self.server.api.compare(query.get("run", [])))

    def get_playground(self, run_id: str, query) -> None:
        self._json(self.server.playground.describe(self.server.api.run_dir(run_id)))

    def get_test(self, run_id: str, index: str, query) -> None:
        if not index.isdigit():
            raise BadRequest(f"test sample index must be a number, got {index!r}")
        self._json(self.server.playground.test_sample(self.server.api.run_dir(run_id), int(index)))

    # -- POST ---------------------------------------------------------------------------
    def post_predict(self, run_id: str, query) -> None:
        run_dir = self.server.api.run_dir(run_id)
        body = self.read_body()
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        request = {"image_bytes": body} if kind.startswith("image/") else self.read_json(body)
        self._json(self.server.playground.predict(run_dir, request))

    def post_sample(self, run_id: str, query) -> None:
        run_dir = self.server.api.run_dir(run_id)
        request = self.read_json(self.read_body())
        if not request.pop("stream", False):
            self._json(self.server.playground.sample(run_dir, request))
            return
        # NDJSON: {"done", "total"} lines while sampling, then the result (or {"error"}); a closed page stops it
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def line(obj) -> None:
            self.wfile.write(to_json(obj) + b"\n")
            self.wfile.flush()

        try:
            result = self.server.playground.sample(run_dir, request, progress=lambda d, t: line({"done": d, "total": t}))
        except (BadRequest, UserError, ValueError) as e:
            line({"error": str(e).splitlines()[0], "status": 400})
            return
        line(result)


def _content_type(name: str) -> str:
    if name.endswith(".jsonl"):
        return "text/plain; charset=utf-8"
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return kind + ("; charset=utf-8" if kind.startswith("text/") or kind.endswith(("javascript", "json")) else "")


def to_json(obj: Any) -> bytes:
    """JSON a browser can parse: NaN and infinities (a diverged run's loss) become null."""
    try:
        return json.dumps(obj, allow_nan=False, default=json_default).encode()
    except ValueError:
        return json.dumps(_finite(obj), allow_nan=False, default=json_default).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def make_server(runs_dir: Path | str = "runs", host: str = "127.0.0.1", port: int = 8765) -> UIServer:
    """A server over ``runs_dir`` (not yet serving: call serve_forever, or use ``serve``); port 0 picks a free one."""
    from .playground import Playground

    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such runs directory (train a run first, or pass --runs-dir)")
    api = RunsAPI(root)
    try:
        server = UIServer((host, port), api, Playground(api))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None
    threading.Thread(target=api.runs, daemon=True).start()  # read every run's record while the page is opened
    return server


def serve(runs_dir: Path | str = "runs", host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once it listens."""
    server = make_server(runs_dir, host, port)
    if ready:
        ready(server.url)
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()

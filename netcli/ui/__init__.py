"""`netcli ui`: a local web app over a runs directory.

    server.py      the HTTP server (standard library): routes, limits, refusals
    api.py         what the JSON API answers: runs, one run, metrics read on from a byte offset, comparisons
    playground.py  trained runs loaded once and kept: predictions, samples, test images
    static/        the page: index.html, app.js (routing and views), chart.js (SVG charts), style.css

Everything the page needs is served from this package; it works with no network.
"""
from .server import make_server, serve

__all__ = ["make_server", "serve"]

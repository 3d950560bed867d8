"""Imports run one way: the engine names nothing above it, and only the front ends use the application layer.

The imports are read from the source with ast (tests/layering.py), inside functions too, so a lazy
``from ..train import load_run`` in a model file (what models/quality.py did before netcli/app/) fails.
"""
import shutil
from pathlib import Path

from layering import BEGIN, DOC, END, ENGINE, ROOT, imports_by_file, table, unit_of

PACKAGE = ROOT / "netcli"
FRONT_ENDS = ("cli.py", "__main__.py", "ui/")


def unit(rel: str) -> str:
    return rel.split("/")[0] + "/" if "/" in rel else rel.removesuffix(".py")


def engine_violations(package: Path) -> list[str]:
    """'FILE imports MODULE' for each import of the engine that leaves it (ENGINE in tests/layering.py)."""
    return [f"{rel} imports {m}" for rel, mods in imports_by_file(package).items() if unit(rel) in ENGINE
            for m in sorted(mods) if unit_of(package, m) not in (*ENGINE, None)]


def test_the_engine_imports_only_the_engine():
    """layers/, models/, params, optim, losses and what they stand on import nothing above them:
    not netcli.app, train, cli, predict, ui, config, runs, data; a new module they need joins ENGINE."""
    assert engine_violations(PACKAGE) == []
    assert {"layers/", "models/", "params", "optim", "losses"} <= set(ENGINE)


def test_an_import_that_runs_back_up_is_caught(tmp_path):
    root = tmp_path / "netcli"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "layers" / "dense.py", "a") as f:  # a lazy import, as models/quality.py had one
        f.write("\n\ndef _late():\n    from ..train import load_run\n    from .. import predict\n    return load_run, predict\n")
    (root / "models" / "gan.py").write_text("from netcli.app.sample import generate\n")
    (root / "optim.py").write_text((root / "optim.py").read_text() + "\nimport netcli.ui.server\n")
    assert engine_violations(root) == ["layers/dense.py imports netcli.predict", "layers/dense.py imports netcli.train",
                                       "models/gan.py imports netcli.app.sample", "optim.py imports netcli.ui.server"]


def test_only_the_front_ends_import_the_application_layer():
    """netcli/app/ (evaluate, sample, quality, bench, summary) sits above the trainer; the CLI and the UI call it."""
    bad = {rel: sorted(m for m in mods if unit_of(PACKAGE, m) == "app/")
           for rel, mods in imports_by_file(PACKAGE).items() if not rel.startswith(("app/", *FRONT_ENDS))}
    assert {rel: mods for rel, mods in bad.items() if mods} == {}


def test_the_architecture_doc_shows_the_engine_as_it_imports():
    """docs/architecture.md's generated table, engine rows (the rest moves with every feature; regenerate with
    `python tests/layering.py --write`)."""
    text = DOC.read_text()
    shown = text[text.index(BEGIN):text.index(END)]
    engine_rows = [row for row in table(PACKAGE).splitlines() if "| engine |" in row]
    assert len(engine_rows) == len(ENGINE)
    missing = [row for row in engine_rows if row not in shown.splitlines()]
    assert not missing, f"docs/architecture.md is stale (python tests/layering.py --write): {missing}"

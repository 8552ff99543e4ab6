"""The package's layers hold: inference code never imports training or export code.

Data flows files -> data -> models/train -> run folder -> export -> model files -> engines ->
bench/predict; ``lkmseg.files`` is the one layer that knows the files' formats. Every import is
checked, including those inside functions (lazy imports count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lkmseg"

# package -> lkmseg packages it must never import
FORBIDDEN = {
    "engines": ("lkmseg.export", "lkmseg.train", "lkmseg.bench", "lkmseg.cli", "lkmseg.predict"),
    "files": ("lkmseg.export", "lkmseg.train", "lkmseg.engines", "lkmseg.bench", "lkmseg.cli",
              "lkmseg.predict", "lkmseg.data"),
    "predict": ("lkmseg.export", "lkmseg.train", "lkmseg.bench", "lkmseg.cli"),
    "models": ("lkmseg.export", "lkmseg.train", "lkmseg.engines", "lkmseg.bench", "lkmseg.cli",
               "lkmseg.files", "lkmseg.data"),
    "data": ("lkmseg.export", "lkmseg.train", "lkmseg.engines", "lkmseg.bench", "lkmseg.cli"),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_does_not_import_downstream(package):
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {mod}"
           for p in sorted((PKG / package).rglob("*.py"))
           for line, mod in imports_of(p)
           if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN[package])]
    assert not bad, "\n".join(bad)


def test_checker_sees_lazy_imports(tmp_path):
    """The checker is not vacuous: it finds an import inside a function."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from lkmseg.train.loop import train_run\n")
    assert imports_of(f) == [(2, "lkmseg.train.loop")]

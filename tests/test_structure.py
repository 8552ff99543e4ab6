"""The package's shape holds: small modules, no import cycles, file names in one layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lkmseg"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """lkmseg modules ``name`` imports (any place in the file, lazy ones too; not the ones
    under ``if TYPE_CHECKING:``)."""
    out = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never imported at run time
            continue
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            mods = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        out |= {m for m in mods if m in known and m != name}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle_between_modules():
    """Module-level cycles, counting lazy imports; a package's __init__ re-exporting its own
    modules is not a cycle (the modules never import the package's names back)."""
    mods = _modules()
    graph = {n: _imports(p, n, set(mods)) for n, p in mods.items()}
    for n, deps in graph.items():  # package -> its own submodules (re-exports) are fine
        graph[n] = {d for d in deps if not d.startswith(n + ".")}
    assert not _cycles(graph), _cycles(graph)


def test_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


FILE_NAMES = re.compile(r"""["'](config\.json|model\.safetensors|last\.safetensors|state\.pt|"""
                        r"""summary\.json|train_log\.csv|val_log\.csv|model(\.fp16|\.int8)?\.onnx|"""
                        r"""model\.engine(\.json)?|report\.json|bench\.(json|csv|md)|"""
                        r"""autotune\.json|results\.png)["']""")


def test_file_names_are_spelled_only_in_the_files_layer():
    hits = [f"{p.relative_to(PKG)}:{i}: {line.strip()}"
            for p in PKG.rglob("*.py") if p.parent.name != "files"
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if FILE_NAMES.search(line) and not line.lstrip().startswith("#")]
    assert not hits, "\n".join(hits)

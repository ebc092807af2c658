"""The packages import one way, bottom to top: common -> hw_models -> onchip_ff -> accountant ->
experiments.  A module never imports a package above its own, not even inside a function; and no
two modules of the project import each other (TYPE_CHECKING-only imports and a package's
__init__ importing its own submodules excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("common", "hw_models", "onchip_ff", "accountant", "experiments")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file, outside `if TYPE_CHECKING:` blocks;
    relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]  # `from pkg import module`
    return out


def _sources() -> list[Path]:
    return sorted(p for pkg in ORDER for p in (ROOT / pkg).rglob("*.py"))


def test_every_package_is_on_the_ladder():
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert found == set(ORDER), f"packages {sorted(found)}; add a new one to ORDER (and the README Layout)"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_higher_package(path):
    own = ORDER.index(path.relative_to(ROOT).parts[0])
    bad = [f"line {line}: {name}" for name, line in _imports(path)
           if name.split(".")[0] in ORDER and ORDER.index(name.split(".")[0]) > own]
    assert not bad, f"{path.relative_to(ROOT)} imports from a higher package: {bad}"


def test_no_two_modules_import_each_other():
    modules = {_module_name(p): p for p in _sources()}
    edges = {m: set() for m in modules}
    for m, path in modules.items():
        for name, _ in _imports(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != m and not (path.name == "__init__.py" and name.startswith(m + ".")):
                edges[m].add(name)
    pairs = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())
                    and not (modules[b].name == "__init__.py" and a.startswith(b + "."))})
    assert not pairs, f"modules importing each other: {pairs}"

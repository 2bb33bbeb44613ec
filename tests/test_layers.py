"""The package's layers import only downward.

compat and utils at the bottom, then config, data, modeling, evaluation, engine; tools/ on top
(outside the package). A module may import from its own layer or a lower one, never a higher
one; the package's ``__init__`` (which registers the heads) is the only exception.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "projects" / "SegContrast" / "segcontrast"
LAYERS = {"compat": 0, "utils": 0, "config": 1, "data": 2, "datasets": 3, "modeling": 3,
          "evaluation": 4, "engine": 5}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every segcontrast import in a file."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("segcontrast")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("segcontrast"):
                continue
            if node.module is None or module in ("segcontrast",):  # from . import x
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        own = _layer(importer)
        if own is None:  # segcontrast/__init__.py
            continue
        for line, module in _imported_modules(path, root):
            target = _layer(module)
            if target is None:
                problems.append(f"{importer}:{line} imports {module}, which is in no layer")
            elif target > own:
                problems.append(f"{importer}:{line} imports {module} (a higher layer)")
    return problems


def test_every_package_module_is_in_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops - {"__init__"} == set(LAYERS)


def test_no_module_imports_from_a_higher_layer():
    assert _violations() == []


def test_the_check_sees_an_upward_import(tmp_path):
    fake = tmp_path / "segcontrast"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "bad.py").write_text(
        "from ..engine.trainer import X\nimport segcontrast.modeling\n"
    )
    problems = _violations(fake)
    assert any("segcontrast.data.bad:1 imports segcontrast.engine.trainer" in p for p in problems)
    assert any("segcontrast.data.bad:2 imports segcontrast.modeling" in p for p in problems)

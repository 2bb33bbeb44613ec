"""The package's layers import only downward, and the evaluation side never imports torch.

Two sides, the evaluation side below the Detectron2 side:

* evaluation side (no torch, no Detectron2): ``utils``; ``data`` (COCO files); ``evaluation``
  in five layers (settings and metrics; the accounting's per-image part; the core flat in the
  package, with the accounting's dataset-level part; the report; and the faces that put them
  together: the accumulator, the result, the API); the ``cli`` on top.
* Detectron2 side: ``compat`` and ``device``, ``config``, ``datasets``, ``modeling``,
  ``engine``; ``tools/`` on top (outside the package).

A module may import from its own layer or a lower one, never a higher one. The package's own
``__init__`` (lazy names, nothing imported) is outside the layers. The runtime check that
importing the evaluation side loads no training package is tests/test_library.py's.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "projects" / "SegContrast" / "segcontrast"
# (module prefix, layer); the longest matching prefix wins.
LAYERS = (
    ("segcontrast._kernels", 0),  # compiled: imports nothing of the package
    ("segcontrast.utils", 0),
    ("segcontrast.data", 1),
    ("segcontrast.evaluation.settings", 2),
    ("segcontrast.evaluation.catalog", 2),
    ("segcontrast.evaluation.metrics", 2),
    ("segcontrast.evaluation.accounting", 3),
    ("segcontrast.evaluation", 4),
    # the accounting's dataset-level part reads the merged records, as summary does
    ("segcontrast.evaluation.accounting.dataset_deltas", 4),
    ("segcontrast.evaluation.report", 5),
    ("segcontrast.evaluation.result", 6),
    ("segcontrast.evaluation.accumulator", 6),
    ("segcontrast.evaluation.score_files", 6),
    ("segcontrast.evaluation.api", 6),
    ("segcontrast.cli", 7),
    ("segcontrast.__main__", 7),
    ("segcontrast.compat", 8),
    ("segcontrast.device", 8),
    ("segcontrast.config", 9),
    ("segcontrast.datasets", 10),
    ("segcontrast.modeling", 11),
    ("segcontrast.engine", 12),
)
EVALUATION_SIDE = 7  # layers up to this one need neither torch nor Detectron2
TRAINING_STACK = ("torch", "torchvision", "detectron2", "fvcore", "iopath", "yacs")


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: what ``if TYPE_CHECKING:`` guards is for type checkers only."""
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return nodes


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import that can run, functions' included."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if node.module is None or module == "segcontrast":  # from . import x
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _layer(module: str, root_name: str = "segcontrast") -> int | None:
    module = "segcontrast" + module[len(root_name):]
    best = None
    for prefix, layer in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return None if best is None else best[1]


def _violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        if importer == root.name:  # the package's lazy __init__
            continue
        own = _layer(importer, root.name)
        if own is None:
            problems.append(f"{importer} is in no layer")
            continue
        for line, module in _imports(path, root):
            top = module.split(".")[0]
            if own <= EVALUATION_SIDE and top in TRAINING_STACK:
                problems.append(f"{importer}:{line} imports {module}: the evaluation side "
                                "needs neither torch nor Detectron2")
            if top != root.name or module in (root.name, f"{root.name}.__version__"):
                continue
            target = _layer(module, root.name)
            if target is None:
                problems.append(f"{importer}:{line} imports {module}, which is in no layer")
            elif target > own:
                problems.append(f"{importer}:{line} imports {module} (a higher layer)")
    return problems


def test_every_package_module_is_in_a_layer():
    modules = [_module_name(p, PACKAGE) for p in PACKAGE.rglob("*.py")]
    assert [m for m in modules if m != "segcontrast" and _layer(m) is None] == []


def test_no_module_imports_from_a_higher_layer_and_the_evaluation_side_needs_no_torch():
    assert _violations() == []


def test_the_check_sees_an_upward_import_and_torch_on_the_evaluation_side(tmp_path):
    fake = tmp_path / "segcontrast"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "bad.py").write_text(
        "from ..engine.trainer import X\nimport segcontrast.modeling\n\n\ndef f():\n"
        "    import torch\n"
    )
    problems = _violations(fake)
    assert any("segcontrast.data.bad:1 imports segcontrast.engine.trainer" in p for p in problems)
    assert any("segcontrast.data.bad:2 imports segcontrast.modeling" in p for p in problems)
    assert any("segcontrast.data.bad:6 imports torch" in p for p in problems)

"""The package's layers point one way: no module imports from a layer above its own.

    utils, deploy  <  tasks  <  configs  <  modules  <  data  <  algorithms  <  eval  <  runners  <  export

Read bottom-up: hydra checks configs before anything is built, so configs import no network code; the learners
(algorithms/) know networks and data but not how they are evaluated (eval/), trained in a loop (runners/) or
exported (export/). Imports are read with ``ast`` from the source files (also those inside functions and
``if TYPE_CHECKING:``), so nothing is imported to check them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "source" / "lawr_ext" / "lawr_ext"

#: rank of each subpackage (or top-level module) of lawr_ext; a module may import its own rank or lower
LAYERS = {
    "utils": 0, "deploy": 0,  # deploy.py imports nothing of lawr (it is copied onto a robot)
    "tasks": 1,
    "configs": 2,
    "modules": 3,
    "data": 4,
    "algorithms": 5,
    "eval": 6,
    "runners": 7,
    "export": 8,
}
ROOT = ""  # lawr_ext/__init__.py (REPO_ROOT, the Warp cache): below every layer


def layer_of(relative: Path) -> str:
    """The layer of a file, given its path inside the package: its first folder, or its own name at the top."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    return ROOT if relative.stem == "__init__" else relative.stem


def imported_layers(path: Path, package: Path) -> list[tuple[int, str, str]]:
    """(line, module, layer) of every lawr_ext import in a file, relative imports resolved."""
    relative = path.relative_to(package)
    here = ["lawr_ext", *relative.parts[:-1]]  # the file's package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from lawr_ext import eval` and `from . import eval` name the subpackage in the alias
            modules = ([f"{module}.{alias.name}" for alias in node.names] if module == "lawr_ext" else [module])
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] != "lawr_ext":
                continue
            target = parts[1] if len(parts) > 1 and parts[1] in LAYERS else ROOT
            found.append((node.lineno, module, target))
    return found


def upward_imports(package: Path) -> list[str]:
    """Every import of a higher layer, as 'file:line: layer imports module (layer)'."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        layer = layer_of(relative)
        if layer != ROOT and layer not in LAYERS:
            problems.append(f"{relative}: '{layer}' has no place in tests/test_layers.py LAYERS; give it one")
            continue
        rank = LAYERS.get(layer, -1)
        for line, module, target in imported_layers(path, package):
            if target != ROOT and target != layer and LAYERS[target] > rank:
                problems.append(f"{relative}:{line}: {layer or 'lawr_ext'} imports {module} ({target} is above it)")
    return problems


def test_no_module_imports_a_layer_above_its_own():
    assert PACKAGE.is_dir(), PACKAGE
    problems = upward_imports(PACKAGE)
    assert not problems, "imports that run up the layers:\n" + "\n".join(problems)


def test_algorithms_import_nothing_from_eval_runners_or_export():
    """The rule the layer table encodes, said directly for the learners."""
    upward = [(path.relative_to(PACKAGE), module)
              for path in sorted((PACKAGE / "algorithms").rglob("*.py"))
              for _, module, target in imported_layers(path, PACKAGE) if target in ("eval", "runners", "export")]
    assert not upward, upward


@pytest.mark.parametrize("statement", [
    "from lawr_ext.eval.diagnostics import flow_sample_quality",
    "import lawr_ext.runners.pipeline",
    "from lawr_ext import export",
    "from ..eval import diagnostics",
    "from .. import runners",
    "def f():\n    from lawr_ext.eval import metrics\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lawr_ext.export import exporter\n",
])
def test_the_check_finds_an_upward_import(tmp_path, statement):
    """The checker itself: each way of writing an import of a higher layer from algorithms/ is caught."""
    package = tmp_path / "lawr_ext"
    (package / "algorithms").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "algorithms" / "__init__.py").write_text("")
    (package / "algorithms" / "lawr.py").write_text("from lawr_ext.data import keys\nfrom . import flow\n")
    assert upward_imports(package) == []
    (package / "algorithms" / "lawr.py").write_text(statement)
    problems = upward_imports(package)
    assert len(problems) == 1 and problems[0].startswith("algorithms/lawr.py:"), problems


def test_an_unplaced_subpackage_is_named(tmp_path):
    package = tmp_path / "lawr_ext"
    (package / "viz").mkdir(parents=True)
    (package / "viz" / "__init__.py").write_text("")
    assert upward_imports(package) == ["viz/__init__.py: 'viz' has no place in tests/test_layers.py LAYERS; give it one"]

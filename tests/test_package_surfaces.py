"""The packages' public surfaces: imports point one way (server -> provider -> engine), and a
package imports of another only the modules that one names in its `__all__`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Who may import whom; bench/ measures the engine's store directly.
MAY_IMPORT = {"engine": set(), "provider": {"engine"}, "server": {"provider", "engine"}, "bench": {"engine", "provider", "server"}}


def _imports(folder: str) -> list[tuple[str, str]]:
    """(file, imported module) for every project import in `folder`."""
    found = []
    for file in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(file.relative_to(ROOT)), node.module))
            elif isinstance(node, ast.Import):
                found += [(str(file.relative_to(ROOT)), alias.name) for alias in node.names]
    return [(file, module) for file, module in found if module.split(".")[0] in MAY_IMPORT]


@pytest.mark.parametrize("importer", sorted(MAY_IMPORT))
def test_imports_point_one_way_and_only_at_public_modules(importer: str) -> None:
    wrong = []
    for file, module in _imports(importer):
        package, _, rest = module.partition(".")
        if package == importer:
            continue
        public = importlib.import_module(package).__all__
        if package not in MAY_IMPORT[importer] or rest.split(".")[0] not in public:
            wrong.append(f"{file}: {module}")
    assert not wrong


@pytest.mark.parametrize("package", ["engine", "provider", "server"])
def test_every_public_module_exists_and_is_used_by_another_package(package: str) -> None:
    used = {module.split(".")[1] for importer in MAY_IMPORT if importer != package
            for _file, module in _imports(importer) if module.startswith(package + ".")}
    public = importlib.import_module(package).__all__
    assert all((ROOT / package / f"{name}.py").is_file() for name in public)
    # `cli` is run, not imported; the server implements `space_access` without importing it.
    assert set(public) - used <= {"cli", "space_access"}, "named public but imported by no other package"

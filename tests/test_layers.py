"""The layers depend downward only: a walk over every import in the project's packages.

    tasks, runtime, feedback      the ground: what a task is, ONNX Runtime, the feedback store
    serving                       the answer path (Service, prompts) on tasks + runtime
    app (web)  |  export (models) both stand on the layers above and never import each other
    app.py, bench                 entry points and measurements: may use anything
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "tasks", "runtime", "feedback", "serving", "app", "export", "bench")
# what each package may import from the project besides itself
ALLOWED = {
    "config": set(),
    "runtime": {"config"},
    "tasks": {"runtime"},  # retrieval (QA) embeds with runtime.embedder
    "feedback": {"config"},
    "serving": {"config", "tasks", "runtime"},
    "app": {"config", "tasks", "runtime", "serving", "feedback"},
    "export": {"config", "tasks", "runtime", "serving", "feedback"},
    "bench": set(PACKAGES),
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in a file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES}
    return found


def files_of(package: str) -> list[Path]:
    return [ROOT / "config.py"] if package == "config" else sorted((ROOT / package).rglob("*.py"))


def violations() -> list[str]:
    out = []
    for package, allowed in ALLOWED.items():
        for path in files_of(package):
            for imported in sorted(project_imports(path) - allowed - {package}):
                out.append(f"{path.relative_to(ROOT)} imports {imported}")
    return out


def test_layers_depend_downward_only():
    assert violations() == []


def test_the_walk_sees_function_level_imports(tmp_path):
    """The check is not vacuous: an `export -> app` import inside a function is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from app.ui import build_demo\n    import serving.service\n")
    assert project_imports(f) == {"app", "serving"}


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "config"])
def test_every_package_is_walked(package):
    assert files_of(package), package

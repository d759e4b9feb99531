"""The layering of DEVELOPERS.md, checked by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is not installed (pip install -e '.[test]')"
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = (ROOT / "pyproject.toml").read_text(encoding="utf-8").count("[[tool.importlinter.contracts]]")
    assert contracts >= 8 and f"{contracts} kept, 0 broken" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [line for line in readme[:40] if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2, "README must open with exactly two set-up commands"
    assert "mammo-review" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "README.md" in ci and "bash -c" in ci
    # .ci/run greps the README for its command: the pattern must pick the second line, not the first.
    found = re.search(r"grep -m1 -A0 '([^']+)' README\.md", ci)
    assert found, ".ci/run no longer greps README.md for its command"
    picked = [line for line in readme if re.search(found.group(1), line)]
    assert picked[:1] == [commands[1]], (found.group(1), picked)
    assert '".[cpu]"' in commands[0] and '".[cpu,' in commands[1]  # exactly one ONNX Runtime extra each


def test_app_state_objects_import_only_qtcore() -> None:
    """import-linter cannot forbid an external subpackage, so this reads app/models' imports."""
    offending = []
    for path in sorted((ROOT / "app" / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offending += [f"{path.name}: {n}" for n in names if n.startswith("PySide6.") and n != "PySide6.QtCore"
                          and not n.startswith("PySide6.QtCore.")]
    assert not offending, offending
    assert (ROOT / "app" / "models" / "state.py").exists()

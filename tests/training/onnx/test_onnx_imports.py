"""training.onnx has no import cycle: layout <- export, weights; checkpoint; source -> both; command on top."""

from __future__ import annotations

import ast
from pathlib import Path

import training.onnx

PACKAGE = Path(training.onnx.__file__).parent


def _imports() -> dict[str, set[str]]:
    """training.onnx module -> the training.onnx modules it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for file in sorted(PACKAGE.glob("*.py")):
        name = f"training.onnx.{file.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "training.onnx":
                    found |= {f"training.onnx.{a.name}" for a in node.names}
                elif node.module.startswith("training.onnx."):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("training.onnx.")}
        graph[name] = found - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_training_onnx_has_no_import_cycle() -> None:
    graph = _imports()
    assert {"training.onnx.export", "training.onnx.weights", "training.onnx.checkpoint"} <= set(graph)
    assert _cycle(graph) is None, graph


def test_checkpoints_and_weights_do_not_know_each_other() -> None:
    graph = _imports()
    assert graph["training.onnx.layout"] == set()
    assert graph["training.onnx.checkpoint"] == set()
    assert graph["training.onnx.weights"] == {"training.onnx.layout"}
    assert "training.onnx.export" not in graph["training.onnx.weights"] | graph["training.onnx.checkpoint"]

"""Import direction: the terminal layer sits on top, nothing below it reaches back up.

``bot_v2.cli`` (parsing, command handlers, rendering) and ``bot_v2.tools`` (operator scripts, the dashboard) may
import the trading core; the core -- orchestration, state, risk, domain, config, brokers, strategies, monitoring
-- returns data and never imports the CLI, a renderer, rich or click, nor prints. Imports inside functions count
too (read from the source, not from what happens to be imported at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bot_v2"
CORE = ("orchestration", "state", "risk", "domain", "config", "brokerages", "strategies", "monitoring")
FORBIDDEN = ("bot_v2.cli", "bot_v2.tools", "bot_v2.render", "rich", "click")
# a runnable module of its own (``python -m bot_v2.brokerages.simulated``) may print its address at start
MAY_PRINT = {"brokerages/simulated/__main__.py"}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # ``from bot_v2 import cli`` names the package in the alias
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _core_modules() -> list[Path]:
    return sorted(p for layer in CORE for p in (SRC / layer).rglob("*.py"))


def test_the_core_layers_exist() -> None:
    assert len(_core_modules()) > 50
    assert (SRC / "cli" / "handlers.py").is_file() and not (SRC / "render.py").exists()


@pytest.mark.parametrize("layer", CORE)
def test_the_core_never_imports_the_terminal_layer(layer: str) -> None:
    wrong = []
    for path in sorted((SRC / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in _imports(tree):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
                wrong.append(f"{path.relative_to(SRC)}:{line}: imports {name}")
        relative = str(path.relative_to(SRC))
        for node in ast.walk(tree):
            if (
                relative not in MAY_PRINT
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                wrong.append(f"{relative}:{node.lineno}: print() (return data; the CLI renders it)")
    assert not wrong, "\n".join(wrong)

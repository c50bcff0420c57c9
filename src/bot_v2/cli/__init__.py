"""The command-line layer (``perps-bot``): the top of the import graph.

Three parts, pointing one way:

- ``app``: the click command -- flag parsing, settings and logging, the dispatch to one handler, and the
  one-line error and exit code for whatever a handler raises (``python -m bot_v2.cli`` and the console
  script ``perps-bot = bot_v2.cli:main`` start here);
- ``handlers``: one function per operator command -- calls the work in ``bot_v2.orchestration.commands`` (which
  returns data and never prints), renders it, decides the exit code;
- ``render``: terminal output (rich tables, exact JSON).

Nothing under ``bot_v2.orchestration`` or ``bot_v2.state`` imports this package, rich or a renderer
(tests/unit/test_layers.py).
"""

from bot_v2.cli.app import cli, main

__all__ = ["cli", "main"]

"""``python -m bot_v2.cli``: the same entry point as the ``perps-bot`` console script."""

from bot_v2.cli.app import main

main()

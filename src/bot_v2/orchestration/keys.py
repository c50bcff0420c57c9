"""State key names of the trading loop, in one place. Keys are relative ``<kind>:<id>`` (the state layer adds
the bot's namespace); each kind lives in one ``StateCategory``.

======================  ==============  ====================================================================
key                     category        value
======================  ==============  ====================================================================
``intents:<coid>``      INTENTS         the order intent, durable before the exchange is called
``orders:<coid>``       ORDERS          the order as the exchange last reported it
``fills:<trade_id>``    FILLS           one exchange fill, stored exactly once
``positions:<symbol>``  POSITIONS       fill-derived net position, average entry, realized PnL, fees
``marks:<symbol>``      MARKS           last best bid/ask
``history:<symbol>``    MARKS           the symbol's strategy ``PriceHistory`` (written at a clean stop)
``guards:risk``         GUARDS          ``RiskEngine.export_state()``
``safety:mode``         SAFETY          trading state + reasons (human-readable copy of the engine state)
``control:operator``    CONTROL         operator kill switch / reduce-only / clear requests
``control:applied``     CONTROL         the last clear request the bot applied (its acknowledgement)
``control:reconcile_applied``
                        CONTROL         the last reconcile request (``--reconcile``) the bot ran
``control:emergency``   CONTROL         queued ``--cancel-all`` / ``--flatten`` / ``--place-order`` requests
``control:emergency_applied``
                        CONTROL         the last emergency request the bot carried out, and the results
``reconcile:watermark`` METADATA        order discovery starts here next time (``{watermark, updated_at}``)
``metadata:running``    METADATA        the running marker ``{pid, started_at, unclean_previous}``: present
                                        while a bot runs, removed on clean exit (``checkpointing.py`` reads it)
``metadata:last_run``   METADATA        summary of the last clean exit / last recovery
``portfolio:pnl``       PORTFOLIO       realized / unrealized PnL and fees totals
``metadata:archive``    METADATA        what history archiving moved so far: per-symbol net quantity of the
                                        archived fills, counts, horizon, and the live keys of a move in
                                        progress (``records.ArchiveSummary``, ``history.py``)
``archive:<live key>``  ARCHIVE         a terminal order / final intent / booked fill older than the
                                        retention window (``archive:orders:<coid>``, ``archive:intents:<coid>``,
                                        ``archive:fills:<trade_id>``): body in COLD, index row in WARM; start-up
                                        never lists or reads them
======================  ==============  ====================================================================
"""

from __future__ import annotations

from bot_v2.domain import ClientOrderId, Symbol, TradeId

INTENT_PREFIX = "intents:"
ORDER_PREFIX = "orders:"
FILL_PREFIX = "fills:"
POSITION_PREFIX = "positions:"
MARK_PREFIX = "marks:"
HISTORY_PREFIX = "history:"
ARCHIVE_PREFIX = "archive:"

GUARDS_KEY = "guards:risk"
SAFETY_KEY = "safety:mode"
CONTROL_KEY = "control:operator"
CLEAR_ACK_KEY = "control:applied"
RECONCILE_ACK_KEY = "control:reconcile_applied"
EMERGENCY_KEY = "control:emergency"
EMERGENCY_ACK_KEY = "control:emergency_applied"
WATERMARK_KEY = "reconcile:watermark"
RUNNING_KEY = "metadata:running"
LAST_RUN_KEY = "metadata:last_run"
PNL_KEY = "portfolio:pnl"
ARCHIVE_KEY = "metadata:archive"


def intent_key(client_order_id: ClientOrderId | str) -> str:
    return INTENT_PREFIX + client_order_id


def order_key(client_order_id: ClientOrderId | str) -> str:
    return ORDER_PREFIX + client_order_id


def fill_key(trade_id: TradeId | str) -> str:
    return FILL_PREFIX + trade_id


def position_key(symbol: Symbol | str) -> str:
    return POSITION_PREFIX + symbol


def mark_key(symbol: Symbol | str) -> str:
    return MARK_PREFIX + symbol


def history_key(symbol: Symbol | str) -> str:
    return HISTORY_PREFIX + symbol


def archive_key(live_key: str) -> str:
    """Where history archiving keeps a live record (``orders:pb-1`` -> ``archive:orders:pb-1``)."""
    return ARCHIVE_PREFIX + live_key


def suffix(key: str, prefix: str) -> str:
    """The id part of ``key`` (``intents:pb-1`` -> ``pb-1``)."""
    return key[len(prefix) :] if key.startswith(prefix) else key

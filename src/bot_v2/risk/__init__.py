"""Pure risk layer: guards judge (snapshot, now); ``RiskEngine`` owns ACTIVE / REDUCE_ONLY / HALTED.

No I/O and no clock here: the orchestration loop passes ``now`` in and persists ``RiskEngine.export_state()``
and the ``Transition`` events the engine returns.
"""

from bot_v2.risk.alerts import Alert, AlertLevel, AlertSnapshot, AlertThresholds, evaluate_alerts
from bot_v2.risk.config import RISK_ENV_DOCS, RISK_ENV_VARS, DrawdownAction, RiskConfig
from bot_v2.risk.engine import STATE_SCHEMA_VERSION, RiskEngine, RiskVerdict
from bot_v2.risk.guards import ORDER_GUARDS, Breach, GuardResult, OrderContext
from bot_v2.risk.snapshot import RiskSnapshot, price_move_pct
from bot_v2.risk.state import (
    ActiveReason,
    DailyPnlTracker,
    ReasonCode,
    Recovery,
    TradingState,
    Transition,
    unhealthy_reasons,
)

__all__ = [
    "ORDER_GUARDS",
    "RISK_ENV_DOCS",
    "RISK_ENV_VARS",
    "STATE_SCHEMA_VERSION",
    "ActiveReason",
    "Alert",
    "AlertLevel",
    "AlertSnapshot",
    "AlertThresholds",
    "Breach",
    "DailyPnlTracker",
    "DrawdownAction",
    "GuardResult",
    "OrderContext",
    "ReasonCode",
    "Recovery",
    "RiskConfig",
    "RiskEngine",
    "RiskSnapshot",
    "RiskVerdict",
    "TradingState",
    "Transition",
    "evaluate_alerts",
    "price_move_pct",
    "unhealthy_reasons",
]

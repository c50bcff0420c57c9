"""What engine operations return: placement results, previews, cancel and edit outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from bot_v2.brokerages.simulated.models import SimOrder

__all__ = ["CancelOutcome", "EditOutcome", "PlaceResult", "Preview"]


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order: SimOrder | None
    reason: str = ""
    message: str = ""
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.order is not None


@dataclass(frozen=True, slots=True)
class Preview:
    errs: list[str]
    base_size: Decimal
    quote_size: Decimal
    commission: Decimal
    order_total: Decimal
    best_bid: Decimal
    best_ask: Decimal
    slippage: Decimal
    leverage: Decimal
    margin_total: Decimal
    max_leverage: Decimal | None
    average_price: Decimal


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    order_id: str
    success: bool
    failure_reason: str


@dataclass(frozen=True, slots=True)
class EditOutcome:
    order: SimOrder | None
    errors: list[tuple[str, str]] = field(
        default_factory=list
    )  # (edit_failure_reason, preview_failure_reason)
    preview: Preview | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

"""Value types shared by every layer: ids, enums, products, orders, fills, positions (Decimal money, UTC)."""

from bot_v2.domain.types import *  # noqa: F403
from bot_v2.domain.types import __all__  # noqa: F401

"""perps-bot: Coinbase Advanced Trade bot with tiered state."""

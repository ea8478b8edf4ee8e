"""Risk use cases: the limits in force and the audited overrides (`current_limits`), the market
facts the pre-trade gates read (`market`)."""

"""TWS gateway simulator: IB's wire protocol, a matching engine and market data (`epm sim`)."""

"""epm's own alerting (blueprint §12.3): facts loaded from the ledger and Redis, the conditions
of `models.alerts`, published to the Redis stream `ops.alerts` and the log."""

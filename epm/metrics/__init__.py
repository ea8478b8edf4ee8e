"""Prometheus metrics of epm: the blueprint's §12.1 set and the bridge/queue health beside it."""

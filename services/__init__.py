"""The service layer: one module per use case, each load → one call into `models` → save → publish.

Shells (Celery tasks, the CLI, the bridge's callers) call these; `store/` underneath holds only
tables, queries and repositories, `models/` above holds every decision.
"""

"""Reconciliation use cases: the venue's executions and positions against the ledger.

See `docs/recon.md`.

`executions.reconcile_executions` (every 5 minutes) and `positions.reconcile_positions` (end of
day, on demand) each ask the venue through the `venue.VenueSnapshots` port, compare in
`models.recon`, repair or flag, and write one `recon_runs` row, whatever happened.
"""

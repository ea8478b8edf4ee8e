"""The operator runbooks (blueprint §12.4) as use cases: each checks step by step, prints what
it checks and does, acts only when told to (`--yes`; a dry run says what it would do), and
writes one `audit_log` row with every step (`runbook.<name>`).

The bridge is reached through `RunbookBridge` (the CLI's adapter over
`ibgateway_bridge.client_api` and the bridge's Redis keys): services never import the bridge.
The decisions are pure (`models.runbook`).
"""

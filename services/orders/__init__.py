"""The orders path: an admitted intent → a plan of children → IB orders, each sent once.

`plan_intent` (the `tasks.orders.plan_intent` task, enqueued by intake on admission) stores the
playbook's children as SCHEDULED orders; `send_due` (beat's scheduler tick, about every second)
claims the due ones, prices them on the market snapshot, commits each with its IB order id and
only then asks the bridge to place it. See `docs/orders.md`.
"""

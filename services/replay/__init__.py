"""`epm replay` and `epm drill` as use cases: the real intake, playbooks, scheduler and ledger
code stepped on the data's own clock against the replay venue (`services.replay.venue`), into a
fresh ledger, then the extracts. `docs/replay.md`."""

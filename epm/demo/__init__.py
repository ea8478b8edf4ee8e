"""`epm demo`: the whole system trading one scripted afternoon against the simulator.

`supervisor` starts and stops the processes, `scenario` holds the venue's scenario and the
scripted session, `view` the live progress, `summary` the end tables and the reconciliation
verdict.
"""

"""The submit host's side of a run's life: prepare it, submit it, fold in what its job wrote, select and cost it.

- `lifecycle`: recipe -> rendered config -> job spec -> run dir, and handing it to a backend
- `submission`: recording a submission in the ledger before the scheduler sees it, and recovering from a crash
- `sync`: folding the job's files and the scheduler's word into the ledger (the one refresh every verb uses)
- `ledger`: the SQLite ledger, written on the submit host only
- `select`: which runs a selector names (ids, short ids, recipes, sweeps)
- `cost`: what a run cost (GPU- or CPU-hours)

`status`, `report` and `sweep` import from here; nothing here imports them.
"""

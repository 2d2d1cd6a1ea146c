"""What runs on a compute node (or here, for the local backend): the job and the files it writes.

- `spec`: the job spec and its resources, built on the submit host and pickled for the node
- `task`: the job itself (`CodebaseJob`, the callable submitit runs in every task)
- `files`: what the job and the submit host tell each other through its run directory, and the run states
- `checkpoints`: checkpoint files a crash cannot leave half written, and recovery at restart
- `cpu_dist`: CPU tasks join a gloo process group before the codebase's script runs

This package imports only itself, `swinctl.models` and the shared, stdlib-only leaves (`swinctl.errors`,
`swinctl.results`, `swinctl.textlog`, `swinctl.param_names`): never the submit host's side (tests/test_layout.py).
Importing it is cheap: nothing here is imported by `swinctl.job` itself.
"""

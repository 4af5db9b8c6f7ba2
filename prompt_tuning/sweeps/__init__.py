"""Sweeps: settings multiplied out into runs of the entry points, and the launchers that start them.

`spec` reads sweep files (JSON, see `configs/sweeps/`) and flags into a list of runs, each with
its own gin files, bindings and output folder under a sweep root; `plan` checks every run's gin
config, writes the root's manifest and each run's command; `status` reads how far a run got from
its MODEL_DIR; `launch` starts the runs here (`local`), writes a SLURM array script (`slurm`) or
prints one command per line (`print`). `python -m prompt_tuning.sweep` is the entry point.
"""

"""Configuration: gin files and bindings, the command-line flags, and the one-line error types.

The bottom layer of the package: it imports nothing else from `prompt_tuning`, so every other
layer may raise its errors and read its settings.
  errors.py      UsageError / ConfigError, the errors a user gets as one line
  checks.py      every setting's type and range (SETTINGS), output folders: one-line refusals
  fileio.py      atomic file writes with the user's umask
  gin_config.py  gin parsing: search paths, `--gin.NAME=VALUE` bindings, config.gin
  cli.py         T5X's flags and the `main` every entry point calls
"""

"""The errors a user gets as one line (`prompt_tuning.<entry>: error: ...`, exit status 2).

Raise these for anything the user can fix (flags, settings, files); the entry points turn them
into the one line without a traceback. Anything else is a bug and keeps its traceback.
"""


class UsageError(Exception):
  """A problem in the user's flags, config or files: reported as one line, without a traceback."""


class ConfigError(ValueError):
  """A model setting that cannot work; the command-line tools print it as one line."""

"""The step between the command line and a run: what the flags ask of the data package."""
from __future__ import annotations

import argparse
from typing import Callable


def with_flags(run: Callable[[], object]) -> Callable[[argparse.Namespace], object]:
  """`run` (a gin-bound run function) preceded by the data settings of the flags: the TFDS
  data folder the seqio tasks read (`--tfds_data_dir`)."""
  def launch(flags: argparse.Namespace):
    if flags.tfds_data_dir:
      import seqio
      seqio.set_tfds_data_dir_override(flags.tfds_data_dir)
    return run()
  return launch

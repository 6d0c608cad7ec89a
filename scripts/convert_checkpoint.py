#!/usr/bin/env python3
"""``fcn-edge convert``, kept under this name for the commands in README and older notes (fcn_edge/train/convert.py)."""

from fcn_edge.errors import exit_without_torch, quiet_interrupt_while_importing

quiet_interrupt_while_importing()  # Ctrl-C while the imports below load (seconds): one line, exit 130

exit_without_torch("fcn-edge convert")  # before the import below loads torch

from fcn_edge.train.convert import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

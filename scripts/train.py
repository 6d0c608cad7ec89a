#!/usr/bin/env python3
"""``fcn-edge train``, kept under this name for the commands in README and older notes (fcn_edge/train/__main__.py)."""

from fcn_edge.errors import exit_without_torch

exit_without_torch("fcn-edge train")  # before the import below loads torch

from fcn_edge.train.__main__ import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

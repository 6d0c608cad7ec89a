#!/usr/bin/env python3
"""``fcn-edge calibration-set``, kept under this name for the commands in README and older notes (fcn_edge/quantize/calibration_set.py)."""

from fcn_edge.errors import quiet_interrupt_while_importing

quiet_interrupt_while_importing()  # Ctrl-C while the imports below load (seconds): one line, exit 130

from fcn_edge.quantize.calibration_set import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

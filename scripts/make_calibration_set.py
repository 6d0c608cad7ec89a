#!/usr/bin/env python3
"""``fcn-edge calibration-set``, kept under this name for the commands in README and older notes (fcn_edge/quantize/calibration_set.py)."""

from fcn_edge.quantize.calibration_set import main

if __name__ == "__main__":
    raise SystemExit(main())

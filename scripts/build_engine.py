#!/usr/bin/env python3
"""``fcn-edge build``, kept under this name for the commands in README and older notes (fcn_edge/compile/__main__.py)."""

from fcn_edge.compile.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())

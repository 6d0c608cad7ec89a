#!/usr/bin/env python3
"""``fcn-edge build``, kept under this name for the commands in README and older notes (fcn_edge/compile/__main__.py)."""

from fcn_edge.errors import quiet_interrupt_while_importing

quiet_interrupt_while_importing()  # Ctrl-C while the imports below load (seconds): one line, exit 130

from fcn_edge.compile.__main__ import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

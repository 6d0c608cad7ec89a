"""Camera inference loop: sources -> runner -> overlay -> sinks, pipelined (pipeline.py); run ``python -m fcn_edge.stream``.

Kept import-free so the CLI reports a bad flag or a missing camera before the heavy imports.
"""

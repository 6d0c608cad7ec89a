"""Camera inference loop: sources -> runner -> overlay -> sinks, pipelined (pipeline.py); run ``fcn-edge stream``.

Kept import-free so the CLI reports a bad flag or a missing camera before the heavy imports.
"""

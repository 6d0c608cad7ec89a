"""Runners: one small interface (activate, infer, deactivate) over ONNX Runtime and TensorRT; see base.py."""

from .base import Runner, open_runner

__all__ = ["Runner", "open_runner"]

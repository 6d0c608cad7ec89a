"""Export to ONNX (needs torch): the deployed graph (preprocessing to uint8 labels), graph passes, verification."""

from .onnx import DEFAULT_OPSET, export_checkpoint, export_model
from .passes import PassReport, replace_bilinear_deconvs
from .report import ExportReport
from .verify import DEFAULT_VERIFY_SIZES, Tolerance

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_VERIFY_SIZES",
    "ExportReport",
    "PassReport",
    "Tolerance",
    "export_checkpoint",
    "export_model",
    "replace_bilinear_deconvs",
]

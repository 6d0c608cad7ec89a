"""Export to ONNX: the deployed graph (preprocessing to uint8 labels), graph passes, verification, metadata."""

from .metadata import ModelMetadata, read_metadata, write_metadata
from .onnx import DEFAULT_OPSET, export_checkpoint, export_model
from .passes import PassReport, replace_bilinear_deconvs
from .report import ExportReport
from .verify import DEFAULT_VERIFY_SIZES, Tolerance

__all__ = [
    "DEFAULT_OPSET", "DEFAULT_VERIFY_SIZES", "ExportReport", "ModelMetadata", "PassReport", "Tolerance",
    "export_checkpoint", "export_model", "read_metadata", "replace_bilinear_deconvs", "write_metadata",
]

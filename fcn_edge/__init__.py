"""fcn_edge: train FCN segmentation models and compile them for fast, verified edge inference."""

__version__ = "0.1.0"

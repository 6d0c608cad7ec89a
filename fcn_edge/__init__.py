"""fcn_edge: train FCN segmentation models and compile them for fast, verified edge inference."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("FCN_EDGE_TENSORRT_STANDIN"):  # tests and CI only: TensorRT and CUDA stand-ins (fcn_edge.standin)
    from .standin import install_from_environment as _install

    _install()

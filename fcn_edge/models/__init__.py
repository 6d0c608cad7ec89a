"""FCN models: backbones, heads, decoder upsamplers and weight loading."""

from .fcn import FCN, HEADS, ModelConfig, build_model

__all__ = ["FCN", "HEADS", "ModelConfig", "build_model"]

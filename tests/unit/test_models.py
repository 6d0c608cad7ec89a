"""FCN heads, upsamplers, backbone weight loading and checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from fcn_edge.checkpoint import load_checkpoint, save_checkpoint
from fcn_edge.errors import FcnEdgeError
from fcn_edge.models import HEADS, ModelConfig, build_model
from fcn_edge.models.upsample import UPSAMPLE_MODES, DeconvUpsample, bilinear_kernel
from fcn_edge.models.weights import load_pretrained_backbone, load_state_strict
from fcn_edge.spec import Preprocess


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
@pytest.mark.parametrize("shape", [(1, 3, 37, 61), (2, 3, 256, 320)])
def test_logits_match_input_size(head, upsample, shape):
    model = build_model(ModelConfig(num_classes=5, head=head, upsample=upsample)).eval()
    with torch.no_grad():
        logits = model(torch.randn(shape))
    assert logits.shape == (shape[0], 5, shape[2], shape[3])
    assert torch.isfinite(logits).all()


def test_bilinear_deconv_upsamples_a_constant_map_to_the_same_constant():
    up = DeconvUpsample(2, 2)
    with torch.no_grad():
        out = up(torch.full((1, 2, 6, 6), 3.0))
    assert out.shape == (1, 2, 12, 12)
    # away from the zero-padded border the bilinear kernel's taps sum to one per output pixel
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.tensor(3.0), atol=1e-6)
    kernel = bilinear_kernel(1, 4)[0, 0]
    assert torch.allclose(kernel[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))


def torchvision_resnet18_keys() -> dict[str, tuple[int, ...]]:
    """torchvision's resnet18 state-dict layout, written out from its architecture by hand."""

    def bn(prefix, c):
        return {
            f"{prefix}.weight": (c,),
            f"{prefix}.bias": (c,),
            f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,),
            f"{prefix}.num_batches_tracked": (),
        }

    keys = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes
            keys[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            keys.update(bn(f"{p}.bn1", planes))
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(bn(f"{p}.bn2", planes))
            if block == 0 and layer > 1:
                keys[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                keys.update(bn(f"{p}.downsample.1", planes))
        inplanes = planes
    keys["fc.weight"], keys["fc.bias"] = (1000, 512), (1000,)
    return keys


def test_torchvision_resnet18_state_dict_loads_by_key(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {
        k: (torch.tensor(7) if not shape else torch.randn(shape, generator=generator))
        for k, shape in torchvision_resnet18_keys().items()
    }
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    model = build_model(ModelConfig(num_classes=3, backbone="resnet18"))
    load_pretrained_backbone(model.backbone, path)
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}
    assert torch.equal(loaded["layer3.0.downsample.0.weight"], state["layer3.0.downsample.0.weight"])
    assert torch.equal(loaded["bn1.running_var"], state["bn1.running_var"])


def test_pretrained_backbone_of_wrong_depth_names_keys(tmp_path):
    state = {k: torch.zeros(s) for k, s in torchvision_resnet18_keys().items()}
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    model = build_model(ModelConfig(num_classes=3, backbone="resnet34"))
    with pytest.raises(FcnEdgeError, match=r"missing: layer1\.2\.conv1\.weight"):
        load_pretrained_backbone(model.backbone, path)


def test_checkpoint_round_trip_and_architecture_mismatch(tmp_path):
    config = ModelConfig(num_classes=4, backbone="edge_resnet", head="fcn16s")
    model = build_model(config).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, config, ["a", "b", "c", "d"], [(0, 0, 0)] * 4, Preprocess())
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == config and checkpoint.classes == ["a", "b", "c", "d"]
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(checkpoint.build()(x), model(x))
    other = build_model(ModelConfig(num_classes=4, head="fcn8s"))
    with pytest.raises(FcnEdgeError) as error:
        load_state_strict(other, checkpoint.state_dict, str(path))
    assert "skip_scores.pool3.weight" in str(error.value) and "missing" in str(error.value)
    wider = build_model(ModelConfig(num_classes=6, head="fcn16s"))
    with pytest.raises(FcnEdgeError, match=r"wrong shape: classifier\.4\.weight"):
        load_state_strict(wider, checkpoint.state_dict, str(path))


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(FcnEdgeError, match="not an fcn_edge checkpoint"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(FcnEdgeError, match="junk.pt is not an fcn_edge checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")

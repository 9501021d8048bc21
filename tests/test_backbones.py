import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from cytolens.errors import ModelError
from cytolens.models.backbones import create_backbone, create_classifier, mean_std


def _imagenet_input(image: np.ndarray, backbone: str) -> torch.Tensor:
    pixels = resize(image, (224, 224), anti_aliasing=True).astype(np.float32)  # 0-1
    mean, std = mean_std(backbone)
    tensor = torch.from_numpy((pixels - np.array(mean, np.float32)) / np.array(std, np.float32))
    return tensor.permute(2, 0, 1)[None]


def test_efficientnet_lite0_weights_are_imagenet():
    model = create_classifier("tf_efficientnet_lite0", weights="imagenet").eval()
    with torch.no_grad():
        cat = model(_imagenet_input(data.chelsea(), "tf_efficientnet_lite0")).softmax(-1)[0]
        coffee = model(_imagenet_input(data.coffee(), "tf_efficientnet_lite0")).softmax(-1)[0]
    top3 = cat.topk(3).indices.tolist()
    assert all(281 <= index <= 285 for index in top3), top3  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(coffee.argmax()) == 967  # espresso


def test_random_init_is_not_imagenet():
    model = create_classifier("tf_efficientnet_lite0", weights=None).eval()
    with torch.no_grad():
        probabilities = model(_imagenet_input(data.chelsea(), "tf_efficientnet_lite0")).softmax(-1)[0]
    assert float(probabilities[281:286].sum()) < 0.5


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18", "mobilenetv3_large_100"])
def test_backbone_features_at_strides_8_16_32(name):
    backbone = create_backbone(name, weights=None)
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert [f.shape[-1] for f in features] == [12, 6, 3]
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()


def test_backbone_weights_file(tmp_path):
    source = create_backbone("resnet18", weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("resnet18", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_backbone_errors(tmp_path):
    with pytest.raises(ModelError, match="no offline ImageNet weights"):
        create_backbone("resnet18", weights="imagenet")
    with pytest.raises(ModelError, match="not found"):
        create_backbone("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="unknown backbone"):
        create_backbone("vgg16")

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_model

from leukml.data.images import decode_image
from leukml.model.gradcam import explain_image, gradcam
from leukml.model.networks import build_network, split_network


@pytest.mark.parametrize("arch", ["vgg16", "resnet50"])
def test_gradcam_heatmap_has_image_size_and_structure(arch, real_sample):
    # seeded: an unseeded random base can give an all-zero map (no positive gradient), a flaky test
    net = build_network(tiny_model(arch=arch, image_size=96), seed=0)
    image = decode_image(next(real_sample.rglob("*.bmp")), 96)
    heat, cls, p_all = gradcam(split_network(net.model), image)
    assert heat.shape == (96, 96)
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.std() > 0.01  # not a constant map
    assert cls in (0, 1) and 0.0 <= p_all <= 1.0
    picture, _, _ = explain_image(net.model, image)
    assert picture.shape == (96, 96, 3) and picture.dtype == np.uint8

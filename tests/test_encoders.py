"""Encoders: shapes, the one uint8-to-float conversion, clear shape errors."""

import pytest
import torch

from framework.library.encoders import ConvEncoder, IdentityEncoder, MLPEncoder


def test_identity_and_mlp_encode_vectors():
    obs = torch.randn(5, 7)
    assert torch.equal(IdentityEncoder((7,))(obs), obs)
    encoder = MLPEncoder((7,), feature_dim=16)
    assert encoder(obs).shape == (5, 16) and encoder.feature_dim == 16


def test_conv_encoder_takes_uint8_images_and_scales_them_itself():
    encoder = ConvEncoder((3, 64, 64), depth=8)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    features = encoder(images)
    # DreamerV2's stack on 64x64: 64 -> 31 -> 14 -> 6 -> 2 pixels, 8 * depth channels.
    assert features.shape == (2, 8 * 8 * 2 * 2) == (2, encoder.feature_dim)
    expected = encoder.net(images.float() / 255.0 - 0.5)
    torch.testing.assert_close(features, expected)
    with pytest.raises(TypeError, match="uint8"):
        encoder(images.float())


def test_wrong_shapes_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(batch, 7\); got \(5, 6\)"):
        MLPEncoder((7,))(torch.randn(5, 6))
    with pytest.raises(ValueError, match="needs vector observations"):
        IdentityEncoder((3, 64, 64))

"""BAP, signed sqrt, bilinear and compact bilinear pooling."""
import pytest
import torch
import torch.nn.functional as F

from fgvc.models.pooling import (
    BilinearPooling,
    CompactBilinearPooling,
    bilinear_attention_pool,
    bilinear_pool,
    create_pooling,
    signed_sqrt,
)


def test_bap_matches_loop():
    torch.manual_seed(0)
    feats, attn = torch.randn(2, 5, 3, 4), torch.rand(2, 3, 3, 4)
    out = bilinear_attention_pool(feats, attn)
    assert out.shape == (2, 3, 5)
    ref = torch.zeros(2, 3, 5)
    for b in range(2):
        for m in range(3):
            for c in range(5):
                ref[b, m, c] = (attn[b, m] * feats[b, c]).mean()
    torch.testing.assert_close(out, ref)


def test_bap_resizes_attention():
    out = bilinear_attention_pool(torch.randn(2, 4, 6, 6), torch.rand(2, 3, 3, 3))
    assert out.shape == (2, 3, 4)


def test_signed_sqrt_then_l2_is_unit_norm():
    x = torch.randn(4, 50) * 10
    y = signed_sqrt(x)
    torch.testing.assert_close(y.abs() ** 2, x.abs(), rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.sign(y), torch.sign(x))
    torch.testing.assert_close(F.normalize(y, dim=1).norm(dim=1), torch.ones(4))
    z = torch.zeros(3, requires_grad=True)
    signed_sqrt(z, 1e-8).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_bilinear_pool_is_mean_outer_product():
    feats = torch.randn(2, 3, 2, 2)
    out = bilinear_pool(feats)
    x = feats.flatten(2)  # B, C, L
    ref = torch.stack([sum(torch.outer(x[b, :, l], x[b, :, l]) for l in range(4)) / 4 for b in range(2)])
    torch.testing.assert_close(out, ref.flatten(1))
    assert BilinearPooling(3).out_dim == 9


def test_compact_bilinear_approximates_bilinear_kernel():
    torch.manual_seed(0)
    c, d = 16, 4096
    x = torch.randn(64, c, 1, 1)
    y = x + 0.5 * torch.randn(64, c, 1, 1)
    exact = ((x.flatten(1) * y.flatten(1)).sum(1)) ** 2  # <x, y>^2
    ests = []
    for _ in range(8):  # fresh hashes each time: the estimator is unbiased over hash draws
        cbp = CompactBilinearPooling(c, d)
        ests.append((cbp(x) * cbp(y)).sum(1))
    approx = torch.stack(ests).mean(0)
    rel = (approx - exact).abs().mean() / exact.abs().mean()
    assert rel < 0.1
    # bilinear pooling gives the exact kernel: <vec(x x^T), vec(y y^T)> = <x, y>^2
    torch.testing.assert_close((bilinear_pool(x) * bilinear_pool(y)).sum(1), exact, rtol=1e-4, atol=1e-3)


def test_compact_pooling_shapes_buffers_and_grad():
    cbp = CompactBilinearPooling(8, 64)
    assert {"hash1", "hash2", "sign1", "sign2"} <= set(cbp.state_dict())
    assert set(cbp.sign1.unique().tolist()) <= {-1.0, 1.0} and int(cbp.hash1.max()) < 64
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = cbp(x)
    assert out.shape == (2, 64)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # averaged over locations: pooling two copies of one location equals pooling that location
    one = torch.randn(1, 8, 1, 1)
    torch.testing.assert_close(cbp(one.expand(1, 8, 2, 2)), cbp(one), atol=1e-5, rtol=1e-4)


def test_create_pooling():
    assert create_pooling("bilinear", 4).out_dim == 16
    assert create_pooling("compact", 4, 32).out_dim == 32
    with pytest.raises(ValueError, match="did you mean 'bilinear'"):
        create_pooling("bilinar", 4)

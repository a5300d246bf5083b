"""Every registered model: output shape, unit-norm embeddings, and its published size."""

from __future__ import annotations

import pytest
import torch

from facetrain.models import create_model, list_models

# Parameter counts as published: InsightFace's IResNets (512-d), MobileFaceNet's paper
# (~0.99M, 128-d), OpenFace's nn4.small2 table (3,733,968), and facenet-pytorch's
# InceptionResnetV1 without logits (checked live below).
PUBLISHED = {
    "iresnet18": (512, 24.0e6),
    "iresnet34": (512, 34.1e6),
    "iresnet50": (512, 43.6e6),
    "iresnet100": (512, 65.2e6),
    "mobilefacenet": (128, 0.99e6),
    "nn4_small2": (128, 3_733_968),
}


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_lists_all_families():
    half = {"iresnet18_050", "iresnet34_050"}
    others = {"inception_resnet_v1", "nn4_small2_bn", "dlib_resnet"}
    assert set(list_models()) == {*PUBLISHED, *half, *others}
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet9000")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_size_and_output(name):
    emb, published = PUBLISHED[name]
    m = create_model(name, embedding_size=emb).eval()
    # 1.5%: the papers round (MobileFaceNet's "0.99M" leaves out part of its BN/PReLU terms)
    assert abs(n_params(m) - published) / published < 0.015
    s = m.input_size
    with torch.no_grad():
        y = m(torch.randn(3, 3, s, s))
        raw = m.embed(torch.randn(3, 3, s, s), normalize=False)
    assert y.shape == (3, emb) and raw.shape == (3, emb)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("depth", ["18", "34"])
def test_half_width_iresnet_keeps_the_depth_and_halves_every_layer(depth, tmp_path):
    """iresnetNN_050: the same layers as iresnetNN, each with half the channels; at 256-d
    the 18-layer one's half-precision file fits the 16 MB a lent GPU hands back."""
    from facetrain.inference.record import Preprocess, save_model

    full, half = create_model(f"iresnet{depth}", 256), create_model(f"iresnet{depth}_050", 256)
    convs = [[m for m in net.modules() if isinstance(m, torch.nn.Conv2d)] for net in (full, half)]
    assert len(convs[0]) == len(convs[1]) > 20
    for a, b in zip(*convs):
        assert (a.out_channels, a.kernel_size, a.stride) == (2 * b.out_channels, b.kernel_size,
                                                              b.stride)  # fmt: skip
    assert half.fc.in_features * 2 == full.fc.in_features
    with torch.no_grad():
        y = half.eval()(torch.randn(2, 3, 112, 112))
    assert y.shape == (2, 256) and torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-5)
    if depth == "18":
        pre = Preprocess(model="iresnet18_050", embedding_size=256, input_size=112)
        path = save_model(tmp_path / "half.safetensors", half.to(torch.float16), pre)
        assert 11e6 < path.stat().st_size < 16e6


def test_nn4_small2_is_openface_exactly():
    assert n_params(create_model("nn4_small2", 128)) == 3_733_968


def test_nn4_small2_bn_spreads_a_batch_over_the_sphere():
    """The feature BN is nn4.small2 plus 2x128 parameters. At initialisation the plain net
    points every face of a batch nearly the same way (one shared direction dominates), so a
    normalised ArcFace/CosFace head sees almost one point and training collapsed
    (docs/benchmarks.md); the BN centres the batch, spreading the directions apart."""
    assert n_params(create_model("nn4_small2_bn", 128)) == 3_733_968 + 2 * 128
    torch.manual_seed(0)
    x = torch.rand(16, 3, 80, 80) * 2 - 1
    mean_cos = {}
    for name in ("nn4_small2", "nn4_small2_bn"):
        m = create_model(name, 128).train()
        with torch.no_grad():
            e = m(x)
        cos = e @ e.T
        mean_cos[name] = float((cos.sum() - cos.diagonal().sum()) / (16 * 15))
    assert mean_cos["nn4_small2"] > 0.5
    assert abs(mean_cos["nn4_small2_bn"]) < 0.1


@pytest.mark.parametrize("name", list_models())
def test_each_model_says_whether_its_embedding_leaves_a_batchnorm(name):
    """`embedding_batchnorm`, which training reads to warn of a margin head that will not
    learn, is what the network computes: a BatchNorm last centres a training batch."""
    torch.manual_seed(0)
    m = create_model(name, 64).train()
    s = m.input_size
    with torch.no_grad():
        z = m.embed_raw(torch.rand(4, 3, s, s) * 2 - 1)
    centred = bool(z.mean(0).abs().max() < 1e-4 * z.abs().max())
    assert centred == m.embedding_batchnorm


def test_a_margin_head_from_scratch_on_a_plain_embedding_is_warned_of():
    from facetrain.train.loop import head_unfit
    from facetrain.train.settings import TrainConfig

    def said(arch, loss, **more):
        cfg = TrainConfig().replace(model=arch, loss=loss, **more)
        return head_unfit(cfg, create_model(arch, 64))

    assert "train nn4_small2_bn, which has one" in said("nn4_small2", "arcface")
    assert "cosface from scratch on dlib_resnet" in said("dlib_resnet", "cosface")
    assert said("nn4_small2_bn", "arcface") is None and said("nn4_small2", "softmax") is None
    assert said("nn4_small2", "arcface", init_from="runs/softmax") is None


def test_inception_resnet_v1_matches_facenet_architecture():
    from facenet_pytorch import InceptionResnetV1

    ours = create_model("inception_resnet_v1", 512).eval()
    assert n_params(ours) == n_params(InceptionResnetV1(pretrained=None))
    with torch.no_grad():
        y = ours(torch.randn(2, 3, 160, 160))
    assert y.shape == (2, 512) and torch.allclose(y.norm(dim=1), torch.ones(2), atol=1e-5)
    assert n_params(create_model("inception_resnet_v1", 128)) < n_params(ours)


def test_train_mode_gradients_flow():
    m = create_model("mobilefacenet", 64).train()
    y = m.embed(torch.randn(4, 3, 112, 112), normalize=False)
    y.pow(2).sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_the_architecture_table_is_what_create_model_builds():
    """`facetrain models` lists ARCHITECTURES without importing torch (it starts in well
    under a second); each row must be what `create_model(name)` really builds."""
    from facetrain.models import ARCHITECTURES, list_models

    assert [a.name for a in ARCHITECTURES] == list_models()
    for a in ARCHITECTURES:
        m = create_model(a.name).eval()
        built = (m.input_size, m.embed(torch.zeros(1, 3, a.input_size, a.input_size)).shape[1],
                 sum(p.numel() for p in m.parameters()))  # fmt: skip
        assert built == (a.input_size, a.embedding_size, a.params), a.name


@pytest.mark.parametrize("name", sorted(list_models()))
def test_a_channels_last_batch_gives_the_same_embeddings(name):
    """A CPU feeds faces channels-last (`inference.feed`) to weights in any layout: every
    family must read them as the same faces (a flatten of the wrong order would not)."""
    torch.manual_seed(0)
    m = create_model(name, embedding_size=32).eval()
    s = m.input_size
    x = torch.rand(2, 3, s, s) * 255
    with torch.no_grad():
        plain = m.embed(x, normalize=False)
        last = m.embed(x.contiguous(memory_format=torch.channels_last), normalize=False)
    assert last.shape == plain.shape == (2, 32)
    assert torch.allclose(plain, last, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))


def test_misfit_says_what_keeps_weights_out_of_a_model():
    """The one check that init_from, model files and imports make before loading: it names
    a missing tensor, one with no place, and one of another shape; weights that fit pass."""
    from facetrain.models.fit import misfit

    own = create_model("nn4_small2", 32).state_dict()
    assert misfit(own, dict(own)) is None
    other = create_model("nn4_small2", 128).state_dict()
    assert misfit(own, other) == "linear.weight is [128, 736] there, [32, 736] here; " \
                                 "linear.bias is [128] there, [32] here"  # fmt: skip
    less = {k: v for k, v in own.items() if k != "linear.bias"}
    assert misfit(own, less) == "missing 1 (e.g. linear.bias)"
    more = {**own, "head.weight": torch.zeros(3)}
    assert misfit(own, more) == "unexpected 1 (e.g. head.weight)"
    assert misfit(own, more, extra_ok=True) is None
    wide = create_model("iresnet18", 512).state_dict()
    many = {k: v.new_zeros(1) if v.dim() else v for k, v in wide.items()}
    assert misfit(wide, many).endswith(" more)")

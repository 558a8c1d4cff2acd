import torch

from engine.models.tae import (
    TAE,
    TAEConfig,
    TemporalConv,
    outlier_fraction,
    outlier_penalty,
)
from engine.models.text import TextConditioner, TextConfig, WordEncoderConfig, tokenize
from engine.models.transformer import DiT, DiTConfig
from engine.tiling import blend_tiles, blend_weights

TINY_TAE = TAEConfig(latent_channels=4, channels=(8, 16, 16), decoder_channels=(8, 16, 16), groups=4, heads=2)


def test_tae_shapes_images_and_any_length():
    tae = TAE(TINY_TAE).eval()
    for frames in (1, 5, 8, 32):
        x = torch.rand(2, 3, frames, 32, 48) * 2 - 1
        z = tae.encode(x)
        assert z.shape == (2, 4, (frames + 3) // 4, 4, 6)
        y = tae.decode(z, frames)
        assert y.shape == x.shape and y.abs().max() <= 1
    assert TINY_TAE.latent_shape(32, 64, 64) == (4, 8, 8, 8)


def test_temporal_conv_starts_as_identity():
    conv = TemporalConv(6, 6)
    x = torch.randn(2, 6, 7, 3, 3)
    assert torch.allclose(conv(x), x)
    down = TemporalConv(6, 6, stride=2)
    assert down(x).shape[2] == 4 and down(torch.randn(1, 6, 1, 2, 2)).shape[2] == 1


def test_blend_weights_and_tiles():
    assert torch.allclose(blend_weights(3), torch.tensor([0.25, 0.5, 0.75]))
    a, b = torch.zeros(1, 1, 6, 1, 1), torch.ones(1, 1, 6, 1, 1)
    out = blend_tiles([(0, a), (3, b)], 9)[0, 0, :, 0, 0]
    # frames 3..5 ramp from the first tile to the second, the rest copy their tile.
    assert torch.allclose(out, torch.tensor([0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]))


def test_tiled_decode_bounds_memory():
    cfg = TAEConfig(**{**TINY_TAE.__dict__, "tile_latents": 2, "tile_overlap": 1})
    tae = TAE(cfg).eval()
    seen = []
    tae.decoder.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[2]))
    z = torch.randn(1, 4, 12, 2, 2)
    y = tae.decode(z, 48)
    assert y.shape == (1, 3, 48, 16, 16) and max(seen) == 2 and len(seen) == 11


def test_outlier_penalty():
    z = torch.randn(4, 16, 4, 8, 8)
    assert outlier_penalty(z) == 0 and outlier_fraction(z) == 0
    z[0, :, 0, 0, 0] = 100.0
    assert outlier_penalty(z) > 0 and outlier_fraction(z) > 0


def test_dit_zero_init_and_shapes():
    cfg = DiTConfig(in_channels=4, width=32, depth=2, heads=2, ffn=64, time_dim=32)
    dit = DiT(cfg)
    ctx = torch.randn(2, 5, 32)
    for t_frames in (1, 3):
        x = torch.randn(2, 4, t_frames, 4, 6)
        v = dit(x, torch.rand(2), ctx)
        assert v.shape == x.shape and v.abs().max() == 0  # adaLN-zero + zero output projection
    assert dit.positions(3, 2, 3).shape == (18, 32)


def test_dit_extra_channels_start_silent_and_mask_is_respected():
    cfg = DiTConfig(in_channels=4, extra_channels=5, width=32, depth=2, heads=2, ffn=64, time_dim=32, tasks=3)
    dit = DiT(cfg)
    torch.manual_seed(0)
    for p in dit.parameters():  # wake every zero-initialised layer except the extra input weights
        if p.abs().sum() == 0 and p is not dit.cond_embed.weight:
            p.data.normal_(std=0.1)
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.rand(1), torch.randn(1, 5, 32)
    base = dit(x, t, ctx)
    assert base.abs().max() > 0
    assert torch.allclose(dit(x, t, ctx, cond=torch.randn(1, 5, 2, 4, 4)), base, atol=1e-6)
    # Padding tokens behind a False mask change nothing.
    padded = torch.cat([ctx, torch.randn(1, 3, 32)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    assert torch.allclose(dit(x, t, padded, mask), base, atol=1e-5)
    assert not torch.allclose(dit(x, t, ctx, task=torch.tensor([1])), base)


def test_text_tokens_and_conditioner():
    ids, mask = tokenize(["A Red circle", "a red   CIRCLE", ""], 16, 64)
    assert torch.equal(ids[0], ids[1]) and mask[2].sum() == 1  # case and spacing do not matter
    cond = TextConditioner(TextConfig(words=WordEncoderConfig(width=16, depth=1, heads=2, summary_tokens=3)), 24)
    tok, m = cond(["a red circle moving left", "blue"])
    assert tok.shape == (2, 6 + 3, 24) and m.shape == (2, 9) and m[1].sum() == 2 + 3


def test_edge_loss_sees_a_lost_edge():
    from engine.train.tae_stage import edge_loss

    x = torch.full((1, 1, 1, 4, 4), -1.0)
    x[..., 2:] = 1.0  # a vertical edge of height 2 between columns 1 and 2
    assert edge_loss(x, x) == 0
    assert torch.isclose(edge_loss(torch.zeros_like(x), x), torch.tensor(2 / 3))  # 1 of 3 differences, off by 2

"""Conditions in the sequence (docs/conditioning.md): a source's or a reference's clean latent tokens
appended to the target's, read one way by self-attention, placed and marked as designed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from engine.models.generator import Generator
from engine.models.transformer import FRAMES, REFERENCE, SOURCE, DiT, DiTConfig
from engine.sampling import two_scale_velocity, windowed
from engine.train.recipe import PRESETS, edit_generator_config

CFG = DiTConfig(in_channels=4, width=32, depth=2, heads=2, ffn=64, time_dim=32, max_t=4, max_h=8, max_w=8)


def _models() -> tuple[DiT, DiT]:
    """A T2V DiT with every weight drawn (none left at its zero start) and the same grown with
    context kinds."""
    torch.manual_seed(0)
    base = DiT(CFG)
    with torch.no_grad():
        for p in base.parameters():
            p.normal_(std=0.1)
    grown = DiT(dataclasses.replace(CFG, context_kinds=2))
    missing, unexpected = grown.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["markers"] and not unexpected
    return base.eval(), grown.eval()


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 4, 2, 8, 8, generator=g)  # 2 x 4 x 4 = 32 target tokens
    t = torch.rand(b, generator=g)
    text = torch.randn(b, 3, 32, generator=g)
    source = torch.randn(b, 4, 2, 8, 8, generator=g)
    reference = torch.randn(b, 4, 1, 8, 8, generator=g)
    return x, t, text, source, reference


@torch.no_grad()
def test_masked_or_absent_context_is_the_t2v_model():
    base, grown = _models()
    x, t, text, source, reference = _inputs()
    v = base(x, t, text)
    drop = torch.zeros(2, dtype=torch.bool)
    assert torch.equal(grown(x, t, text), v)
    assert torch.allclose(grown(x, t, text, source=source, source_keep=drop), v, atol=1e-6)
    got = grown(x, t, text, source=source, source_keep=drop, reference=reference, reference_keep=drop)
    assert torch.allclose(got, v, atol=1e-6)


@torch.no_grad()
def test_context_reaches_attention_per_sample():
    _, grown = _models()
    x, t, text, source, reference = _inputs()
    v = grown(x, t, text, source=source)
    assert v.shape == x.shape  # only the target's tokens come out: the loss sees them alone
    assert (v - grown(x, t, text)).abs().mean() > 1e-3  # the source changes the output
    other = source.clone()
    other[1] = torch.randn_like(other[1])
    v2 = grown(x, t, text, source=other)
    assert torch.equal(v2[0], v[0]) and (v2[1] - v[1]).abs().mean() > 1e-3  # each sample reads its own
    r1 = grown(x, t, text, reference=reference)
    r2 = grown(x, t, text, reference=reference.flip(-1))
    assert (r1 - r2).abs().mean() > 1e-3  # the reference changes the output
    # One sample's condition dropped: it is the T2V output, the other keeps its condition.
    keep = torch.tensor([True, False])
    mixed = grown(x, t, text, source=source, source_keep=keep)
    assert torch.allclose(mixed[0], v[0], atol=1e-6)
    assert torch.allclose(mixed[1], grown(x, t, text)[1], atol=1e-6)


@torch.no_grad()
def test_positions_and_markers():
    _, grown = _models()
    _, _, _, source, reference = _inputs()
    _, pos, mask = grown.context_tokens(source, None, None, None)
    assert pos.shape == (2, 32, 32) and mask.all()
    assert torch.allclose(pos[1], grown.positions(2, 4, 4) + grown.markers[SOURCE])  # the target's own places
    _, pos, _ = grown.context_tokens(None, None, reference, None)
    hw = (grown.pos_h[:4, None] + grown.pos_w[None, :4]).reshape(16, -1)
    assert torch.allclose(pos[0], hw + grown.markers[REFERENCE])  # (h, w) only: no time of its own
    _, pos, mask = grown.context_tokens(source, torch.tensor([True, False]), reference, None)
    assert pos.shape == (2, 48, 32) and mask.tolist() == [[True] * 48, [False] * 32 + [True] * 16]
    with pytest.raises(ValueError, match="context_kinds"):
        DiT(CFG).context_tokens(source, None, None, None)


@torch.no_grad()
def test_context_read_once_is_the_same():
    """The conditions' states depend on the clean latents alone (not the noisy target, its time or
    the prompt): read once per clip, they give what reading them inside every call gives."""
    _, grown = _models()
    x, t, text, source, reference = _inputs()
    states = grown.read_context(source=source, reference=reference)
    assert len(states.kv) == len(grown.blocks) and states.kv[0][0].shape == (2, 2, 48, 16)
    for x_, t_, text_ in ((x, t, text), (torch.randn_like(x), torch.rand(2), torch.randn_like(text))):
        direct = grown(x_, t_, text_, source=source, reference=reference)
        assert torch.allclose(grown(x_, t_, text_, context_states=states), direct, atol=1e-6)


def test_loss_trains_through_the_context():
    """The loss is on the target's tokens; its gradient reaches the marker and the shared patch
    embedding through the context, and none of the source reaches the output directly."""
    _, grown = _models()
    grown.train()
    x, t, text, source, _ = _inputs()
    loss = F.mse_loss(grown(x, t, text, source=source), torch.zeros_like(x))
    loss.backward()
    assert grown.markers.grad[SOURCE].abs().sum() > 0
    assert grown.markers.grad[REFERENCE].abs().sum() == 0  # no reference given: its row untouched


@torch.no_grad()
def test_two_scale_guidance_terms():
    """v(none) masks the source out and is the T2V model's; the three terms in one batch equal
    three separate calls."""
    base, grown = _models()
    x, t, text, source, _ = _inputs(1)
    empty = torch.zeros_like(text)
    keep, drop = torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
    full = {"context": text, "source": source, "source_keep": keep}
    src = {"context": empty, "source": source, "source_keep": keep}
    none = {"context": empty, "source": source, "source_keep": drop}
    v = two_scale_velocity(grown, full, src, none, 5.0, 1.5)(x, t)
    vf, vs, vn = grown(x, t, **full), grown(x, t, **src), grown(x, t, **none)
    assert torch.allclose(vn, base(x, t, empty), atol=1e-6)
    assert torch.allclose(v, vn + 1.5 * (vs - vn) + 5.0 * (vf - vs), atol=1e-5)


@torch.no_grad()
def test_windows_cut_the_source_with_the_clip():
    """Time windows (long sources) give each window the source frames at its own place."""
    _, grown = _models()
    g = torch.Generator().manual_seed(2)
    x, source = torch.randn(1, 4, 4, 8, 8, generator=g), torch.randn(1, 4, 4, 8, 8, generator=g)
    t, text = torch.rand(1, generator=g), torch.randn(1, 3, 32, generator=g)
    v = windowed(grown, 2, 0)(x, t, context=text, source=source)
    first = grown(x[:, :, :2], t, text, source=source[:, :, :2])
    assert torch.allclose(v[:, :, :2], first, atol=1e-6)


def test_edit_generator_in_sequence():
    gcfg = PRESETS["tiny"].generator
    cfg = edit_generator_config(gcfg, "sequence")
    assert cfg.dit.context_kinds == 2 and cfg.dit.extra_channels == 0 and cfg.dit.tasks > 0
    Generator(cfg)  # builds


@torch.no_grad()
def test_sampling_reads_the_conditions_once(monkeypatch):
    """denoise's read_once: the same velocity as the model's own, the conditions read once for
    every step and guidance term of a clip (a new condition is read anew)."""
    from engine.denoise import read_once

    _, grown = _models()
    gen = type("G", (), {})()  # what read_once needs of a Generator: call it, and its dit
    gen.dit = grown
    gen.__class__.__call__ = lambda self, *a, **k: grown(*a, **k)
    x, t, text, source, _ = _inputs()
    want = grown(x, t, text, source=source)
    calls = []
    real = grown.read_context
    monkeypatch.setattr(grown, "read_context", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = read_once(gen)
    for _ in range(3):
        got = net(x, t, context=text, source=source)
    assert len(calls) == 1
    assert torch.allclose(got, want, atol=1e-6)
    net(x, t, context=text, source=source.clone())
    assert len(calls) == 2
    assert torch.equal(net(x, t, context=text), grown(x, t, text))  # no condition: the model as it is


@torch.no_grad()
def test_place_bias_pulls_each_target_token_to_the_source_at_its_place():
    """With a place bias, a target token's attention to the source token at its own place grows
    with the bias; a dropped source is still no source."""
    base, _ = _models()
    grown = DiT(dataclasses.replace(CFG, context_kinds=2, place_bias=3.0)).eval()
    grown.load_state_dict(base.state_dict(), strict=False)
    plain = DiT(dataclasses.replace(CFG, context_kinds=2)).eval()
    plain.load_state_dict(grown.state_dict(), strict=False)
    x, t, text, source, _ = _inputs()
    assert grown.blocks[0].place_bias.tolist() == [3.0, 3.0]
    drop = torch.zeros(2, dtype=torch.bool)
    assert torch.allclose(grown(x, t, text, source=source, source_keep=drop), base(x, t, text), atol=1e-5)
    assert (grown(x, t, text, source=source) - plain(x, t, text, source=source)).abs().mean() > 1e-3
    # The bias itself: a zero bias is no bias; a positive one moves each token towards its own.
    attn, h = grown.blocks[0].attn, torch.randn(1, 32, 32)
    kv = attn.project(torch.randn(1, 32, 32))[1:]
    with_bias = attn(h, extra=kv, extra_bias=grown.blocks[0].place_bias[:, None, None] * torch.eye(32))
    zero_bias = attn(h, extra=kv, extra_bias=torch.zeros(2, 32, 32))
    assert torch.allclose(zero_bias, attn(h, extra=kv), atol=1e-6) and (with_bias - zero_bias).abs().mean() > 1e-3


def _framed() -> DiT:
    """The drawn T2V DiT grown with given frames (FRAMES, a TAE stride of 4)."""
    base, _ = _models()
    framed = DiT(dataclasses.replace(CFG, context_kinds=3, frame_stride=4))
    missing, unexpected = framed.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ["frame_phase", "markers"] and not unexpected
    return framed.eval()


@torch.no_grad()
def test_given_frames_sit_at_their_time_and_phase():
    framed = _framed()
    z = torch.randn(2, 4, 3, 8, 8)  # three given latent frames each
    at = torch.tensor([[0, 1, 3], [2, 2, 0]])
    phase = torch.tensor([[0, 4, 3], [1, 2, 0]])
    keep = torch.tensor([[True, True, False], [True, False, False]])
    tok, pos, mask = framed.context_tokens(None, None, None, None, z, at, phase, keep)
    assert tok.shape == (2, 48, 32) and pos.shape == (2, 48, 32)
    hw = (framed.pos_h[:4, None] + framed.pos_w[None, :4]).reshape(16, -1)
    for b in range(2):
        for f in range(3):
            want = framed.pos_t[at[b, f]] + framed.frame_phase[phase[b, f]] + framed.markers[FRAMES] + hw
            assert torch.allclose(pos[b, 16 * f : 16 * (f + 1)], want)
    assert mask.tolist() == [[True] * 32 + [False] * 16, [True] * 16 + [False] * 32]
    # The same picture at another phase or time is another condition.
    x, t, text, _, _ = _inputs()
    v = framed(x, t, text, frames=z, frame_at=at, frame_phase=phase)
    assert not torch.allclose(v, framed(x, t, text, frames=z, frame_at=at, frame_phase=(phase + 1) % 5))
    assert not torch.allclose(v, framed(x, t, text, frames=z, frame_at=(at + 1) % 4, frame_phase=phase))
    with pytest.raises(ValueError, match="frame_at and frame_phase"):
        framed.context_tokens(None, None, None, None, z, at[:, :2], phase, None)
    with pytest.raises(ValueError, match="latent time"):
        framed.context_tokens(None, None, None, None, z, at + 4, phase, None)
    with pytest.raises(ValueError, match="no given frames"):
        _models()[1].context_tokens(None, None, None, None, z, at, phase, None)


@torch.no_grad()
def test_given_frames_masked_out_are_the_t2v_model_and_read_once():
    base, _ = _models()
    framed = _framed()
    x, t, text, _, _ = _inputs()
    z = torch.randn(2, 4, 2, 8, 8)
    at, phase = torch.tensor([[0, 1], [0, 3]]), torch.tensor([[0, 4], [4, 3]])
    none = torch.zeros(2, 2, dtype=torch.bool)
    assert torch.allclose(
        framed(x, t, text, frames=z, frame_at=at, frame_phase=phase, frames_keep=none), base(x, t, text), atol=1e-6
    )
    one = torch.tensor([[True, False], [False, False]])  # sample 0 reads its first frame only
    v = framed(x, t, text, frames=z, frame_at=at, frame_phase=phase, frames_keep=one)
    alone = framed(x[:1], t[:1], text[:1], frames=z[:1, :, :1], frame_at=at[:1, :1], frame_phase=phase[:1, :1])
    assert torch.allclose(v[0], alone[0], atol=1e-5) and torch.allclose(v[1], base(x, t, text)[1], atol=1e-6)
    states = framed.read_context(frames=z, frame_at=at, frame_phase=phase, frames_keep=one)
    assert torch.allclose(framed(x, t, text, context_states=states), v, atol=1e-6)

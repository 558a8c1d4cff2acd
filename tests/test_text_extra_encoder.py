"""A second text encoder (a local transformers model) is added by configuration alone."""

import shutil

import pytest
import torch
from safetensors import safe_open

transformers = pytest.importorskip("transformers")

from engine.checkpoint import load_component, save_component  # noqa: E402
from engine.models.generator import Generator, GeneratorConfig  # noqa: E402
from engine.models.text import HFEncoderConfig, TextConfig, WordEncoderConfig  # noqa: E402
from engine.models.transformer import DiTConfig  # noqa: E402


def test_extra_encoder_tokens_are_projected_and_concatenated(local_bert):
    words = WordEncoderConfig(width=16, depth=1, heads=2, summary_tokens=2)
    dit = DiTConfig(in_channels=4, width=32, depth=1, heads=2, ffn=64, time_dim=32)
    one = Generator(GeneratorConfig(dit=dit, text=TextConfig(words=words)))
    two = Generator(GeneratorConfig(dit=dit, text=TextConfig(words=words, extra=(HFEncoderConfig(local_bert),))))
    prompt = ["a red circle moving left on a blue background"]
    c1, c2 = one.encode_prompts(prompt), two.encode_prompts(prompt)
    n_bert = 1 + 9 + 1  # [CLS] + 9 words + [SEP]
    assert c2["context"].shape == (1, c1["context"].shape[1] + n_bert, 32)
    assert c2["context_mask"].all()
    # The backbone is the same class and config either way and reads both.
    x = torch.randn(1, 4, 2, 4, 4)
    assert two(x, torch.rand(1), **c2).shape == x.shape
    assert not any(p.requires_grad for p in two.text.encoders[1].parameters())  # frozen


def test_a_transformers_encoder_is_referenced_by_a_relative_path_not_copied(local_bert, tmp_path):
    """Saved with the model, the encoder's weights stay in its own folder (named relative to the
    model folder, so both move together); a model may also have it alone, without the word encoder."""
    model = tmp_path / "my-model"
    shutil.copytree(local_bert, model / "encoders" / "bert")
    dit = DiTConfig(in_channels=4, width=32, depth=1, heads=2, ffn=64, time_dim=32)
    cfg = GeneratorConfig(dit=dit, text=TextConfig(words=None, extra=(HFEncoderConfig("encoders/bert"),)))
    gen = Generator(cfg.resolved(model))
    assert len(gen.text.encoders) == 1 and gen.external_prefixes() == ("text.encoders.0.",)
    save_component(model / "t2v", "generator", cfg, gen)
    with safe_open(str(model / "t2v" / "model.safetensors"), "pt") as f:
        stored = list(f.keys())
    assert stored and not any(k.startswith("text.encoders.") for k in stored)  # only the projection and DiT
    moved = tmp_path / "moved"
    shutil.move(model, moved)  # the folder moves, the relative path still holds
    back = load_component(moved / "t2v", Generator, GeneratorConfig)
    prompt = ["a red circle moving left"]
    assert torch.equal(back.encode_prompts(prompt)["context"], gen.encode_prompts(prompt)["context"])
    with pytest.raises(ValueError, match="needs the word encoder or at least one transformers encoder"):
        TextConfig(words=None)

"""A second text encoder (a local transformers model) is added by configuration alone."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from engine.models.generator import Generator, GeneratorConfig  # noqa: E402
from engine.models.text import HFEncoderConfig, TextConfig, WordEncoderConfig  # noqa: E402
from engine.models.transformer import DiTConfig  # noqa: E402


@pytest.fixture()
def local_bert(tmp_path):
    # A tiny randomly initialised BERT with a hand-written WordPiece vocabulary: no download.
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "a",
        "red",
        "circle",
        "moving",
        "left",
        "on",
        "blue",
        "background",
    ]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    cfg = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    return str(tmp_path)


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

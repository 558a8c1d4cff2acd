"""Shared fixtures: a tiny untrained model folder built in seconds (real components, tiny sizes)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.checkpoint import save_component  # noqa: E402
from engine.models.generator import Generator  # noqa: E402
from engine.models.rewrite import PromptRewriter  # noqa: E402
from engine.models.tae import TAE  # noqa: E402
from engine.models.upsampler import SkipDecoder  # noqa: E402
from engine.train.animate_stage import animate_generator_config, grow_for_animation  # noqa: E402
from engine.train.edit_stage import grow_for_editing  # noqa: E402
from engine.train.personalize_stage import grow_for_personalization, personalize_generator_config  # noqa: E402
from engine.train.recipe import PRESETS, edit_generator_config  # noqa: E402


def _open_blocks(model: Generator) -> None:
    """An untrained DiT's blocks are the identity (their gates start at zero), so nothing in the
    sequence would reach the output; open them a little so a condition's tokens visibly act."""
    for block in model.dit.blocks:
        block.mod_table.normal_(std=0.1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    p = PRESETS["tiny"]
    out = tmp_path_factory.mktemp("tiny-model")
    tae = TAE(p.tae)
    with torch.no_grad():
        tae.preview_weight.normal_()
    save_component(out / "tae", "tae", p.tae, tae)
    gen = Generator(p.generator)
    with torch.no_grad():  # an untrained generator outputs exactly zero; give it some signal
        gen.dit.out.weight.normal_(std=0.02)
    save_component(out / "t2v", "generator", p.generator, gen)
    # The edit model grown from it (the source in the sequence; the task embedding starts at zero,
    # given some signal so tests can see it act).
    ecfg = edit_generator_config(p.generator)
    editor = grow_for_editing(gen, ecfg)
    with torch.no_grad():
        editor.dit.task_embed.weight.normal_(std=0.1)
        _open_blocks(editor)
    save_component(out / "edit", "generator", ecfg, editor)
    # The upsampler: its transformer and its skip decoder (from the TAE decoder's weights), with
    # some signal in the parts that start at zero.
    torch.manual_seed(1)  # each task model seeded on its own: another one's design leaves it be
    up = Generator(p.upsampler)
    updec = SkipDecoder(p.tae)
    updec.decoder.load_state_dict(tae.decoder.state_dict())
    with torch.no_grad():
        up.dit.out.weight.normal_(std=0.02)
        up.dit.cond_embed.weight.normal_(std=0.1)
        updec.residual.weight.normal_(std=0.01)
    save_component(out / "upscale", "generator", p.upsampler, up)
    save_component(out / "upscale-decoder", "skip_decoder", p.tae, updec)
    # The personalization model: the T2V generator reading the reference in the sequence.
    pcfg = personalize_generator_config(p.generator, p.reference)
    torch.manual_seed(2)
    personalizer = grow_for_personalization(gen, pcfg)
    with torch.no_grad():
        _open_blocks(personalizer)
    save_component(out / "personalize", "generator", pcfg, personalizer)
    # The animation model: the T2V generator reading given frames.
    acfg = animate_generator_config(p.generator, p.tae.temporal_down)
    torch.manual_seed(3)
    animator = grow_for_animation(gen, acfg)
    with torch.no_grad():
        _open_blocks(animator)
    save_component(out / "animate", "generator", acfg, animator)
    return out


def tiny_rewriter(min_confidence: float) -> PromptRewriter:
    """An untrained tiny prompt rewriter; min_confidence 0 makes it rewrite every prompt."""
    torch.manual_seed(0)
    return PromptRewriter(replace(PRESETS["tiny"].rewriter, min_confidence=min_confidence)).eval()


@pytest.fixture()
def rewriting_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model folder plus a tiny rewriter that rewrites every prompt."""
    out = tmp_path / "rewriting-model"
    shutil.copytree(tiny_model_dir, out)
    rw = tiny_rewriter(0.0)
    save_component(out / "rewrite", "rewriter", rw.cfg, rw)
    return out


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture()
def local_bert(tmp_path):
    """A local transformers text encoder (a tiny BERT) in a folder, made offline."""
    import transformers

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

"""The whole staged recipe as one command, with named presets (one table, like nanoGPT/flux).

    python -m engine train --preset shapes-v2 --out runs/shapes-v2

rebuilds the shipped default model from scratch with fixed seeds: TAE -> text encoder parse
pre-training -> text-to-image warm-up -> joint image + video -> video-only refinement -> decoder
fine-tune -> prompt rewriter. shapes-v2 is sized for one GPU (~22 min on an H100); shapes-v1 is
the same design sized for our 2-core CPU. The same command runs under
`torchrun --nproc-per-node N python -m engine train ...` with DDP.

The stages are one table (STAGES, at the end): a name for `--stages`, whether a preset has the
stage, and the function that runs it from the preset and what earlier stages produced (`Build`).
A new stage is one row there.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import config_from_dict, load_weights, read_config, save_component
from ..models.generator import Generator, GeneratorConfig
from ..models.reference import ReferenceConfig
from ..models.rewrite import PromptRewriter, RewriterConfig
from ..models.tae import TAE, TAEConfig
from ..models.text import TextConfig, WordEncoderConfig
from ..models.transformer import DiTConfig
from ..world.captions import SLOT_CLASSES
from .animate_stage import AnimateTrainConfig, animate_frozen, animate_generator_config, train_animate
from .character_tae_stage import CharacterTAETrainConfig, train_character_tae
from .common import Runtime, has_state, setup
from .edit_stage import EditTrainConfig, train_edit
from .personalize_stage import PersonalizeTrainConfig, personalize_generator_config, train_personalize
from .run_config import dump_toml
from .t2v_stage import T2VTrainConfig, train_t2v
from .tae_stage import DecoderTrainConfig, TAETrainConfig, finetune_decoder, train_tae
from .text_stage import TextTrainConfig, parse_accuracy, train_text
from .upscale_stage import (
    SkipDecoderTrainConfig,
    UpsamplerTrainConfig,
    UpscaleData,
    UpscaleDataConfig,
    build_data,
    train_skip_decoder,
    train_upsampler,
)


@dataclass(frozen=True)
class Preset:
    tae: TAEConfig
    tae_train: TAETrainConfig
    generator: GeneratorConfig
    text_train: TextTrainConfig
    t2v_train: T2VTrainConfig
    decoder_train: DecoderTrainConfig = field(default_factory=DecoderTrainConfig)
    refine_train: T2VTrainConfig | None = None  # a video-only stage after the joint one
    # Generator weights on disk. bf16 halves the file; loading casts them back to fp32, and the
    # transformer runs under bf16 autocast where that is native (the shipped verdicts are the same
    # in fp32); the refine stage starts from what was saved.
    generator_dtype: str = "float32"
    # The prompt rewriter (engine/models/rewrite.py): a parser of typed prompts, trained on its own.
    rewriter: RewriterConfig | None = None
    rewrite_train: TextTrainConfig | None = None
    # Instruction editing (edit_stage.py): the generator grown with the source's channels and a
    # task embedding, trained from the t2v stage's output.
    edit_train: EditTrainConfig | None = None
    # The spatial upsampler (upscale_stage.py): its data, its skip decoder, its transformer.
    upscale_data: UpscaleDataConfig | None = None
    updecoder_train: SkipDecoderTrainConfig | None = None
    upsampler: GeneratorConfig | None = None
    upscale_train: UpsamplerTrainConfig | None = None
    # Personalization: the TAE taught patterned characters first, then PT2V from the T2V weights.
    character_tae: CharacterTAETrainConfig | None = None
    reference: ReferenceConfig | None = None
    personalize_train: PersonalizeTrainConfig | None = None
    # Given frames: image-to-video, extension, interpolation, from the T2V weights.
    animate_train: AnimateTrainConfig | None = None
    threads: int = 2
    notes: str = field(default="")


V2_JOINT = T2VTrainConfig(
    videos=20000,
    images=20000,
    image_steps=400,
    joint_steps=2600,
    video_batch=256,
    image_batch=512,
    lr=8e-4,
    ema=0.999,
    # A GPU step is ~0.1 s and a saved state ~250 MB: every 500 steps loses under a minute to a kill.
    checkpoint_every=500,
)

PRESETS: dict[str, Preset] = {
    # Seconds on a CPU: what the tests build.
    "tiny": Preset(
        tae=TAEConfig(latent_channels=4, channels=(8, 16, 16), decoder_channels=(8, 16, 16), groups=4, heads=2),
        tae_train=TAETrainConfig(steps=3, opl_steps=2, batch=2, frames=4, image_batch=2, pool=6),
        generator=GeneratorConfig(
            dit=DiTConfig(in_channels=4, width=32, depth=2, heads=2, ffn=64, time_dim=32),
            text=TextConfig(words=WordEncoderConfig(width=32, depth=1, heads=2, slot_classes=SLOT_CLASSES)),
        ),
        text_train=TextTrainConfig(steps=3, batch=8),
        t2v_train=T2VTrainConfig(
            videos=4, images=4, frames=8, image_steps=2, joint_steps=4, video_batch=2, image_batch=4, checkpoint_every=2
        ),
        refine_train=T2VTrainConfig(
            videos=4, images=0, frames=8, image_steps=0, joint_steps=2, image_every=0, video_batch=2, two_objects=0.7
        ),
        decoder_train=DecoderTrainConfig(steps=3, batch=2, frames=4, image_batch=2, pool=4, hard_share=0.5),
        generator_dtype="bfloat16",
        rewriter=RewriterConfig(
            words=WordEncoderConfig(width=32, depth=1, heads=2, slot_classes=SLOT_CLASSES, subwords=True)
        ),
        rewrite_train=TextTrainConfig(steps=3, batch=8, typed=True),
        edit_train=EditTrainConfig(
            video_sources=3,
            video_edits=2,
            image_sources=4,
            image_edits=2,
            frames=8,
            image_steps=2,
            steps=4,
            keep_from=2,
            video_batch=2,
            image_batch=4,
            image_every=2,
            warmup=1,
            checkpoint_every=2,
        ),
        upscale_data=UpscaleDataConfig(world_clips=2, photo_clips=1, frames=8, size=64, crop=32, chunk=2),
        updecoder_train=SkipDecoderTrainConfig(steps=3, batch=2, frames=4, warmup=1, checkpoint_every=2),
        upsampler=GeneratorConfig(
            dit=DiTConfig(in_channels=4, extra_channels=4, width=32, depth=1, heads=2, ffn=64, time_dim=32),
            text=TextConfig(words=WordEncoderConfig(width=16, depth=1, heads=2, vocab=64, summary_tokens=1)),
        ),
        upscale_train=UpsamplerTrainConfig(steps=3, batch=2, warmup=1, checkpoint_every=2),
        character_tae=CharacterTAETrainConfig(steps=3, pool=4, batch=2, frames=4, image_batch=2, checkpoint_every=2),
        reference=ReferenceConfig(patch=16, width=16, depth=1, heads=2),
        personalize_train=PersonalizeTrainConfig(
            videos=3,
            images=4,
            frames=8,
            steps=4,
            same_until=2,
            video_batch=2,
            image_batch=4,
            warmup=1,
            checkpoint_every=2,
        ),
        animate_train=AnimateTrainConfig(clips=3, slow_clips=2, batch=2, steps=3, warmup=1, checkpoint_every=2),
    ),
    # The shipped default: 64x64, 32 frames, rebuilt on our 2-core CPU (figures in README).
    "shapes-v1": Preset(
        tae=TAEConfig(),
        tae_train=TAETrainConfig(pool=1500),
        generator=GeneratorConfig(text=TextConfig(words=WordEncoderConfig(slot_classes=SLOT_CLASSES))),
        text_train=TextTrainConfig(),
        t2v_train=T2VTrainConfig(),
    ),
    # The same design given one GPU's worth of compute (~22 min on one H100): the TAE sees 2x the
    # batch for 3x the steps with an edge term; the transformer is 3x larger and sees ~20x the
    # video samples.
    "shapes-v2": Preset(
        tae=TAEConfig(),
        tae_train=TAETrainConfig(
            steps=6000, opl_steps=500, batch=16, image_batch=32, pool=6000, edge_weight=0.5, lr=1e-3
        ),
        generator=GeneratorConfig(
            dit=DiTConfig(width=320, depth=8, heads=5, ffn=896),
            text=TextConfig(words=WordEncoderConfig(slot_classes=SLOT_CLASSES)),
        ),
        text_train=TextTrainConfig(),
        t2v_train=V2_JOINT,
        # Two-object clips were the weak spot after the joint stage (4% fully right): go on with
        # fresh videos only, two thirds of them with two objects.
        refine_train=dataclasses.replace(
            V2_JOINT, images=0, image_steps=0, joint_steps=3300, image_every=0, lr=4e-4, two_objects=0.67, seed=5
        ),
        # Decoder only (the latent space, so the generator, is untouched), half the objects stars.
        # 4500 steps over 3000 clips beat 1800 over 1500 on every TAE figure (35.3 vs 35.0 dB).
        decoder_train=DecoderTrainConfig(steps=4500, lr=3e-4, edge_weight=0.5, hard_share=0.5, pool=3000),
        generator_dtype="bfloat16",
        rewriter=RewriterConfig(),
        rewrite_train=TextTrainConfig(steps=3000, typed=True, seed=3),
        # Sized for our 2-core CPU (~150 min with its data), from the shipped T2V weights: the
        # shipped edit model, Movie Gen Edit's source channels.
        edit_train=EditTrainConfig(condition="channels"),
        # The 4x upsampler, sized for our 2-core CPU: 960 crops of 16 frames, a 4M-parameter
        # transformer over 16x16-latent tiles (tile-local positions), the skip decoder from the TAE's.
        upscale_data=UpscaleDataConfig(),
        updecoder_train=SkipDecoderTrainConfig(),
        upsampler=GeneratorConfig(
            dit=DiTConfig(extra_channels=16, width=192, depth=6, heads=6, ffn=512, max_t=8, max_h=8, max_w=8),
            # The upsampler takes no prompt (video to video, as Movie Gen's): its text encoder only
            # ever reads the empty prompt, kept so one transformer class serves every task.
            text=TextConfig(words=WordEncoderConfig(width=64, depth=1, heads=2, vocab=64, summary_tokens=2)),
        ),
        upscale_train=UpsamplerTrainConfig(),
        # Sized for our 2-core CPU, from the shipped TAE (latents of ordinary clips anchored).
        character_tae=CharacterTAETrainConfig(),
        # PT2V from the shipped T2V weights: a 0.4M-parameter vision encoder over 8x8-pixel patches.
        reference=ReferenceConfig(),
        personalize_train=PersonalizeTrainConfig(condition="encoder"),
        # The run the shipped animation model comes from (docs/models/animate.md: its step 1200).
        animate_train=AnimateTrainConfig(train="attention"),
    ),
}


def edit_generator_config(gcfg: GeneratorConfig, condition: str = "sequence") -> GeneratorConfig:
    """The T2V generator with the edit inputs: the source (its tokens in the sequence, or its
    latent channels) and a task embedding."""
    from ..world.edits import TASKS

    if condition == "sequence":
        dit = dataclasses.replace(gcfg.dit, context_kinds=2, tasks=len(TASKS))
    else:
        dit = dataclasses.replace(gcfg.dit, extra_channels=gcfg.dit.in_channels, tasks=len(TASKS))
    return dataclasses.replace(gcfg, dit=dit)


@dataclass
class Build:
    """One run of the recipe: the preset, the runtime, the output folder, and what the stages run
    so far produced. What a stage left out of this run would have produced is read from `out`."""

    preset: Preset
    rt: Runtime
    out: Path
    t0: float = field(default_factory=time.perf_counter)
    latest_tae: TAE | None = None  # trained, fine-tuned or loaded in this run
    updata: UpscaleData | None = None  # the upsampler's crops, shared by updecoder and upscale

    @property
    def dtype(self) -> torch.dtype:
        """What generator weights are stored as."""
        return getattr(torch, self.preset.generator_dtype)

    def say(self, what: str) -> None:
        if self.rt.main:
            print(f"[recipe] {what} at {time.perf_counter() - self.t0:.0f}s", flush=True)

    def tae(self) -> TAE:
        """The TAE as the stages so far left it, else as `out` holds it."""
        if self.latest_tae is None:
            cfg = config_from_dict(TAEConfig, read_config(self.out / "tae")["config"])
            self.latest_tae = load_weights(self.out / "tae", TAE(cfg))
            self.say("tae ready")
        return self.latest_tae

    def t2v(self) -> Generator:
        """The T2V generator `out` holds (refined, where the refine stage ran): what the stages
        grown from it start from."""
        return load_weights(self.out / "t2v", Generator(self.preset.generator))

    def upscale_data(self) -> UpscaleData:
        """Built (or read from its cache) once for both upsampler stages."""
        if self.updata is None:
            self.updata = build_data(
                self.preset.upscale_data, self.tae().to(self.rt.device).eval(), self.rt, self.out / "upscale-run"
            )
            self.say(f"upscale data ({len(self.updata)} crops) ready")
        return self.updata


def _tae(b: Build) -> None:
    b.latest_tae = train_tae(b.preset.tae_train, b.preset.tae, b.out / "tae", b.rt)
    b.say("tae ready")


def _t2v(b: Build) -> None:
    p, run = b.preset, b.out / "t2v-run"
    # The word encoder is trained first and frozen in T2V; a run that goes on from a saved state
    # has it in that state, so only a fresh run trains it.
    words = None if has_state(run / "resume") else train_text(p.text_train, p.generator.text.words, b.rt)
    gen = train_t2v(p.t2v_train, p.generator, b.tae(), words, b.rt, run)
    acc = parse_accuracy(gen.text.word_encoder)
    b.say(f"text parse accuracy {acc:.3f}")
    if b.rt.main:
        save_component(b.out / "t2v", "generator", p.generator, gen, {"text_parse_accuracy": acc}, b.dtype)
    b.say("t2v ready")


def _refine(b: Build) -> None:
    p = b.preset
    meta = {k: v for k, v in read_config(b.out / "t2v").items() if k not in ("kind", "config")}
    gen = train_t2v(p.refine_train, p.generator, b.tae(), None, b.rt, b.out / "refine-run", b.t2v(), "refine")
    if b.rt.main:
        save_component(b.out / "t2v", "generator", p.generator, gen, meta | {"refined": True}, b.dtype)
    b.say("refine ready")


def _decoder(b: Build) -> None:
    b.latest_tae = finetune_decoder(b.preset.decoder_train, b.tae(), b.out / "tae", b.rt)
    b.say("decoder ready")


def _rewrite(b: Build) -> None:
    p = b.preset
    rewriter = PromptRewriter(p.rewriter)
    rewriter.words.load_state_dict(train_text(p.rewrite_train, p.rewriter.words, b.rt).state_dict())
    typed, free = parse_accuracy(rewriter.words, typed=True), parse_accuracy(rewriter.words)
    if b.rt.main:
        meta = {"typed_parse_accuracy": typed, "free_parse_accuracy": free}
        save_component(b.out / "rewrite", "rewriter", p.rewriter, rewriter.cpu(), meta)
    b.say(f"rewriter parses {typed:.3f} typed / {free:.3f} free captions exactly")


def _edit(b: Build) -> None:
    p = b.preset
    ecfg = edit_generator_config(p.generator, p.edit_train.condition)
    gen = train_edit(p.edit_train, ecfg, b.tae(), b.t2v(), b.rt, b.out / "edit-run")
    if b.rt.main:
        meta = {"edit_steps": p.edit_train.steps, "grown_from": "t2v"}
        # The word encoder stays frozen: it is the T2V checkpoint's own, stored there once.
        save_component(b.out / "edit", "generator", ecfg, gen, meta, b.dtype, shared={"text.encoders.0.": "t2v"})
    b.say("edit ready")


def _updecoder(b: Build) -> None:
    p, tae = b.preset, b.tae()
    dec = train_skip_decoder(p.updecoder_train, b.upscale_data(), tae, b.rt, b.out / "upscale-run")
    if b.rt.main:
        meta = {"steps": p.updecoder_train.steps, "grown_from": "tae"}
        save_component(b.out / "upscale-decoder", "skip_decoder", tae.cfg, dec.cpu(), meta)
    b.say("upscale decoder ready")


def _upscale(b: Build) -> None:
    p = b.preset
    gen = train_upsampler(p.upscale_train, p.upsampler, b.upscale_data(), b.rt, b.out / "upscale-run")
    if b.rt.main:
        meta = {"steps": p.upscale_train.steps, "scale": p.upscale_data.scale}
        save_component(b.out / "upscale", "generator", p.upsampler, gen, meta, b.dtype)
    b.say("upsampler ready")


def _chartae(b: Build) -> None:
    b.latest_tae = train_character_tae(b.preset.character_tae, b.tae(), b.out / "tae", b.rt, b.out / "chartae-run")
    b.say("character TAE ready")


def _pt2v(b: Build) -> None:
    p = b.preset
    pcfg = personalize_generator_config(p.generator, p.reference, p.personalize_train.condition)
    gen = train_personalize(p.personalize_train, pcfg, b.tae(), b.t2v(), b.rt, b.out / "pt2v-run")
    if b.rt.main:
        meta = {"pt2v_steps": p.personalize_train.steps, "grown_from": "t2v"}
        shared = {"text.encoders.0.": "t2v"}  # the frozen word encoder, stored once
        save_component(b.out / "personalize", "generator", pcfg, gen, meta, b.dtype, shared=shared)
    b.say("personalization ready")


def _animate(b: Build) -> None:
    p = b.preset
    tae = b.tae()
    acfg = animate_generator_config(p.generator, tae.cfg.temporal_down)
    gen = train_animate(p.animate_train, acfg, tae, b.t2v(), b.rt, b.out / "animate-run")
    if b.rt.main:
        meta = {"animate_steps": p.animate_train.steps, "grown_from": "t2v"}
        # What did not train (the word encoder; with train = "attention", all but self-attention)
        # is the T2V checkpoint's, stored once there.
        frozen = ("text.encoders.0.",) if p.animate_train.train == "all" else animate_frozen(acfg)
        shared = dict.fromkeys(frozen, "t2v")
        save_component(b.out / "animate", "generator", acfg, gen, meta, b.dtype, shared=shared)
    b.say("animation model ready")


@dataclass(frozen=True)
class Stage:
    """One row of the recipe, selected by name (`--stages`) and run in the table's order."""

    name: str
    about: str  # for --help
    run: Callable[[Build], None]  # trains from the preset and what earlier stages produced
    has: Callable[[Preset], bool] = lambda p: True  # whether the preset has it (else it is skipped)
    default: bool = True  # part of a full rebuild (DEFAULT_STAGES)


STAGES: tuple[Stage, ...] = (
    Stage("tae", "the autoencoder, then its outlier fine-tune", _tae),
    Stage("t2v", "text parse pre-training, the T2I warm-up, joint image + video", _t2v),
    Stage("refine", "video-only, from the t2v weights", _refine, lambda p: p.refine_train is not None),
    Stage("decoder", "decoder-only fine-tune on the fixed latent space", _decoder, lambda p: p.decoder_train.steps > 0),
    Stage(
        "rewrite",
        "the prompt rewriter",
        _rewrite,
        lambda p: p.rewriter is not None and p.rewrite_train is not None,
    ),
    Stage("edit", "instruction editing, from the t2v weights", _edit, lambda p: p.edit_train is not None),
    Stage(
        "updecoder",
        "the upsampler's skip decoder",
        _updecoder,
        lambda p: p.upscale_data is not None and p.updecoder_train is not None,
    ),
    Stage(
        "upscale",
        "the upsampler's transformer",
        _upscale,
        lambda p: p.upscale_data is not None and p.upsampler is not None and p.upscale_train is not None,
    ),
    # Kept as a stage of its own but out of a full rebuild: the TAE it trains measured no better
    # than the shipped one (docs/models/personalize.md).
    Stage(
        "chartae",
        "the TAE trained on with patterned characters",
        _chartae,
        lambda p: p.character_tae is not None,
        default=False,
    ),
    Stage(
        "pt2v",
        "personalization, from the t2v weights",
        _pt2v,
        lambda p: p.personalize_train is not None and p.reference is not None,
    ),
    Stage(
        "animate",
        "given frames (animate, extend, interpolate), from the t2v weights",
        _animate,
        lambda p: p.animate_train is not None,
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
DEFAULT_STAGES = tuple(s.name for s in STAGES if s.default)  # what a full rebuild runs


def stages_help() -> str:
    """The `--stages` help: every stage, what it trains, and which run by default."""
    rows = "; ".join(f"{s.name} ({s.about})" for s in STAGES)
    left_out = ", ".join(s.name for s in STAGES if not s.default)
    default = f"all but {left_out}" if left_out else "all"
    return f"comma list of {rows}. Default: {default}; a stage left out reuses OUT"


def preset_toml(preset: Preset, name: str = "") -> str:
    """A preset as a run file ([recipe] table): what `--config` reads back to the same preset."""
    head = (
        f"# The {name} preset as a run file (`python -m engine train --preset {name} --print-config`).\n"
        "# python -m engine train --config THIS_FILE --out DIR runs it; edit any field, or --set recipe.FIELD=VALUE.\n"
    )
    return (head if name else "") + dump_toml({"recipe": preset})


def train(
    preset: str | Preset,
    out: str | Path,
    device: str | None = None,
    stages: tuple[str, ...] = DEFAULT_STAGES,
    threads: int | None = None,
) -> Path:
    """Run the named stages of the recipe (STAGES, in its order) on `preset` into `out`; a stage
    left out reuses what `out` holds, and one the preset does not have is skipped."""
    unknown = set(stages) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGE_NAMES)}")
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    name = preset if isinstance(preset, str) else "the run file's preset"
    rt = setup(device, threads or p.threads)  # two stages side by side on 2 cores: 1 thread each
    b = Build(p, rt, Path(out))
    for stage in STAGES:
        if stage.name not in stages:
            continue
        if not stage.has(p):
            if rt.main:
                print(f"[recipe] {name} has no {stage.name} stage: skipped", flush=True)
            continue
        stage.run(b)
        rt.barrier()  # later stages, on every rank, read what rank 0 saved
    if rt.main:
        print(f"[recipe] done in {time.perf_counter() - b.t0:.0f}s -> {b.out}", flush=True)
    rt.close()
    return b.out

"""Typed prompts, the prompt rewriter, and how the engine and studio use it (tiny, untrained)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch
from conftest import tiny_rewriter

from engine.engine import Engine
from engine.models.rewrite import PromptRewriter
from engine.models.text import WordEncoder, WordEncoderConfig, tokenize, trigram_ids
from engine.tasks import T2VRequest
from engine.world.captions import SLOTS, canonical_caption, caption_from_labels, caption_labels
from engine.world.scene import sample_scene
from engine.world.typed import add_filler, known_words, typed_caption, typo, unknown_words


def test_typed_captions_say_what_the_scene_holds():
    rng = np.random.default_rng(0)
    for i in range(300):
        image = i % 5 == 0
        scene = sample_scene(rng, n_objects=1 + i % 2, image=image)
        cap = typed_caption(rng, scene, image=image, omit=0.0, typos=0.0, fillers=0.0)
        assert cap.labels == caption_labels(scene, image)
        assert unknown_words(cap.text) == []  # every word it writes is one the model is taught
        # The object words are there (typed synonyms allowed), in the order of the objects.
        assert all(o.color in cap.text.lower() or o.color in ("cyan", "purple", "gray") for o in scene.objects)


def test_filler_keeps_the_prompt_and_is_never_a_word_the_model_is_taught():
    rng = np.random.default_rng(3)
    text = "a red circle moving left on a blue background"
    for _ in range(200):
        noisy = add_filler(rng, text)
        added = re.findall(r"[a-z0-9]+", noisy)
        for w in text.split():  # the prompt's words are all there, in order
            added = added[added.index(w) + 1 :]
        assert unknown_words(noisy) and all(w not in known_words() for w in unknown_words(noisy))


def test_unknown_words_tolerate_one_slip_and_flag_the_rest():
    assert unknown_words("a magenta star on a navy background") == ["magenta", "navy"]
    assert unknown_words("an orange triange going rigth on a gray backround") == []
    assert unknown_words("a red circel and a red circel") == []
    assert unknown_words("a red xyz xyz") == ["xyz"]  # each once
    assert "leftwards" in known_words() and "falling" in known_words()
    rng = np.random.default_rng(1)
    for _ in range(200):
        w = typo(rng, "background")
        assert w != "background" and abs(len(w) - len("background")) <= 1
        assert unknown_words(w) == []


def test_canonical_caption_from_a_parse():
    rng = np.random.default_rng(2)
    for i in range(200):
        image = i % 4 == 0
        scene = sample_scene(rng, n_objects=1 + i % 2, image=image)
        assert caption_from_labels(caption_labels(scene, image), image) == canonical_caption(scene, image)
    scene = sample_scene(rng, n_objects=1)
    # What a prompt leaves out stays out: no background, no motion.
    assert caption_from_labels(caption_labels(scene, False, say_bg=False, say_motion=[False])) == (
        f"{'an' if scene.objects[0].color[0] in 'aeiou' else 'a'} {scene.objects[0].color} {scene.objects[0].shape}"
    )


def test_trigrams_line_up_with_words():
    ids, mask = tokenize(["a rigth", "x"], 48, 4096)
    grams = trigram_ids(["a rigth", "x"], ids.shape[1], 4096)
    assert grams.shape == (2, ids.shape[1], 12)
    assert (grams[:, 0] == 0).all()  # BOS has none
    assert (grams[0, 1] != 0).sum() == 1  # "<a>"
    assert (grams[0, 2] != 0).sum() == 5  # "<rigth>": <ri rig igt gth th>
    assert (grams[1, 2] == 0).all()  # padding has none
    # A misspelling shares letter trigrams with the word it came from.
    right = set(trigram_ids(["right"], 2, 4096)[0, 1].tolist()) - {0}
    rigth = set(trigram_ids(["rigth"], 2, 4096)[0, 1].tolist()) - {0}
    assert len(right & rigth) == 2
    # Without subwords the encoder has no trigram table, so the generator's weights are unchanged.
    assert not any("trigram" in k for k in WordEncoder(WordEncoderConfig(width=32, heads=2)).state_dict())


def _tiny_rewriter(min_confidence: float) -> PromptRewriter:
    return tiny_rewriter(min_confidence)


def test_rewriter_gives_a_canonical_caption_only_when_sure():
    prompts = ["a red circle moving left on blue", "MAGENTA thing"]
    sure = _tiny_rewriter(0.0)(prompts)
    for r, p in zip(sure, prompts, strict=True):
        assert r.prompt == p and r.sure and 0 < r.confidence <= 1
        # The text is exactly the canonical caption of what it read.
        labels = [classes.index(r.read[name]) for name, classes in SLOTS]
        assert r.text == caption_from_labels(labels)
    assert sure[1].unknown == ("magenta", "thing")
    assert "ignored: magenta, thing" in sure[1].describe()
    unsure = _tiny_rewriter(1.01)(prompts)  # no probability reaches 1.01: every prompt stays as typed
    assert [r.text for r in unsure] == prompts and not any(r.sure for r in unsure)
    assert "as typed" in unsure[0].describe()
    # An image drops motions from the caption.
    img = _tiny_rewriter(0.0)(prompts[:1], image=True)[0]
    assert not any(m in img.text for m in ("moving", "growing", "shrinking", "standing"))


def test_engine_gives_the_generator_the_rewrite(rewriting_model, tiny_model_dir, tmp_path):
    engine = Engine(rewriting_model, device="cpu", cache_dir=tmp_path / "cache", outputs_dir=tmp_path / "o")
    assert (
        engine.models.ids["generator"] != Engine(tiny_model_dir, device="cpu", cache_dir=None).models.ids["generator"]
    )
    req = T2VRequest(prompt="red ball travelling from right to left, blue bg", steps=2, frames=8, seed=4)
    res = engine.generate(req)
    text = res.metadata["rewrite"]["text"]
    assert text == engine.rewrite(req).text and text != req.prompt
    # Same frames as asking for the rewritten text directly with rewriting off.
    direct = engine.generate(replace(req, prompt=text, rewrite=False))
    assert direct.metadata["rewrite"] is None and not direct.cached
    assert np.array_equal(res.frames, direct.frames)
    # Turning rewriting off is a different request (its own cache entry) and gives the typed prompt.
    typed = engine.generate(replace(req, rewrite=False))
    assert not typed.cached and not np.array_equal(typed.frames, res.frames)
    assert engine.generate(req).cached


def test_a_model_without_a_rewriter_runs_prompts_as_typed(tiny_model_dir, tmp_path):
    engine = Engine(tiny_model_dir, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    req = T2VRequest(prompt="a red circle", steps=1, frames=1)
    assert engine.models.rewriter is None and engine.rewrite(req) is None
    assert engine.generate(req).metadata["rewrite"] is None


def test_colours_in_a_reading_are_distinct():
    from engine.models.rewrite import read_slots
    from engine.world.captions import BG_CLASSES, COLOR_CLASSES

    def onehot(classes, **p):
        v = torch.zeros(len(classes))
        for name, x in p.items():
            v[classes.index(name)] = x
        return v

    probs = [torch.zeros(len(c)) for _, c in SLOTS]
    probs[0] = onehot(BG_CLASSES, blue=0.95, red=0.05)  # "on blue", sure
    probs[1] = onehot(COLOR_CLASSES, blue=0.5, purple=0.3, red=0.2)  # "a circle": no colour said
    probs[2][0] = probs[3][0] = 1.0
    probs[4] = onehot(COLOR_CLASSES, none=1.0)
    probs[5][-1] = probs[6][-1] = 1.0
    labels, sure = read_slots(probs)
    assert BG_CLASSES[labels[0]] == "blue" and COLOR_CLASSES[labels[1]] == "purple"  # never blue on blue
    assert COLOR_CLASSES[labels[4]] == "none" and sure == 0.5
    probs[5] = torch.zeros(len(SLOTS[5][1]))
    probs[5][0] = 1.0  # a shape for an object with no colour: still no second object
    labels, _ = read_slots(probs)
    assert [SLOTS[k][1][labels[k]] for k in (4, 5, 6)] == ["none"] * 3


def test_a_reading_without_objects_leaves_the_prompt_as_typed():
    rw = _tiny_rewriter(0.0)

    def no_objects(tokens):  # every slot sure; both colour slots say "none"
        out = []
        for name, classes in SLOTS:
            logits = torch.full((tokens.shape[0], len(classes)), -10.0)
            logits[:, classes.index("none") if name.startswith("color") else 0] = 10.0
            out.append(logits)
        return out

    rw.words.parse_logits = no_objects
    r = rw(["just a blue background"])[0]
    assert not r.sure and r.text == "just a blue background" and r.confidence > 0.99


def test_an_overlong_prompt_is_not_read(rewriting_model, tmp_path):
    engine = Engine(rewriting_model, device="cpu", cache_dir=None, outputs_dir=tmp_path / "o")
    assert engine.rewrite(T2VRequest(prompt="red " * 125)) is not None  # 500 characters: read
    assert engine.rewrite(T2VRequest(prompt="red " * 30_000)) is None  # refused by validate() anyway

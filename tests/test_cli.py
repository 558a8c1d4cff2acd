"""The command line: each task's subcommand is its request's fields (flags, defaults, help), a
command line builds exactly the request it says, and bad values are refused with exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest

from engine.__main__ import COMMANDS, main, parser
from engine.cli import add_fields, flag, request_from
from engine.tasks import TASKS, EditRequest, PersonalizeRequest, SDEditRequest, T2VRequest, UpscaleRequest


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps to the terminal; keep each option on a few lines


def subcommand(task: str) -> str:
    return COMMANDS[task].name if task in COMMANDS else task


def help_of(capsys, *argv: str) -> dict[str, str]:
    """Each option's entry in `--help` (its first flag -> the rest of the entry, one line)."""
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", text)
    return {m.split()[0].rstrip(","): " ".join(m.split()[1:]) for m in entries if m.strip()}


def field_flag(f: dataclasses.Field) -> str:
    return f"--no-{f.name.replace('_', '-')}" if f.default is True else flag(f.name)


def shown(value) -> str:
    return repr(value) if value == "" else str(value)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_help_lists_every_field_with_its_default(task, capsys):
    entries = help_of(capsys, subcommand(task))
    for f in dataclasses.fields(TASKS[task].request):
        entry = entries[field_flag(f)]
        if f.default is dataclasses.MISSING:
            assert "default" not in entry  # required: named in the usage line instead
        elif isinstance(f.default, bool):
            assert f"(default: {f.name.replace('_', '-')} {'on' if f.default else 'off'})" in entry
        else:
            assert f"(default: {shown(f.default)})" in entry, (f.name, entry)
    for common in ("--out", "--quiet", "--model", "--device", "--cache-dir", "--fp32"):
        assert common in entries
    assert "(default: cache)" in entries["--cache-dir"]


def test_help_keeps_the_old_words_and_choices(capsys):
    gen = help_of(capsys, "generate")
    assert gen["--frames"].startswith("FRAMES 1 = an image")
    assert gen["--schedule"].startswith("{linear-quadratic,linear}")
    assert gen["--upscale"].startswith("{0,2,4} then upscale the result in the same job")
    assert "the prompt as typed" in gen["--no-rewrite"]
    edit = help_of(capsys, "edit")
    assert edit["--task"].startswith("{auto,recolor,background,reshape,remove,add,motion}")
    assert "(default: auto)" in edit["--task"] and "keep the source (default: 1.5)" in edit["--source-guidance"]
    assert "SDEdit" in edit["--prompt"] and "SDEdit's 0.6) (default: 0.0)" in edit["--strength"]
    assert help_of(capsys, "upscale")["--scale"] == "{2,4} (default: 4)"
    pz = help_of(capsys, "personalize")
    assert pz["--name"].startswith("NAME the character's name") and "(default: 2.0)" in pz["--reference-guidance"]


@pytest.mark.parametrize("command", ["eval", "bench", "train"])
def test_help_of_eval_bench_and_train_gives_every_default(command, capsys):
    """Every option that takes a value and has a default says it (switches are off by default)."""
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    entries = help_of(capsys, command)
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.default is not None:
            assert "default" in entries[action.option_strings[0]], action.option_strings


def build(*argv: str):
    args = parser().parse_args(list(argv))
    return args.build(args)


def test_command_lines_build_the_exact_request():
    assert build("generate", "--prompt", "a red circle") == T2VRequest(prompt="a red circle")
    full = ["--prompt", "p", "--negative-prompt", "n", "--seed", "3", "--steps", "5", "--guidance", "2.5"]
    full += ["--frames", "1", "--size", "32", "--fps", "12", "--schedule", "linear", "--no-rewrite", "--upscale", "2"]
    assert build("generate", *full) == T2VRequest(
        prompt="p",
        negative_prompt="n",
        seed=3,
        steps=5,
        guidance=2.5,
        frames=1,
        size=32,
        fps=12.0,
        schedule="linear",
        rewrite=False,
        upscale=2,
    )
    edit = ["edit", "--video", "in.mp4", "--instruction", "make the circle yellow", "--task", "recolor"]
    assert build(*edit, "--source-guidance", "2", "--steps", "3") == EditRequest(
        video="in.mp4", instruction="make the circle yellow", edit_task="recolor", source_guidance=2.0, steps=3
    )
    assert build("upscale", "--video", "v.mp4", "--scale", "2", "--steps", "3", "--seed", "7") == UpscaleRequest(
        video="v.mp4", scale=2, steps=3, seed=7
    )
    pz = ["personalize", "--reference", "c.png", "--prompt", "it moving up", "--name", "Stripey", "--frames", "1"]
    assert build(*pz, "--reference-guidance", "3") == PersonalizeRequest(
        reference="c.png", prompt="it moving up", reference_name="Stripey", frames=1, reference_guidance=3.0
    )


def test_sdedit_has_its_own_subcommand_and_edit_prompt_still_means_it():
    prompt = "a blue star moving left on a white background"
    want = SDEditRequest(video="in.mp4", prompt=prompt, strength=0.6)
    assert build("sdedit", "--video", "in.mp4", "--prompt", prompt, "--strength", "0.6", "--out", "out.mp4") == want
    assert build("edit", "--video", "in.mp4", "--prompt", prompt, "--strength", "0.6") == want
    assert build("edit", "--video", "in.mp4", "--prompt", prompt, "--no-rewrite", "--seed", "2") == SDEditRequest(
        video="in.mp4", prompt=prompt, rewrite=False, seed=2
    )


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_registered_task_has_a_subcommand_with_the_request_defaults(task):
    request = TASKS[task].request
    required = {f.name: "x" for f in dataclasses.fields(request) if f.default is dataclasses.MISSING}
    required |= {"instruction": "x"} if task == "edit" else {}  # (or a prompt: SDEdit)
    argv = [a for name in required for a in (flag(name), "x")]
    assert build(subcommand(task), *argv) == request(**required)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--prompt", "p", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["generate", "--prompt", "p", "--guidance", "high"], "argument --guidance: invalid float value: 'high'"),
        (["generate", "--prompt", "p", "--schedule", "cubic"], "argument --schedule: invalid choice: 'cubic'"),
        (["generate", "--prompt", "p", "--upscale", "3"], "argument --upscale: invalid choice: 3"),
        (["generate"], "the following arguments are required: --prompt"),
        (["edit", "--video", "v", "--instruction", "i", "--task", "paint"], "argument --task: invalid choice"),
        (["upscale", "--video", "v", "--scale", "8"], "argument --scale: invalid choice: 8"),
        (["sdedit", "--video", "v"], "the following arguments are required: --prompt"),
        (["personalize", "--prompt", "p"], "the following arguments are required: --reference"),
        (["eval", "video"], "argument what: invalid choice: 'video'"),
        (["bench", "upscale", "--upscale-schedule", "cubic"], "argument --upscale-schedule: invalid choice"),
    ],
)
def test_bad_values_exit_2_with_what_was_wrong(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: python -m engine")


def test_edit_wants_an_instruction_or_a_prompt_before_loading_anything(capsys):
    for given in ([], ["--instruction", "make the circle yellow", "--prompt", "a blue star"]):
        assert main(["edit", "--video", "in.mp4", "--model", "/nonexistent", *given]) == 2
        assert "error: give --instruction (what to change) or --prompt" in capsys.readouterr().err


def test_a_value_the_engine_refuses_exits_2_with_its_message(tiny_model_dir, capsys):
    argv = ["generate", "--prompt", "a red circle", "--steps", "0", "--model", str(tiny_model_dir)]
    assert main([*argv, "--device", "cpu", "--cache-dir", ""]) == 2
    assert "error: steps must be between 1 and 500, got 0." in capsys.readouterr().err


def test_eval_refuses_an_unknown_prompt_set_before_loading_a_model():
    with pytest.raises(SystemExit, match="unknown prompt set"):
        main(["eval", "t2v", "--sets", "held_out,typo", "--model", "/nonexistent"])


def test_eval_and_bench_flags_default_to_the_requests():
    args = parser().parse_args(["eval", "t2v", "--n", "12"])
    assert args.n == 12 and request_from(T2VRequest, args, prompt="x") == T2VRequest(prompt="x")
    assert args.source_guidance == EditRequest(video="").source_guidance
    assert args.reference_guidance == PersonalizeRequest(reference="", prompt="").reference_guidance
    assert request_from(UpscaleRequest, args, prefix="upscale", video="") == UpscaleRequest(video="")
    args = parser().parse_args(["bench"])
    assert args.what == "t2v" and args.repeats == 5 and args.instruction == "make the circle yellow"
    assert request_from(T2VRequest, args) == T2VRequest(prompt="a red circle moving left on a blue background")


def test_bench_prints_its_figures(tiny_model_dir, capsys):
    argv = ["bench", "--repeats", "1", "--steps", "1", "--frames", "4", "--model", str(tiny_model_dir)]
    assert main([*argv, "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "t2v" and out["request"] == T2VRequest(out["request"]["prompt"], steps=1, frames=4).to_dict()
    keys = ["generate_median_s", "generate_all_s", "with_previews_median_s", "preview_overhead_pct"]
    keys += ["first_preview_median_s", "cache_hit_median_s", "peak_rss_mb", "device", "threads", "precision"]
    assert set(keys) <= set(out) and len(out["generate_all_s"]) == 1


def test_eval_prints_settings_then_figures(tiny_model_dir, capsys):
    argv = ["eval", "t2v", "--n", "2", "--sets", "held_out", "--steps", "1", "--frames", "4"]
    assert main([*argv, "--model", str(tiny_model_dir), "--device", "cpu", "--cache-dir", ""]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["settings", "held_out"]
    assert out["settings"]["steps"] == 1 and out["settings"]["model"].startswith(tiny_model_dir.name)


@dataclasses.dataclass(frozen=True)
class Toy:
    name: str
    mode: str = dataclasses.field(default="a", metadata={"help": "which way", "choices": ("a", "b")})
    loud: bool = False
    rate: float | None = None
    pct: int = 5  # a help text with % in it must not break argparse

    task = "toy"


def test_the_helper_on_any_flat_dataclass(capsys):
    p = argparse.ArgumentParser(prog="toy")
    add_fields(p, Toy, helps={"pct": "50% of it"})
    add_fields(p, Toy, only=["mode"], prefix="other")
    args = p.parse_args(["--name", "n", "--mode", "b", "--loud", "--rate", "0.5", "--other-mode", "b"])
    assert request_from(Toy, args) == Toy("n", "b", True, 0.5)
    assert request_from(Toy, args, prefix="other", name="m") == Toy("m", "b")
    p.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "--mode {a,b} which way (default: a)" in text and "--loud (default: loud off)" in text
    assert "--pct PCT 50% of it (default: 5)" in text and "--rate RATE" in text

    @dataclasses.dataclass
    class Nested:
        items: list[str] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="no command-line flag"):
        add_fields(argparse.ArgumentParser(), Nested)


def test_edit_and_sdedit_run_and_say_how_the_source_was_read(tiny_model_dir, tmp_path, capsys):
    from engine.video_io import write_video
    from engine.world.render import render
    from engine.world.scene import Scene, ShapeObject

    src = write_video(
        tmp_path / "in.mp4", render(Scene("blue", (ShapeObject("red", "circle", "left"),)), 64, 8), 8.0, {}
    )
    common = ["--video", str(src), "--steps", "1", "--model", str(tiny_model_dir), "--device", "cpu", "--cache-dir", ""]
    prompt = ["--prompt", "a blue star moving left on a white background", "--strength", "0.6"]
    for argv in (["sdedit", *prompt], ["edit", *prompt], ["edit", "--instruction", "make the circle yellow"]):
        out = tmp_path / f"{argv[0]}-{len(argv)}.mp4"
        assert main([*argv, *common, "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert captured.out.strip() == str(out) and out.is_file()
        assert "source: " in captured.err
    assert "read as: recolor: " in captured.err  # the instruction's reading, for an edit


@dataclasses.dataclass(frozen=True)
class EchoRequest:
    prompt: str
    times: int = 2
    loud: bool = True

    task = "echo"


@dataclasses.dataclass(frozen=True)
class ListRequest:
    prompts: tuple[str, ...] = ()

    task = "lists"


@pytest.fixture()
def more_tasks():
    from engine.tasks import Task, register

    tasks = [register(Task("echo", EchoRequest, job=None)), register(Task("lists", ListRequest, job=None))]
    yield tasks
    for task in tasks:
        TASKS.pop(task.name)


def test_a_registered_task_gets_its_subcommand_and_one_without_flags_is_left_out(more_tasks, capsys):
    assert build("echo", "--prompt", "hi", "--times", "3", "--no-loud") == EchoRequest("hi", 3, False)
    entries = help_of(capsys, "echo")
    assert "(default: 2)" in entries["--times"] and "(default: loud on)" in entries["--no-loud"]
    with pytest.raises(SystemExit) as e:
        main(["lists"])
    assert e.value.code == 2 and "invalid choice: 'lists'" in capsys.readouterr().err

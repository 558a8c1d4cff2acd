"""The real page in a real browser: generate, watch the preview change, play the result,
open History, pick two results, compare them in sync; upload a clip to Edit, edit it, and play
the result beside the source; upscale a result 4x and zoom into it beside its bicubic enlargement;
give Personalize a picture of a character, save it, and play the clip made with it beside it;
animate a picture in the Animate tab, then continue the clip it made by a second.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from engine.video_io import write_png, write_video
from engine.world.characters import Character
from engine.world.render import render
from engine.world.scene import Scene, ShapeObject

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_studio(model, tmp_path, *extra: str):
    """app.py on a free port (with `extra` arguments), once it answers: (process, url)."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", str(model), *extra]
    cmd += ["--outputs-dir", str(tmp_path / "outputs"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read()) from None
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("the studio did not start in 90 s")
    return proc, url


@pytest.fixture()
def studio(rewriting_model, tmp_path):
    proc, url = start_studio(rewriting_model, tmp_path)
    yield url
    proc.terminate()
    proc.wait(10)


def test_generate_history_compare(studio):
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(studio)
        page.locator("#t2v-prompt textarea").fill("a red circle moving left on a MAGENTA background")
        # The rewriter's reading follows the prompt as it is typed, unknown words named.
        page.wait_for_function(
            "() => (document.querySelector('#t2v-reading')?.innerText || '').includes('ignored: magenta')",
            timeout=30_000,
        )
        assert page.locator("#t2v-reading").inner_text().startswith("Read as")

        # Generate and watch the preview change while it runs.
        page.locator("#t2v-generate").click()
        preview = page.locator("#t2v-preview img")
        preview.first.wait_for(timeout=60_000)
        first_src = preview.first.get_attribute("src")
        seen = {first_src}
        deadline = time.time() + 60
        while time.time() < deadline and page.locator("#t2v-video video").count() == 0:
            if preview.count():
                seen.add(preview.first.get_attribute("src"))
            time.sleep(0.05)
        page.screenshot(path=str(SHOTS / "1-generated.png"), full_page=True)
        assert len(seen) >= 2, "the preview never changed during generation"
        vid = page.locator("#t2v-video video").first
        vid.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => { const v = document.querySelector('#t2v-video video'); return v && v.readyState >= 2 && v.duration > 0; }",
            timeout=30_000,
        )
        assert "step" in page.locator("#t2v-status").inner_text() or "done" in page.locator("#t2v-status").inner_text()

        # A second result, with another seed, then compare with previous straight away.
        page.locator("#t2v-seed input").fill("5")
        page.locator("#t2v-generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#t2v-status')?.innerText || '').includes('seed 5')", timeout=60_000
        )

        # History: both results listed; pick two and open Compare.
        page.locator("#tab-history-button, button[role=tab]:has-text('History')").first.click()
        page.locator("#history-gallery img").nth(1).wait_for(timeout=30_000)
        page.wait_for_function("() => !document.body.innerText.includes('processing')", timeout=30_000)
        page.screenshot(path=str(SHOTS / "2-history.png"), full_page=True)
        pick = page.locator("#history-pick input")
        for seed in (0, 5):  # type to filter, Enter to pick, as with any long list
            pick.click()
            pick.fill(f"seed {seed} ")
            page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.locator("#history-compare").click()
        board = page.locator("#compare-board")
        board.locator("video").nth(1).wait_for(timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#compare-board video')].every(v => v.readyState >= 2)", timeout=30_000
        )
        board.locator(".cmp-play").click()
        page.wait_for_timeout(1500)
        times = page.evaluate("() => [...document.querySelectorAll('#compare-board video')].map(v => v.currentTime)")
        page.screenshot(path=str(SHOTS / "3-compare.png"), full_page=True)
        assert len(times) == 2 and min(times) > 0, f"videos did not play: {times}"
        assert abs(times[0] - times[1]) < 0.3, f"videos are out of sync: {times}"
        # One scrub bar moves both.
        board.locator(".cmp-scrub").fill("500")
        after = page.evaluate("() => [...document.querySelectorAll('#compare-board video')].map(v => v.currentTime)")
        assert abs(after[0] - after[1]) < 0.2

        # Straight after a generation: "Compare with previous" opens the last two results.
        page.locator("button[role=tab]:has-text('Text to video')").first.click()
        page.locator("#t2v-compare-prev").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#compare-board .cmp-settings')].map(e => e.innerText).join('|').match(/seed 0.*seed 5/)",
            timeout=30_000,
        )
        browser.close()


def test_stop_a_running_batch_then_generate_again(studio):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(studio)
        page.locator("#t2v-prompt textarea").fill("a green star growing on a black background")
        page.locator("#t2v-batch input[type=number]").fill("8")
        page.locator("#t2v-batch input[type=number]").press("Enter")
        page.locator("#t2v-generate").click()
        page.locator("#t2v-preview img").first.wait_for(timeout=60_000)  # the batch is running
        page.locator("#t2v-stop").click()
        page.wait_for_function(
            "() => (document.querySelector('#t2v-status')?.innerText || '').match(/Stopped|Cancelled/)", timeout=30_000
        )
        # Had Stop not reached the engine, progress of the batch would overwrite the status.
        page.wait_for_timeout(2000)
        status = page.locator("#t2v-status").inner_text()
        assert "Stopped" in status or "Cancelled" in status, status
        page.screenshot(path=str(SHOTS / "4-stopped.png"), full_page=True)

        # The studio keeps working: the next request runs to the end.
        page.locator("#t2v-batch input[type=number]").fill("1")
        page.locator("#t2v-batch input[type=number]").press("Enter")
        page.locator("#t2v-seed input").fill("3")
        page.locator("#t2v-generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#t2v-status')?.innerText || '').includes('seed 3')", timeout=60_000
        )
        assert "done" in page.locator("#t2v-status").inner_text()
        browser.close()


def test_edit_a_clip_and_see_it_beside_the_source(studio, tmp_path):
    frames = render(Scene("blue", (ShapeObject("red", "circle", "left"),)), size=96, frames=16)
    clip = write_video(tmp_path / "upload.mp4", np.pad(frames, ((0, 0), (0, 0), (16, 16), (0, 0))), 16)
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(studio)
        page.locator("button[role=tab]:has-text('Edit')").first.click()
        # On upload: the source as the model will see it, and what was done to it.
        page.locator("#edit-source input[type=file]").set_input_files(str(clip))
        page.wait_for_function(
            "() => (document.querySelector('#edit-source-info')?.innerText || '').includes('64x64, 8 fps, 8 frames')",
            timeout=30_000,
        )
        assert "128x96 16 fps 1.0 s" in page.locator("#edit-source-info").inner_text()
        page.locator("#edit-source-view video").first.wait_for(timeout=30_000)
        # The instruction is read as it is typed.
        page.locator("#edit-instruction textarea").fill("make the circle yellow")
        page.wait_for_function(
            "() => (document.querySelector('#edit-reading')?.innerText || '').includes('recolor')", timeout=30_000
        )
        page.screenshot(path=str(SHOTS / "5-edit-source.png"), full_page=True)

        # Edit: the preview streams, then source | result | what changed play side by side.
        page.locator("#edit-generate").click()
        page.locator("#edit-preview img").first.wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('#edit-board video').length === 3", timeout=60_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#edit-board video')].every(v => v.readyState >= 2)", timeout=30_000
        )
        assert "done" in page.locator("#edit-status").inner_text()
        titles = page.locator("#edit-board .cmp-prompt").all_inner_texts()
        assert titles[0].startswith("Source") and titles[1].startswith("Result") and titles[2] == "What changed"
        page.locator("#edit-board .cmp-play").click()
        page.wait_for_timeout(800)
        times = page.evaluate("() => [...document.querySelectorAll('#edit-board video')].map(v => v.currentTime)")
        page.screenshot(path=str(SHOTS / "6-edited.png"), full_page=True)
        assert min(times) > 0 and max(times) - min(times) < 0.3, f"not playing in step: {times}"

        # Send the result back into Edit for a second edit: it becomes the source.
        page.locator("#edit-send-choice input").click()
        page.locator("[role=option]:has-text('Edit')").first.click()
        page.locator("#edit-send").click()
        page.wait_for_function(
            "() => (document.querySelector('#edit-source-info')?.innerText || '').startsWith('Source as the model sees it: 64x64')",
            timeout=30_000,
        )
        # Describe mode: a prompt and a strength instead of the instruction-only controls.
        page.locator("#edit-mode label:has-text('Describe the result')").click()
        page.locator("#edit-prompt textarea").wait_for(state="visible", timeout=10_000)
        assert page.locator("#edit-strength").is_visible()
        assert not page.locator("#edit-instruction").is_visible() and not page.locator("#edit-keep").is_visible()
        assert "Follow the prompt" in page.locator("#edit-guidance").inner_text()
        browser.close()


def test_generate_then_upscale_4x_beside_bicubic_with_zoom(studio):
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(studio)
        page.locator("#t2v-prompt textarea").fill("a red circle moving left on a blue background")
        page.locator("#t2v-generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#t2v-status')?.innerText || '').includes('done')", timeout=60_000
        )
        # "Upscale 4x": the result goes to the Upscale tab and is upscaled there.
        page.locator("#t2v-upscale4").click()
        page.locator("#upscale-board").wait_for(state="visible", timeout=30_000)
        page.wait_for_function(
            "() => (document.querySelector('#upscale-source-info')?.innerText || '').includes('64x64, 32 frames at 8 fps -> 256x256')",
            timeout=30_000,
        )
        page.locator("#upscale-preview img").first.wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('#upscale-board video').length === 2", timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#upscale-board video')].every(v => v.readyState >= 2)", timeout=30_000
        )
        assert "done" in page.locator("#upscale-status").inner_text()
        titles = page.locator("#upscale-board .cmp-prompt").all_inner_texts()
        assert titles == ["Enlarged 4x by bicubic", "Upscaled 4x by the model"], titles
        sizes = page.evaluate(
            "() => [...document.querySelectorAll('#upscale-board video')].map(v => [v.videoWidth, v.videoHeight])"
        )
        assert sizes == [[256, 256], [256, 256]], sizes
        page.locator("#upscale-board .cmp-play").click()
        page.wait_for_timeout(800)
        times = page.evaluate("() => [...document.querySelectorAll('#upscale-board video')].map(v => v.currentTime)")
        assert min(times) > 0 and max(times) - min(times) < 0.3, f"not playing in step: {times}"
        page.locator("#upscale-board .cmp-play").click()  # pause, for a steady picture
        page.screenshot(path=str(SHOTS / "7-upscaled.png"), full_page=True)

        # Zoom: a click on the result picks the spot; both show the same region at 4 screen pixels per pixel.
        box = page.locator("#upscale-board .cmp-frame").nth(1).bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
        assert page.locator("#upscale-board .cmp-zoom").input_value() == "4"
        placed = page.evaluate(
            "() => [...document.querySelectorAll('#upscale-board video')].map(v => [v.style.width, v.style.left, v.style.top])"
        )
        assert placed[0] == placed[1] and placed[0][0] == "1024px", placed
        region = page.locator("#upscale-board .cmp-region").inner_text()
        assert region.startswith("x ") and "of 256×256 px" in region, region
        page.locator("#upscale-board .cmp-zoom").select_option("1")  # 1:1 pixels: the whole 256 px frame
        assert page.evaluate("() => document.querySelector('#upscale-board video').style.width") == "256px"
        page.locator("#upscale-board .cmp-zoom").select_option("8")
        page.screenshot(path=str(SHOTS / "8-upscaled-zoom.png"), full_page=True)

        # "Then upscale 2x" in Text to video: one job, one progress bar; the clip plays beside its bicubic there.
        page.locator("button[role=tab]:has-text('Text to video')").first.click()
        page.locator("#t2v-then-upscale input").click()
        page.locator("[role=option]:has-text('2x')").first.click()
        page.locator("#t2v-seed input").fill("4")
        page.locator("#t2v-generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#t2v-status')?.innerText || '').includes('upscaled 2x, 64x64 -> 128x128')",
            timeout=120_000,
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#t2v-upscaled video')].filter(v => v.readyState >= 2).length === 2",
            timeout=30_000,
        )
        sizes = page.evaluate("() => [...document.querySelectorAll('#t2v-upscaled video')].map(v => v.videoWidth)")
        assert sizes == [128, 128], sizes
        assert not page.locator("#t2v-video").is_visible() and page.locator("#t2v-upscale4").is_disabled()
        page.locator("#t2v-upscaled .cmp-zoom").select_option("2")
        page.screenshot(path=str(SHOTS / "9-then-upscaled.png"), full_page=True)
        browser.close()


def test_personalize_with_a_reference_image(studio, tmp_path):
    star = write_png(tmp_path / "star.png", Character("star", "red", "cyan", "hstripes").reference("white", 256))
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(studio)
        page.locator("button[role=tab]:has-text('Personalize')").first.click()
        # On upload: the reference as the model will see it (64x64, shown enlarged) and what was done.
        page.locator("#pt-reference input[type=file]").set_input_files(str(star))
        page.wait_for_function(
            "() => (document.querySelector('#pt-reference-info')?.innerText || '').includes('r = 0.3, 64x64')",
            timeout=30_000,
        )
        assert "256x256 PNG: character" in page.locator("#pt-reference-info").inner_text()
        page.wait_for_function(
            "() => { const i = document.querySelector('#pt-prepared img'); return i && i.naturalWidth === 64; }",
            timeout=30_000,
        )
        # Kept for later under a name; the reference then says whose it is.
        page.locator("#pt-save-name textarea, #pt-save-name input").first.fill("Stripey")
        page.locator("#pt-save").click()
        page.wait_for_function(
            "() => (document.querySelector('#pt-reference-info')?.innerText || '').startsWith('Stripey')",
            timeout=30_000,
        )
        page.screenshot(path=str(SHOTS / "10-personalize-reference.png"), full_page=True)

        # Generate: the preview streams, then the reference and the clip play side by side.
        page.locator("#pt-prompt textarea").fill("the character moving right on a green background")
        page.locator("#pt-generate").click()
        page.locator("#pt-preview img").first.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#pt-board video')].some(v => v.readyState >= 2)", timeout=60_000
        )
        assert (
            "done" in page.locator("#pt-status").inner_text() and "Stripey" in page.locator("#pt-status").inner_text()
        )
        titles = page.locator("#pt-board .cmp-prompt").all_inner_texts()
        assert titles[0].startswith("Reference: Stripey") and titles[1].startswith("Result: the character"), titles
        assert page.evaluate("() => document.querySelector('#pt-board img').naturalWidth") == 64
        page.locator("#pt-board .cmp-play").click()
        page.wait_for_timeout(800)
        t = page.evaluate("() => document.querySelector('#pt-board video').currentTime")
        page.screenshot(path=str(SHOTS / "11-personalized.png"), full_page=True)
        assert t > 0, "the result did not play"

        # Sent back to Personalize, the result goes in the take-a-frame row; a frame becomes the reference.
        page.locator("#pt-send-choice input").click()
        page.locator("[role=option]:has-text('Personalize')").first.click()
        page.locator("#pt-send").click()
        page.wait_for_function(
            "() => (document.querySelector('#pt-take-info')?.innerText || '').includes('32 frames')", timeout=30_000
        )
        page.locator("#pt-use-frame").click()
        page.wait_for_function(
            "() => !(document.querySelector('#pt-reference-info')?.innerText || '').startsWith('Stripey')",
            timeout=30_000,
        )
        page.screenshot(path=str(SHOTS / "12-personalize-frame.png"), full_page=True)
        # The saved character, picked again, is the reference again; deleted, it leaves the list.
        page.locator("#pt-pick input").click()
        page.locator("[role=option]:has-text('Stripey')").first.click()
        page.wait_for_function(
            "() => (document.querySelector('#pt-reference-info')?.innerText || '').startsWith('Stripey')",
            timeout=30_000,
        )
        page.locator("#pt-delete").click()
        page.wait_for_function(
            "() => (document.querySelector('#pt-characters-info')?.innerText || '').startsWith('Deleted Stripey')",
            timeout=30_000,
        )
        page.locator("#pt-pick input").click()
        assert page.locator("[role=option]:has-text('Stripey')").count() == 0
        browser.close()


def test_animate_a_picture_then_continue_the_clip(studio, tmp_path):
    picture = write_png(
        tmp_path / "first.png", render(Scene("blue", (ShapeObject("red", "square", "right"),)), 96, 1)[0]
    )
    SHOTS.mkdir(exist_ok=True)
    durations = "() => [...document.querySelectorAll('#ex-board video')].map(v => v.duration)"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(studio)
        page.locator("button[role=tab]:has-text('Animate')").first.click()
        # Picture to clip: the picture is shown as the model will see it as soon as it is chosen.
        page.locator("#an-image input[type=file]").set_input_files(str(picture))
        page.wait_for_function(
            "() => (document.querySelector('#an-picture-info')?.innerText || '').includes('as the model sees it: 96x96')",
            timeout=30_000,
        )
        page.locator("#an-prompt textarea").fill("a red square moving right on a blue background")
        page.locator("#an-steps input[type=number]").fill("1")
        page.locator("#an-steps input[type=number]").press("Enter")
        page.locator("#an-generate").click()
        page.locator("#an-preview img").first.wait_for(timeout=60_000)
        # The picture as the model saw it, and the clip made from it, under one play bar.
        page.wait_for_function(
            "() => [...document.querySelectorAll('#an-board video')].some(v => v.readyState >= 2)", timeout=60_000
        )
        assert "done" in page.locator("#an-status").inner_text()
        titles = page.locator("#an-board .cmp-prompt").all_inner_texts()
        assert titles[0] == "First picture, as the model sees it" and titles[1].startswith("Result: a red"), titles
        page.locator("#an-board .cmp-play").click()
        page.wait_for_timeout(800)
        t = page.evaluate("() => document.querySelector('#an-board video').currentTime")
        page.screenshot(path=str(SHOTS / "14-animated.png"), full_page=True)
        assert t > 0, "the result did not play"

        # Sent on to "Continue a clip": that part shows, with the clip as the model sees it.
        page.locator("#an-send-choice input").click()
        page.locator("[role=option]:has-text('Animate: continue a clip')").first.click()
        page.locator("#an-send").click()
        page.wait_for_function(
            "() => (document.querySelector('#ex-source-info')?.innerText || '').includes('8 fps, 32 frames')",
            timeout=30_000,
        )
        assert page.locator("#ex-prompt").is_visible() and not page.locator("#an-prompt").is_visible()
        page.locator("#ex-prompt textarea").fill("a red square moving left on a blue background")
        page.locator("#ex-seconds input[type=number]").fill("1")
        page.locator("#ex-seconds input[type=number]").press("Enter")
        page.locator("#ex-steps input[type=number]").fill("1")
        page.locator("#ex-steps input[type=number]").press("Enter")
        # Before it runs, the part says what it will make.
        page.wait_for_function(
            "() => (document.querySelector('#ex-plan')?.innerText || '').includes('8 new frames in 1 window')",
            timeout=60_000,  # the plan follows two inputs' change events: slow on a loaded machine
        )
        assert "32 + 8 = 40 frames" in page.locator("#ex-plan").inner_text()
        page.locator("#ex-generate").click()
        page.wait_for_function(
            "() => (document.querySelector('#ex-status')?.innerText || '').includes('+8 frames in 1 window')",
            timeout=60_000,
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#ex-board video')].filter(v => v.readyState >= 2).length === 2",
            timeout=30_000,
        )
        source, result = page.evaluate(durations)
        assert abs(source - 4.0) < 0.2 and abs(result - 5.0) < 0.2, (source, result)  # 32 frames, then 40
        page.locator("#ex-board .cmp-play").click()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "15-continued.png"), full_page=True)
        times = page.evaluate("() => [...document.querySelectorAll('#ex-board video')].map(v => v.currentTime)")
        assert min(times) > 0, f"did not play: {times}"
        browser.close()


def test_signed_in_users_see_only_their_own_results(rewriting_model, tmp_path):
    """app.py --auth twice: each user signs in on the login page, and History lists only what
    that user made."""
    SHOTS.mkdir(exist_ok=True)
    proc, url = start_studio(rewriting_model, tmp_path, "--auth", "alice:a-pass", "--auth", "bob:b-pass")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)

            def sign_in(user: str, password: str):
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.goto(url)
                page.locator("input[type=text]").first.fill(user)
                page.locator("input[type=password]").first.fill(password)
                page.keyboard.press("Enter")
                page.locator("#t2v-prompt textarea").wait_for(timeout=60_000)
                return page

            alice = sign_in("alice", "a-pass")
            alice.locator("#t2v-prompt textarea").fill("a red circle moving left on a blue background")
            alice.locator("#t2v-generate").click()
            alice.locator("#t2v-video video").first.wait_for(timeout=90_000)
            alice.locator("button[role=tab]:has-text('History')").first.click()
            alice.locator("#history-gallery img").first.wait_for(timeout=30_000)
            assert alice.locator("#history-gallery img").count() == 1

            bob = sign_in("bob", "b-pass")
            bob.wait_for_function(
                "() => (document.querySelector('#signed-in')?.innerText || '').includes('Signed in as bob')",
                timeout=30_000,
            )
            bob.locator("button[role=tab]:has-text('History')").first.click()
            bob.locator("#history-gallery").wait_for(timeout=30_000)
            bob.wait_for_timeout(1500)  # the list is filled on page load: give it time to (not) appear
            bob.screenshot(path=str(SHOTS / "13-signed-in-other-user.png"), full_page=True)
            assert bob.locator("#history-gallery img").count() == 0
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    users = tmp_path / "outputs" / "users"
    [alice_dir] = [d for d in users.iterdir() if d.name.startswith("alice-")]
    assert len(list(alice_dir.glob("*.mp4"))) == 1 and not list((tmp_path / "outputs").glob("*.mp4"))

"""Side-by-side compare: two to four results play in lock-step under one play/pause and one scrub
bar, each with its settings underneath. The longest clip leads; the others follow it and are
pulled back whenever they drift by more than a frame, so differences line up in time. The Edit tab
uses the same player for source | result | what changed, the Upscale tab for bicubic | upscaled.

With `zoom`, a zoom menu shows the same region of every clip with its pixels enlarged (1:1, 2:1...
screen pixels per pixel of the largest clip; smaller clips are drawn at the same size, so the same
part of the picture shows in each); a click on any clip picks the region's centre."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from .history import Entry

CSS = """
.cmp-grid { display: grid; gap: 10px; justify-content: center;
  grid-template-columns: repeat(var(--n, 2), minmax(0, 420px)); }
.cmp-cell { background: var(--block-background-fill); border: 1px solid var(--border-color-primary);
  border-radius: 8px; padding: 6px; }
.cmp-cell video, .cmp-cell img { width: 100%; aspect-ratio: 1; image-rendering: pixelated; background: #000;
  border-radius: 4px; display: block; }
.cmp-prompt { font-weight: 600; margin: 6px 2px 2px; overflow-wrap: anywhere; }
.cmp-settings { font-size: 0.85em; opacity: 0.8; margin: 0 2px; }
.cmp-controls { display: flex; gap: 10px; align-items: center; margin-top: 10px; flex-wrap: wrap; }
.cmp-controls input[type=range] { flex: 1; min-width: 160px; }
.cmp-controls button { padding: 4px 12px; border-radius: 6px; border: 1px solid var(--border-color-primary);
  background: var(--button-secondary-background-fill); cursor: pointer; }
.cmp-time { font-variant-numeric: tabular-nums; min-width: 7em; }
.cmp-empty { opacity: 0.7; padding: 16px; }
.cmp-frame { position: relative; overflow: hidden; aspect-ratio: 1; background: #000; border-radius: 4px;
  cursor: crosshair; }
.cmp-frame video, .cmp-frame img { border-radius: 0; }
.cmp-region { font-size: 0.85em; opacity: 0.8; font-variant-numeric: tabular-nums; }
"""

JS = """
const vids = () => Array.from(element.querySelectorAll('video.cmp-video'));
const lead = () => vids().reduce((a, v) => (!a || (v.duration || 0) > (a.duration || 0)) ? v : a, null);
const fps = () => { const L = lead(); return L ? parseFloat(L.dataset.fps || '8') : 8; };
const label = () => {
  const L = lead(), b = element.querySelector('.cmp-play');
  if (!L || !b) return;
  b.textContent = L.paused ? '▶ Play' : '❚❚ Pause';
  const s = element.querySelector('.cmp-scrub'), t = element.querySelector('.cmp-time');
  if (s && L.duration) s.value = Math.round(1000 * L.currentTime / L.duration);
  if (t) t.textContent = `${L.currentTime.toFixed(2)} / ${(L.duration || 0).toFixed(2)} s`;
};
const seek = (t) => vids().forEach(v => { v.currentTime = Math.min(t, Math.max((v.duration || t) - 1e-3, 0)); });
element.addEventListener('click', (e) => {
  const b = e.target.closest('button'); const L = lead();
  if (!b || !L) return;
  if (b.classList.contains('cmp-play')) {
    if (L.paused) { if (L.ended || L.currentTime >= L.duration) seek(0); else seek(L.currentTime);
      vids().forEach(v => v.play()); }
    else vids().forEach(v => v.pause());
  } else if (b.classList.contains('cmp-step')) {
    vids().forEach(v => v.pause()); seek(L.currentTime + parseFloat(b.dataset.dir) / fps());
  }
  setTimeout(label, 30);
});
element.addEventListener('input', (e) => {
  const L = lead(); if (!L) return;
  if (e.target.classList.contains('cmp-scrub')) {
    vids().forEach(v => v.pause()); seek(e.target.value / 1000 * (L.duration || 0)); label();
  } else if (e.target.classList.contains('cmp-speed')) {
    vids().forEach(v => { v.playbackRate = parseFloat(e.target.value); });
  }
});
element.addEventListener('timeupdate', (e) => {
  const L = lead(); if (e.target !== L) return;
  vids().forEach(v => { if (v !== L && !L.paused && v.currentTime < v.duration - 0.05
      && Math.abs(v.currentTime - L.currentTime) > 1 / fps()) v.currentTime = L.currentTime; });
  label();
}, true);
element.addEventListener('ended', (e) => {
  const L = lead(); if (e.target !== L) return;
  const loop = element.querySelector('.cmp-loop');
  if (loop && loop.checked) { seek(0); vids().forEach(v => v.play()); }
  label();
}, true);
element.addEventListener('loadedmetadata', label, true);

// Zoom (boards built with zoom=True): every clip drawn at the same size, the same region in view.
const zoom = { cx: 0.5, cy: 0.5 };
const framed = () => Array.from(element.querySelectorAll('.cmp-frame > video, .cmp-frame > img'));
const natural = (m) => m.tagName === 'VIDEO' ? [m.videoWidth, m.videoHeight] : [m.naturalWidth, m.naturalHeight];
const place = (size, room, c) => size <= room ? (room - size) / 2 : Math.min(0, Math.max(room - size, room / 2 - c * size));
const applyZoom = () => {
  const ms = framed(), sel = element.querySelector('.cmp-zoom'), out = element.querySelector('.cmp-region');
  if (!ms.length || !sel) return;
  const z = parseFloat(sel.value) || 0;
  const big = ms.reduce((a, m) => natural(m)[0] > natural(a)[0] ? m : a, ms[0]);
  const [nw, nh] = natural(big);
  let shown = '';
  ms.forEach(m => {
    const [w, h] = natural(m), box = m.parentElement;
    if (!z || !w || !nw) { m.removeAttribute('style'); return; }
    const W = box.clientWidth, H = box.clientHeight, dw = nw * z, dh = dw * h / w;
    const left = place(dw, W, zoom.cx), top = place(dh, H, zoom.cy);
    Object.assign(m.style, { position: 'absolute', maxWidth: 'none', aspectRatio: 'auto',
      width: `${dw}px`, height: `${dh}px`, left: `${left}px`, top: `${top}px` });
    if (m === big) {
      const x0 = Math.max(0, -left / z), y0 = Math.max(0, -top / z);
      const x1 = Math.min(nw, (W - left) / z), y1 = Math.min(nh, (H - top) / z);
      shown = `x ${Math.round(x0)}–${Math.round(x1)}, y ${Math.round(y0)}–${Math.round(y1)} of ${nw}×${nh} px`;
    }
  });
  if (out) out.textContent = z ? shown : 'click a clip to zoom there';
};
element.addEventListener('click', (e) => {
  const box = e.target.closest('.cmp-frame'); const sel = element.querySelector('.cmp-zoom');
  if (!box || !sel) return;
  const m = box.querySelector('video, img'), [w, h] = natural(m), r = m.getBoundingClientRect();
  if (!w || !h) return;
  const k = Math.min(r.width / w, r.height / h);  // the picture inside the element (letterboxed when fitted)
  const ox = r.left + (r.width - w * k) / 2, oy = r.top + (r.height - h * k) / 2;
  zoom.cx = Math.min(1, Math.max(0, (e.clientX - ox) / (w * k)));
  zoom.cy = Math.min(1, Math.max(0, (e.clientY - oy) / (h * k)));
  if (sel.value === '0') sel.value = '4';
  applyZoom();
});
element.addEventListener('change', (e) => { if (e.target.classList.contains('cmp-zoom')) applyZoom(); });
element.addEventListener('loadedmetadata', applyZoom, true);
element.addEventListener('load', applyZoom, true);
if (window.ResizeObserver) new ResizeObserver(() => applyZoom()).observe(element);
"""


def file_url(path) -> str:
    return "/gradio_api/file=" + html.escape(str(path), quote=True)


@dataclass(frozen=True)
class Cell:
    """One player of the board: a clip (or an image) with a title and a caption underneath."""

    media: Path
    title: str
    caption: str = ""
    fps: float = 8.0
    id: str = ""

    @property
    def is_video(self) -> bool:
        return Path(self.media).suffix.lower() == ".mp4"


def entry_cell(e: Entry) -> Cell:
    return Cell(e.media, e.prompt, e.settings_text(), e.fps, e.id)


def compare_html(entries: list[Entry]) -> str:
    if len(entries) < 2:
        return '<div class="cmp-empty">Pick two to four results (History tab, or "Compare with previous" after a generation).</div>'
    return player_html([entry_cell(e) for e in entries[:4]], zoom=any(e.task == "upscale" for e in entries))


def upscale_cells(path: str | Path, meta: dict) -> list[Cell]:
    """An upscale result beside its input enlarged by bicubic (the sidecar the engine writes next to
    it, named in metadata `files`), for the zoomable player; the result alone if that is gone."""
    path = Path(path)
    req = meta.get("request", {})
    scale, fps = req.get("scale", 4), meta.get("source", {}).get("fps") or 8.0
    (w, h), (big_w, big_h) = meta.get("input_size", ["?", "?"]), meta.get("size", ["?", "?"])
    sizes = f"{w}x{h} -> {big_w}x{big_h}"
    cells = []
    bicubic = meta.get("files", {}).get("bicubic")
    if bicubic and (path.parent / bicubic).is_file():
        cells.append(Cell(path.parent / bicubic, f"Enlarged {scale}x by bicubic", f"{sizes}, for comparison", fps))
    caption = f"{sizes} · seed {req.get('seed', 0)} · {req.get('steps', '?')} steps"
    cells.append(Cell(path, f"Upscaled {scale}x by the model", caption, fps, path.stem))
    return cells


def upscaled_cell(path: str | Path, meta: dict, fps: float) -> Cell:
    """A clip upscaled in the same job as it was made, on a board beside the clip it was made from."""
    (w, h), (big_w, big_h) = meta["input_size"], meta["size"]
    r = meta["request"]
    caption = f"{w}x{h} -> {big_w}x{big_h} · seed {r['seed']} · {r['steps']} steps"
    return Cell(path, f"Upscaled {r['scale']}x", caption, fps, Path(path).stem)


def player_html(cells: list[Cell], zoom: bool = False) -> str:
    """Up to four clips under one play/pause, scrub bar, frame stepping, speed and loop (JS above);
    with `zoom`, a zoom menu and click-to-pick region shared by every clip."""
    out = []
    for c in cells[:4]:
        media = (
            f'<video class="cmp-video" src="{file_url(c.media)}" data-fps="{c.fps}" muted playsinline preload="auto"></video>'
            if c.is_video
            else f'<img src="{file_url(c.media)}" alt="">'
        )
        if zoom:
            media = f'<div class="cmp-frame">{media}</div>'
        out.append(
            f'<div class="cmp-cell" data-id="{html.escape(c.id)}">{media}'
            f'<div class="cmp-prompt">{html.escape(c.title)}</div>'
            f'<div class="cmp-settings">{html.escape(c.caption)}</div></div>'
        )
    controls = (
        '<div class="cmp-controls"><button class="cmp-play">▶ Play</button>'
        '<button class="cmp-step" data-dir="-1" title="previous frame">◀ frame</button>'
        '<button class="cmp-step" data-dir="1" title="next frame">frame ▶</button>'
        '<input class="cmp-scrub" type="range" min="0" max="1000" value="0" aria-label="scrub all">'
        '<span class="cmp-time">0.00 s</span>'
        '<select class="cmp-speed" aria-label="speed"><option value="0.25">0.25x</option>'
        '<option value="0.5">0.5x</option><option value="1" selected>1x</option></select>'
        '<label><input class="cmp-loop" type="checkbox" checked> loop</label>'
    )
    if zoom:
        controls += (
            '<label>zoom <select class="cmp-zoom" aria-label="zoom"><option value="0" selected>fit</option>'
            '<option value="1">1:1 px</option><option value="2">2:1</option><option value="4">4:1</option>'
            '<option value="8">8:1</option></select></label>'
            '<span class="cmp-region">click a clip to zoom there</span>'
        )
    controls += "</div>"
    return f'<div class="cmp-grid" style="--n:{len(out)}">{"".join(out)}</div>{controls}'

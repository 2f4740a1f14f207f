"""Headless Chromium for tests: a screenshot of a page and its DOM as the
browser rendered it, each from one short-lived ``chromium --headless`` run
(fresh profile, no network).

Chromium's ``--dump-dom`` gives the DOM but not whether an ``<img>`` was
decoded. ``dump_dom(..., probe=True)`` therefore loads a copy of the page with
a small script appended (the report itself has none) that, on ``load``,
stamps every image with what the browser knows of it: ``data-complete``,
``data-natural-width/height``, its content box in page pixels
(``data-box="x,y,w,h"``), and, after drawing it on a canvas (which decodes it
synchronously), the sum of its decoded R+G+B values and its count of
non-white pixels; ``<html>`` gets ``data-probe="done"`` and the page's
``data-scroll-width/height``. The script only adds attributes, so the rest of the dumped
DOM is the report's; the stamps are there when the DOM is dumped because
Chromium dumps after the load event's handlers ran.

Also a command for the docs' screenshot:
    python -m tests.report.browser RUN/report.html docs/screenshots/report.png [--full-page]
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["FLAGS", "find_chromium", "screenshot", "dump_dom", "parse_dom", "Page", "Table"]

# Known to work on a closed-network Debian machine: without the background
# networking flags Chromium tries to reach Google's servers at start.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars"]

TIMEOUT = 90.0  # seconds for one Chromium run; a loaded 2-core machine takes ~2 s

_PROBE = r"""<script>
addEventListener('load', () => {
  const c = document.createElement('canvas'), g = c.getContext('2d', {willReadFrequently: true});
  for (const img of document.images) {
    const r = img.getBoundingClientRect(), d = img.dataset;
    d.complete = img.complete;
    d.naturalWidth = img.naturalWidth;
    d.naturalHeight = img.naturalHeight;
    d.box = [r.left + img.clientLeft + scrollX, r.top + img.clientTop + scrollY,
             img.clientWidth, img.clientHeight].join(',');
    try {
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      g.drawImage(img, 0, 0);
      const px = g.getImageData(0, 0, c.width, c.height).data;
      let sum = 0, nonwhite = 0;
      for (let i = 0; i < px.length; i += 4) {
        const v = px[i] + px[i + 1] + px[i + 2];
        sum += v;
        if (v < 750) nonwhite++;
      }
      d.pixelSum = sum;
      d.nonwhite = nonwhite;
    } catch (e) {
      d.decodeError = String(e);
    }
  }
  document.documentElement.dataset.probe = 'done';
  document.documentElement.dataset.scrollHeight = document.documentElement.scrollHeight;
  document.documentElement.dataset.scrollWidth = document.documentElement.scrollWidth;
});
</script>"""


def find_chromium() -> str | None:
    """``$TORCHSLIM_CHROMIUM`` if set, else ``chromium`` on PATH (Debian's
    package installs /usr/bin/chromium)."""
    exe = os.environ.get("TORCHSLIM_CHROMIUM") or shutil.which("chromium")
    return exe if exe and os.access(exe, os.X_OK) else None


def _run(args: list[str], *, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile; its whole process group
    is killed if it outlives ``timeout``. Raises with Chromium's stderr on failure."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="tslim-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        env = {**os.environ, "HOME": profile}  # nothing written to the real home
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"chromium timed out after {timeout:.0f} s: {cmd}\n{_tail(err)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {cmd}\n{_tail(err)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tail(err: bytes, n: int = 30) -> str:
    lines = [l for l in err.decode(errors="replace").splitlines() if "dbus" not in l]  # no D-Bus here: noise
    return "\n".join(lines[-n:])


def screenshot(html: str | Path, png: str | Path, *, width: int = 1280, height: int = 2400) -> Path:
    """PNG of the page's top ``width`` x ``height`` CSS pixels (scale 1), taken
    after every compositor stage ran (images decoded and drawn)."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    res = _run([f"--screenshot={png}", f"--window-size={width},{height}", "--run-all-compositor-stages-before-draw",
                Path(html).resolve().as_uri()])
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}\n{_tail(res.stderr)}")
    return png


def dump_dom(html: str | Path, *, width: int = 1280, height: int = 2400, probe: bool = True) -> str:
    """The DOM after load, as Chromium serialises it; with ``probe`` every
    ``<img>`` carries what the browser decoded (see the module docstring).
    Same window size as ``screenshot`` so the boxes match its pixels."""
    html = Path(html).resolve()
    with tempfile.TemporaryDirectory(prefix="tslim-page-") as tmp:
        page = html
        if probe:
            text = html.read_text(encoding="utf-8")
            if "</body>" not in text:
                raise ValueError(f"{html}: no </body> to append the probe to")
            page = Path(tmp) / html.name
            i = text.rindex("</body>")
            page.write_text(text[:i] + _PROBE + text[i:], encoding="utf-8")
        res = _run(["--dump-dom", f"--window-size={width},{height}", page.as_uri()])
    dom = res.stdout.decode("utf-8")
    if probe and 'data-probe="done"' not in dom:
        raise RuntimeError(f"the image probe did not run in {html}\n{_tail(res.stderr)}")
    return dom


@dataclasses.dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Page:
    title: str = ""
    h1: list[str] = dataclasses.field(default_factory=list)
    h2: list[str] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)
    imgs: list[dict] = dataclasses.field(default_factory=list)
    root: dict = dataclasses.field(default_factory=dict)  # attributes of <html>

    def table(self, caption_part: str) -> Table:
        found = [t for t in self.tables if caption_part in t.caption]
        assert len(found) == 1, (caption_part, [t.caption for t in self.tables])
        return found[0]


class _Parser(HTMLParser):
    """Just enough of the report's structure: title, headings, tables (caption,
    header cells, body rows as cell texts), and the attributes of every img."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._text: list[str] | None = None
        self._table: Table | None = None
        self._row: list[str] | None = None
        self._row_is_header = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.page.root = a
        elif tag == "img":
            self.page.imgs.append(a)
        elif tag == "table":
            self._table = Table("", [], [])
        elif tag == "tr":
            self._row, self._row_is_header = [], False
        elif tag in ("title", "h1", "h2", "caption", "td", "th"):
            self._text = []
            if tag == "th":
                self._row_is_header = True

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        text = " ".join("".join(self._text or []).split())
        if tag == "title":
            self.page.title = text
        elif tag in ("h1", "h2"):
            getattr(self.page, tag).append(text)
        elif tag == "caption" and self._table is not None:
            self._table.caption = text
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(text)
        elif tag == "tr" and self._table is not None and self._row is not None:
            if self._row_is_header and not self._table.header:
                self._table.header = self._row
            else:
                self._table.rows.append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            self.page.tables.append(self._table)
            self._table = None
        if tag in ("title", "h1", "h2", "caption", "td", "th"):
            self._text = None


def parse_dom(dom: str) -> Page:
    p = _Parser()
    p.feed(dom)
    p.close()
    return p.page


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.report.browser",
                                 description="Screenshot a report.html with headless Chromium.")
    ap.add_argument("html")
    ap.add_argument("png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--full-page", action="store_true", help="height = the page's scroll height")
    args = ap.parse_args(argv)
    height = args.height
    if args.full_page:
        root = parse_dom(dump_dom(args.html, width=args.width, height=args.height)).root
        height = int(root["data-scroll-height"])
    png = screenshot(args.html, args.png, width=args.width, height=height)
    print(f"wrote {png} ({args.width}x{height}, {png.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The HTML report: one well-formed, self-contained file whose charts carry the run's data,
and (where a headless browser is installed) that a browser draws them."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ledger.report import BAR_COLOUR, LAYER_COLOURS, PALETTE, audit_line

from .conftest import HOURS, Ran

VOID = {"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "source", "wbr"}
POINT = re.compile(r"-?\d+,-?\d+")


class Page(HTMLParser):
    """Checks nesting as it parses, and keeps what the tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.svgs: dict[str, dict[str, list[dict[str, str]]]] = {}
        self.current_svg: str | None = None
        self.attributes: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.element(tag, attrs)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.element(tag, attrs)

    def element(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.attributes += [(tag, k, v) for k, v in values.items()]
        if tag == "meta" and "name" in values:
            self.meta[values["name"]] = values.get("content", "")
        if tag == "svg":
            self.current_svg = values.get("id", f"svg{len(self.svgs)}")
            self.svgs[self.current_svg] = {}
        elif self.current_svg is not None:
            self.svgs[self.current_svg].setdefault(tag, []).append(values)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
            return
        self.open.pop()
        if tag == "svg":
            self.current_svg = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def page(ran: Ran) -> Page:
    return parse(ran.outcome.report)


def test_the_report_is_well_formed_and_self_contained(page: Page, ran: Ran) -> None:
    assert page.problems == [] and page.open == []
    assert page.meta["generator"] == "tollgate demo"
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    external = [(t, k, v) for t, k, v in page.attributes if k in ("src", "href")]
    assert external == []
    text = " ".join(page.text)
    assert "Tollgate demo" in text
    assert audit_line(ran.outcome.audit) in text
    assert "audit: 0 discrepancies" in text


def test_the_balance_chart_has_a_line_per_sample_user_over_every_hour(page: Page, ran: Ran) -> None:
    lines = page.svgs["balance-chart"]["polyline"]
    timeline = ran.outcome.result.timeline
    assert len(lines) == len(timeline.balances) == 5
    assert [line["stroke"] for line in lines] == list(PALETTE[:5])
    for line, values in zip(lines, timeline.balances.values(), strict=True):
        points = POINT.findall(line["points"])
        assert len(points) == HOURS + 1 == len(values)
        ys = {int(p.split(",")[1]) for p in points}
        assert len(ys) > 1 or len(set(values)) == 1  # a balance that moves draws a moving line


def test_the_layers_chart_stacks_every_layer_over_every_hour(page: Page, ran: Ran) -> None:
    paths = page.svgs["layers-chart"]["path"]
    assert [p["fill"] for p in paths] == list(LAYER_COLOURS.values())
    for p in paths:
        assert len(POINT.findall(p["d"])) == 4 * HOURS
    # The top of the stack follows the hourly totals: the busiest hour reaches highest.
    totals = [sum(v[h] for v in ran.outcome.result.timeline.units.values()) for h in range(HOURS)]
    top = POINT.findall(paths[-1]["d"])[: 2 * HOURS : 2]
    highest = min(range(HOURS), key=lambda h: int(top[h].split(",")[1]))
    assert totals[highest] == max(totals)


def test_the_refusals_chart_has_a_bar_per_hour_with_refusals(page: Page, ran: Ran) -> None:
    bars = page.svgs["blocked-chart"].get("rect", [])
    blocked = ran.outcome.result.timeline.blocked
    assert len(bars) == sum(1 for b in blocked if b) > 0
    assert {b["fill"] for b in bars} == {BAR_COLOUR}


# -- in a headless browser ---------------------------------------------------------------------


def browser() -> list[str] | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return [found, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    return None


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of an 8-bit RGB or RGBA, non-interlaced PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + guess) & 0xFF
        rows.append(
            bytes(line) if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3)
        )
        previous = line
    return width, height, rows


def colours(rows: list[bytes]) -> Counter[bytes]:
    """How many pixels have each RGB colour."""
    return Counter(row[x : x + 3] for row in rows for x in range(0, len(row), 3))


def count_near(found: Counter[bytes], colour: str, tolerance: int = 24) -> int:
    want = bytes.fromhex(colour.lstrip("#"))
    return sum(
        n for rgb, n in found.items() if all(abs(rgb[c] - want[c]) <= tolerance for c in range(3))
    )


def test_a_headless_browser_draws_the_charts(ran: Ran, tmp_path: Path) -> None:
    command = browser()
    if command is None:
        pytest.skip("no headless browser (chromium or google-chrome) is installed")
    shot = tmp_path / "report.png"
    subprocess.run(
        [*command, "--window-size=1000,2600", f"--screenshot={shot}", ran.outcome.report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    _, _, rows = png_pixels(shot.read_bytes())
    found = colours(rows)
    assert count_near(found, LAYER_COLOURS["windows"]) > 5_000  # the stacked areas
    assert count_near(found, LAYER_COLOURS["credits"]) > 500
    assert sum(count_near(found, colour) for colour in PALETTE[:5]) > 1_500  # balance lines
    assert count_near(found, BAR_COLOUR) > 100  # the refusal bars

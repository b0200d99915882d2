"""Debian's headless Chromium, driven from the command line (`--dump-dom`, `--screenshot`),
and a small PNG reader so a test can look at the pixels it made."""

from __future__ import annotations

import asyncio
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def run_chromium(*args: str) -> bytes:
    """Run Chromium with a fresh profile; answer its stdout. The caller sets the deadline
    (`asyncio.timeout`); a cancelled run kills the browser."""
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="snowmon-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=profile,
        )
        try:
            out, err = await process.communicate()
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"chromium exited {process.returncode}: {err.decode()[-2000:]}")
        return out


async def dump_dom(url: str, *, width: int = 1280, height: int = 900) -> str:
    return (await run_chromium(f"--window-size={width},{height}", "--dump-dom", url)).decode()


async def screenshot(url: str, path: Path, *, width: int, height: int) -> Path:
    await run_chromium(f"--window-size={width},{height}", f"--screenshot={path}", url)
    return path


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError("only 8-bit RGB/RGBA, non-interlaced")
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]
            c = previous[x - channels] if x >= channels else 0
            if method == 1:
                line[x] = (line[x] + a) & 0xFF
            elif method == 2:
                line[x] = (line[x] + b) & 0xFF
            elif method == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif method == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        previous = line
        rgb = line if channels == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3)
        rows.append(bytes(rgb))
    return width, height, rows


def has_color(rows: list[bytes], rgb: tuple[int, int, int], *, tolerance: int = 6) -> bool:
    r, g, b = rgb
    for row in rows:
        for i in range(0, len(row), 3):
            if (
                abs(row[i] - r) <= tolerance
                and abs(row[i + 1] - g) <= tolerance
                and abs(row[i + 2] - b) <= tolerance
            ):
                return True
    return False

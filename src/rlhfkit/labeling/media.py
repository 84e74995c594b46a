"""Clips and images for items: read from files (URLs only when asked), typed by their
first bytes rather than by their name, and only from a short list of media types, so
nothing uploaded is ever served as HTML or script."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from rlhfkit.feedback.records import RecordError

MAX_MEDIA_BYTES = 64 * 1024 * 1024
# (magic prefix check, content type)
_SNIFF: tuple[tuple[str, object], ...] = (
    ("image/gif", lambda b: b[:6] in (b"GIF87a", b"GIF89a")),
    ("image/png", lambda b: b[:8] == b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", lambda b: b[:3] == b"\xff\xd8\xff"),
    ("image/webp", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    ("video/mp4", lambda b: b[4:8] == b"ftyp"),
    ("video/webm", lambda b: b[:4] == b"\x1a\x45\xdf\xa3"),
)
MEDIA_TYPES: tuple[str, ...] = tuple(t for t, _ in _SNIFF)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff(data: bytes) -> str | None:
    for ctype, check in _SNIFF:
        if check(data):  # type: ignore[operator]
            return ctype
    return None


def is_url(ref: str) -> bool:
    return ref.split(":", 1)[0].lower() in ("http", "https", "ftp", "file", "data", "javascript")


def _fetch(url: str) -> bytes:
    if url.split(":", 1)[0].lower() not in ("http", "https"):
        raise RecordError("clips", f"only http(s) URLs can be fetched, not {url.split(':', 1)[0]!r}")
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (scheme checked above)
        data = resp.read(MAX_MEDIA_BYTES + 1)
    return data


def load_media(ref: str | Path, base: Path | None = None, allow_urls: bool = False) -> tuple[str, bytes]:
    """(content type, bytes) of a clip given as a path (relative to `base`) or, with
    `allow_urls`, an http(s) URL. Raises RecordError('clips', ...) naming what is wrong."""
    ref = str(ref)
    if is_url(ref):
        if not allow_urls:
            raise RecordError("clips", f"{ref[:80]!r} is a URL; import from URLs is off (pass --allow-urls)")
        data = _fetch(ref)
    else:
        path = Path(ref)
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise RecordError("clips", f"no such file: {path}")
        if path.stat().st_size > MAX_MEDIA_BYTES:
            raise RecordError("clips", f"{path} is larger than {MAX_MEDIA_BYTES // 2**20} MiB")
        data = path.read_bytes()
    if len(data) > MAX_MEDIA_BYTES:
        raise RecordError("clips", f"{ref[:80]} is larger than {MAX_MEDIA_BYTES // 2**20} MiB")
    ctype = sniff(data)
    if ctype is None:
        raise RecordError("clips", f"{ref[:80]} is not a GIF, PNG, JPEG, WebP, MP4 or WebM file")
    return ctype, data

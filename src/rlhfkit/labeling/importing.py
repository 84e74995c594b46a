"""`rlhfkit label import FILE`: JSONL rows -> items, validated whole before anything is written.

Accepted rows (one JSON object a line):
  {"type": "completions", "prompt": str, "responses": [str, ...], "policy": str | null}  (`rlhfkit sample`)
  {"prompt": str, "responses": [str, ...]}
  {"prompt": str, "response": str}                                  (rating and thumbs projects)
  {"prompt": str, "clips": [path, path]}                            (pairwise clips: GIF/PNG/JPEG/WebP/MP4/WebM)
  {"prompt": str, "context": str (optional)}                        (demonstration projects: no responses)
each optionally with "gold" (the researcher's answer, making it a gold item) and "meta" (a dict).
A prompt (except a clips row's) may be a conversation: a list of {"role", "content"} messages
(feedback/records.py). The item keeps the messages, shows them turn by turn and exports them
as they came.

A row becomes items by the project's kind: a ranking item shows its K = 2..9 responses; a
pairwise row with 2 responses is one item and one with K = 3..9 becomes its C(K, 2) pairs;
a rating or thumbs row with K = 1..9 responses becomes K items (one response each). Gold answers
are allowed only on a row that makes a single item. A demonstration row is one item (kinds.py
DemonstrationKind: the labeler writes the response; no gold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhfkit.errors import UserError
from rlhfkit.feedback.formats import FormatError, row_to_record
from rlhfkit.feedback.records import Completions, Demonstration, RecordError
from rlhfkit.labeling.kinds import (
    DEFAULT_MAX_CHARS,
    Kind,
    NewItem,
    kind_object,
    kind_of,
    validate_new_item,
)
from rlhfkit.labeling.media import load_media

MAX_ERRORS = 20
ROW_K = (1, 9)  # responses a row may hold; each kind narrows this (its `split`)
_OURS = ("gold", "meta", "clips")


class ImportFailed(UserError):
    """Import found errors; nothing was written. `errors` holds one FormatError per bad row."""

    def __init__(self, path: Path, errors: list[FormatError], more: bool) -> None:
        lines = "\n  ".join(str(e) for e in errors)
        tail = f"\n  ... (stopped after {MAX_ERRORS} errors)" if more else ""
        super().__init__(f"{path}: {len(errors)} bad row(s); nothing was imported:\n  {lines}{tail}")
        self.errors = errors


def row_to_items(kind: str | Kind, row: Any, base: Path, allow_urls: bool = False,
                 max_chars: int = DEFAULT_MAX_CHARS) -> list[NewItem]:
    """The items one parsed row makes, or RecordError naming the field. `kind`: the project's
    kind object (`kinds.kind_of`, so a rating's gold is checked against its form) or name."""
    if not isinstance(row, dict):
        raise RecordError("<row>", f"expected a JSON object, got {type(row).__name__}")
    kind = kind_object(kind)
    if kind.own_rows:
        return [validate_new_item(kind, kind.item_from_row(row), max_chars)]
    ours = {k: row[k] for k in _OURS if k in row}
    rest = {k: v for k, v in row.items() if k not in _OURS}
    meta = ours.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError("meta", "expected a JSON object")
    media: tuple[tuple[str, bytes], ...] = ()
    policy = None
    if "clips" in ours:
        clips = ours["clips"]
        if not kind.clips:
            raise RecordError("clips", f"clips are for pairwise projects, not {kind.name}")
        if not isinstance(clips, list) or len(clips) != 2 or not all(isinstance(c, str) for c in clips):
            raise RecordError("clips", "expected two clip paths")
        if "responses" in rest:
            raise RecordError("responses", "give clips or responses, not both")
        prompt = rest.get("prompt", "")
        if not isinstance(prompt, str):
            raise RecordError("prompt", "expected a string")
        responses = tuple(clips)
        media = tuple(load_media(c, base, allow_urls) for c in clips)
    else:
        if "responses" not in rest and "response" not in rest:
            raise RecordError("responses", "missing (a row needs a prompt and its responses)")
        record = row_to_record(rest)
        if isinstance(record, Completions):
            policy = record.policy
            responses = record.responses
        elif isinstance(record, Demonstration) and kind.response_rows:
            responses = (record.response,)
        else:
            raise RecordError("type", f"expected completions (prompt + responses), got a {record.kind} row")
        prompt = record.prompt
    groups = kind.split(len(responses))
    gold = ours.get("gold")
    if gold is not None and len(groups) != 1:
        raise RecordError("gold", f"a gold answer needs a row that makes one {kind.name} item")
    items = []
    for group in groups:
        item = NewItem(prompt, tuple(responses[i] for i in group), policy=policy, gold=gold,
                       meta={**meta, "responses_index": list(group)} if len(groups) > 1 else dict(meta),
                       media=tuple(media[i] for i in group) if media else ())
        items.append(validate_new_item(kind, item, max_chars))
    return items


def read_items(path: str | Path, kind: str | Kind, allow_urls: bool = False,
               max_chars: int = DEFAULT_MAX_CHARS) -> list[NewItem]:
    """Every item in a JSONL file, or ImportFailed listing the bad rows (up to MAX_ERRORS)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    items: list[NewItem] = []
    errors: list[FormatError] = []
    more = False
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            if len(errors) >= MAX_ERRORS:
                more = True
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                errors.append(FormatError(path, lineno, None, f"not UTF-8 text (byte {e.start + 1} of the line)"))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(FormatError(path, lineno, None, f"malformed JSON ({e.msg} at column {e.colno})"))
                continue
            try:
                items.extend(row_to_items(kind, row, path.parent, allow_urls, max_chars))
            except RecordError as e:
                errors.append(FormatError(path, lineno, e.field, e.message))
    if errors:
        raise ImportFailed(path, errors, more)
    if not items:
        raise UserError(f"{path}: the file holds no rows")
    return items


def import_file(store: Any, project: str, path: str | Path, allow_urls: bool = False,
                max_chars: int = DEFAULT_MAX_CHARS) -> list[int]:
    """Validate a whole file, then add its items to `project` in one transaction."""
    kind = kind_of(store.project(project))
    return store.add_items(project, read_items(path, kind, allow_urls, max_chars), max_chars=max_chars)

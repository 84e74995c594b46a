"""Reading and writing records: JSONL (ours), Parquet, `datasets.save_to_disk`, and the
formats people already have, detected row by row.

Detected row shapes (first match wins):
  {"type": "comparison" | "ranking" | "rating" | "demonstration" | "completions", ...}  ours
  {"prompt": str, "chosen": str, "rejected": str}              TRL / UltraFeedback-binarized style
  {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}  Anthropic HH transcripts;
                                                               the shared prefix becomes the prompt
  {"chosen": [messages], "rejected": [messages], "prompt"?: [messages]}  chat (TRL conversational)
  {"messages": [messages]}                                     chat demonstration
  {"prompt": str, "response": str, "score": int}               rating
  {"prompt": str, "response"|"completion": str}                demonstration
  {"prompt": [messages], "completion": [messages]}             chat demonstration (TRL prompt-completion)
  {"prompt": str, "responses": [str, ...]}                     completions (a ranking with "ranks")
A message is {"role": "system" | "user" | "assistant" | "tool", "content": str}, and wherever a
row has a string prompt it may have a list of messages instead.

Chat rows keep their conversation as messages (records.py), for the model's chat template to
render: the messages before the last assistant turn are the prompt (earlier assistant turns of a
multi-turn conversation stay in it), that turn's content is the response; both sides of a chat
preference row must hold the same conversation before their last reply. HH transcripts stay
strings. `export_preference_pairs` writes a conversational comparison in TRL's conversational
format (prompt: messages; chosen, rejected: one assistant message each); `unpaired_rows` writes
binary feedback as TRL's unpaired rows `{prompt, completion, label}` (KTO's), the same way.

Errors name the file, the line and the field. Writers write to a temporary file and
rename it into place, so a failed write never leaves a half-written file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from rlhfkit.errors import UserError
from rlhfkit.feedback.records import (
    ASSISTANT,
    RECORD_TYPES,
    Comparison,
    Completions,
    Demonstration,
    Feedback,
    Message,
    Ranking,
    Rating,
    Record,
    RecordError,
    as_messages,
    parse_messages,
    record_to_dict,
)
from rlhfkit.runtime import atomic_path


class FormatError(UserError, ValueError):
    """Bad input data; the message names file, line and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str) -> None:
        where = str(path) + (f":{line}" if line is not None else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")
        self.path, self.line, self.field = str(path), line, field


# ---------------------------------------------------------------- row conversion

def _split_chat(messages: Any, field: str, before: tuple[Message, ...] = ()) -> tuple[tuple[Message, ...], str]:
    """A conversation ending in an assistant turn -> (the messages before that turn, its content).
    `before` (a separately given prompt) is prepended."""
    turns = parse_messages(messages, field)
    if not turns or turns[-1].role != "assistant":
        raise RecordError(field, "the last message must be {\"role\": \"assistant\", \"content\": str}")
    prompt = before + turns[:-1]
    if not prompt:
        raise RecordError(field, "no message before the assistant's reply (the prompt is empty)")
    if prompt[-1].role == "assistant":
        raise RecordError(field, "the conversation ends with two assistant turns; the prompt before the "
                          "reply must end with a user, system or tool turn")
    return prompt, turns[-1].content


def _split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Anthropic HH: both transcripts share the dialogue up to the final 'Assistant:' turn."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n + len(ASSISTANT))
    if cut < 0 or cut + len(ASSISTANT) > n:
        cut = chosen.rfind(ASSISTANT, 0, n)
    if cut < 0:
        raise RecordError("chosen", "HH transcripts must share a prefix ending in '\\n\\nAssistant:'")
    end = cut + len(ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


def _chat_prompt(row: dict[str, Any]) -> tuple[Message, ...]:
    """The separately given prompt of a conversational row (TRL's explicit prompt), if any."""
    if "prompt" not in row:
        return ()
    if not isinstance(row["prompt"], list):
        raise RecordError("prompt", f"expected a list of chat messages (the replies are messages), "
                          f"got {type(row['prompt']).__name__}")
    return parse_messages(row["prompt"], "prompt")


def row_to_record(row: Any) -> Record:
    """Convert one parsed row in any supported format to a record (raises RecordError)."""
    if not isinstance(row, dict):
        raise RecordError("<row>", f"expected a JSON object, got {type(row).__name__}")
    if "type" in row:
        kind = row["type"]
        if kind not in RECORD_TYPES:
            raise RecordError("type", f"unknown record type {kind!r}; known: {sorted(RECORD_TYPES)}")
        cls = RECORD_TYPES[kind]
        body = {k: v for k, v in row.items() if k != "type"}
        # dataclasses.fields() leaves out the ClassVar `kind`, which is not a constructor argument
        known = {f.name: f for f in fields(cls)}
        for k in body:
            if k not in known:
                raise RecordError(k, f"unknown field for a {kind}; known: {sorted(known)}")
        for name, f in known.items():
            if f.default is MISSING and f.default_factory is MISSING and name not in body:
                raise RecordError(name, f"missing (required for a {kind})")
        return cls(**body)
    if "chosen" in row or "rejected" in row:
        for f in ("chosen", "rejected"):
            if f not in row:
                raise RecordError(f, "missing (a preference row needs both chosen and rejected)")
        chosen, rejected = row["chosen"], row["rejected"]
        extra = {k: row[k] for k in ("tie", "weight", "labeler") if k in row}
        if isinstance(chosen, list) or isinstance(rejected, list):
            for f in ("chosen", "rejected"):
                if not isinstance(row[f], list):
                    raise RecordError(f, f"expected a list of chat messages like the other side, got {type(row[f]).__name__}")
            before = _chat_prompt(row)
            p1, c = _split_chat(chosen, "chosen", before)
            p2, r = _split_chat(rejected, "rejected", before)
            if p1 != p2:
                raise RecordError("rejected", "chosen and rejected conversations differ before the last reply")
            return Comparison(p1, c, r, **extra)
        if "prompt" in row:
            return Comparison(row["prompt"], chosen, rejected, **extra)
        if not isinstance(chosen, str):
            raise RecordError("chosen", f"expected a string, got {type(chosen).__name__}")
        if not isinstance(rejected, str):
            raise RecordError("rejected", f"expected a string, got {type(rejected).__name__}")
        prompt, c, r = _split_hh(chosen, rejected)
        return Comparison(prompt, c, r, **extra)
    if "label" in row and ("completion" in row or "response" in row):  # TRL's unpaired preference rows
        f = "completion" if "completion" in row else "response"
        if isinstance(row[f], list):
            prompt, response = _split_chat(row[f], f, _chat_prompt(row))
        else:
            prompt, response = row.get("prompt"), row[f]
        if not isinstance(row["label"], bool):
            raise RecordError("label", f"expected true (desirable) or false, got {row['label']!r}")
        return Feedback(prompt, response, row["label"], labeler=row.get("labeler"))
    if "messages" in row:
        return Demonstration(*_split_chat(row["messages"], "messages"))
    if "prompt" not in row:
        raise RecordError("prompt", f"missing; cannot tell the format of a row with fields {sorted(row)}")
    if "responses" in row:
        if "ranks" in row:
            return Ranking(row["prompt"], row["responses"], labeler=row.get("labeler"), ranks=row["ranks"])
        return Completions(row["prompt"], row["responses"], policy=row.get("policy"))
    if "score" in row or "answers" in row:
        return Rating(row["prompt"], row.get("response"), row.get("score"), flags=row.get("flags") or (),
                      notes=row.get("notes") or "", labeler=row.get("labeler"), answers=row.get("answers") or {})
    for f in ("response", "completion"):
        if f in row:
            if isinstance(row[f], list):  # TRL conversational prompt-completion
                return Demonstration(*_split_chat(row[f], f, _chat_prompt(row)))
            return Demonstration(row["prompt"], row[f])
    raise RecordError("response", f"missing; cannot tell the format of a row with fields {sorted(row)}")


# ---------------------------------------------------------------- readers

def _rows_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(path, lineno, None, f"not UTF-8 text (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(path, lineno, None, f"malformed JSON ({e.msg} at column {e.colno})") from None


def _rows_table(path: Path) -> Iterator[tuple[int, Any]]:
    if path.is_dir():
        try:
            import datasets
        except ImportError as e:
            raise FormatError(path, None, None, "reading a saved dataset needs `pip install rlhfkit[data]`") from e
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        rows: Iterable[Any] = iter(ds)
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise FormatError(path, None, None, "reading Parquet needs `pip install rlhfkit[data]`") from e
        rows = pq.read_table(path).to_pylist()
    for i, row in enumerate(rows, start=1):
        # A table has every column in every row; a null cell means the row lacks that field
        # (a comparison stored next to a rating has score = null).
        yield i, {k: v for k, v in row.items() if v is not None} if isinstance(row, dict) else row


def read_records(path: str | Path, expect: type | tuple[type, ...] | None = None) -> list[Record]:
    """Read every record in a JSONL/Parquet file or a `save_to_disk` folder.

    `expect` restricts the record types accepted. Empty inputs are an error.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError(p, None, None, "no such file")
    rows = _rows_table(p) if (p.is_dir() or p.suffix == ".parquet") else _rows_jsonl(p)
    out: list[Record] = []
    for line, row in rows:
        try:
            rec = row_to_record(row)
        except RecordError as e:
            raise FormatError(p, line, e.field, e.message) from None
        if expect is not None and not isinstance(rec, expect):
            names = [t.kind for t in (expect if isinstance(expect, tuple) else (expect,))]
            raise FormatError(p, line, None, f"found a {rec.kind} record where {' or '.join(names)} records are expected")
        out.append(rec)
    if not out:
        raise FormatError(p, None, None, "the file holds no records (it is empty)")
    return out


def line_of(path: str | Path, index: int) -> int:
    """The line (JSONL) or row (Parquet, saved dataset) that held record `index` of `read_records(path)`:
    for an error found after reading, such as a conversation whose assistant mask is empty."""
    p = Path(path)
    rows = _rows_table(p) if (p.is_dir() or p.suffix == ".parquet") else _rows_jsonl(p)
    for i, (line, _) in enumerate(rows):
        if i == index:
            return line
    raise IndexError(f"{p} holds fewer than {index + 1} records")


# ---------------------------------------------------------------- writers

def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write our JSONL (or Parquet by suffix) atomically; returns the number of rows."""
    rows = [record_to_dict(r) for r in records]
    return write_rows(path, rows)


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> int:
    p = Path(path)
    with atomic_path(p) as tmp:
        if p.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # from_pylist takes its columns from the first row alone; name them all so that
            # mixed record types keep every field (missing cells become null).
            columns = list(dict.fromkeys(k for row in rows for k in row))
            _one_type_per_column(p, rows, columns)
            pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows]), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def preference_row(c: Comparison) -> dict[str, Any]:
    """One `prompt/chosen/rejected` row: strings, or for a conversational prompt TRL's
    conversational format (the prompt's messages; chosen and rejected one assistant message each)."""
    if isinstance(c.prompt, str):
        return {"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected}
    return {"prompt": as_messages(c.prompt), "chosen": [{"role": "assistant", "content": c.chosen}],
            "rejected": [{"role": "assistant", "content": c.rejected}]}


def _one_type_per_column(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A Parquet column holds one type: string prompts and conversations cannot share a file."""
    for k in columns:
        kinds = {type(row[k]).__name__ for row in rows if row.get(k) is not None}
        if {"str", "list"} <= kinds:
            raise FormatError(path, None, k, "Parquet cannot hold strings and lists (plain and "
                              "conversational prompts) in one column; write JSONL, or one file for each")


def preference_pairs(records: Iterable[Record]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """TRL's `prompt/chosen/rejected` rows, and what was left out, counted by reason.

    A comparison is one row; a ranking its strict pairs (`Ranking.to_comparisons`). That format
    cannot say "tie", so tied comparisons and tied ranking pairs are left out; ratings,
    demonstrations and completions are not preference pairs and are left out too. Reasons:
    "tied comparison", "tied ranking pair", or the record's kind."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for r in records:
        if isinstance(r, (Comparison, Ranking)):
            for c in [r] if isinstance(r, Comparison) else r.to_comparisons():
                if c.tie:
                    skipped["tied comparison" if isinstance(r, Comparison) else "tied ranking pair"] += 1
                else:
                    rows.append(preference_row(c))
        else:
            skipped[r.kind] += 1
    return rows, dict(skipped)


def export_preference_pairs(path: str | Path, records: Iterable[Record]) -> int:
    """`prompt/chosen/rejected` rows, as TRL and `datasets.load_dataset("json", ...)` read them.

    Rankings are expanded to pairs; ties are dropped (that format has no tie field)."""
    return write_rows(path, preference_pairs(records)[0])


def unpaired_row(f: Feedback) -> dict[str, Any]:
    """One row of TRL's unpaired preference format (KTOTrainer's `prompt/completion/label`):
    strings, or for a conversational prompt its messages and the completion as one assistant
    message. `row_to_record` reads it back as the same Feedback (labeler and meta aside)."""
    if isinstance(f.prompt, str):
        return {"prompt": f.prompt, "completion": f.response, "label": f.desirable}
    return {"prompt": as_messages(f.prompt), "completion": [{"role": "assistant", "content": f.response}],
            "label": f.desirable}


def unpaired_rows(records: Iterable[Record]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """TRL's `prompt/completion/label` rows of the binary feedback records, and the other
    records left out, counted by kind (`to_feedback` converts them, where that is wanted)."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for r in records:
        if isinstance(r, Feedback):
            rows.append(unpaired_row(r))
        else:
            skipped[r.kind] += 1
    return rows, dict(skipped)


def read_text_rows(path: str | Path, field: str, what: str) -> list[str]:
    """Plain strings, one per line of a .txt file, or the `field` of each row of a .jsonl file
    (a corpus's "text", a prompt file's "prompt"). Errors name the file, line and field."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, None, None, f"no such {what} file")
    out: list[str] = []
    if p.suffix == ".jsonl":
        for lineno, row in _rows_jsonl(p):
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise FormatError(p, lineno, field, "expected a string")
            out.append(row[field])
    else:
        out = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise FormatError(p, None, None, f"no {what} (the file is empty)")
    return out

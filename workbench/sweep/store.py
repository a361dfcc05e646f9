"""A sweep's results file: every record as its point finishes, readable at any moment.

Two formats, by the file's suffix:
- `.jsonl`: one JSON record per line, appended and flushed to disk as each point ends;
  a line torn by a crash is skipped when the file is read back.
- `.parquet` (or `.pq`): the whole table, rewritten after every point into a temporary
  file that then replaces the old one, so the file is always a complete Parquet table
  (a point takes seconds; rewriting a few thousand rows takes milliseconds).

A record whose point_id has status "ok" in the file counts as finished: a resumed sweep
skips it. A failed point keeps its record when it runs again, and the newer record
wins in `load(path)` (`latest=False` shows every attempt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workbench.errors import ParameterError

PARQUET = (".parquet", ".pq")
FORMATS = (*PARQUET, ".jsonl")


class ResultStore:
    """The records of one results file, old and new; `add(record)` makes it durable."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        kind = self.path.suffix.lower()
        if kind not in FORMATS:
            raise ParameterError(f"out {self.path}: the results file must end in {', '.join(FORMATS)}")
        if not self.path.parent.is_dir():
            raise ParameterError(f"out {self.path}: directory {self.path.parent} does not exist")
        self.parquet = kind in PARQUET
        self.records: list[dict] = []
        if self.path.exists():
            if resume:
                self.records = read_records(self.path)
            elif overwrite:
                self.path.unlink()
            else:
                raise ParameterError(f"out {self.path} exists: resume it (--resume, resume=True) or replace it "
                                     f"(--overwrite, overwrite=True)")

    def finished(self) -> set[str]:
        """The point ids with an "ok" record."""
        return {r["point_id"] for r in self.records if r.get("status") == "ok"}

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.parquet:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            frame(self.records).to_parquet(tmp, index=False)
            os.replace(tmp, self.path)
        else:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=_plain) + "\n")
                f.flush()
                os.fsync(f.fileno())


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every record in a results file, oldest first (plain Python values)."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"{path}: no such sweep results file")
    if path.suffix.lower() in PARQUET:
        import pandas as pd

        try:
            table = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow's errors are many
            raise ParameterError(f"{path}: not a readable Parquet file ({e})") from None
        return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a crash mid-write
            continue
    return records


def load(path: str | os.PathLike, latest: bool = True):
    """The records of a sweep's results file as a pandas DataFrame, one row per point
    (its latest record) or, with `latest=False`, one per attempt."""
    records = read_records(path)
    if latest:
        last = {r["point_id"]: r for r in records}
        records = list(last.values())
    return frame(records)


def frame(records: list[dict]):
    """A DataFrame of records; columns in first-seen order."""
    import pandas as pd

    columns = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame([{k: _plain(r.get(k)) for k in columns} for r in records], columns=columns)


def _plain(value):
    """numpy scalars and arrays (from Parquet) as Python values; NaN stays NaN."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value

"""The passage store of an index folder: passages keyed by id and by row, in one SQLite file.

A row is the passage's position in the embedding shards (shard ``row // shard_size``), so a
search result (rows) becomes passages without loading the corpus. SQLite because it is in the
standard library, reads a few rows by key in microseconds, keeps memory bounded (a page cache,
not the corpus) and commits atomically: the ingest commits one batch of rows per transaction,
so a killed build keeps every committed batch and loses at most the one in flight.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from scarlet_ray.records import CorpusPassage

STORE_NAME = "passages.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                     title TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_sha (batch INTEGER PRIMARY KEY, sha TEXT NOT NULL);
"""


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        if not path.is_file():
            raise ValueError(f"{path}: missing (the passage store of the index)")
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path, check_same_thread=False)
        con.executescript(_SCHEMA)
    try:
        con.execute("SELECT count(*) FROM meta").fetchone()
    except sqlite3.DatabaseError as exc:
        con.close()
        raise ValueError(f"{path}: not a passage store ({exc})") from None
    return con


class PassageStore:
    """Read side: ``store[row]``, ``store.rows([...])``, ``store.ids([...])``, iteration."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._con = _connect(self.path, readonly=True)
        self._n = int(self._con.execute("SELECT count(*) FROM passages").fetchone()[0])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, row: int) -> CorpusPassage:
        got = self.rows([int(row)])
        if not got:
            raise IndexError(f"{self.path}: no row {row}")
        return got[0]

    def __iter__(self) -> Iterator[CorpusPassage]:
        cur = self._con.execute("SELECT id, title, text FROM passages ORDER BY row")
        while batch := cur.fetchmany(4096):
            for i, t, x in batch:
                yield CorpusPassage(id=i, title=t, text=x)

    def _where_in(self, column: str, values: Sequence[object],
                  cols: str = "row, id, title, text") -> Iterator[tuple]:
        """``SELECT cols ... WHERE column IN values``, in chunks under SQLite's variable limit."""
        for a in range(0, len(values), 500):
            part = list(values[a:a + 500])
            q = f"SELECT {cols} FROM passages WHERE {column} IN ({','.join('?' * len(part))})"
            yield from self._con.execute(q, part)

    def rows(self, rows: Sequence[int]) -> list[CorpusPassage]:
        """Passages at ``rows``, in that order (a missing row raises IndexError)."""
        uniq = sorted({int(r) for r in rows})
        found = {r: CorpusPassage(id=i, title=t, text=x)
                 for r, i, t, x in self._where_in("row", uniq)}
        missing = [r for r in uniq if r not in found]
        if missing:
            raise IndexError(f"{self.path}: no row {missing[0]} (the store holds {self._n})")
        return [found[int(r)] for r in rows]

    def by_ids(self, ids: Iterable[str]) -> dict[str, CorpusPassage]:
        """``{id: passage}`` for the ``ids`` the store holds."""
        return {i: CorpusPassage(id=i, title=t, text=x)
                for _, i, t, x in self._where_in("id", list(dict.fromkeys(ids)))}

    def ids(self, rows: Sequence[int]) -> list[str]:
        return [p.id for p in self.rows(rows)]

    def row_range(self, start: int, stop: int) -> list[CorpusPassage]:
        cur = self._con.execute("SELECT id, title, text FROM passages WHERE row >= ? AND row < ? "
                                "ORDER BY row", (start, stop))
        return [CorpusPassage(id=i, title=t, text=x) for i, t, x in cur.fetchall()]

    def has_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` that the store holds."""
        return {r[0] for r in self._where_in("id", list(dict.fromkeys(ids)), cols="id")}

    def meta(self) -> dict[str, str]:
        return dict(self._con.execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        self._con.close()


def passage_sha(p: CorpusPassage) -> bytes:
    h = hashlib.sha256()
    for part in (p.id, p.title, p.text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.digest()


class StoreWriter:
    """Write side of the ingest: one committed transaction per shard of rows."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = _connect(self.path, readonly=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def rows(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM passages").fetchone()[0])

    def batch_shas(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT sha FROM batch_sha ORDER BY batch")]

    def commit_batch(self, batch: int, passages: Sequence[tuple[str, CorpusPassage]],
                     meta: dict[str, str]) -> list[tuple[str, str, str]]:
        """Insert one ingest batch (``(source, passage)``) and ``meta`` in one transaction.

        Returns the refused ones as ``(source, id, reason)``: an id already in the store with
        another text (the exact same passage again is dropped quietly, as ``load_corpus`` does).
        Row numbers stay contiguous: a refused passage takes no row.
        """
        refused: list[tuple[str, str, str]] = []
        h = hashlib.sha256()
        with self._con:  # one transaction: all of the batch or none of it
            row = int(self._con.execute("SELECT count(*) FROM passages").fetchone()[0])
            for src, p in passages:
                try:
                    self._con.execute("INSERT INTO passages VALUES (?, ?, ?, ?)",
                                      (row, p.id, p.title, p.text))
                except sqlite3.IntegrityError:
                    old = self._con.execute("SELECT row, title, text FROM passages WHERE id = ?",
                                            (p.id,)).fetchone()
                    if old is not None and (old[1], old[2]) == (p.title, p.text):
                        continue
                    refused.append((src, p.id, f"passage id {p.id!r} already used by row "
                                               f"{old[0] if old else '?'} with a different text"))
                    continue
                h.update(passage_sha(p))
                row += 1
            self._con.execute("INSERT OR REPLACE INTO batch_sha VALUES (?, ?)",
                              (batch, h.hexdigest()))
            self._con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  sorted(meta.items()))
        return refused

    def set_meta(self, meta: dict[str, str]) -> None:
        with self._con:
            self._con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  sorted(meta.items()))

    def close(self) -> None:
        self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._con.close()

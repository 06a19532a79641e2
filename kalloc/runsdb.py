"""Saved runs: an embedded SQLite database (the stdlib ``sqlite3``) of records and how they were made.

``--save [NAME]`` on run, compare, scale, sweep and replay stores the command's records (each
with its provenance, kalloc.provenance), the command line and what the command printed them
as (its *view*: the command, and for a sweep its keys, metric and ratio), so that ``kalloc
show NAME`` prints them again as the command did, without running anything.  Where the file
is: ``--db PATH``, else ``$KALLOC_DB``, else ``$XDG_DATA_HOME/kalloc/runs.db``
(``~/.local/share/kalloc/runs.db``).

Schema (its version in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file as
kalloc's, so another program's SQLite file is told apart from an empty one)::

    runs(id, name UNIQUE, created, command, argv, view, cells)   -- created: UTC, ISO 8601
    records(run, idx, record)                                    -- record: its JSON

The date is the saved run's, never a record's (records stay byte-identical across runs).
A save, a delete and the creation of the schema are each one ``BEGIN IMMEDIATE`` transaction
in WAL mode with a busy timeout: two processes saving at once both land, under distinct
names.  A file that is not SQLite (or is damaged), another application's database, or one
of a newer schema is a one-line ValueError naming the file.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sqlite3
import time

from kalloc.export import _strict

SCHEMA = 1
APPLICATION_ID = 0x6B616C63              # "kalc"
BUSY_SECONDS = 30
OPEN_TRIES = 20
_TABLES = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL,
                   command TEXT NOT NULL, argv TEXT NOT NULL, view TEXT NOT NULL, cells INTEGER NOT NULL);
CREATE TABLE records (run INTEGER NOT NULL REFERENCES runs(id), idx INTEGER NOT NULL, record TEXT NOT NULL,
                      PRIMARY KEY (run, idx));
"""


def db_path(flag: str | None = None) -> str:
    """Where the database is: ``flag`` (--db), else $KALLOC_DB, else under $XDG_DATA_HOME."""
    if flag:
        return flag
    if os.environ.get("KALLOC_DB"):
        return os.environ["KALLOC_DB"]
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "kalloc", "runs.db")


def _damaged(path: str, e: Exception) -> ValueError:
    return ValueError(f"{path}: not a readable kalloc runs database ({e})")


class _Db:
    """An open database, its errors as ValueErrors that name the file (``with`` closes it)."""

    __slots__ = ("path", "conn")

    def __init__(self, path: str, create: bool):
        self.path = path
        if not create and not os.path.exists(path):
            raise ValueError(f"{path}: no runs database (nothing was saved: --save)")
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a directory, not a runs database")
        parent = os.path.dirname(os.path.abspath(path))
        if create and path == db_path() and not os.environ.get("KALLOC_DB"):
            os.makedirs(parent, exist_ok=True)          # the XDG default's directories
        if not os.path.isdir(parent):
            raise ValueError(f"{path}: no such directory {parent}")
        for attempt in range(OPEN_TRIES):
            self.conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
            try:
                self._check()
                return
            except sqlite3.OperationalError as e:
                # Two processes making the schema, or switching it to WAL, at once: SQLite
                # breaks the lock cycle by failing one at once, which tries again.
                self.conn.close()
                if "locked" not in str(e) or attempt == OPEN_TRIES - 1:
                    raise _damaged(path, e) from None
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.Error as e:
                self.conn.close()
                raise _damaged(path, e) from None

    def _check(self) -> None:
        c = self.conn
        c.execute("BEGIN")                  # one snapshot of the header and the tables
        app, version = c.execute("PRAGMA application_id").fetchone()[0], c.execute("PRAGMA user_version").fetchone()[0]
        tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        c.execute("COMMIT")
        if app == APPLICATION_ID and version > SCHEMA:
            raise ValueError(f"{self.path}: a runs database of a newer kalloc (schema {version}; this kalloc "
                             f"reads schema {SCHEMA}): upgrade kalloc")
        if app == APPLICATION_ID:
            return
        if app or tables:
            raise ValueError(f"{self.path}: another application's SQLite database, not a kalloc runs database")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("BEGIN IMMEDIATE")
        if c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:   # another process made it first
            c.execute("ROLLBACK")
            return self._check()
        for statement in (*_TABLES.split(";")[:2], f"PRAGMA application_id = {APPLICATION_ID}",
                          f"PRAGMA user_version = {SCHEMA}", "COMMIT"):
            c.execute(statement)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def query(self, sql: str, args=()) -> list:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _damaged(self.path, e) from None

    def transaction(self, steps) -> object:
        """``steps(conn)`` in one BEGIN IMMEDIATE transaction; its value."""
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = steps(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out
        except sqlite3.Error as e:
            raise _damaged(self.path, e) from None


def check_name(name: str) -> str:
    if not name or not name.isprintable() or name != name.strip() or name.startswith("-") or len(name) > 200:
        raise ValueError(f"--save {name!r}: a saved run's name is a word of printable characters "
                         f"(no leading dash or surrounding spaces, at most 200)")
    return name


def check_save(path: str, name: str | None) -> None:
    """Before any run: the database opens (or is made), and ``name`` is free."""
    with _Db(path, create=True) as db:
        if name is not None and db.query("SELECT 1 FROM runs WHERE name = ?", (check_name(name),)):
            raise ValueError(f"{path}: a saved run is named {name!r} already (kalloc runs --delete {name})")


def save(path: str, name: str | None, command: str, argv: list, view: dict, records: list) -> str:
    """Store the records; ``name`` None: ``COMMAND-N``, the first N free.  Returns the name."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = [json.dumps(_strict(r), separators=(",", ":"), allow_nan=False) for r in records]

    def steps(c):
        chosen = name
        if chosen is None:
            n = 1
            while c.execute("SELECT 1 FROM runs WHERE name = ?", (f"{command}-{n}",)).fetchone():
                n += 1
            chosen = f"{command}-{n}"
        elif c.execute("SELECT 1 FROM runs WHERE name = ?", (chosen,)).fetchone():
            raise ValueError(f"{path}: a saved run was named {chosen!r} while this one ran: not saved")
        run = c.execute("INSERT INTO runs (name, created, command, argv, view, cells) VALUES (?, ?, ?, ?, ?, ?)",
                        (chosen, created, command, json.dumps(argv), json.dumps(view), len(records))).lastrowid
        c.executemany("INSERT INTO records (run, idx, record) VALUES (?, ?, ?)",
                      [(run, i, text) for i, text in enumerate(rows)])
        return chosen
    with _Db(path, create=True) as db:
        return db.transaction(steps)


def runs(path: str) -> list:
    """The saved runs, oldest first: {name, date, command, cells}."""
    if not os.path.exists(path):
        return []
    with _Db(path, create=False) as db:
        return [{"name": n, "date": d, "command": "kalloc " + _command_line(a), "cells": k}
                for n, d, a, k in db.query("SELECT name, created, argv, cells FROM runs ORDER BY id")]


def _command_line(argv_json: str) -> str:
    return shlex.join(json.loads(argv_json))


def load(path: str, name: str) -> tuple:
    """(the run's {name, date, command, argv, view}, its records)."""
    with _Db(path, create=False) as db:
        found = db.query("SELECT id, created, argv, view FROM runs WHERE name = ?", (name,))
        if not found:
            raise ValueError(f"{path}: no saved run named {name!r} (kalloc runs lists them)")
        run, created, argv, view = found[0]
        records = [json.loads(t) for (t,) in db.query("SELECT record FROM records WHERE run = ? ORDER BY idx", (run,))]
    return ({"name": name, "date": created, "command": "kalloc " + _command_line(argv), "argv": json.loads(argv),
             "view": json.loads(view)}, records)


def delete(path: str, name: str) -> None:
    def steps(c):
        found = c.execute("SELECT id FROM runs WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise ValueError(f"{path}: no saved run named {name!r} (kalloc runs lists them)")
        c.execute("DELETE FROM records WHERE run = ?", found)
        c.execute("DELETE FROM runs WHERE id = ?", found)
    with _Db(path, create=False) as db:
        db.transaction(steps)

#!/usr/bin/env python3
"""What a SQLite WAL's commits wrote: frames per commit, and per table or index.

    scripts/wal_frames.py <database>      (its `-wal` file beside it)

Copies the database and its WAL (a host may be writing them: a torn last frame is ignored),
reads every valid frame of the WAL's current generation (salts of its header, checksums
unchecked), and names each frame's page with `dbstat` of the copy (pages it does not list:
`(ptrmap/freelist)`; page 1 is `sqlite_schema`, whose header holds the file's size).
Prints commits, frames per commit, frames per object per commit, and the commits grouped by
which objects they touched (intake commits write `event_bodies`).
"""

import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def frames(wal: bytes):
    """(page, commit_size) of each frame of the current generation, in order."""
    if len(wal) < 32:
        return []
    magic, _version, page_size, _seq, salt1, salt2 = struct.unpack(">IIIIII", wal[:24])
    if magic not in (0x377F0682, 0x377F0683):
        sys.exit("not a WAL file")
    out = []
    at = 32
    while at + 24 + page_size <= len(wal):
        page, size, s1, s2 = struct.unpack(">IIII", wal[at : at + 16])
        if (s1, s2) != (salt1, salt2):
            break
        out.append((page, size))
        at += 24 + page_size
    return out, page_size


def main():
    db = sys.argv[1]
    tmp = tempfile.mkdtemp()
    try:
        with open(db + "-wal", "rb") as f:
            wal = f.read()
        shutil.copy(db, os.path.join(tmp, "db"))
        with open(os.path.join(tmp, "db-wal"), "wb") as f:
            f.write(wal)
        parsed, page_size = frames(wal)
        # Only whole transactions: drop frames after the last commit frame.
        last = max((n for n, (_, size) in enumerate(parsed) if size), default=-1)
        parsed = parsed[: last + 1]
        conn = sqlite3.connect(os.path.join(tmp, "db"))
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat").fetchall())
    finally:
        shutil.rmtree(tmp)

    commits = []
    current = []
    for page, size in parsed:
        current.append(page)
        if size:
            commits.append(current)
            current = []
    if not commits:
        print("no commit in the WAL")
        return
    total = sum(len(c) for c in commits)
    print(f"page size {page_size}; {len(commits)} commits, {total} frames, "
          f"{total / len(commits):.1f} frames per commit")
    groups = collections.defaultdict(list)
    for c in commits:
        names = collections.Counter(owner.get(p, "(ptrmap/freelist)") for p in c)
        kind = "intake" if "event_bodies" in names else "other"
        groups[kind].append(names)
    for kind, commits_of in sorted(groups.items()):
        n = len(commits_of)
        frames_of = sum(sum(c.values()) for c in commits_of)
        print(f"\n{kind}: {n} commits, {frames_of / n:.1f} frames per commit")
        by = collections.Counter()
        for c in commits_of:
            by.update(c)
        for name, count in by.most_common():
            print(f"  {count / n:7.2f}  {name}")


if __name__ == "__main__":
    main()

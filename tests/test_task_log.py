"""The store's task log: new persistent tasks are appended to it, one checksummed line each, and
moved into the database in batches. Whatever happens to the process or the file, a task
``delay()`` returned for comes back once, and a line that was never acknowledged never does."""

from __future__ import annotations

import glob
import os
import pathlib

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from evasync import StoreError, delay
from evasync.store import FLUSH_AFTER, FLUSH_ROWS, ID_BLOCK, Store
from evasync.testing import VirtualRuntime

from ._store_files import copy_as_killed
from ._support import record

TASK = ("scheduled", '{"path":"tests._support:record"}', '["x"]', '{"d":[]}')


def ids(store):
    return [row[0] for row in store.tasks()]


def log_lines(store):
    return pathlib.Path(store.task_log_path).read_bytes().split(b"\n")


@pytest.fixture
def store(tmp_path):
    (tmp_path / "live").mkdir()
    store = Store(tmp_path / "live" / "game.db")
    first = store.reserve_id_block()
    store.add_task(first, 1.0, *TASK)       # committed on its own: the tasks after it are logged
    store.direct_id, store.first_id = first, first + 1
    yield store
    store.close()


def test_a_logged_task_is_in_the_log_until_a_flush_moves_it(store, tmp_path):
    store.add_task(store.first_id, 5.0, *TASK)
    assert store.conn.execute("SELECT id FROM tasks").fetchall() == [(store.direct_id,)]
    assert len(log_lines(store)) == 3             # header, the task, the end of the last line
    copy = Store(copy_as_killed(store, tmp_path))
    assert ids(copy) == [store.direct_id, store.first_id]
    copy.close()
    store.flush()
    assert store.conn.execute("SELECT id FROM tasks").fetchall() == [
        (store.direct_id,), (store.first_id,)]
    assert len(log_lines(store)) == 2             # started over: the header only


def test_a_line_torn_by_the_kill_is_ignored_and_the_others_restored(store, tmp_path):
    store.add_task(store.first_id, 5.0, *TASK)
    store.add_task(store.first_id + 1, 6.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    log.write_bytes(log.read_bytes()[:-7])        # the process died writing the second line
    copy = Store(path)
    assert ids(copy) == [store.direct_id, store.first_id]
    assert not glob.glob(str(log) + ".damaged-*")  # a torn last line is no damage
    copy.close()


def test_a_damaged_line_is_skipped_and_the_whole_log_kept_aside(store, tmp_path, logged):
    for offset in range(3):
        store.add_task(store.first_id + offset, 5.0 + offset, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    original = log.read_bytes()
    lines = original.split(b"\n")
    lines[2] = lines[2].replace(b"6.0", b"9.0")   # the checksum no longer matches
    log.write_bytes(b"\n".join(lines))
    copy = Store(path)
    assert ids(copy) == [store.direct_id, store.first_id, store.first_id + 2]
    kept = glob.glob(str(log) + ".damaged-*")
    assert len(kept) == 1 and pathlib.Path(kept[0]).read_bytes() == b"\n".join(lines)
    assert any("task log is damaged (1 damaged line(s))" in text
               for text in logged.texts(LogLevel.error))
    copy.close()


@pytest.mark.parametrize("line", [
    b"garbage",
    b"00000000\t1\t2\t3",
    b"\xff\xfe\t\t\t\t\t",
    b"%08x\t" + b"9" * 30 + b"\t5.0\tscheduled\t{}\t[]\t{}",
    b"%08x\t2000000\tnan\tscheduled\t{}\t[]\t{}",
    b"%08x\t2000000\t5.0\tsch\xffeduled\t{}\t[]\t{}",
    b"%08x\t2000000\t5.0\tscheduled\t{}\t[]",
])
def test_hostile_lines_never_stop_the_store_from_opening(store, tmp_path, line, logged):
    import zlib

    store.add_task(store.first_id, 5.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    if b"%08x" in line:
        body = line.split(b"\t", 1)[1]
        line = b"%08x\t%s" % (zlib.crc32(body), body)
    log.write_bytes(log.read_bytes() + line + b"\n")
    copy = Store(path)
    assert ids(copy) == [store.direct_id, store.first_id]   # nothing from the bad line
    assert glob.glob(str(log) + ".damaged-*")
    copy.close()


def test_a_log_whose_rows_were_moved_already_is_never_replayed(store, tmp_path):
    # Starting the log over after a move may fail (or the process die just then): the log keeps
    # rows the database has, or had and deleted since. Its generation says they were moved.
    store.add_task(store.first_id, 5.0, *TASK)
    stale = pathlib.Path(store.task_log_path).read_bytes()
    store.flush()
    store.delete_tasks([store.first_id])          # the task ran; it must never come back
    path = copy_as_killed(store, tmp_path)
    pathlib.Path(str(path) + "-tasklog").write_bytes(stale)
    copy = Store(path)
    assert ids(copy) == [store.direct_id]
    copy.close()


def test_a_log_newer_than_the_database_is_kept_aside_not_replayed(store, tmp_path, logged):
    store.add_task(store.first_id, 5.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    log.write_bytes(log.read_bytes().replace(b"evasync task log 0", b"evasync task log 7"))
    copy = Store(path)
    assert ids(copy) == [store.direct_id]
    assert glob.glob(str(log) + ".damaged-*")
    assert any("newer than the database" in text for text in logged.texts(LogLevel.error))
    copy.close()


def test_a_row_whose_id_the_database_has_is_not_replayed(store, tmp_path):
    store.add_task(store.first_id, 5.0, *TASK)
    first_line = log_lines(store)[1] + b"\n"
    store.flush()
    store.add_task(store.first_id + 1, 6.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    # The first task's line again, under the log's current generation: a forged or damaged log.
    log.write_bytes(log.read_bytes() + first_line)
    copy = Store(path)
    assert ids(copy) == [store.direct_id, store.first_id, store.first_id + 1]
    assert glob.glob(str(log) + ".damaged-*")
    copy.close()


def test_every_flush_rows_tasks_move_without_a_clock(store):
    for offset in range(FLUSH_ROWS):
        store.add_task(store.first_id + offset, 5.0, *TASK)
    assert store.conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1 + FLUSH_ROWS
    assert len(log_lines(store)) == 2


def test_a_clock_moves_logged_tasks_within_flush_after_seconds(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "game.db", clock=clock)
    try:
        first = store.reserve_id_block()
        store.add_task(first, 5.0, *TASK)         # committed on its own
        store.add_task(first + 1, 5.0, *TASK)     # logged, as the ones after it
        store.add_task(first + 2, 5.0, *TASK)
        assert len(clock.getDelayedCalls()) == 1   # one move for every task logged meanwhile
        clock.advance(FLUSH_AFTER * 0.9)
        assert store.conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
        clock.advance(FLUSH_AFTER * 0.2)
        assert store.conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 3
        assert clock.getDelayedCalls() == []
        clock.advance(FLUSH_AFTER * 10)           # a quiet while: the next is on its own again
        store.add_task(first + 3, 5.0, *TASK)
        assert store.conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 4
        assert len(log_lines(store)) == 2
    finally:
        store.close()


def in_a_forked_child(*changes):
    """Run each of ``changes`` in a forked child; what each did there: "done", "refused" (as a
    forked child's change is), or the unexpected error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once
        answers = []
        for change in changes:
            try:
                change()
                answers.append("done")
            except StoreError as exc:
                answers.append("refused" if "this process was forked from" in str(exc)
                               else str(exc))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                answers.append(repr(exc))
        os.write(write, "\n".join(answers).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answers = pipe.read().decode().split("\n")
    os.waitpid(pid, 0)
    return answers


def test_a_forked_child_cannot_log_tasks_into_its_parents_store(store):
    store.add_task(store.first_id, 5.0, *TASK)
    before = pathlib.Path(store.task_log_path).read_bytes()
    assert in_a_forked_child(lambda: store.add_task(store.first_id + 1, 6.0, *TASK)) == \
        ["refused"]
    assert pathlib.Path(store.task_log_path).read_bytes() == before
    store.flush()
    assert ids(store) == [store.direct_id, store.first_id]


def test_a_runtime_restores_logged_tasks_after_a_kill(tmp_path):
    with VirtualRuntime(db_path=tmp_path / "live.db") as runtime:
        task = delay(30, record, "kept", persistent=True)
        path = copy_as_killed(runtime.store, tmp_path)
    with VirtualRuntime(db_path=path) as again:
        assert again.tasks.load() == 1
        again.advance(30)
        assert again.tasks.get_deferred(task.id) is None
    from ._support import CALLS
    assert CALLS == [(("kept",), {})]


def test_reads_and_changes_of_stored_tasks_see_the_logged_ones(store):
    store.add_task(store.first_id, 5.0, *TASK)
    assert ids(store) == [store.direct_id, store.first_id]


@pytest.mark.parametrize("change, after_reload", [
    ("pause", ["paused"]), ("cancel", ["cancelled"]), ("remove", []),
])
def test_a_task_changed_right_after_it_was_logged_stays_changed(change, after_reload):
    with VirtualRuntime() as runtime:
        task = delay(30, record, "changed", persistent=True)
        getattr(task, change)()
        runtime.reload()
        assert [task.state for task in runtime.tasks.tasks.values()] == after_reload


def test_a_failed_move_is_tried_again_until_it_succeeds(tmp_path, logged):
    clock = Clock()
    store = Store(tmp_path / "game.db", clock=clock)
    try:
        first = store.reserve_id_block()
        conn = store.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")   # the database is full for now
        store.add_task(first, 5.0, *TASK)         # committed on its own
        store.add_task(first + 1, 5.0, "scheduled", '{"path":"tests._support:record"}',
                       '["' + "x" * 100_000 + '"]', '{"d":[]}')
        clock.advance(FLUSH_AFTER)
        assert any("they stay in its task log" in text for text in logged.texts(LogLevel.error))
        with pytest.raises(StoreError, match="full"):
            store.flush()                         # a read's move fails too; the retry stays
        assert len(clock.getDelayedCalls()) == 1
        conn.execute("PRAGMA max_page_count = 1073741823")
        clock.advance(1.0)
        assert conn.execute("SELECT id FROM tasks").fetchall() == [(first,), (first + 1,)]
        assert clock.getDelayedCalls() == []
    finally:
        store.close()


def test_a_header_with_a_huge_generation_never_stops_the_store_from_opening(store, tmp_path,
                                                                             logged):
    # Python refuses to turn more than 4300 digits into an int (ValueError): a forged header
    # must be damage, kept aside, not an exception out of Store().
    store.add_task(store.first_id, 5.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    log.write_bytes(log.read_bytes().replace(b"evasync task log 0", b"evasync task log "
                                             + b"9" * 5000))
    copy = Store(path)
    assert ids(copy) == [store.direct_id]
    assert glob.glob(str(log) + ".damaged-*")
    copy.close()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_task_log_that_is_not_a_plain_file_is_refused_and_left_alone(tmp_path, kind):
    # A planted link would have the store truncate its target; a FIFO would hang the opening.
    path = tmp_path / "game.db"
    Store(path).close()
    log = pathlib.Path(str(path) + "-tasklog")
    log.unlink(missing_ok=True)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    if kind == "symlink":
        log.symlink_to(target)
    else:
        os.mkfifo(log)
    with pytest.raises(StoreError, match="task log"):
        Store(path).conn
    assert target.read_bytes() == b"keep me\n"


def test_a_row_with_an_id_never_handed_out_is_not_replayed(store, tmp_path):
    # A forged line (right generation, right checksum) with an id of a block not reserved yet:
    # restored, it would take the id of a task logged later, whose move would then fail, and
    # which the next opening would drop as "an id the database has already".
    import zlib

    store.add_task(store.first_id, 5.0, *TASK)
    path = copy_as_killed(store, tmp_path)
    log = pathlib.Path(str(path) + "-tasklog")
    future = store.next_id_block() * ID_BLOCK + 7
    body = b"%d\t6.0\t%s" % (future, "\t".join(TASK).encode())
    log.write_bytes(log.read_bytes() + b"%08x\t%s\n" % (zlib.crc32(body), body))
    copy = Store(path)
    assert ids(copy) == [store.direct_id, store.first_id]
    assert glob.glob(str(log) + ".damaged-*")
    later = copy.reserve_id_block() + 7
    assert later == future                         # the id the forged row would have taken
    copy.add_task(later - 1, 7.0, *TASK)
    copy.add_task(later, 8.0, *TASK)               # logged: its move must not fail
    copy.flush()
    assert ids(copy)[-2:] == [later - 1, later]
    copy.close()


def test_a_forked_child_cannot_change_its_parents_stored_tasks(store):
    store.flush()
    assert in_a_forked_child(lambda: store.set_task_state(store.direct_id, "paused", 9.0),
                             lambda: store.delete_tasks([store.direct_id]),
                             store.delete_all_tasks) == ["refused"] * 3
    assert [row[:3] for row in store.tasks()] == [(store.direct_id, 1.0, "scheduled")]


def test_with_synchronous_full_the_task_logs_directory_is_synced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real(fd))
    store = Store(tmp_path / "game.db", synchronous="FULL")
    try:
        store.conn
        assert str(tmp_path) in synced
    finally:
        store.close()

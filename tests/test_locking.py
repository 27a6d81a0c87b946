"""The one lock: held by the kernel, never stale, never two holders on two files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

from torchstarter.utils.atomic import new_temp_file, new_temp_folder
from torchstarter.utils.locking import FileLock, is_locked, lock_holder


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    first = FileLock(tmp_path / "x.lock")
    assert first.acquire()
    assert lock_holder(tmp_path / "x.lock") == f"pid {os.getpid()}"
    second = FileLock(tmp_path / "x.lock")
    assert not second.acquire(wait=0.1)
    assert is_locked(tmp_path / "x.lock")
    first.release()
    assert not is_locked(tmp_path / "x.lock")
    assert second.acquire()
    second.release()
    assert (tmp_path / "x.lock").exists()  # kept unless asked: a child may hold it


def test_a_lock_removed_on_release_is_never_held_twice(tmp_path):
    """Many threads take and give back a lock whose file is deleted on each release; the
    holder count must never exceed one (a lock on a deleted file would let two in)."""
    path = tmp_path / "run.lock"
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(60):
                lock = FileLock(path, remove_on_release=True)
                lock.acquire(wait=None)
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                with guard:
                    inside[0] -= 1
                lock.release()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most[0] == 1
    assert not path.exists()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    path = tmp_path / "x.lock"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from torchstarter.utils.locking import FileLock
        FileLock({str(path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert lock_holder(path) == f"pid {child.pid}" and is_locked(path)
    finally:
        child.kill()
        child.wait()
    assert not is_locked(path)
    lock = FileLock(path)
    assert lock.acquire()
    lock.release()


def test_temp_files_and_folders_get_the_permissions_of_any_new_entry(tmp_path):
    umask = os.umask(0o027)
    try:
        fd, name = new_temp_file(tmp_path, ".a.", ".tmp")
        os.close(fd)
        folder = new_temp_folder(tmp_path, ".b.")
    finally:
        os.umask(umask)
    assert os.stat(name).st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750
    assert os.path.basename(name).startswith(".a.") and name.endswith(".tmp")

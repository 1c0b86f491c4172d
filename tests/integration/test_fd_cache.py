"""
Inodes known by file handle, fds in a bounded cache (--fd-cache): a volume
with far more files looked up than the daemon may hold fds for keeps every
volume working, the daemon's fds stay within the bound, and a file unlinked
while open keeps working after its cached fd was evicted.
"""

import os
import shutil
import subprocess
import threading

import pytest

from conftest import GiB, KiB, MiB, run, wait_until

MANY_FILES = 200_000
FILES_PER_DIR = 2_000
# Fds the daemon holds besides the cache: /dev/fuse, a root and its readable
# twin per volume, rings, eventfds, the socket and log, and the files that
# fio and find have open at a time.
FD_SLACK = 64


def need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: run 'make deps-test' (Debian package {tool})")
    return path


def daemon_fds(d):
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


class FdWatch:
    """Samples the daemon's open fds from a thread until stopped; keeps the peak."""

    def __init__(self, d):
        self.d = d
        self.peak = daemon_fds(d)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, daemon_fds(self.d))
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, daemon_fds(self.d))
        return self.peak


def make_files(where, count):
    """Creates count empty files below where, in directories of FILES_PER_DIR;
    returns their paths relative to where."""
    names = []
    for i in range(count):
        sub = f"d{i // FILES_PER_DIR:03d}"
        if i % FILES_PER_DIR == 0:
            os.mkdir(os.path.join(where, sub))
        name = os.path.join(sub, f"f{i}")
        os.close(os.open(os.path.join(where, name), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
        names.append(name)
    return names


def still_works(vol, tag):
    """Creates, mkdirs and lists on a volume: what EMFILE broke."""
    d = os.path.join(vol, f"check-{tag}")
    os.mkdir(d)
    with open(os.path.join(d, "file"), "w") as f:
        f.write(tag)
    assert sorted(os.listdir(d)) == ["file"]
    assert tag in os.listdir(vol) or f"check-{tag}" in os.listdir(vol)
    with open(os.path.join(d, "file")) as f:
        assert f.read() == tag


@pytest.mark.timeout_seconds(600)
def test_many_files_looked_up_keep_fds_bounded(work, new_daemon):
    need("fio")
    bound = 256
    d = new_daemon()
    d.start(extra=["--fd-cache", str(bound)])
    many = d.create("many", 2 * GiB)
    busy = d.create("busy", 1 * GiB)
    base = daemon_fds(d)

    # Made in the backing directory, as a restored backup would be: through
    # the mount it takes minutes on a busy machine, and the lookups below
    # are what this test is about.
    names = make_files(d.backing("many"), MANY_FILES)
    watch = FdWatch(d)
    fio_log = os.path.join(work.path, "fio.log")
    with open(fio_log, "w") as log:
        fio = work.spawn([need("fio"), "--name=busy", f"--directory={busy}", "--rw=randrw",
                          "--bs=4k", "--size=32M", "--ioengine=psync", "--numjobs=2",
                          "--time_based", "--runtime=20", "--group_reporting"],
                         stdout=log, stderr=subprocess.STDOUT)
    # Every file looked up: readdirplus through find, then a stat of each.
    p = run(["find", many, "-ls"], check=False, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("\n") >= MANY_FILES
    for name in names:
        os.lstat(os.path.join(many, name))
    still_works(many, "many-after")
    still_works(busy, "busy-after")
    with open(fio_log) as log:
        assert fio.wait(timeout=120) == 0, log.read()[-3000:]
    peak = watch.stop()
    d.check_alive()
    assert peak <= base + bound + FD_SLACK, \
        f"the daemon held {peak} fds (before: {base}, cache bound {bound})"
    assert "EMFILE" not in d.log_since_start() and "Too many open files" not in \
        d.log_since_start()


@pytest.mark.timeout_seconds(120)
def test_unlinked_open_file_after_its_fd_was_evicted(work, new_daemon):
    d = new_daemon()
    d.start(extra=["--fd-cache", "16"])
    vol = d.create("orphan", 256 * MiB)
    base = daemon_fds(d)
    used_empty = d.used("orphan")
    path = os.path.join(vol, "gone")
    data = os.urandom(1 * MiB)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        assert d.used("orphan") >= used_empty + len(data)
        os.unlink(path)
        assert not os.path.exists(path)
        # Still open: still counted, as on any filesystem.
        assert d.used("orphan") >= used_empty + len(data)
        # Far more lookups than the cache holds: the file's cached fd is evicted.
        os.mkdir(os.path.join(vol, "a"))
        for name in make_files(os.path.join(vol, "a"), 200):
            os.lstat(os.path.join(vol, "a", name))
        assert daemon_fds(d) <= base + 16 + 8
        # Requests on the node that need its own fd reopen it from its handle.
        os.setxattr(fd, "user.k", b"v")
        assert os.getxattr(fd, "user.k") == b"v"
        os.fchmod(fd, 0o600)
        assert os.fstat(fd).st_mode & 0o777 == 0o600
        os.pwrite(fd, b"tail", len(data))
        assert os.pread(fd, len(data) + 4, 0) == data + b"tail"
        os.ftruncate(fd, 64 * KiB)
        assert os.fstat(fd).st_size == 64 * KiB
        assert os.pread(fd, 64 * KiB, 0) == data[:64 * KiB]
    finally:
        os.close(fd)
    # The last close gives the space back: what is left is the 200 empty
    # files' directory growth, far less than the file.
    # RELEASE reaches the daemon after close() returned.
    wait_until(lambda: d.used("orphan") < used_empty + 64 * KiB, 5,
               "the unlinked file's space back after its last close")
    # A closed file whose fd was evicted is freed by the unlink itself: its
    # charge comes back at once too.
    closed = os.path.join(vol, "closed")
    with open(closed, "wb") as f:
        f.write(data)
    wait_until(lambda: d.used("orphan") >= used_empty + len(data), 5, "the closed file counted")
    os.mkdir(os.path.join(vol, "b"))
    for name in make_files(os.path.join(vol, "b"), 100):
        os.lstat(os.path.join(vol, "b", name))
    os.unlink(closed)
    assert d.used("orphan") < used_empty + 64 * KiB
    d.check_alive()

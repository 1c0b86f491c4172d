"""
Capacity: a volume holds at most its size in allocated blocks and at most its
inode limit in objects, whoever writes (root included), and says so through
statfs. The pool is an ext4 filesystem of its own, so st_blocks behave as on
the SSD.
"""

import ctypes
import ctypes.util
import errno
import mmap
import contextlib
import os
import resource
import signal
import stat
import subprocess
import time

import pytest

from conftest import (MiB, PYTHON, USER_GID, USER_UID, du_bytes, run, run_as, tree_usage,
                      wait_until)

CAP = 16 * MiB
CHUNK = 256 * 1024

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def fallocate(fd, mode, offset, length):
    if libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def fill(path, chunk=CHUNK):
    """Appends chunks to path until a write fails; returns (size, errno)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        buf = os.urandom(chunk)
        while True:
            try:
                n = os.write(fd, buf)
            except OSError as e:
                return os.fstat(fd).st_size, e.errno
            assert n > 0
    finally:
        os.close(fd)


def check_bounds(d, name, bs):
    """Usage as seen by the daemon, by du and by a walk of the backing dir
    never passes the capacity by more than one block, and all three agree."""
    s = d.stats(name)
    walked, _ = tree_usage(d.backing(name))
    du = du_bytes(d.backing(name))
    assert s["used_bytes"] <= s["capacity_bytes"] + bs, s
    assert du <= s["capacity_bytes"] + bs, f"du {du} > capacity {s['capacity_bytes']} + {bs}"
    assert s["used_bytes"] == walked, f"daemon says {s['used_bytes']}, walk says {walked}"
    return s


def statvfs_used(mnt):
    v = os.statvfs(mnt)
    return (v.f_blocks - v.f_bfree) * v.f_frsize


@pytest.fixture
def vol(ext4_daemon):
    return ext4_daemon.create("cap", CAP)


def test_dd_until_enospc(ext4_daemon, vol, block_size):
    d = ext4_daemon
    p = run(["dd", "if=/dev/zero", f"of={vol}/big", "bs=1M"], check=False)
    assert p.returncode != 0, "dd filled /dev/zero into a 16 MiB volume without an error"
    assert "No space left on device" in p.stderr, p.stderr
    size = os.stat(f"{vol}/big").st_size
    assert size >= CAP - 2 * block_size, f"only {size} of {CAP} bytes written"
    s = check_bounds(d, "cap", block_size)
    assert s["used_bytes"] >= CAP - 2 * block_size


def test_write_loop_until_enospc(ext4_daemon, vol, block_size):
    size, err = fill(f"{vol}/f")
    assert err == errno.ENOSPC, os.strerror(err)
    assert size >= CAP - 2 * block_size
    assert os.stat(f"{vol}/f").st_blocks * 512 <= CAP + block_size
    check_bounds(ext4_daemon, "cap", block_size)
    # And it stays full: the next write fails too.
    fd = os.open(f"{vol}/f", os.O_WRONLY | os.O_APPEND)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"x" * block_size)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_statfs_reports_the_volume(ext4_daemon, vol, block_size):
    d = ext4_daemon
    v = os.statvfs(vol)
    assert v.f_blocks * v.f_frsize == CAP
    s = d.stats("cap")
    assert (v.f_blocks - v.f_bfree) * v.f_frsize == s["used_bytes"]
    assert v.f_bavail == v.f_bfree
    with open(f"{vol}/f", "wb") as f:
        f.write(os.urandom(5 * MiB))
    v = os.statvfs(vol)
    s = d.stats("cap")
    assert v.f_blocks * v.f_frsize == CAP
    assert (v.f_blocks - v.f_bfree) * v.f_frsize == s["used_bytes"]
    assert s["used_bytes"] >= 5 * MiB
    out = run(["df", "-B1", "--output=size,used,avail", vol]).stdout.split("\n")[1].split()
    assert int(out[0]) == CAP, out
    assert int(out[1]) == s["used_bytes"], out
    assert int(out[2]) == CAP - s["used_bytes"], out


def test_unlink_frees_space_at_once(ext4_daemon, vol, block_size):
    d = ext4_daemon
    base = d.used("cap")
    fill(f"{vol}/f")
    assert statvfs_used(vol) >= CAP - 2 * block_size
    os.unlink(f"{vol}/f")
    assert statvfs_used(vol) == base, "unlink did not give the space back at once"
    assert d.used("cap") == base
    # The room is really there again.
    size, err = fill(f"{vol}/g")
    assert err == errno.ENOSPC and size >= CAP - 2 * block_size
    os.unlink(f"{vol}/g")
    # Every time, not just when the daemon happens to be quick: a closed,
    # unlinked file is gone when unlink returns.
    for i in range(8):
        with open(f"{vol}/r{i}", "wb") as f:
            f.write(os.urandom(4 * MiB))
        os.unlink(f"{vol}/r{i}")
        assert statvfs_used(vol) == base, f"round {i}: space still charged right after unlink"


def test_overwrite_on_a_full_volume(ext4_daemon, vol, block_size):
    d = ext4_daemon
    size, err = fill(f"{vol}/f")
    assert err == errno.ENOSPC
    used = d.used("cap")
    p = run(["dd", "if=/dev/urandom", f"of={vol}/f", "bs=1M", "count=2", "conv=notrunc,fsync"],
            check=False)
    assert p.returncode == 0, f"overwriting allocated data on a full volume failed: {p.stderr}"
    # Python too, with a known pattern, read back.
    pattern = os.urandom(MiB)
    fd = os.open(f"{vol}/f", os.O_RDWR)
    try:
        assert os.pwrite(fd, pattern, 4 * MiB) == MiB
        os.fsync(fd)
        assert os.pread(fd, MiB, 4 * MiB) == pattern
    finally:
        os.close(fd)
    assert os.stat(f"{vol}/f").st_size == size
    assert d.used("cap") == used


def test_write_crossing_the_capacity_is_short(ext4_daemon, vol, block_size):
    d = ext4_daemon
    with open(f"{vol}/a", "wb") as f:
        f.write(os.urandom(CAP - 4 * MiB))
    free = CAP - d.used("cap")
    assert 3 * MiB < free <= 4 * MiB
    fd = os.open(f"{vol}/b", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        want = free + 2 * MiB
        n = os.write(fd, os.urandom(want))
        assert 0 < n < want, f"write of {want} bytes with {free} free returned {n}"
        assert n >= free - 2 * block_size, f"short write of {n} with {free} free"
        with pytest.raises(OSError) as ei:
            os.write(fd, os.urandom(MiB))
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    check_bounds(d, "cap", block_size)


@pytest.mark.parametrize("free_kib", [512, 1536])
def test_direct_write_crossing_the_capacity(ext4_daemon, vol, block_size, free_kib):
    """O_DIRECT writers (databases) must see a short write or ENOSPC at the
    capacity, as on a full disk, never EIO."""
    d = ext4_daemon
    with open(f"{vol}/a", "wb") as f:
        f.write(os.urandom(CAP - d.used("cap") - free_kib * 1024))
    free = CAP - d.used("cap")
    assert free == free_kib * 1024
    buf = mmap.mmap(-1, MiB)
    buf.write(os.urandom(MiB))
    fd = os.open(f"{vol}/direct", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    results = []
    try:
        off = 0
        for _ in range(4):
            try:
                n = os.pwrite(fd, buf, off)
            except OSError as e:
                results.append(errno.errorcode[e.errno])
                break
            results.append(n)
            off += n
    finally:
        os.close(fd)
    assert results[-1] == "ENOSPC", f"O_DIRECT writes of 1 MiB with {free} free: {results}"
    written = sum(r for r in results if isinstance(r, int))
    assert written <= free
    check_bounds(d, "cap", block_size)


def test_usage_counts_what_writeback_allocates_after_close(ext4_daemon, vol, block_size):
    """ext4 counts a file's data blocks in st_blocks at write time, but
    allocates the leaf of its extent tree (needed past four extents) only
    when it writes the data back, which may be after the file is closed."""
    d = ext4_daemon
    extents = 6
    with open(f"{vol}/f", "wb") as f:
        for i in range(extents):
            f.seek(i * MiB)
            f.write(os.urandom(block_size))
    # The kernel sends RELEASE after close() returned; the daemon serves a
    # volume's requests in order, so once this mkdir is answered the
    # release has been processed (and the usage settled, before its fix,
    # from st_blocks without the leaf).
    os.mkdir(f"{vol}/after-close")
    backing = os.path.join(d.backing("cap"), "f")
    fd = os.open(backing, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    allocated = os.stat(backing).st_blocks * 512
    assert allocated == (extents + 1) * block_size, \
        f"{allocated} bytes allocated: the data and no extent-tree leaf?"
    wait_until(lambda: d.used("cap") == tree_usage(d.backing("cap"))[0], 10,
               "the daemon's usage to count the extent-tree leaf")


def test_truncate_past_capacity_then_fill_the_hole(ext4_daemon, vol, block_size):
    d = ext4_daemon
    used = d.used("cap")
    fd = os.open(f"{vol}/sparse", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 4 * CAP)
        assert os.fstat(fd).st_size == 4 * CAP
        assert d.used("cap") == used, "a sparse extension was charged"
        buf = os.urandom(MiB)
        written = 0
        with pytest.raises(OSError) as ei:
            for off in range(0, 4 * CAP, MiB):
                written += os.pwrite(fd, buf, off)
        assert ei.value.errno == errno.ENOSPC
        assert written <= CAP
        assert os.fstat(fd).st_size == 4 * CAP
    finally:
        os.close(fd)
    check_bounds(d, "cap", block_size)


def test_fallocate_past_capacity(ext4_daemon, vol, block_size):
    d = ext4_daemon
    with open(f"{vol}/some", "wb") as f:
        f.write(os.urandom(2 * MiB))
    used = d.used("cap")
    p = run(["fallocate", "-l", str(2 * CAP), f"{vol}/pre"], check=False)
    assert p.returncode != 0, "fallocate past the capacity succeeded"
    assert "No space left on device" in p.stderr, p.stderr
    assert os.stat(f"{vol}/pre").st_blocks == 0, "a failed fallocate left blocks allocated"
    assert d.used("cap") == used, "a failed fallocate changed the usage"
    assert tree_usage(d.backing("cap"))[0] == used
    # Within the capacity it works, and is charged.
    fd = os.open(f"{vol}/pre", os.O_RDWR)
    try:
        fallocate(fd, 0, 0, 4 * MiB)
        with pytest.raises(OSError) as ei:
            fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * MiB, CAP)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert d.used("cap") >= used + 4 * MiB
    check_bounds(d, "cap", block_size)


def test_punch_hole_gives_space_back(ext4_daemon, vol, block_size):
    d = ext4_daemon
    with open(f"{vol}/f", "wb") as f:
        f.write(os.urandom(8 * MiB))
    before = d.used("cap")
    run(["fallocate", "-p", "-o", "0", "-l", str(4 * MiB), f"{vol}/f"])
    after = d.used("cap")
    assert before - after >= 4 * MiB - block_size, (before, after)
    assert statvfs_used(vol) == after
    assert os.stat(f"{vol}/f").st_size == 8 * MiB
    with open(f"{vol}/f", "rb") as f:
        assert f.read(4 * MiB) == bytes(4 * MiB)
    check_bounds(d, "cap", block_size)


def test_unlinked_open_file_keeps_its_space_until_closed(ext4_daemon, work, vol, block_size):
    d = ext4_daemon
    base = d.used("cap")
    with open(f"{vol}/f", "wb") as f:
        f.write(os.urandom(4 * MiB))
    holder = work.spawn([PYTHON, "-c",
                         "import sys; f = open(sys.argv[1], 'rb'); print('open', flush=True); "
                         "sys.stdin.read()", f"{vol}/f"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    os.unlink(f"{vol}/f")
    assert not os.path.exists(f"{vol}/f")
    assert d.used("cap") >= base + 4 * MiB, "space of an open file came back before its close"
    assert statvfs_used(vol) >= base + 4 * MiB
    # The space really is taken: the volume cannot hold more than what is left.
    size, err = fill(f"{vol}/g")
    assert err == errno.ENOSPC and size <= CAP - 4 * MiB
    os.unlink(f"{vol}/g")
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    wait_until(lambda: d.used("cap") == base, 10,
               "the space of the unlinked file to come back after its last close")
    assert statvfs_used(vol) == base


def test_hard_links_cost_no_inode(ext4_daemon):
    d = ext4_daemon
    vol = d.create("one", CAP, "--inodes", 1)
    with open(f"{vol}/f", "w") as f:
        f.write("x")
    assert d.stats("one")["used_inodes"] == 1
    for i in range(3):
        os.link(f"{vol}/f", f"{vol}/l{i}")
    assert os.stat(f"{vol}/f").st_nlink == 4
    assert d.stats("one")["used_inodes"] == 1
    with pytest.raises(OSError) as ei:
        os.mkdir(f"{vol}/d")
    assert ei.value.errno == errno.ENOSPC


@pytest.mark.parametrize("limit", [7])
def test_inode_limit(ext4_daemon, limit):
    d = ext4_daemon
    vol = d.create("ino", CAP, "--inodes", limit)
    v = os.statvfs(vol)
    assert v.f_files == limit and v.f_ffree == limit
    makers = [
        lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)),
        lambda p: os.mkdir(p),
        lambda p: os.symlink("target", p),
        lambda p: os.mkfifo(p),
    ]
    for i in range(limit):
        makers[i % len(makers)](f"{vol}/o{i}")
    assert d.stats("ino")["used_inodes"] == limit
    assert os.statvfs(vol).f_ffree == 0
    for what, make in zip(("create", "mkdir", "symlink", "mknod"), makers):
        with pytest.raises(OSError) as ei:
            make(f"{vol}/over-{what}")
        assert ei.value.errno == errno.ENOSPC, f"{what}: {ei.value}"
        assert not os.path.lexists(f"{vol}/over-{what}")
    # Inside a subdirectory too.
    with pytest.raises(OSError) as ei:
        open(f"{vol}/o1/deeper", "w").close()
    assert ei.value.errno == errno.ENOSPC
    assert sorted(os.listdir(d.backing("ino"))) == sorted(f"o{i}" for i in range(limit))
    # Deleting one makes room for exactly one.
    os.unlink(f"{vol}/o0")
    os.mkfifo(f"{vol}/again")
    with pytest.raises(OSError) as ei:
        os.mkfifo(f"{vol}/again2")
    assert ei.value.errno == errno.ENOSPC


def test_mmap_store_past_capacity_fails_at_msync(ext4_daemon, vol, block_size):
    d = ext4_daemon
    with open(f"{vol}/a", "wb") as f:
        f.write(os.urandom(CAP - 6 * MiB))
    free = CAP - d.used("cap")
    length = free + 4 * MiB
    fd = os.open(f"{vol}/m", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, length)
        m = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            for off in range(0, length, mmap.PAGESIZE):
                m[off] = 0x5A
            with pytest.raises(OSError) as ei:
                m.flush()
            print(f"msync failed with {ei.value}")
            # A later fsync must not claim success for the lost pages either.
        finally:
            m.close()
    finally:
        os.close(fd)
    check_bounds(d, "cap", block_size)


def test_root_is_limited_too(ext4_daemon, vol, block_size):
    """The tests run as root; the capacity does not bend for root, and the
    same holds for an ordinary uid."""
    assert os.geteuid() == 0
    d = ext4_daemon
    size, err = fill(f"{vol}/root")
    assert err == errno.ENOSPC
    assert d.used("cap") <= CAP + block_size
    os.unlink(f"{vol}/root")
    os.chmod(vol, 0o777)
    p = run_as(USER_UID, USER_GID, ["dd", "if=/dev/zero", f"of={vol}/user", "bs=1M"],
               check=False)
    assert p.returncode != 0 and "No space left on device" in p.stderr, p.stderr
    assert os.stat(f"{vol}/user").st_uid == USER_UID
    check_bounds(d, "cap", block_size)


def files_open_below(pid, root):
    """How many of the process's fds are files opened below root (O_PATH
    ones excepted): the open handles of a daemon's volume."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(root + "/") and not flags & os.O_PATH:
            n += 1
    return n


def fd_slots_free(pid, limit):
    """How many fd numbers below limit the process does not use: how many
    more files it can open under that RLIMIT_NOFILE."""
    used = [int(n) for n in os.listdir(f"/proc/{pid}/fd")]
    return limit - sum(1 for n in used if n < limit)


# Every request that makes a name, each with a fresh name.
MAKERS = {
    "create": lambda vol, p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)),
    "mkdir": lambda vol, p: os.mkdir(p),
    "mkfifo": lambda vol, p: os.mkfifo(p),
    "mknod-sock": lambda vol, p: os.mknod(p, stat.S_IFSOCK | 0o644),
    "mknod-reg": lambda vol, p: os.mknod(p, stat.S_IFREG | 0o644),
    "symlink": lambda vol, p: os.symlink("target", p),
    "link": lambda vol, p: os.link(f"{vol}/target", p),
}


@pytest.mark.timeout_seconds(60)
def test_a_failed_create_leaves_nothing_behind(ext4_daemon):
    """When the daemon runs out of fds between making an object and looking
    it up, the request fails and the directory, the usage and the inode
    count are as before: a retry with O_EXCL must not find the name."""
    d = ext4_daemon
    # With an inode limit statfs reports the volume's count, not the pool's.
    vol = d.create("fds", CAP, "--inodes", 10000)
    back = d.backing("fds")
    with open(f"{vol}/target", "w") as f:
        f.write("t")
    with open(f"{vol}/spare", "w") as f:
        f.write("s")
    pid = d.proc.pid
    saved = resource.prlimit(pid, resource.RLIMIT_NOFILE)

    def usage():
        v = os.statvfs(vol)
        return v.f_blocks - v.f_bfree, v.f_files - v.f_ffree

    def attempt(what, name):
        """The request must fail for want of an fd and leave nothing."""
        before = usage()
        with pytest.raises(OSError) as ei:
            MAKERS[what](vol, f"{vol}/{name}")
        assert ei.value.errno == errno.EMFILE, f"{what} '{name}': {ei.value}"
        assert not os.path.lexists(f"{back}/{name}"), f"{what} left '{name}' behind"
        assert usage() == before, f"{what} '{name}' changed the usage"

    # Exactly one fd number left to the daemon, once it has closed the
    # handles of the files above (a RELEASE is sent after close() returns).
    wait_until(lambda: files_open_below(pid, back) == 0, 10, "the daemon to close its handles")
    limit = len(os.listdir(f"/proc/{pid}/fd"))
    while fd_slots_free(pid, limit) < 1:
        limit += 1
    # The soft limit is what open() checks; the hard one stays, so that the
    # soft one can go back up without CAP_SYS_RESOURCE.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, saved[1]))
    try:
        # The open that makes the file takes the last fd; the lookup after it
        # finds none.
        os.stat(f"{vol}/spare")
        assert not os.path.lexists(f"{vol}/c1")
        attempt("create", "c1")
        attempt("create", "c1")  # the retry with O_EXCL: no EEXIST
        assert fd_slots_free(pid, limit) == 1
        # The other requests are preceded by a LOOKUP of the name (the
        # kernel never trusts a cached absence when it must create), which
        # needs the last fd too: they fail after making the object only when
        # another open takes that fd in between. A second process opens and
        # closes a file over and over, so that this happens.
        churn = os.fork()
        if churn == 0:
            try:
                while True:
                    with contextlib.suppress(OSError):
                        os.close(os.open(f"{vol}/spare", os.O_RDONLY))
            finally:
                os._exit(0)
        try:
            made, failed = [], {what: 0 for what in MAKERS}
            deadline = time.monotonic() + 20
            while min(failed.values()) < 3 and time.monotonic() < deadline:
                for what in MAKERS:
                    name = f"n{len(made)}-{what}"
                    before = usage()
                    try:
                        MAKERS[what](vol, f"{vol}/{name}")
                        made.append(name)
                        # Its lookup took the last fd: give it back.
                        (os.rmdir if what == "mkdir" else os.unlink)(f"{vol}/{name}")
                        continue
                    except OSError as e:
                        assert e.errno == errno.EMFILE, f"{what} '{name}': {e}"
                    failed[what] += 1
                    assert not os.path.lexists(f"{back}/{name}"), f"{what} left '{name}' behind"
                    assert usage() == before, f"{what} '{name}' changed the usage"
            assert min(failed.values()) >= 3, f"too few failures in 20 s: {failed}"
        finally:
            os.kill(churn, signal.SIGKILL)
            os.waitpid(churn, 0)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, saved)
    # With fds again, the names can be made, and the daemon's count is exact.
    assert sorted(os.listdir(back)) == ["spare", "target"]
    MAKERS["create"](vol, f"{vol}/c1")
    walked, objects = tree_usage(back)
    s = d.stats("fds")
    assert (s["used_bytes"], s["used_inodes"]) == (walked, objects), s

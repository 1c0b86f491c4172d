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
import os
import subprocess

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

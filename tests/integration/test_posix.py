"""
POSIX semantics through a volume: ownership and permission rules for other
uids, attributes and timestamps, renames, links, xattrs, sparse files,
O_DIRECT and large directories.
"""

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import stat
import time

import pytest

from conftest import (MiB, OTHER_GID, OTHER_UID, USER_GID, USER_UID, call_as, clock_past,
                      py_as, run_as)

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old)


@pytest.fixture
def vol(daemon):
    return daemon.create("px", 64 * MiB, "--mode", "1777")


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_new_objects_belong_to_the_caller(daemon, vol):
    code = r"""
import os, sys
v = sys.argv[1]
open(f"{v}/file", "w").close()
os.mkdir(f"{v}/dir")
os.symlink("file", f"{v}/link")
os.mkfifo(f"{v}/fifo")
os.mkdir(f"{v}/dir/sub")
open(f"{v}/dir/sub/deep", "w").close()
"""
    py_as(USER_UID, USER_GID, code, vol)
    for name in ("file", "dir", "link", "fifo", "dir/sub", "dir/sub/deep"):
        for root in (vol, daemon.backing("px")):
            st = os.lstat(f"{root}/{name}")
            assert (st.st_uid, st.st_gid) == (USER_UID, USER_GID), f"{root}/{name}"
    # The umask of the caller applies.
    run_as(USER_UID, USER_GID, ["sh", "-c", f"umask 077; touch {vol}/private; "
                                f"mkdir {vol}/privdir"])
    assert stat.S_IMODE(os.stat(f"{vol}/private").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"{vol}/privdir").st_mode) == 0o700


# Modes asked for by open(O_CREAT): permission bits and the three special ones.
CREATE_MODES = (0o620, 0o666, 0o644, 0o4777, 0o2770, 0o1777, 0o7777, 0o000)
MKDIR_MODES = (0o777, 0o750, 0o1777, 0o3777)


def make_every_kind(base):
    """As the caller: one object of each kind a pod can make, with the modes
    above; the caller's umask applies."""
    os.mkdir(base)
    for m in CREATE_MODES:
        os.close(os.open(f"{base}/f{m:o}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, m))
    for m in MKDIR_MODES:
        os.mkdir(f"{base}/d{m:o}", m)
    os.mkfifo(f"{base}/fifo", 0o666)
    os.mknod(f"{base}/sock", stat.S_IFSOCK | 0o777)
    os.mknod(f"{base}/reg", stat.S_IFREG | 0o646)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(f"{base}/bound")
    os.symlink("f666", f"{base}/link")


def expected_modes(umask):
    """What POSIX and Linux give make_every_kind() under umask, for a caller
    who owns the (not setgid) parent: mkdir drops S_ISGID from the mode it is
    given, a bound socket asks for 0777, a symlink is always 0777."""
    want = {f"f{m:o}": stat.S_IFREG | (m & ~umask) for m in CREATE_MODES}
    want.update({f"d{m:o}": stat.S_IFDIR | (m & 0o1777 & ~umask) for m in MKDIR_MODES})
    want["fifo"] = stat.S_IFIFO | (0o666 & ~umask)
    want["sock"] = stat.S_IFSOCK | (0o777 & ~umask)
    want["reg"] = stat.S_IFREG | (0o646 & ~umask)
    want["bound"] = stat.S_IFSOCK | (0o777 & ~umask)
    want["link"] = stat.S_IFLNK | 0o777
    return want


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def test_modes_are_exact_whatever_the_daemons_umask(work, new_daemon):
    d = new_daemon(umask=0o077)
    d.start()
    vol = d.create("um", 64 * MiB, "--mode", "1777")
    # The daemon's own files keep the modes they are meant to have.
    st = os.lstat(d.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    for path, mode in ((work.pool, 0o700), (f"{work.pool}/volumes", 0o700),
                       (f"{work.pool}/carvefs.meta", 0o600), (work.mnt, 0o755),
                       (d.backing("um"), 0o1777)):
        assert stat.S_IMODE(os.lstat(path).st_mode) == mode, f"{path}: {oct(os.lstat(path).st_mode)}"
    for umask in (0, 0o002, 0o027):
        base = f"{vol}/u{umask:03o}"
        call_as(USER_UID, USER_GID, make_every_kind, base, umask=umask)
        want = expected_modes(umask)
        for root in (base, f"{d.backing('um')}/u{umask:03o}"):
            got = {n: os.lstat(f"{root}/{n}").st_mode for n in want}
            bad = {n: (oct(got[n]), oct(want[n])) for n in want if got[n] != want[n]}
            assert not bad, f"umask {umask:03o}, {root}: (got, wanted) {bad}"
    # What the owner granted others, others get.
    call_as(OTHER_UID, OTHER_GID, append, f"{vol}/u000/f666", b"other")
    call_as(OTHER_UID, OTHER_GID, append, f"{vol}/u000/f4777", b"other")
    assert read(f"{vol}/u000/f666") == read(f"{vol}/u000/f4777") == b"other"
    # The foreign write cleared the set-user-ID bit, and only that.
    assert stat.S_IMODE(os.stat(f"{vol}/u000/f4777").st_mode) == 0o777
    with pytest.raises(PermissionError):
        call_as(OTHER_UID, OTHER_GID, append, f"{vol}/u027/f666", b"other")


def test_setgid_directory_inheritance(vol):
    os.mkdir(f"{vol}/g")
    os.chown(f"{vol}/g", 0, 4242)
    os.chmod(f"{vol}/g", 0o2777)
    py_as(USER_UID, USER_GID, r"""
import os, sys
g = sys.argv[1]
open(f"{g}/f", "w").close()
os.mkdir(f"{g}/d")
""", f"{vol}/g")
    f = os.stat(f"{vol}/g/f")
    d = os.stat(f"{vol}/g/d")
    assert f.st_gid == 4242 and f.st_uid == USER_UID
    assert d.st_gid == 4242
    assert d.st_mode & stat.S_ISGID, oct(d.st_mode)


def test_sticky_directory(vol):
    assert os.stat(vol).st_mode & stat.S_ISVTX
    py_as(USER_UID, USER_GID, "import sys; open(sys.argv[1], 'w').write('mine')",
          f"{vol}/owned")
    p = py_as(OTHER_UID, OTHER_GID, r"""
import errno, os, sys
v = sys.argv[1]
for op in (lambda: os.unlink(f"{v}/owned"), lambda: os.rename(f"{v}/owned", f"{v}/stolen")):
    try:
        op()
        print("allowed")
    except OSError as e:
        print(errno.errorcode[e.errno])
# Its own files it may delete.
open(f"{v}/other", "w").close()
os.unlink(f"{v}/other")
""", vol)
    assert p.stdout.split() == ["EPERM", "EPERM"], p.stdout
    assert read(f"{vol}/owned") == b"mine"
    os.unlink(f"{vol}/owned")  # root may


def test_chmod_chown_truncate_utimens(vol):
    path = f"{vol}/f"
    write(path, b"0123456789")
    os.chmod(path, 0o640)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    os.chown(path, 1234, 5678)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.truncate(path, 4)
    assert read(path) == b"0123"
    os.truncate(path, 100)
    assert read(path) == b"0123" + bytes(96)
    with open(path, "r+b") as f:
        os.ftruncate(f.fileno(), 2)
    assert os.stat(path).st_size == 2
    atime, mtime = 1_500_000_000_123_456_789, 1_600_000_000_987_654_321
    os.utime(path, ns=(atime, mtime))
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
    # Symlinks themselves.
    os.symlink("f", f"{vol}/l")
    os.utime(f"{vol}/l", ns=(atime, atime), follow_symlinks=False)
    assert os.lstat(f"{vol}/l").st_mtime_ns == atime
    assert os.stat(path).st_mtime_ns == mtime
    os.lchown(f"{vol}/l", 42, 43)
    assert (os.lstat(f"{vol}/l").st_uid, os.lstat(f"{vol}/l").st_gid) == (42, 43)
    # A non-owner may not chmod; the owner may not give the file away.
    p = py_as(USER_UID, USER_GID, r"""
import errno, os, sys
p = sys.argv[1]
for op in (lambda: os.chmod(p, 0o777), lambda: os.chown(p, 1000, 1000)):
    try:
        op(); print("allowed")
    except OSError as e:
        print(errno.errorcode[e.errno])
""", path)
    assert p.stdout.split() == ["EPERM", "EPERM"]


def test_mtime_ctime_change_on_write(vol):
    path = f"{vol}/f"
    write(path, b"abc")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = os.stat(path)
    clock_past(before.st_ctime_ns)
    with open(path, "ab") as f:
        f.write(b"def")
    after = os.stat(path)
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns > before.st_ctime_ns
    assert after.st_mtime_ns > time.time_ns() - 60 * 10**9
    # A truncate too.
    clock_past(after.st_ctime_ns)
    os.truncate(path, 1)
    again = os.stat(path)
    assert again.st_mtime_ns > after.st_mtime_ns and again.st_ctime_ns > after.st_ctime_ns


def test_setid_bits_cleared_on_write_by_non_owner(vol):
    path = f"{vol}/prog"
    write(path, b"#!/bin/sh\n")
    os.chmod(path, 0o6777)
    assert os.stat(path).st_mode & 0o6000 == 0o6000
    py_as(USER_UID, USER_GID, "import sys; open(sys.argv[1], 'ab').write(b'echo hi\\n')", path)
    mode = os.stat(path).st_mode
    assert mode & (stat.S_ISUID | stat.S_ISGID) == 0, f"mode {oct(mode)} after a foreign write"
    assert read(path) == b"#!/bin/sh\necho hi\n"
    # Truncation by a non-owner clears them too.
    os.chmod(path, 0o6777)
    py_as(USER_UID, USER_GID, "import os, sys; os.truncate(sys.argv[1], 3)", path)
    assert os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID) == 0


def test_rename_over_existing(daemon, vol):
    write(f"{vol}/a", b"A")
    write(f"{vol}/b", b"B" * 100000)
    used = daemon.used("px")
    os.rename(f"{vol}/a", f"{vol}/b")
    assert read(f"{vol}/b") == b"A"
    assert not os.path.exists(f"{vol}/a")
    assert sorted(os.listdir(daemon.backing("px"))) == ["b"]
    assert daemon.used("px") < used, "the replaced file's space was not given back"
    assert daemon.stats("px")["used_inodes"] == 1
    # Directories: over an empty one works, over a full one does not.
    os.makedirs(f"{vol}/d1/x")
    os.mkdir(f"{vol}/d2")
    os.mkdir(f"{vol}/d3")
    os.rename(f"{vol}/d1", f"{vol}/d2")
    assert os.listdir(f"{vol}/d2") == ["x"]
    with pytest.raises(OSError) as ei:
        os.rename(f"{vol}/d3", f"{vol}/d2")
    assert ei.value.errno in (errno.ENOTEMPTY, errno.EEXIST)


def test_renameat2_flags(vol):
    write(f"{vol}/a", b"A")
    write(f"{vol}/b", b"B")
    with pytest.raises(OSError) as ei:
        renameat2(f"{vol}/a", f"{vol}/b", RENAME_NOREPLACE)
    assert ei.value.errno == errno.EEXIST
    assert (read(f"{vol}/a"), read(f"{vol}/b")) == (b"A", b"B")
    renameat2(f"{vol}/a", f"{vol}/c", RENAME_NOREPLACE)
    assert read(f"{vol}/c") == b"A" and not os.path.exists(f"{vol}/a")
    renameat2(f"{vol}/b", f"{vol}/c", RENAME_EXCHANGE)
    assert (read(f"{vol}/b"), read(f"{vol}/c")) == (b"A", b"B")
    # A file and a directory swap too.
    os.mkdir(f"{vol}/dir")
    write(f"{vol}/dir/inside", b"I")
    renameat2(f"{vol}/dir", f"{vol}/b", RENAME_EXCHANGE)
    assert read(f"{vol}/dir") == b"A"
    assert read(f"{vol}/b/inside") == b"I"
    with pytest.raises(OSError) as ei:
        renameat2(f"{vol}/nothing", f"{vol}/c", RENAME_EXCHANGE)
    assert ei.value.errno == errno.ENOENT


def test_link_counts(daemon, vol):
    write(f"{vol}/f", b"x")
    assert os.stat(f"{vol}/f").st_nlink == 1
    os.link(f"{vol}/f", f"{vol}/g")
    os.link(f"{vol}/f", f"{vol}/h")
    for n in "fgh":
        assert os.stat(f"{vol}/{n}").st_nlink == 3
    assert os.stat(f"{vol}/f").st_ino == os.stat(f"{vol}/h").st_ino
    os.unlink(f"{vol}/g")
    assert os.stat(f"{vol}/f").st_nlink == 2
    write(f"{vol}/h", b"through h")
    assert read(f"{vol}/f") == b"through h"
    os.mkdir(f"{vol}/d")
    assert os.stat(f"{vol}/d").st_nlink == 2
    os.mkdir(f"{vol}/d/s1")
    os.mkdir(f"{vol}/d/s2")
    assert os.stat(f"{vol}/d").st_nlink == 4
    os.rmdir(f"{vol}/d/s1")
    assert os.stat(f"{vol}/d").st_nlink == 3
    assert daemon.stats("px")["used_inodes"] == 3  # f (twice linked), d, d/s2


def test_user_xattrs(daemon, vol):
    path = f"{vol}/f"
    write(path, b"x")
    os.setxattr(path, "user.color", b"blue")
    os.setxattr(path, "user.empty", b"")
    assert os.getxattr(path, "user.color") == b"blue"
    assert os.getxattr(path, "user.empty") == b""
    assert {"user.color", "user.empty"} <= set(os.listxattr(path))
    with pytest.raises(OSError) as ei:
        os.setxattr(path, "user.color", b"red", os.XATTR_CREATE)
    assert ei.value.errno == errno.EEXIST
    os.setxattr(path, "user.color", b"red", os.XATTR_REPLACE)
    assert os.getxattr(path, "user.color") == b"red"
    # Stored on the backing file.
    assert os.getxattr(f"{daemon.backing('px')}/f", "user.color") == b"red"
    os.removexattr(path, "user.color")
    with pytest.raises(OSError) as ei:
        os.getxattr(path, "user.color")
    assert ei.value.errno == errno.ENODATA
    assert "user.color" not in os.listxattr(path)
    # Directories carry them too.
    os.mkdir(f"{vol}/d")
    os.setxattr(f"{vol}/d", "user.k", b"v" * 1000)
    assert os.getxattr(f"{vol}/d", "user.k") == b"v" * 1000
    # Another uid needs write permission to set one.
    os.chmod(path, 0o644)
    p = py_as(USER_UID, USER_GID, r"""
import errno, os, sys
try:
    os.setxattr(sys.argv[1], "user.x", b"1"); print("allowed")
except OSError as e:
    print(errno.errorcode[e.errno])
print(os.getxattr(sys.argv[1], "user.empty") == b"")
""", path)
    assert p.stdout.split() == ["EACCES", "True"], p.stdout


def test_trusted_xattrs_are_refused(daemon, vol):
    path = f"{vol}/f"
    write(path, b"x")
    with pytest.raises(OSError) as ei:
        os.setxattr(path, "trusted.overlay.opaque", b"y")
    assert ei.value.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EACCES), ei.value
    with pytest.raises(OSError):
        os.getxattr(f"{daemon.backing('px')}/f", "trusted.overlay.opaque")
    with pytest.raises(OSError) as ei:
        os.setxattr(path, "security.capability", b"\x01\x00\x00\x02" + bytes(16))
    assert ei.value.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EACCES, errno.EINVAL)


def test_seek_data_and_hole(vol):
    path = f"{vol}/sparse"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"a" * 65536, 0)
        os.pwrite(fd, b"b" * 65536, MiB)
        os.ftruncate(fd, 2 * MiB)
        os.fsync(fd)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 65536
        assert os.lseek(fd, 65536, os.SEEK_DATA) == MiB
        assert os.lseek(fd, MiB, os.SEEK_HOLE) == MiB + 65536
        assert os.lseek(fd, MiB + 65536, os.SEEK_HOLE) == MiB + 65536
        with pytest.raises(OSError) as ei:
            os.lseek(fd, MiB + 65536, os.SEEK_DATA)
        assert ei.value.errno == errno.ENXIO
        assert os.lseek(fd, 0, os.SEEK_END) == 2 * MiB
    finally:
        os.close(fd)
    assert os.stat(path).st_blocks * 512 < 2 * MiB


def test_o_direct_round_trip(daemon, vol):
    size = 1 * MiB
    src = mmap.mmap(-1, size)
    src.write(os.urandom(size))
    fd = os.open(f"{vol}/direct", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        assert os.pwrite(fd, src, 0) == size
        # Unaligned within the file too: 4 KiB pieces at 4 KiB offsets.
        piece = mmap.mmap(-1, 4096)
        piece.write(b"\xa5" * 4096)
        assert os.pwrite(fd, piece, size + 8192) == 4096
        dst = mmap.mmap(-1, size)
        assert os.preadv(fd, [dst], 0) == size
        assert dst[:] == src[:]
        back = mmap.mmap(-1, 4096)
        assert os.preadv(fd, [back], size + 8192) == 4096
        assert back[:] == b"\xa5" * 4096
        assert os.fstat(fd).st_size == size + 12288
    finally:
        os.close(fd)
    # Buffered readers see the same bytes.
    data = read(f"{vol}/direct")
    assert data[:size] == src[:] and data[size:size + 8192] == bytes(8192)
    s = daemon.stats("px")
    assert s["io"]["write_bytes"] >= size + 4096


def test_readdir_1000_entries(vol):
    names = {f"entry-{i:04d}-{'x' * (i % 50)}" for i in range(1000)}
    os.mkdir(f"{vol}/big")
    for i, n in enumerate(sorted(names)):
        if i % 10 == 0:
            os.mkdir(f"{vol}/big/{n}")
        else:
            open(f"{vol}/big/{n}", "w").close()
    listed = os.listdir(f"{vol}/big")
    assert len(listed) == len(set(listed)) == 1000
    assert set(listed) == names
    with os.scandir(f"{vol}/big") as it:
        entries = list(it)
    dirs = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    assert len(dirs) == 100
    assert dirs == {n for i, n in enumerate(sorted(names)) if i % 10 == 0}
    # Deleting while listing (readdir with a changing directory) stays sane.
    for n in sorted(names)[1::10]:
        os.unlink(f"{vol}/big/{n}")
    assert len(os.listdir(f"{vol}/big")) == 900


def test_statfs_after_resize(daemon):
    d = daemon
    vol = d.create("rs", 32 * MiB, "--inodes", "500")
    v = os.statvfs(vol)
    assert v.f_blocks * v.f_frsize == 32 * MiB and v.f_files == 500
    write(f"{vol}/f", os.urandom(3 * MiB))
    used = d.used("rs")
    for size in (96 * MiB, 8 * MiB, 33 * MiB):
        d.ctl("resize", "rs", "--size", size)
        v = os.statvfs(vol)
        assert v.f_blocks * v.f_frsize == size
        assert v.f_bfree * v.f_frsize == size - used
        assert v.f_files == 500 and v.f_ffree == 499

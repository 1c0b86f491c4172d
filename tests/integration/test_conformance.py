"""
POSIX conformance of a volume, in the areas the public filesystem suites
check: modes and the umask, ownership and chown rules, set-gid directories,
clearing of set-id bits, sticky directories, the permission and error rules
of rename, link, unlink and open, and which timestamps each operation
updates.

Every test runs twice: on a carvefs volume, and as a reference on a plain
directory of the ext4 filesystem the pool lives on. A check that fails on
both states the rule wrongly; one that fails on carvefs alone is a carvefs
bug. Operations of other users run in a forked child with that uid and gid
(conftest.call_as).
"""

import ctypes
import ctypes.util
import errno
import os
import shutil
import stat
import tempfile

import pytest

from conftest import (MiB, NOBODY_GID, NOBODY_UID, OTHER_GID, OTHER_UID, USER_GID, USER_UID,
                      call_as, clock_past, errno_as)

USER = (USER_UID, USER_GID)
OTHER = (OTHER_UID, OTHER_GID)
NOBODY = (NOBODY_UID, NOBODY_GID)
# A group neither user belongs to unless a test gives it to them.
GROUP = 4242

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
AT_FDCWD = -100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime):
    """utimensat(2) with (sec, nsec) pairs, or UTIME_NOW / UTIME_OMIT."""
    def ts(t):
        return Timespec(0, t) if t in (UTIME_NOW, UTIME_OMIT) else Timespec(*t)
    times = (Timespec * 2)(ts(atime), ts(mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


class Area:
    """Where a test works: .path, a directory open to everyone, and .other,
    one on another filesystem (another volume, for the reference tmpfs)."""

    def __init__(self, kind, path, other):
        self.kind = kind
        self.path = path
        self.other = other

    def __truediv__(self, name):
        return os.path.join(self.path, name)


@pytest.fixture(params=["carvefs", "ext4"])
def area(request, work):
    if request.param == "carvefs":
        d = request.getfixturevalue("daemon")
        path = d.create("conf", 64 * MiB, "--mode", "0777")
        other = d.create("conf2", 16 * MiB, "--mode", "0777")
    else:
        path = os.path.join(work.path, "plain")
        os.mkdir(path)
        other = tempfile.mkdtemp(prefix="carvefs-it-", dir="/dev/shm")
        request.addfinalizer(lambda: shutil.rmtree(other, ignore_errors=True))
    os.chmod(path, 0o777)
    os.chmod(other, 0o777)
    return Area(request.param, path, other)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def as_(who, fn, *args, **kw):
    return call_as(who[0], who[1], fn, *args, **kw)


def err_as(who, fn, *args, **kw):
    return errno_as(who[0], who[1], fn, *args, **kw)


def err(fn, *args):
    """The errno name fn(*args) fails with as root, or None."""
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode[e.errno]
    return None


def create(path, mode=0o644):
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))


def make(path, mode, owner=(0, 0), data=b""):
    """As root: a file with exactly this mode and owner."""
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, *owner)
    os.chmod(path, mode)


def mkdir(path, mode, owner=(0, 0)):
    os.mkdir(path)
    os.chown(path, *owner)
    os.chmod(path, mode)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def times(path):
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def append(path, data=b"x"):
    with open(path, "ab") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def settle(*paths):
    """Times of paths, once the clock has passed all of them: what an
    operation updates afterwards must then differ."""
    before = {p: times(p) for p in paths}
    clock_past(max(max(t) for t in before.values()))
    return before


A, M, C = 0, 1, 2


def changed(before, path, was=None):
    """Which of atime, mtime, ctime of path differ from before[was or path]
    (was: the object's name when settle() saw it)."""
    now = times(path)
    return {"amc"[i] for i in (A, M, C) if now[i] != before[was or path][i]}


# --------------------------------------------------------------------------
# Modes and the umask
# --------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0, 0o022, 0o077, 0o777])
def test_open_creat_takes_the_mode_less_the_umask(area, umask):
    modes = (0o777, 0o666, 0o640, 0o4755, 0o2755, 0o1777, 0o7777, 0)

    def work(base):
        os.mkdir(base, 0o777)
        os.chmod(base, 0o777)
        for m in modes:
            create(f"{base}/f{m:o}", m)
    as_(USER, work, area / "u", umask=umask)
    for m in modes:
        assert mode(area / f"u/f{m:o}") == m & ~umask, f"{m:o} under umask {umask:o}"


@pytest.mark.parametrize("umask", [0, 0o022, 0o077])
def test_mkdir_mkfifo_mknod_take_the_mode_less_the_umask(area, umask):
    def work(base):
        os.mkdir(base, 0o777)
        os.chmod(base, 0o777)
        os.mkdir(f"{base}/d", 0o7777)
        os.mkdir(f"{base}/e", 0o750)
        os.mkfifo(f"{base}/p", 0o666)
        os.mknod(f"{base}/s", stat.S_IFSOCK | 0o640)
        os.mknod(f"{base}/r", stat.S_IFREG | 0o4755)
        os.symlink("d", f"{base}/l")
    as_(USER, work, area / "u", umask=umask)
    # mkdir keeps the sticky bit but not the set-id bits it is given.
    assert mode(area / "u/d") == 0o1777 & ~umask
    assert mode(area / "u/e") == 0o750 & ~umask
    assert mode(area / "u/p") == 0o666 & ~umask
    assert mode(area / "u/s") == 0o640 & ~umask
    assert mode(area / "u/r") == 0o4755 & ~umask
    assert mode(area / "u/l") == 0o777
    assert stat.S_ISFIFO(os.lstat(area / "u/p").st_mode)
    assert stat.S_ISSOCK(os.lstat(area / "u/s").st_mode)


def test_chmod_by_owner_non_owner_and_root(area):
    make(area / "f", 0o644, USER)
    as_(USER, os.chmod, area / "f", 0o4711)
    assert mode(area / "f") == 0o4711
    assert err_as(OTHER, os.chmod, area / "f", 0o777) == "EPERM"
    assert mode(area / "f") == 0o4711
    os.chmod(area / "f", 0o1600)
    assert mode(area / "f") == 0o1600
    # Through a symlink, the target changes.
    os.symlink("f", area / "l")
    as_(USER, os.chmod, area / "l", 0o640)
    assert mode(area / "f") == 0o640 and mode(area / "l") == 0o777


def test_chmod_by_an_owner_outside_the_group_drops_set_gid(area):
    make(area / "f", 0o644, (USER_UID, GROUP))
    as_(USER, os.chmod, area / "f", 0o2755)
    assert mode(area / "f") == 0o755
    # A member of the group keeps it; so does root.
    as_(USER, os.chmod, area / "f", 0o2755, groups=(GROUP,))
    assert mode(area / "f") == 0o2755
    os.chmod(area / "f", 0o2711)
    assert mode(area / "f") == 0o2711
    # Directories: the same rule.
    mkdir(area / "d", 0o755, (USER_UID, GROUP))
    as_(USER, os.chmod, area / "d", 0o2755)
    assert mode(area / "d") == 0o755


# --------------------------------------------------------------------------
# Ownership
# --------------------------------------------------------------------------

def test_new_objects_belong_to_the_caller(area):
    def work(base):
        create(f"{base}/f")
        os.mkdir(f"{base}/d")
        os.symlink("f", f"{base}/l")
        os.mkfifo(f"{base}/p")
    as_(USER, work, area.path)
    for name in ("f", "d", "l", "p"):
        assert owner(area / name) == USER, name


def test_chown_as_root(area):
    make(area / "f", 0o644, USER)
    os.chown(area / "f", OTHER_UID, GROUP)
    assert owner(area / "f") == (OTHER_UID, GROUP)
    os.chown(area / "f", -1, -1)
    assert owner(area / "f") == (OTHER_UID, GROUP)
    os.chown(area / "f", USER_UID, -1)
    assert owner(area / "f") == (USER_UID, GROUP)
    os.chown(area / "f", -1, USER_GID)
    assert owner(area / "f") == USER
    # lchown changes the link, chown through it the target.
    os.symlink("f", area / "l")
    os.lchown(area / "l", OTHER_UID, OTHER_GID)
    assert owner(area / "l") == OTHER and owner(area / "f") == USER
    os.chown(area / "l", 0, 0)
    assert owner(area / "f") == (0, 0) and owner(area / "l") == OTHER


def test_chown_as_non_root(area):
    make(area / "f", 0o644, USER)
    # Giving a file away is refused, to anyone, even with the group kept.
    assert err_as(USER, os.chown, area / "f", OTHER_UID, -1) == "EPERM"
    assert err_as(USER, os.chown, area / "f", OTHER_UID, USER_GID) == "EPERM"
    # Its own uid and a group it belongs to are fine.
    as_(USER, os.chown, area / "f", USER_UID, -1)
    as_(USER, os.chown, area / "f", -1, -1)
    as_(USER, os.chown, area / "f", -1, GROUP, groups=(GROUP,))
    assert owner(area / "f") == (USER_UID, GROUP)
    as_(USER, os.chown, area / "f", USER_UID, USER_GID)
    assert owner(area / "f") == USER
    # A group it is not in is refused; so is any change by a non-owner.
    assert err_as(USER, os.chown, area / "f", -1, GROUP) == "EPERM"
    assert err_as(OTHER, os.chown, area / "f", -1, OTHER_GID) == "EPERM"
    assert err_as(OTHER, os.chown, area / "f", -1, USER_GID, groups=(USER_GID,)) == "EPERM"
    assert owner(area / "f") == USER


def test_chown_clears_set_id_bits_of_files(area):
    make(area / "a", 0o6755, USER)
    os.chown(area / "a", OTHER_UID, -1)
    assert mode(area / "a") == 0o755
    make(area / "b", 0o6755, USER)
    as_(USER, os.chown, area / "b", -1, GROUP, groups=(GROUP,))
    assert mode(area / "b") == 0o755
    # Set-gid without group execute marks mandatory locking: it stays.
    make(area / "c", 0o6644, USER)
    os.chown(area / "c", OTHER_UID, OTHER_GID)
    assert mode(area / "c") == 0o2644
    # Directories keep theirs.
    mkdir(area / "d", 0o6755, USER)
    os.chown(area / "d", OTHER_UID, OTHER_GID)
    assert mode(area / "d") == 0o6755


def test_write_and_truncate_clear_set_id_bits(area):
    # By another user with write permission.
    make(area / "a", 0o6777, USER)
    as_(OTHER, append, area / "a")
    assert mode(area / "a") == 0o777
    # By the owner too, who has no CAP_FSETID.
    make(area / "b", 0o6777, USER)
    as_(USER, append, area / "b")
    assert mode(area / "b") == 0o777
    make(area / "c", 0o6777, USER, b"0123456789")
    as_(OTHER, os.truncate, area / "c", 3)
    assert mode(area / "c") == 0o777 and read(area / "c") == b"012"
    # Set-gid without group execute stays for a writer in the file's group.
    make(area / "d", 0o2666, USER)
    as_(OTHER, append, area / "d", groups=(USER_GID,))
    assert mode(area / "d") == 0o2666
    # Root keeps them.
    make(area / "e", 0o6777, USER)
    append(area / "e")
    assert mode(area / "e") == 0o6777


def test_write_clears_set_gid_without_group_execute_for_non_members(area, request):
    if area.kind == "carvefs":
        # The kernel's FUSE code decides which bits a write kills, for
        # buffered writes in fuse_setattr() and for direct ones through
        # FUSE_WRITE_KILL_SUIDGID, whose documented rule carvefs follows:
        # set-gid only with group execute. The kernel's rule for other
        # filesystems (setattr_should_drop_sgid, as the ext4 run shows)
        # also drops it when the writer is not in the file's group.
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="FUSE kills set-gid on write only with group execute"))
    make(area / "f", 0o2666, USER)
    as_(OTHER, append, area / "f")
    assert mode(area / "f") == 0o666


def test_set_gid_directory_passes_on_its_group(area):
    mkdir(area / "g", 0o2777, (0, GROUP))

    def work(g):
        create(f"{g}/f", 0o644)
        os.mkdir(f"{g}/d", 0o755)
        os.symlink("f", f"{g}/l")
        os.mkfifo(f"{g}/p", 0o644)
        # Not a member of the group: set-gid is dropped from a new file.
        create(f"{g}/x", 0o2755)
    as_(USER, work, area / "g", umask=0)
    for name in ("f", "d", "l", "p", "x"):
        assert owner(area / f"g/{name}") == (USER_UID, GROUP), name
    assert mode(area / "g/d") == 0o2755
    assert mode(area / "g/x") == 0o755
    # A member keeps it.
    as_(USER, create, area / "g/y", 0o2755, groups=(GROUP,), umask=0)
    assert mode(area / "g/y") == 0o2755
    # Outside the set-gid directory, the creator's group.
    as_(USER, create, area / "plain", 0o644, groups=(GROUP,))
    assert owner(area / "plain") == USER


# --------------------------------------------------------------------------
# Sticky directories
# --------------------------------------------------------------------------

def test_sticky_directory_protects_others_entries(area):
    mkdir(area / "t", 0o1777, USER)
    make(area / "t/a", 0o666, OTHER)
    make(area / "t/b", 0o666, OTHER)
    mkdir(area / "t/d", 0o777, OTHER)
    make(area / "t/n", 0o666, NOBODY)
    # Neither the entry's nor the directory's owner: refused, for names and
    # for replacing a name.
    assert err_as(NOBODY, os.unlink, area / "t/a") == "EPERM"
    assert err_as(NOBODY, os.rename, area / "t/a", area / "t/z") == "EPERM"
    assert err_as(NOBODY, os.rename, area / "t/n", area / "t/a") == "EPERM"
    assert err_as(NOBODY, os.rmdir, area / "t/d") == "EPERM"
    assert err_as(NOBODY, os.rename, area / "t/a", area / "a") == "EPERM"
    assert sorted(os.listdir(area / "t")) == ["a", "b", "d", "n"]
    # Writing into the file is not about the directory.
    as_(NOBODY, append, area / "t/a")
    # The entry's owner, the directory's owner and root may.
    as_(OTHER, os.rename, area / "t/a", area / "t/a2")
    as_(USER, os.unlink, area / "t/a2")
    as_(USER, os.rmdir, area / "t/d")
    os.unlink(area / "t/b")
    as_(NOBODY, os.unlink, area / "t/n")
    assert os.listdir(area / "t") == []


# --------------------------------------------------------------------------
# Permissions and errors of names
# --------------------------------------------------------------------------

def test_names_need_write_and_search_on_the_directory(area):
    mkdir(area / "ro", 0o755)
    make(area / "ro/f", 0o666)
    mkdir(area / "nox", 0o766)
    make(area / "nox/f", 0o666)
    for d in ("ro", "nox"):
        assert err_as(USER, os.unlink, area / f"{d}/f") == "EACCES", d
        assert err_as(USER, create, area / f"{d}/new") == "EACCES", d
        assert err_as(USER, os.mkdir, area / f"{d}/new") == "EACCES", d
        assert err_as(USER, os.symlink, "f", area / f"{d}/new") == "EACCES", d
        assert err_as(USER, os.rename, area / f"{d}/f", area / "moved") == "EACCES", d
    # Without search permission nothing inside can even be named.
    assert err_as(USER, os.stat, area / "nox/f") == "EACCES"
    assert err_as(USER, read, area / "nox/f") == "EACCES"
    assert as_(USER, read, area / "ro/f") == b""
    # Into a directory one cannot write.
    make(area / "mine", 0o644, USER)
    assert err_as(USER, os.rename, area / "mine", area / "ro/mine") == "EACCES"
    assert err_as(USER, os.link, area / "mine", area / "ro/mine") == "EACCES"


def test_file_permission_classes(area):
    # The owner class decides for the owner, even when the group could.
    make(area / "f", 0o070, USER)
    assert err_as(USER, read, area / "f") == "EACCES"
    os.chown(area / "f", OTHER_UID, USER_GID)
    assert as_(USER, read, area / "f") == b""
    # Write-only for the owner.
    make(area / "w", 0o200, USER)
    assert err_as(USER, read, area / "w") == "EACCES"
    as_(USER, append, area / "w")
    # Root reads and writes anything, but runs only what has an x bit.
    make(area / "z", 0o000, USER, b"#!/bin/sh\n")
    assert read(area / "z") == b"#!/bin/sh\n"
    append(area / "z", b"exit 0\n")
    assert not os.access(area / "z", os.X_OK)
    assert err(os.execv, area / "z", ["z"]) == "EACCES"


def test_rename_errors(area):
    create(area / "f")
    create(area / "g")
    os.mkdir(area / "d")
    os.mkdir(area / "e")
    os.mkdir(area / "full")
    create(area / "full/x")
    os.mkdir(area / "d/sub")
    assert err(os.rename, area / "f", area / "d") == "EISDIR"
    assert err(os.rename, area / "d", area / "f") == "ENOTDIR"
    assert err(os.rename, area / "e", area / "full") == "ENOTEMPTY"
    assert err(os.rename, area / "d", area / "d/sub/in") == "EINVAL"
    assert err(os.rename, area / "d", area / "d/in") == "EINVAL"
    assert err(os.rename, area / "missing", area / "x") == "ENOENT"
    assert err(os.rename, area / "f", area / "g/x") == "ENOTDIR"
    assert err(os.rename, area / "f", area / "missing/x") == "ENOENT"
    assert err(os.rename, area / "f", os.path.join(area.other, "f")) == "EXDEV"
    assert err(os.rename, area / "d", os.path.join(area.other, "d")) == "EXDEV"
    # Renaming onto itself, or onto another link of itself, changes nothing.
    os.link(area / "f", area / "f2")
    os.rename(area / "f", area / "f")
    os.rename(area / "f", area / "f2")
    assert os.path.exists(area / "f") and os.lstat(area / "f").st_nlink == 2
    # A directory replaces an empty one.
    os.rename(area / "e", area / "d/sub")
    assert not os.path.exists(area / "e") and os.path.isdir(area / "d/sub")
    assert sorted(os.listdir(area.path)) == ["d", "f", "f2", "full", "g"]


def test_moving_a_directory_needs_write_on_it(area):
    mkdir(area / "a", 0o777)
    mkdir(area / "b", 0o777)
    mkdir(area / "a/rootdir", 0o755)
    mkdir(area / "a/mine", 0o755, USER)
    # To another parent its ".." changes: write permission on it is needed.
    assert err_as(USER, os.rename, area / "a/rootdir", area / "b/rootdir") == "EACCES"
    as_(USER, os.rename, area / "a/mine", area / "b/mine")
    # Within the same parent it is not.
    as_(USER, os.rename, area / "a/rootdir", area / "a/renamed")
    assert sorted(os.listdir(area / "a")) == ["renamed"]


def test_link_errors(area):
    create(area / "f")
    os.mkdir(area / "d")
    assert err(os.link, area / "d", area / "d2") == "EPERM"
    assert err(os.link, area / "f", area / "d") == "EEXIST"
    assert err(os.link, area / "f", area / "f") == "EEXIST"
    assert err(os.link, area / "missing", area / "x") == "ENOENT"
    assert err(os.link, area / "f", area / "f/x") == "ENOTDIR"
    assert err(os.link, area / "f", os.path.join(area.other, "f")) == "EXDEV"
    # Another user's file one can neither read nor write: only with
    # fs.protected_hardlinks off.
    make(area / "secret", 0o600, OTHER)
    make(area / "open", 0o666, OTHER)
    with open("/proc/sys/fs/protected_hardlinks") as f:
        protected = f.read().strip() == "1"
    assert err_as(USER, os.link, area / "secret", area / "s2") == ("EPERM" if protected else None)
    as_(USER, os.link, area / "open", area / "o2")
    assert os.lstat(area / "open").st_nlink == 2


def test_unlink_rmdir_mkdir_errors(area):
    create(area / "f")
    os.mkdir(area / "d")
    create(area / "d/x")
    os.mkdir(area / "e")
    assert err(os.unlink, area / "d") == "EISDIR"
    assert err(os.rmdir, area / "f") == "ENOTDIR"
    assert err(os.rmdir, area / "d") == "ENOTEMPTY"
    assert err(os.rmdir, area / "e/.") == "EINVAL"
    assert err(os.rmdir, area / "missing") == "ENOENT"
    assert err(os.unlink, area / "missing") == "ENOENT"
    assert err(os.unlink, area / "f/x") == "ENOTDIR"
    assert err(os.mkdir, area / "d") == "EEXIST"
    assert err(os.mkdir, area / "f") == "EEXIST"
    assert err(os.mkdir, area / "f/x") == "ENOTDIR"
    assert err(os.mkdir, area / ("n" * 256)) == "ENAMETOOLONG"
    assert err(create, area / ("n" * 256)) == "ENAMETOOLONG"
    create(area / ("n" * 255))
    os.symlink("dangling", area / "l")
    assert err(os.mkdir, area / "l") == "EEXIST"
    assert err(os.rmdir, area / "l") == "ENOTDIR"
    os.unlink(area / "l")
    assert os.path.exists(area / "f")


def test_open_errors(area):
    create(area / "f")
    os.mkdir(area / "d")
    os.symlink("f", area / "l")
    os.symlink("nowhere", area / "dangling")
    excl = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    assert err(os.open, area / "f", excl) == "EEXIST"
    assert err(os.open, area / "d", excl) == "EEXIST"
    # O_EXCL does not follow a symlink, even a dangling one.
    assert err(os.open, area / "dangling", excl) == "EEXIST"
    assert not os.path.lexists(area / "nowhere")
    assert err(os.open, area / "l", os.O_RDONLY | os.O_NOFOLLOW) == "ELOOP"
    assert err(os.open, area / "f", os.O_RDONLY | os.O_DIRECTORY) == "ENOTDIR"
    assert err(os.open, area / "d", os.O_WRONLY) == "EISDIR"
    assert err(os.open, area / "d", os.O_RDWR) == "EISDIR"
    assert err(os.open, area / "f/x", os.O_RDONLY) == "ENOTDIR"
    assert err(os.open, area / "missing", os.O_RDONLY) == "ENOENT"
    # Without O_EXCL a create through a dangling symlink makes its target.
    os.close(os.open(area / "dangling", os.O_CREAT | os.O_WRONLY, 0o644))
    assert os.path.isfile(area / "nowhere")


def test_truncate_chmod_chown_errors(area):
    make(area / "f", 0o644, USER, b"0123456789")
    os.mkdir(area / "d")
    assert err(os.truncate, area / "d", 0) == "EISDIR"
    assert err(os.truncate, area / "f", -1) == "EINVAL"
    assert err(os.truncate, area / "missing", 0) == "ENOENT"
    assert err(os.truncate, area / "f/x", 0) == "ENOTDIR"
    assert err_as(OTHER, os.truncate, area / "f", 0) == "EACCES"
    fd = os.open(area / "f", os.O_RDONLY)
    try:
        assert err(os.ftruncate, fd, 0) == "EINVAL"
    finally:
        os.close(fd)
    assert read(area / "f") == b"0123456789"
    for op in (lambda p: os.chmod(p, 0o600), lambda p: os.chown(p, 1, 1)):
        assert err(op, area / "missing") == "ENOENT"
        assert err(op, area / "f/x") == "ENOTDIR"
        assert err(op, area / ("n" * 256)) == "ENAMETOOLONG"


def test_symlink_rules(area):
    create(area / "f")
    os.symlink("f", area / "l")
    assert os.readlink(area / "l") == "f"
    assert err(os.symlink, "x", area / "l") == "EEXIST"
    assert err(os.symlink, "x", area / "f") == "EEXIST"
    assert err(os.readlink, area / "f") == "EINVAL"
    assert err(os.readlink, area / "missing") == "ENOENT"
    # Any bytes but NUL make a target, up to PATH_MAX - 1 of them.
    long_target = (("x" * 255 + "/") * 16)[:4095]
    os.symlink(long_target, area / "long")
    assert os.readlink(area / "long") == long_target
    assert err(os.symlink, long_target + "x", area / "toolong") == "ENAMETOOLONG"
    os.symlink("a b\tc", area / "odd")
    assert os.readlink(area / "odd") == "a b\tc"
    # A loop is found when followed, not when made.
    os.symlink("loop2", area / "loop1")
    os.symlink("loop1", area / "loop2")
    assert err(os.stat, area / "loop1") == "ELOOP"
    # Removing a link leaves its target.
    os.unlink(area / "l")
    assert os.path.isfile(area / "f")


def test_o_append_writes_at_the_end(area):
    make(area / "f", 0o666, USER, b"start")

    def work(p):
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b"-one")
            os.pwrite(fd, b"-two", 0)  # Linux appends despite the offset.
        finally:
            os.close(fd)
    as_(OTHER, work, area / "f")
    assert read(area / "f") == b"start-one-two"


# --------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------

def test_creating_sets_the_new_times_and_updates_the_parent(area):
    os.mkdir(area / "p")
    makers = {
        "create": lambda p: create(p),
        "mkdir": lambda p: os.mkdir(p),
        "mkfifo": lambda p: os.mkfifo(p),
        "mknod": lambda p: os.mknod(p, stat.S_IFSOCK | 0o644),
        "symlink": lambda p: os.symlink("target", p),
    }
    for what, fn in makers.items():
        before = settle(area / "p")
        fn(area / f"p/{what}")
        assert changed(before, area / "p") == {"m", "c"}, what
        a, m, c = times(area / f"p/{what}")
        assert a == m == c, what
        # The new object's times are the parent's new mtime's moment or later.
        assert m >= before[area / "p"][M], what


def test_unlink_and_rmdir_update_the_parent_and_the_remaining_links(area):
    os.mkdir(area / "p")
    create(area / "p/f")
    os.link(area / "p/f", area / "g")
    os.mkdir(area / "p/d")
    before = settle(area / "p", area / "g")
    os.unlink(area / "p/f")
    assert changed(before, area / "p") == {"m", "c"}
    # One link fewer is a change of the file's status.
    assert changed(before, area / "g") == {"c"}
    before = settle(area / "p")
    os.rmdir(area / "p/d")
    assert changed(before, area / "p") == {"m", "c"}


def test_rename_updates_both_parents_and_the_ctime_of_what_moved(area):
    os.mkdir(area / "a")
    os.mkdir(area / "b")
    create(area / "a/f")
    os.mkdir(area / "a/d")
    before = settle(area / "a", area / "b", area / "a/f")
    os.rename(area / "a/f", area / "b/f")
    assert changed(before, area / "a") == {"m", "c"}
    assert changed(before, area / "b") == {"m", "c"}
    assert changed(before, area / "b/f", was=area / "a/f") == {"c"}
    # Within one directory: that one.
    before = settle(area / "b", area / "a")
    os.rename(area / "b/f", area / "b/g")
    assert changed(before, area / "b") == {"m", "c"}
    assert changed(before, area / "a") == set()
    # Over an existing name: the replaced file loses a link.
    create(area / "b/h")
    os.link(area / "b/h", area / "keep")
    before = settle(area / "b", area / "keep")
    os.rename(area / "b/g", area / "b/h")
    assert changed(before, area / "b") == {"m", "c"}
    assert changed(before, area / "keep") == {"c"}
    # A directory to another parent.
    before = settle(area / "a", area / "b")
    os.rename(area / "a/d", area / "b/d")
    assert changed(before, area / "a") == {"m", "c"}
    assert changed(before, area / "b") == {"m", "c"}


def test_link_updates_the_file_ctime_and_the_parent(area):
    create(area / "f")
    os.mkdir(area / "p")
    before = settle(area / "f", area / "p")
    os.link(area / "f", area / "p/g")
    assert changed(before, area / "f") == {"c"}
    assert changed(before, area / "p") == {"m", "c"}


def test_chmod_and_chown_update_ctime_only(area):
    make(area / "f", 0o644, USER, b"data")
    os.symlink("f", area / "l")
    for what, op, target in (
            ("chmod", lambda: os.chmod(area / "f", 0o600), "f"),
            ("chmod by the owner", lambda: as_(USER, os.chmod, area / "f", 0o640), "f"),
            ("chown", lambda: os.chown(area / "f", OTHER_UID, -1), "f"),
            ("chgrp", lambda: os.chown(area / "f", -1, GROUP), "f"),
            ("lchown", lambda: os.lchown(area / "l", OTHER_UID, OTHER_GID), "l")):
        before = settle(area / "f", area / "l", area.path)
        op()
        assert changed(before, area / target) == {"c"}, what
        assert changed(before, area / ("l" if target == "f" else "f")) == set(), what
        assert changed(before, area.path) == set(), what


def test_write_and_truncate_update_mtime_and_ctime(area):
    make(area / "f", 0o666, USER, b"0123456789")
    ops = {
        "write": lambda: append(area / "f", b"more"),
        "pwrite": lambda: as_(OTHER, lambda p: os.pwrite(os.open(p, os.O_WRONLY), b"x", 2),
                              area / "f"),
        "truncate": lambda: os.truncate(area / "f", 3),
        "extend": lambda: os.truncate(area / "f", 100),
        "ftruncate": lambda: as_(USER, lambda p: os.truncate(os.open(p, os.O_RDWR), 1),
                                 area / "f"),
        "O_TRUNC": lambda: os.close(os.open(area / "f", os.O_WRONLY | os.O_TRUNC)),
    }
    for what, op in ops.items():
        before = settle(area / "f", area.path)
        op()
        assert changed(before, area / "f") == {"m", "c"}, what
        assert changed(before, area.path) == set(), what


def test_read_updates_atime_when_it_is_older_than_mtime(area):
    make(area / "f", 0o644, USER, b"data")
    os.utime(area / "f", ns=(1_000_000_000, 2_000_000_000))
    before = settle(area / "f")
    assert read(area / "f") == b"data"
    assert changed(before, area / "f") == {"a"}
    # A directory listed.
    os.mkdir(area / "d")
    os.utime(area / "d", ns=(1_000_000_000, 2_000_000_000))
    before = settle(area / "d")
    os.listdir(area / "d")
    assert changed(before, area / "d") == {"a"}


def test_utimensat_now_omit_and_explicit(area):
    make(area / "f", 0o644, USER)
    os.utime(area / "f", ns=(1_000_000_000, 2_000_000_000))
    before = settle(area / "f")
    utimensat(area / "f", UTIME_NOW, UTIME_OMIT)
    a, m, c = times(area / "f")
    assert m == 2_000_000_000 and a > before[area / "f"][A] and c > before[area / "f"][C]
    before = settle(area / "f")
    utimensat(area / "f", UTIME_OMIT, UTIME_NOW)
    assert changed(before, area / "f") == {"m", "c"}
    assert times(area / "f")[A] == before[area / "f"][A]
    # Both omitted: nothing at all changes.
    before = settle(area / "f")
    utimensat(area / "f", UTIME_OMIT, UTIME_OMIT)
    assert changed(before, area / "f") == set()
    # Explicit values, nanoseconds included; ctime is now.
    before = settle(area / "f")
    utimensat(area / "f", (1_234_567_890, 123_456_789), (1_111_111_111, 999_999_999))
    a, m, c = times(area / "f")
    assert (a, m) == (1_234_567_890_123_456_789, 1_111_111_111_999_999_999)
    assert c > before[area / "f"][C]


def test_utimensat_permissions(area):
    make(area / "w", 0o666, USER)
    make(area / "r", 0o644, USER)
    explicit = ((1_000_000_000, 0), (1_000_000_000, 0))
    # The owner may set any times.
    as_(USER, utimensat, area / "r", *explicit)
    assert times(area / "r")[:2] == (10**18, 10**18)
    as_(USER, utimensat, area / "r", UTIME_NOW, UTIME_OMIT)
    assert times(area / "r")[A] > 10**18 and times(area / "r")[M] == 10**18
    # Others with write permission may set both to now, nothing else.
    as_(OTHER, utimensat, area / "w", UTIME_NOW, UTIME_NOW)
    as_(OTHER, os.utime, area / "w")
    assert err_as(OTHER, utimensat, area / "w", *explicit) == "EPERM"
    assert err_as(OTHER, utimensat, area / "w", UTIME_NOW, UTIME_OMIT) == "EPERM"
    # Without write permission, not even that.
    assert err_as(OTHER, utimensat, area / "r", UTIME_NOW, UTIME_NOW) == "EACCES"
    assert err_as(OTHER, os.utime, area / "r") == "EACCES"
    assert err_as(OTHER, utimensat, area / "r", *explicit) == "EPERM"
    # Root may do anything.
    utimensat(area / "r", (7, 0), (8, 0))
    assert times(area / "r")[:2] == (7 * 10**9, 8 * 10**9)
    # The refused calls changed nothing.
    before = settle(area / "r")
    for t in ((UTIME_NOW, UTIME_NOW), explicit, (UTIME_OMIT, UTIME_NOW)):
        assert err_as(OTHER, utimensat, area / "r", *t) in ("EACCES", "EPERM")
    assert changed(before, area / "r") == set()

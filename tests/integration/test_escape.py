"""
Containment: nothing done through a volume's mount reaches outside its
backing directory. Symlinks are stored, never followed by the daemon; the
kernel resolves them in the client's namespace only. Volumes are separate
filesystems, device nodes and setuid bits give nothing.
"""

import ctypes
import ctypes.util
import errno
import os
import shutil
import stat
import subprocess

import pytest

from conftest import (MiB, NOBODY_GID, NOBODY_UID, PYTHON, mounts_below, run, run_as,
                      tree_listing)

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def two_volumes(d):
    a = d.create("a", 16 * MiB)
    b = d.create("b", 16 * MiB)
    return a, b


def test_symlinks_are_stored_not_resolved(daemon):
    d = daemon
    vol = d.create("links", 16 * MiB)
    targets = {"abs": "/etc/passwd", "up": "../../../../../etc/passwd",
               "updir": "../..", "pool": os.path.join(d.pool, "carvefs.meta")}
    for name, target in targets.items():
        os.symlink(target, f"{vol}/{name}")
        assert os.readlink(f"{vol}/{name}") == target
        # Stored as a symlink with the same text in the backing directory.
        assert os.readlink(f"{d.backing('links')}/{name}") == target
        assert stat.S_ISLNK(os.lstat(f"{vol}/{name}").st_mode)
        with pytest.raises(OSError) as ei:
            os.open(f"{vol}/{name}", os.O_RDONLY | os.O_NOFOLLOW)
        assert ei.value.errno == errno.ELOOP, name
    # Followed, they are resolved by the kernel from the mount, in the
    # caller's namespace: "../.." from the volume's root is the directory
    # above the discovery dir, not anything near the backing directory.
    assert sorted(os.listdir(f"{vol}/updir")) == \
        sorted(os.listdir(os.path.dirname(d.discovery)))


def test_dotdot_of_a_mount_is_the_discovery_dir(daemon):
    d = daemon
    vol = d.create("dots", 16 * MiB)
    up = os.stat(f"{vol}/..")
    disc = os.stat(d.discovery)
    assert (up.st_dev, up.st_ino) == (disc.st_dev, disc.st_ino)
    vols = os.stat(os.path.join(d.pool, "volumes"))
    assert (up.st_dev, up.st_ino) != (vols.st_dev, vols.st_ino)
    os.mkdir(f"{vol}/sub")
    assert os.stat(f"{vol}/sub/../..").st_ino == disc.st_ino
    assert sorted(os.listdir(f"{vol}/sub/../..")) == sorted(os.listdir(d.discovery))


def test_no_link_or_rename_across_volumes(daemon):
    d = daemon
    a, b = two_volumes(d)
    with open(f"{a}/f", "w") as f:
        f.write("data")
    os.mkdir(f"{a}/dir")
    with pytest.raises(OSError) as ei:
        os.link(f"{a}/f", f"{b}/f")
    assert ei.value.errno == errno.EXDEV
    for src in ("f", "dir"):
        with pytest.raises(OSError) as ei:
            os.rename(f"{a}/{src}", f"{b}/{src}")
        assert ei.value.errno == errno.EXDEV
    assert os.listdir(b) == []
    assert os.listdir(d.backing("b")) == []
    assert sorted(os.listdir(a)) == ["dir", "f"]


def test_planted_symlink_in_backing_dir(daemon):
    """A symlink placed in volume a's backing directory (by someone on the
    host) pointing at volume b's backing directory: creating at that name
    through the mount with O_NOFOLLOW must not create anything in b."""
    d = daemon
    a, b = two_volumes(d)
    back_a, back_b = d.backing("a"), d.backing("b")
    before_b = tree_listing(back_b)

    # Known to the kernel before it is planted: a cached negative entry
    # makes the kernel send CREATE for the name, so the daemon itself must
    # refuse to follow it.
    for name in ("evil-file", "evil-dir"):
        assert not os.path.exists(f"{a}/{name}")
    os.symlink(os.path.join(back_b, "planted"), os.path.join(back_a, "evil-file"))
    os.symlink(back_b, os.path.join(back_a, "evil-dir"))

    outcomes = {}
    for name in ("evil-file", "evil-dir"):
        try:
            fd = os.open(f"{a}/{name}", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            outcomes[name] = e.errno
        else:
            os.write(fd, b"escaped")
            os.close(fd)
            outcomes[name] = 0
        try:
            os.mkdir(f"{a}/{name}")
        except OSError:
            pass
    print(f"create at planted names: {outcomes}")
    assert not os.path.lexists(os.path.join(back_b, "planted")), \
        f"a create through volume a wrote into volume b's backing dir ({outcomes})"
    assert tree_listing(back_b) == before_b
    assert os.listdir(b) == []
    # The planted links are still just links, seen as such through the mount.
    assert os.readlink(os.path.join(back_a, "evil-dir")) == back_b
    assert stat.S_ISLNK(os.lstat(f"{a}/evil-dir").st_mode)
    assert stat.S_ISLNK(os.lstat(f"{a}/evil-file").st_mode)


def test_mknod_of_a_device_is_refused(daemon):
    d = daemon
    vol = d.create("dev", 16 * MiB)
    for kind, dev in ((stat.S_IFCHR, os.makedev(1, 3)), (stat.S_IFBLK, os.makedev(7, 0))):
        with pytest.raises(OSError) as ei:
            os.mknod(f"{vol}/node", kind | 0o666, dev)
        assert ei.value.errno == errno.EPERM, ei.value
        assert not os.path.lexists(f"{vol}/node")
        assert not os.path.lexists(f"{d.backing('dev')}/node")
    # FIFOs and sockets are fine.
    os.mkfifo(f"{vol}/fifo")
    os.mknod(f"{vol}/sock", stat.S_IFSOCK | 0o600)
    assert stat.S_ISFIFO(os.lstat(f"{vol}/fifo").st_mode)


def test_setuid_binary_gains_nothing(daemon):
    d = daemon
    vol = d.create("suid", 16 * MiB)
    shutil.copy("/usr/bin/id", f"{vol}/id")
    os.chmod(f"{vol}/id", 0o4755)
    assert os.stat(f"{vol}/id").st_mode & stat.S_ISUID
    assert "nosuid" in [m for m in d.volume_mounts("suid")][0]["options"].split(",")
    p = run_as(NOBODY_UID, NOBODY_GID, [f"{vol}/id", "-u"])
    assert p.stdout.strip() == str(NOBODY_UID), f"setuid root binary ran as {p.stdout}"
    p = run_as(NOBODY_UID, NOBODY_GID, [f"{vol}/id", "-ur"])
    assert p.stdout.strip() == str(NOBODY_UID)


RENAMER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
back, seconds = sys.argv[1], float(sys.argv[2])
d, s = os.path.join(back, "d"), os.path.join(back, "s")
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    # RENAME_EXCHANGE: "d" is a real directory and a symlink out by turns.
    if libc.renameat2(-100, d.encode(), -100, s.encode(), 2) != 0:
        # Plain renames when exchange is refused: d -> t, s -> d, t -> s.
        t = os.path.join(back, "t")
        os.rename(d, t); os.rename(s, d); os.rename(t, s)
    n += 1
print(n, flush=True)
"""

CREATOR = r"""
import os, sys, time
mnt, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
made = tried = 0
i = 0
while time.monotonic() < end:
    i += 1
    for path, mk in ((f"{mnt}/d/f{i}", lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))),
                     (f"{mnt}/d/m{i}", os.mkdir),
                     (f"{mnt}/s/g{i}", lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)))):
        tried += 1
        try:
            mk(path)
            made += 1
        except OSError:
            pass
print(made, tried, flush=True)
"""


@pytest.mark.timeout_seconds(90)
def test_rename_race_stays_inside(daemon, work):
    """The host swaps a directory and a symlink pointing out of the volume
    while the volume's user creates files below that name: nothing is ever
    created outside the volume's backing directory.

    The symlink is relative and resolves differently on each side: from the
    backing directory, ../../sentinel is <pool>/sentinel; from the mount,
    ../../sentinel is a path next to the pool that does not exist. So a
    file in <pool>/sentinel can only come from the daemon following it."""
    d = daemon
    a, b = two_volumes(d)
    back = d.backing("a")
    sentinel = os.path.join(d.pool, "sentinel")
    os.mkdir(sentinel)
    client_side = os.path.normpath(os.path.join(a, "../../sentinel"))
    assert not os.path.exists(client_side)
    os.mkdir(os.path.join(back, "d"))
    os.symlink("../../sentinel", os.path.join(back, "s"))
    pool_before = sorted(os.listdir(d.pool))
    b_before = tree_listing(d.backing("b"))

    seconds = "4"
    renamer = work.spawn([PYTHON, "-c", RENAMER, back, seconds], stdout=subprocess.PIPE,
                         text=True)
    creator = work.spawn([PYTHON, "-c", CREATOR, a, seconds], stdout=subprocess.PIPE,
                         text=True)
    r_out = renamer.communicate(timeout=60)[0]
    c_out = creator.communicate(timeout=60)[0]
    assert renamer.returncode == 0 and creator.returncode == 0, (r_out, c_out)
    swaps = int(r_out.split()[0])
    made, tried = map(int, c_out.split())
    print(f"{swaps} swaps, {made} of {tried} creates succeeded")
    d.check_alive()
    assert swaps > 100 and tried > 100

    assert os.listdir(sentinel) == [], f"created outside the volume: {os.listdir(sentinel)}"
    assert not os.path.exists(client_side)
    assert sorted(os.listdir(d.pool)) == pool_before
    assert tree_listing(d.backing("b")) == b_before
    assert sorted(os.listdir(os.path.join(d.pool, "volumes"))) == ["a", "b"]
    # Whatever was created is inside a's backing directory.
    found = sum(len(files) + len(dirs) for _, dirs, files in os.walk(back))
    assert found >= 2


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
@pytest.mark.parametrize("verb", ["wipe", "delete"])
def test_wipe_and_delete_stay_on_the_volume(daemon, work, verb, kind):
    """A filesystem mounted inside a backing directory (by someone on the
    host) is not the volume's: wiping or deleting the volume leaves its
    files alone, whether it is another filesystem (tmpfs) or a bind mount of
    a directory of the pool's own filesystem (same st_dev)."""
    d = daemon
    vol = d.create("v", 16 * MiB)
    os.makedirs(f"{vol}/own/deeper")
    with open(f"{vol}/own/deeper/f", "w") as f:
        f.write("volume data")
    mountpoint = os.path.join(d.backing("v"), "own", "mounted")
    os.mkdir(mountpoint)
    if kind == "bind":
        outside = os.path.join(work.path, "outside")
        os.mkdir(outside)
        work.bind(outside, mountpoint)
    else:
        outside = mountpoint
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "carvefs-test", mountpoint])
    os.makedirs(f"{mountpoint}/keep")
    with open(f"{mountpoint}/keep/precious", "w") as f:
        f.write("not the volume's")
    before = tree_listing(mountpoint)
    p = d.ctl(verb, "v", *(["--force"] if verb == "delete" else []), check=False)
    d.check_alive()
    # Wherever the mount is now (delete moves the backing directory away).
    where = [m["target"] for m in mounts_below(work.path)
             if m["target"].endswith("/own/mounted")]
    assert len(where) == 1, where
    assert tree_listing(where[0]) == before, \
        f"{verb} deleted files of a {kind} mount inside the volume (carvectl: {p.stderr.strip()})"
    if p.returncode == 0:
        if verb == "delete":
            d.wait_unmounted("v")
            assert d.list() == []
    else:
        assert p.returncode == 1 and p.stderr.startswith("carvectl: "), p.stderr
    # The volume's own files are gone either way.
    assert not os.path.exists(f"{d.backing('v')}/own/deeper")

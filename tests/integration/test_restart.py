"""
Restarts: volumes and their data survive a clean stop and a SIGKILL; after
a SIGKILL the stale mounts are detached and usage is recounted; a corrupt
table falls back to the previous copy, two corrupt copies stop the daemon
without touching the pool; a pool is served by one daemon at a time.
"""

import errno
import json
import os
import resource
import signal
import subprocess
import time

import pytest

from conftest import (CARVECTL, CARVEFS, MiB, mounts_below, tree_listing, tree_usage,
                      wait_until)

VOLUMES = {
    # name: (size, extra create args, expected uid, gid, mode)
    "alpha": (32 * MiB, ["--uid", "1000", "--gid", "1000", "--mode", "0750"], 1000, 1000, 0o750),
    "beta": (48 * MiB, ["--mode", "1777", "--inodes", "100"], 0, 0, 0o1777),
}


def populate(d):
    sums = {}
    for name, (size, args, *_rest) in VOLUMES.items():
        vol = d.create(name, size, *args)
        os.makedirs(f"{vol}/sub/deeper")
        for i, n in enumerate((1, 3 * MiB + 17, 200 * 1024)):
            path = f"{vol}/sub/deeper/file{i}" if i == 1 else f"{vol}/file{i}"
            with open(path, "wb") as f:
                f.write(os.urandom(n))
        os.symlink("file0", f"{vol}/link")
        os.link(f"{vol}/file0", f"{vol}/hard")
        sums[name] = snapshot(vol)
    return sums


def snapshot(vol):
    return tree_listing(vol)


def check_volumes(d, sums):
    listed = {v["name"]: v for v in d.list()}
    assert sorted(listed) == sorted(VOLUMES)
    for name, (size, _args, uid, gid, mode) in VOLUMES.items():
        v = listed[name]
        assert v["state"] == "mounted", v
        assert v["capacity_bytes"] == size
        assert (v["uid"], v["gid"], v["mode"]) == (uid, gid, mode), v
        d.wait_mounted(name)
        assert len(d.volume_mounts(name)) == 1, f"{name}: {d.volume_mounts(name)}"
        st = os.stat(d.mountpoint(name))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode)
        assert snapshot(d.mountpoint(name)) == sums[name], f"{name}: data changed"
        walked, objects = tree_usage(d.backing(name))
        assert v["used_bytes"] == walked, f"{name}: used {v['used_bytes']} != walk {walked}"
        assert v["used_inodes"] == objects, f"{name}: inodes {v['used_inodes']} != {objects}"


def test_clean_restart_keeps_everything(daemon):
    d = daemon
    sums = populate(d)
    d.stop()
    d.start()
    check_volumes(d, sums)
    assert "usage recounted" not in d.log_since_start(), \
        "usage was recounted after a clean stop"


def test_clean_stop_leaves_no_mountpoint_to_write_into(daemon):
    """A stopped daemon's mountpoints are gone, not empty directories on the
    host's disk that a kubelet could bind-mount and fill in its place."""
    d = daemon
    populate(d)
    d.stop()
    assert sorted(os.listdir(d.discovery)) == []
    d.start()
    assert sorted(os.listdir(d.discovery)) == sorted(VOLUMES)
    for name in VOLUMES:
        assert os.path.ismount(d.mountpoint(name)), name


def read_table(path):
    with open(path, "rb") as f:
        data = f.read()
    header, _, body = data.partition(b"\n")
    magic, version, length, digest = header.split()
    assert (magic, version) == (b"CARVEFS-TABLE", b"1"), header
    assert int(length) == len(body), f"header says {length} bytes, {len(body)} follow"
    assert len(digest) == 16 and int(digest, 16) >= 0
    return json.loads(body)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_marks_the_table_clean(daemon, sig):
    d = daemon
    populate(d)
    table = read_table(os.path.join(d.pool, "carvefs.meta"))
    d.check_alive()
    d._expect_exit = True
    d.proc.send_signal(sig)
    assert d.proc.wait(timeout=60) == 0, d.log_tail()
    assert not [m for m in mounts_below(d.discovery) if m["fstype"] == "fuse.carvefs"]
    table = read_table(os.path.join(d.pool, "carvefs.meta"))
    vols = {v["name"]: v for v in table["volumes"]}
    assert sorted(vols) == sorted(VOLUMES)
    for name, v in vols.items():
        assert v["clean"] is True, v
        assert (v["used_bytes"], v["used_inodes"]) == tree_usage(d.backing(name)), v
    d.start()
    assert "usage recounted" not in d.log_since_start()
    # While it runs, the table says the usage is not to be trusted.
    for v in read_table(os.path.join(d.pool, "carvefs.meta"))["volumes"]:
        assert v["clean"] is False, v


def test_background_start(work):
    """Without --foreground the parent returns once the volumes are served."""
    d = work.daemon()
    d.start()
    d.create("bg", 16 * MiB)
    with open(f"{d.mountpoint('bg')}/f", "w") as f:
        f.write("kept")
    d.stop()
    # Its output goes to the log file: a pipe would stay open in the daemon.
    with open(d.log_path, "a") as log:
        rc = subprocess.run([CARVEFS, "--pool", d.pool, "--discovery-dir", d.discovery,
                             "--socket", d.socket], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, timeout=60).returncode
    # The daemon is not our child: find it by its unique socket argument.
    def daemon_pids():
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0] == CARVEFS.encode() and d.socket.encode() in argv:
                pids.append(int(pid))
        return pids
    pids = daemon_pids()
    try:
        assert rc == 0, d.log_tail()
        assert len(pids) == 1, pids
        # Serving already: no waiting.
        assert d.volume_mounts("bg"), "the parent exited before the volumes were mounted"
        with open(f"{d.mountpoint('bg')}/f") as f:
            assert f.read() == "kept"
        c = subprocess.run([CARVECTL, "--socket", d.socket, "list"], stdout=subprocess.PIPE,
                           text=True)
        assert c.returncode == 0 and "bg" in c.stdout
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not daemon_pids(), 60, "the background daemon to exit")
    assert not d.volume_mounts("bg")


def test_sigkill_restart_detaches_and_recounts(daemon):
    """Without a keeper (--keeper off) a crash ends the mounts; the next
    start detaches them and recounts usage."""
    d = daemon
    d.stop()
    d.start(["--keeper", "off"])
    sums = populate(d)
    d.kill9()
    for name in VOLUMES:
        # The mount is still in the table, but dead.
        assert d.volume_mounts(name), "the kernel dropped the mount on SIGKILL?"
        with pytest.raises(OSError) as ei:
            os.stat(d.mountpoint(name))
        # ENOTCONN; newer kernels say ECONNABORTED for a daemon that died.
        assert ei.value.errno in (errno.ENOTCONN, errno.ECONNABORTED), ei.value
    # Change the backing directory behind the daemon's back, so that only a
    # real walk gets the usage right.
    with open(os.path.join(d.backing("alpha"), "added-offline"), "wb") as f:
        f.write(os.urandom(5 * MiB))
    os.unlink(os.path.join(d.backing("beta"), "sub", "deeper", "file1"))
    sums["alpha"] = None
    sums["beta"] = None
    d.start()
    log = d.log_since_start()
    assert "stale" in log, log
    assert "usage recounted" in log, log
    sums = {name: snapshot(d.mountpoint(name)) for name in VOLUMES}
    assert "added-offline" in sums["alpha"]
    check_volumes(d, sums)
    # The recount is what capacity enforcement runs on.
    s = d.stats("alpha")
    assert s["used_bytes"] >= 5 * MiB + 3 * MiB


def flip_json_byte(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header_end = data.index(b"\n") + 1
    assert data[:header_end].startswith(b"CARVEFS-TABLE 1 ")
    # A digit of a capacity: still valid JSON, so only the checksum tells.
    i = data.index(b'"capacity_bytes": ', header_end) + len(b'"capacity_bytes": ')
    data[i] = ord("9") if data[i] != ord("9") else ord("8")
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_corrupt_table_falls_back_to_previous(daemon):
    d = daemon
    sums = populate(d)
    # Another save, so that the previous copy already holds both volumes.
    d.ctl("resize", "alpha", "--size", VOLUMES["alpha"][0])
    d.stop()
    meta = os.path.join(d.pool, "carvefs.meta")
    assert os.path.exists(meta + ".prev")
    flip_json_byte(meta)
    d.start()
    log = d.log_since_start()
    assert meta in log, f"no warning naming {meta}:\n{log}"
    assert "warn" in log.lower()
    check_volumes(d, sums)


def test_both_tables_corrupt_refuses_to_start(daemon):
    d = daemon
    populate(d)
    d.ctl("resize", "alpha", "--size", VOLUMES["alpha"][0])
    d.stop()
    meta = os.path.join(d.pool, "carvefs.meta")
    flip_json_byte(meta)
    flip_json_byte(meta + ".prev")
    before = tree_listing(d.pool)
    rc, log = d.start_expect_failure()
    assert rc != 0
    assert meta in log, f"the error does not name the table:\n{log}"
    assert not [m for m in os.listdir(d.discovery) if os.path.ismount(
        os.path.join(d.discovery, m))]
    assert tree_listing(d.pool) == before, "a daemon that refused to start changed the pool"


def test_second_daemon_on_the_same_pool_refuses(daemon, new_daemon, work):
    d = daemon
    sums = {"solo": None}
    vol = d.create("solo", 16 * MiB)
    with open(f"{vol}/f", "wb") as f:
        f.write(os.urandom(MiB))
    sums = snapshot(vol)
    other = new_daemon(mnt=os.path.join(work.path, "mnt2"),
                       sock=os.path.join(work.run, "sock2"))
    rc, log = other.start_expect_failure()
    assert rc != 0
    assert "already served" in log, log
    # It asked for a hand-over on its own socket, where nothing answers.
    assert "hand-over socket" in log and "does not answer" in log, log
    assert not os.path.exists(other.socket)
    # The first one is unharmed.
    assert [v["name"] for v in d.list()] == ["solo"]
    assert snapshot(vol) == sums
    assert len(d.volume_mounts("solo")) == 1


@pytest.mark.timeout_seconds(180)
def test_restart_time_after_sigkill_with_many_files(daemon, record_property):
    d = daemon
    files = 10_000
    vol = d.create("many", 256 * MiB, "--inodes", files + 100)
    for i in range(100):
        os.mkdir(f"{vol}/d{i:02}")
    for i in range(files - 100):
        with open(f"{vol}/d{i % 100:02}/f{i}", "wb") as f:
            f.write(b"x" * (i % 7))
    expected = tree_usage(d.backing("many"))
    assert expected[1] == files
    d.kill9()
    t0 = time.monotonic()
    d.start()
    d.wait_mounted("many")
    elapsed = time.monotonic() - t0
    # Served at once; the count is made exact by a walk beside the requests.
    wait_until(lambda: "usage recounted while serving" in d.log_since_start(), 60,
               "the recount to end")
    s = d.stats("many")
    assert (s["used_bytes"], s["used_inodes"]) == expected
    print(f"\nrestart after SIGKILL with {files} files in a volume: {elapsed:.3f} s")
    record_property("restart_after_sigkill_10000_files_seconds", round(elapsed, 3))


def test_daemon_raises_its_open_file_limit(daemon):
    """Each inode the kernel knows holds an fd in the daemon: its limit is
    the kernel's fs.nr_open, not the few thousand a shell gives it, or a
    volume with that many files in use could not even unlink."""
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    with open(f"/proc/{daemon.proc.pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    soft, hard = (int(x) for x in line.split()[3:5])
    with open(f"/proc/{daemon.proc.pid}/status") as f:
        caps = int(next(l for l in f if l.startswith("CapEff")).split()[1], 16)
    if caps & (1 << 24):  # CAP_SYS_RESOURCE: it may go up to nr_open
        assert soft == hard == nr_open, line
    else:
        # Without it, as in some containers, the hard limit it was given, and a warning.
        assert soft == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1], line
        if soft < 65536:
            assert "the open file limit is" in daemon.log(), daemon.log_tail()

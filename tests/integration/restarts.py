"""
What the tests of a daemon's restart (a hand-over to a successor, a SIGKILL
and the next start) run across it, and the checks afterwards: fio jobs with
verification (buffered, O_DIRECT and mmap), a metadata workload asserting
every result, readers queued behind an IO limit, a process holding an open
file, a working directory and a shared mapping; exact usage, mounts.
"""

import json
import os
import platform
import subprocess

from conftest import PYTHON, MiB, tree_usage, wait_until

FIO_WAIT = 120.0


def assert_mounted(d, names):
    for name in names:
        ms = d.volume_mounts(name)
        assert len(ms) == 1, f"{name}: {ms}"
        assert os.statvfs(d.mountpoint(name)).f_blocks > 0


def assert_exact_usage(d, name):
    s = d.stats(name)
    walked, objects = tree_usage(d.backing(name))
    assert (s["used_bytes"], s["used_inodes"]) == (walked, objects), (s, walked, objects)


def io_works(vol, name="probe"):
    path = os.path.join(vol, name)
    data = os.urandom(8192)
    with open(path, "wb") as f:
        f.write(data)
    with open(path, "rb") as f:
        assert f.read() == data
    os.unlink(path)


# --------------------------------------------------------------------------
# fio with verification
# --------------------------------------------------------------------------

FIO_WORKLOADS = {
    # name: fio arguments of the workload
    "buffered": ["--ioengine=psync"],
    "direct": ["--ioengine=psync", "--direct=1"],
    "mmap": ["--ioengine=mmap"],
}


def fio_argv(path, size, extra, rate_iops):
    # Every block written carries a checksum checked when read back; the
    # first error of any kind, a failed check included, ends the job.
    return ["fio", "--name=verify", f"--filename={path}", "--rw=randrw", "--bs=4k",
            f"--size={size}", "--iodepth=1", "--verify=crc32c", "--verify_backlog=64",
            "--verify_fatal=1", "--continue_on_error=none", f"--rate_iops={rate_iops}",
            "--output-format=json", *extra]


def fio_result(p, stopped=False):
    """The job of a finished fio run, checked: exit 0, no error, reads and
    writes done. stopped: the test ended it with SIGINT, after which fio
    reports as usual and exits 128."""
    out, err = p.communicate(timeout=FIO_WAIT)
    assert p.returncode == (128 if stopped else 0), \
        f"fio exited {p.returncode}: {err[-2000:]}\n{out[-2000:]}"
    job = json.loads(out[out.index("{"):])["jobs"][0]
    assert job["error"] == 0, job["error"]
    for d in ("read", "write"):
        assert job[d]["total_ios"] > 0, job[d]
    return job


def start_fio(work, d, volumes, size, rate_iops, extra=lambda name: ()):
    """Creates a volume per workload and starts its fio job (extra(name):
    more fio arguments) on a file of size MiB; returns {name: fio process}
    once every job has its file open."""
    procs = {}
    for name in volumes:
        d.create(name, "256Mi")
        # Laid out here rather than by fio, so that a restart right after
        # the start meets the verified IO rather than fio's layout.
        with open(os.path.join(d.mountpoint(name), "data"), "wb") as f:
            for _ in range(size):
                f.write(bytes(MiB))
    for name in volumes:
        procs[name] = work.spawn(
            fio_argv(os.path.join(d.mountpoint(name), "data"), f"{size}M", FIO_WORKLOADS[name],
                     rate_iops) + list(extra(name)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=work.path)  # fio leaves its verify state files there when stopped
    # Restart only once every job does IO.
    wait_until(lambda: all(holds_open(p, os.path.join(d.mountpoint(n), "data"))
                           for n, p in procs.items()), 30, "fio to open its files")
    return procs


def holds_open(p, path):
    """Whether process p or one of its children (fio's jobs) has path open."""
    pids = [p.pid]
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == p.pid:
                    pids.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    return True
            except OSError:
                continue
    return False


def latency_ms(job):
    """(max, p99) completion latency of reads and writes, in ms."""
    mx = max(job[d]["clat_ns"]["max"] for d in ("read", "write")) / 1e6
    p99 = max(job[d]["clat_ns"]["percentile"]["99.000000"] for d in ("read", "write")) / 1e6
    return round(mx, 2), round(p99, 2)


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------

# Creates, renames, links, unlinks and removes, asserting each result: a
# request answered twice, or not as it was done, shows as an error here.
# With a third argument it runs until that file exists (rounds is then 0).
METADATA = r"""
import errno, os, sys
root, rounds = sys.argv[1], int(sys.argv[2])
stop = sys.argv[3] if len(sys.argv) > 3 else None
i = 0
while i < rounds or (stop and not os.path.exists(stop)):
    d = os.path.join(root, f"d{i}")
    os.mkdir(d)
    with open(os.path.join(d, "a"), "wb") as f:
        f.write(b"x" * 5000)
    os.rename(os.path.join(d, "a"), os.path.join(d, "b"))
    os.link(os.path.join(d, "b"), os.path.join(d, "c"))
    assert os.stat(os.path.join(d, "b")).st_nlink == 2
    os.unlink(os.path.join(d, "b"))
    assert os.stat(os.path.join(d, "c")).st_nlink == 1
    with open(os.path.join(d, "c"), "rb") as f:
        assert f.read() == b"x" * 5000
    assert sorted(os.listdir(d)) == ["c"]
    os.unlink(os.path.join(d, "c"))
    try:
        os.unlink(os.path.join(d, "c"))
        raise AssertionError("a second unlink worked")
    except FileNotFoundError:
        pass
    os.rmdir(d)
    assert not os.path.exists(d)
    i += 1
print("ok", i, flush=True)
"""


def start_metadata(work, vol, rounds, stop=None):
    """Runs rounds of the metadata workload in the volume at vol, or with
    stop (a path outside the volume) as many as it does until stop exists."""
    return work.spawn([PYTHON, "-c", METADATA, vol, str(rounds), *([stop] if stop else [])],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def metadata_running(vol, p):
    """Whether the metadata workload got going (or ended already)."""
    return any(n.startswith("d") for n in os.listdir(vol)) or p.poll() is not None


def check_metadata(p, vol, rounds=None):
    """Checks that the workload ended well, after rounds rounds (None: any
    number but 0, when it ran until told to stop); returns that number."""
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    status, done = out.split()
    assert status == "ok", out
    assert int(done) == rounds if rounds is not None else int(done) > 0, out
    assert os.listdir(vol) == []
    return int(done)


# --------------------------------------------------------------------------
# Readers held back by an IO limit
# --------------------------------------------------------------------------

# Each reader opens its file (O_DIRECT: no page cache answers for the
# daemon), says so, then reads 4 KiB and prints when it got them.
READER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
print("open", flush=True)
sys.stdin.readline()
os.pread(fd, 4096, 0)
print("ok", time.monotonic_ns(), flush=True)
"""

PREAD = {"x86_64": 17, "aarch64": 67}


def queue_throttled_readers(work, d, vol, n):
    """Writes n files in the volume at vol, limits it to 5 read IOPS and
    starts a reader per file, released one after the other, each once the
    one before waits in pread: faster than the limit lets them through, so
    they queue in the daemon. Returns the readers, in release order."""
    nr = PREAD.get(platform.machine())
    assert nr is not None, f"no pread64 syscall number for {platform.machine()}"
    name = os.path.basename(vol)
    for i in range(n):
        with open(os.path.join(vol, f"f{i}"), "wb") as f:
            f.write(os.urandom(4096))
    d.ctl("set-limits", name, "--riops", "5", json=False)
    procs = []
    for i in range(n):
        p = work.spawn([PYTHON, "-c", READER, os.path.join(vol, f"f{i}")],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "open"
        procs.append(p)
    for i, p in enumerate(procs):
        p.stdin.write("go\n")
        p.stdin.flush()

        def waiting(p=p):
            if p.poll() is not None:
                return True  # served already
            try:
                with open(f"/proc/{p.pid}/syscall") as f:
                    return f.read().split()[0] == str(nr)
            except (OSError, IndexError):
                return True
        wait_until(waiting, 20, f"reader {i} to wait in pread")
    assert d.stats(name)["io"]["queue_depth"] > 0
    return procs


def served_order(procs):
    """Waits for every reader; returns their indices in the order they got
    their data (each must have got it)."""
    done = []
    for i, p in enumerate(procs):
        # communicate() would miss what readline() above buffered.
        p.wait(timeout=30)
        out, err = p.stdout.read(), p.stderr.read()
        assert p.returncode == 0 and out.startswith("ok"), f"reader {i}: {out} {err}"
        _, t_ns = out.split()
        done.append((int(t_ns), i))
    return [i for _, i in sorted(done)]


# --------------------------------------------------------------------------
# Open files, a working directory, a shared mapping
# --------------------------------------------------------------------------

# Holds an open file, a working directory, a shared mapping and a file
# unlinked while open in a volume; checks each of them once told to (after
# the restart). The unlinked file is "kept" (readable) or "lost" (argv[2]):
# its last link was the daemon's fd, so it is gone when the daemon is killed.
HOLDER = r"""
import errno, mmap, os, sys
vol, unlinked_after = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(vol, "wd/sub"))
os.chdir(os.path.join(vol, "wd"))
fd = os.open("open.bin", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"before-")
with open("mapped.bin", "wb") as f:
    f.write(b"\0" * 8192)
mf = open("mapped.bin", "r+b")
m = mmap.mmap(mf.fileno(), 8192)
m[0:6] = b"mapped"
unlinked = os.open("gone.bin", os.O_RDWR | os.O_CREAT, 0o644)
os.write(unlinked, b"still here")
os.unlink("gone.bin")
print("ready", flush=True)
sys.stdin.readline()
os.write(fd, b"after")
os.lseek(fd, 0, os.SEEK_SET)
assert os.read(fd, 100) == b"before-after", "open file"
assert sorted(os.listdir(".")) == ["mapped.bin", "open.bin", "sub"], os.listdir(".")
os.chdir("sub")
os.chdir("..")
m[6:12] = b"-again"
m.flush()
with open("mapped.bin", "rb") as f:
    assert f.read(12) == b"mapped-again", "mapping"
if unlinked_after == "kept":
    assert os.pread(unlinked, 100, 0) == b"still here", "unlinked file"
else:
    try:
        os.pread(unlinked, 100, 0)
        raise AssertionError("a file unlinked while open came back after a crash")
    except OSError as e:
        assert e.errno in (errno.EBADF, errno.ESTALE), e
os.close(fd)
print("ok", flush=True)
"""


def start_holder(work, vol, unlinked_after="kept"):
    """Starts the holder in the volume at vol; returns it once it holds everything."""
    p = work.spawn([PYTHON, "-c", HOLDER, vol, unlinked_after], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def check_holder(p, vol):
    """Tells the holder to use what it holds; checks that all of it worked."""
    p.stdin.write("go\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out.strip() == "ok"
    with open(os.path.join(vol, "wd/open.bin"), "rb") as f:
        assert f.read() == b"before-after"

"""
IO limits through the kernel: a limited volume is slower than an unlimited
one, set-limits applies to a live volume, limits survive a restart, queued
requests are answered in arrival order, and a stop with throttled requests
queued answers every one of them exactly once. The bounds are wide on
purpose: accuracy is measured by the benchmarks (bench/), not by tests.

Also the direct-IO data path the limits sit on: files opened with O_DIRECT
take parallel direct writes (FOPEN_PARALLEL_DIRECT_WRITES), so several
writers of one file reach the daemon at once; the data and the usage must
come out exact, and a write by a non-owner still clears setuid bits.
"""

import errno
import os
import platform
import stat
import subprocess
import time

import pytest

from conftest import MiB, PYTHON, USER_GID, USER_UID, py_as, tree_usage, wait_until


def timed_direct_writes(path, count, bs=4096):
    """Writes count blocks with O_DIRECT, one at a time; returns the seconds taken."""
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={bs}", f"count={count}",
                    "oflag=direct", "status=none"], check=True, timeout=120)
    return time.monotonic() - t0


def test_limited_volume_is_slower_and_set_limits_is_live(daemon):
    fast = daemon.create("fast", "64Mi")
    slow = daemon.create("slow", "64Mi", "--wiops", "200")
    # 300 writes at 200/s, after a burst of 0.1 s (20 ops): about 1.4 s.
    t_fast = timed_direct_writes(os.path.join(fast, "f"), 300)
    t_slow = timed_direct_writes(os.path.join(slow, "f"), 300)
    assert t_slow >= 1.0, f"300 writes at 200 IOPS took only {t_slow:.2f} s"
    assert t_slow > 2 * t_fast, (t_slow, t_fast)
    stats = daemon.stats("slow")
    assert stats["limits"]["wiops"] == 200
    assert stats["io"]["throttled_ns"] > 0

    # Lifting the limit on the live volume: no remount, and it is fast again.
    daemon.ctl("set-limits", "slow", "--wiops", "0", json=False)
    t_lifted = timed_direct_writes(os.path.join(slow, "g"), 300)
    assert t_lifted < t_slow / 2, (t_lifted, t_slow)
    # And a bandwidth limit set live applies at once: 2 MiB at 1 MiB/s.
    daemon.ctl("set-limits", "slow", "--wbps", "1Mi", json=False)
    t_bw = timed_direct_writes(os.path.join(slow, "h"), 32, bs=65536)
    assert t_bw >= 1.4, f"2 MiB at 1 MiB/s took only {t_bw:.2f} s"


def test_reads_are_limited_separately(daemon):
    mnt = daemon.create("reads", "64Mi", "--riops", "100")
    path = os.path.join(mnt, "data")
    # Writes are not limited by a read limit.
    assert timed_direct_writes(path, 200) < 1.5
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        import mmap
        buf = mmap.mmap(-1, 4096)
        for i in range(150):
            os.preadv(fd, [buf], i * 4096)
    finally:
        os.close(fd)
    elapsed = time.monotonic() - t0
    # 150 reads at 100/s after a burst of 10: about 1.4 s.
    assert elapsed >= 1.0, f"150 reads at 100 IOPS took only {elapsed:.2f} s"


def test_limits_survive_a_restart(daemon):
    mnt = daemon.create("kept", "64Mi", "--wiops", "150", "--rbps", "5Mi")
    daemon.stop()
    daemon.start()
    daemon.wait_mounted("kept")
    limits = daemon.stats("kept")["limits"]
    assert limits["wiops"] == 150 and limits["rbps"] == 5 * 1024 * 1024
    t = timed_direct_writes(os.path.join(mnt, "f"), 200)
    assert t >= 0.9, f"200 writes at 150 IOPS after a restart took only {t:.2f} s"


# One request per process, so that the test can see it wait in the daemon's
# queue (blocked in pread64/pwrite64) before it releases the next one. Says
# "ready" once the file is open, issues its request when a line arrives on
# stdin, then prints its outcome and when it got it.
ISSUER = r"""
import errno, mmap, os, sys, time
path, op = sys.argv[1], sys.argv[2]
buf = mmap.mmap(-1, 4096)
fd = os.open(path, (os.O_WRONLY if op == "w" else os.O_RDONLY) | os.O_DIRECT)
print("ready", flush=True)
sys.stdin.readline()
try:
    if op == "w":
        os.pwrite(fd, buf, 0)
    else:
        os.pread(fd, 4096, 0)
    result = "ok"
except OSError as e:
    result = errno.errorcode.get(e.errno, str(e.errno))
print(result, time.monotonic_ns(), flush=True)
"""

# pread64 and pwrite64, the calls the issuers wait in.
IO_SYSCALLS = {"x86_64": {"r": 17, "w": 18}, "aarch64": {"r": 67, "w": 68}}


def blocked_in(pid, nr):
    """Whether process pid waits in syscall nr; None once it has exited."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            field = f.read().split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return field == str(nr)


@pytest.mark.skipif(platform.machine() not in IO_SYSCALLS, reason="syscall numbers unknown")
def test_queued_requests_are_answered_in_arrival_order(daemon, work):
    mnt = daemon.create("fifo", "64Mi")
    n = 8  # four reads and four writes, interleaved
    for i in range(n):
        with open(os.path.join(mnt, f"f{i}"), "wb") as f:
            f.write(b"x" * 4096)
    # 2 IOPS: a token comes back every 500 ms, far longer than the poll
    # that releases the next issuer takes even on a loaded machine.
    daemon.ctl("set-limits", "fifo", "--riops", "2", "--wiops", "2", json=False)
    nrs = IO_SYSCALLS[platform.machine()]
    ops = ["w" if i % 2 == 0 else "r" for i in range(n)]
    # Every issuer is started and has its file open before the first request:
    # starting a Python process can take longer than a token takes to come
    # back on a loaded machine, and then nothing would queue.
    procs = [work.spawn([PYTHON, "-c", ISSUER, os.path.join(mnt, f"f{i}"), op],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i, op in enumerate(ops)]
    for i, p in enumerate(procs):
        assert p.stdout.readline().strip() == "ready", f"issuer {i} could not open its file"
    for i, (p, op) in enumerate(zip(procs, ops)):
        p.stdin.write("go\n")
        p.stdin.flush()
        # The next one goes only once this one waits in the daemon (or is done).
        wait_until(lambda: blocked_in(p.pid, nrs[op]) is not False or p.poll() is not None,
                   20, f"issuer {i} to wait for its {op}", check=daemon.check_alive)
    done = []
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=30)
        result, t_ns = out.split()
        assert result == "ok", f"issuer {i} ({ops[i]}): {result}"
        done.append((int(t_ns), i))
    assert daemon.stats("fifo")["io"]["throttled_ns"] > 0, "nothing was held back"
    for op in "rw":
        order = [i for _, i in sorted(done) if ops[i] == op]
        assert order == sorted(order), f"{op}: answered in order {order}, issued in index order"


# Many direct IOs of one file at once, one thread each; each thread prints
# one line: its index and "ok" or the errno name it got.
QUEUE_FILLER = r"""
import errno, mmap, os, sys, threading
path, writers, readers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
lock = threading.Lock()

def io(i):
    buf = mmap.mmap(-1, 4096)
    try:
        if i < writers:
            buf.write(b"%08d" % i * 512)
            os.pwrite(fd, buf, i * 4096)
        else:
            os.preadv(fd, [buf], (i - writers) * 4096)
        result = "ok"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    with lock:
        print(i, result, flush=True)

threads = [threading.Thread(target=io, args=(i,)) for i in range(writers + readers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_stop_with_throttled_requests_queued_answers_each_once(daemon, work):
    """A clean stop releases the queues unthrottled: every queued request is
    carried out and answered with its result. A request the kernel had not
    yet handed to the daemon when the connection went away fails with
    ENOTCONN (or ECONNABORTED); nothing is answered twice, nothing hangs,
    and a write answered "ok" is on the disk."""
    mnt = daemon.create("queued", "64Mi")
    path = os.path.join(mnt, "data")
    writers, readers = 12, 4
    with open(path, "wb") as f:
        f.write(b"\0" * writers * 4096)
    daemon.ctl("set-limits", "queued", "--riops", "2", "--wiops", "2", json=False)
    filler = work.spawn([PYTHON, "-c", QUEUE_FILLER, path, str(writers), str(readers)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: daemon.stats("queued")["io"]["queue_depth"] >= writers,
               20, "the writes to queue behind the limit", check=daemon.check_alive)
    t0 = time.monotonic()
    daemon.stop()  # asserts exit status 0 and that nothing stays mounted
    assert time.monotonic() - t0 < 15, "a stop waited for throttled IO at its pace"
    out, err = filler.communicate(timeout=30)
    assert filler.returncode == 0, err
    answers = {}
    for line in out.splitlines():
        i, result = line.split()
        assert int(i) not in answers, f"request {i} answered twice"
        answers[int(i)] = result
    assert sorted(answers) == list(range(writers + readers)), f"unanswered: {answers}"
    print("answers at the stop:", answers)
    allowed = {"ok", "ENOTCONN", "ECONNABORTED"}
    assert set(answers.values()) <= allowed, answers
    ok = [i for i in range(writers) if answers[i] == "ok"]
    assert ok, f"no queued write was carried out at the stop: {answers}"

    daemon.start()
    daemon.wait_mounted("queued")
    with open(path, "rb") as f:
        data = f.read()
    for i in ok:
        assert data[i * 4096:(i + 1) * 4096] == b"%08d" % i * 512, f"write {i} answered ok but lost"


# Threads of one process writing interleaved chunks of one file with O_DIRECT,
# each chunk filled with its own offset.
PARALLEL_WRITER = r"""
import mmap, os, sys, threading
path, nthreads, size, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
errors = []

def run(t):
    buf = mmap.mmap(-1, chunk)
    try:
        for off in range(t * chunk, size, nthreads * chunk):
            buf.seek(0)
            buf.write(off.to_bytes(8, "little") * (chunk // 8))
            n = os.pwrite(fd, buf, off)
            if n != chunk:
                errors.append(f"short write at {off}: {n}")
    except OSError as e:
        errors.append(f"thread {t}: {e}")

threads = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
os.close(fd)
print("\n".join(errors))
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize("layout", ["preallocated", "sparse"])
def test_parallel_direct_writers_of_one_file(ext4_daemon, work, layout):
    d = ext4_daemon
    size, chunk = 16 * MiB, 64 * 1024
    # Sparse: the holes take all the room but a little for the directory
    # and the extent tree; every write must fit, also while its neighbours
    # are in flight holding reservations of their own.
    cap = 24 * MiB if layout == "preallocated" else size + 256 * 1024
    mnt = d.create("par", str(cap))
    path = os.path.join(mnt, "data")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if layout == "preallocated":
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    if layout == "preallocated":
        # Fill the rest of the volume: overwriting allocated blocks must
        # still work, from every writer at once.
        fill = os.open(os.path.join(mnt, "fill"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            with pytest.raises(OSError) as e:
                while True:
                    os.write(fill, b"f" * MiB)
            assert e.value.errno == errno.ENOSPC
        finally:
            os.close(fill)
    p = work.spawn([PYTHON, "-c", PARALLEL_WRITER, path, "6", str(size), str(chunk)],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=90)
    assert p.returncode == 0, out
    with open(path, "rb") as f:
        for off in range(0, size, chunk):
            block = f.read(chunk)
            assert block == off.to_bytes(8, "little") * (chunk // 8), f"wrong data at {off}"
    walked, _ = tree_usage(d.backing("par"))
    assert d.used("par") == walked, f"used {d.used('par')}, the disk holds {walked}"
    assert walked <= cap


def test_direct_write_by_non_owner_clears_setid_bits(daemon):
    """Writes to a file opened with O_DIRECT bypass the kernel's clearing of
    setuid/setgid bits (FOPEN_DIRECT_IO); the daemon does it instead."""
    mnt = daemon.create("setid", "16Mi")
    path = os.path.join(mnt, "prog")
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    os.chmod(path, 0o6777)
    py_as(USER_UID, USER_GID, """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
os.pwrite(fd, mmap.mmap(-1, 4096), 0)
os.close(fd)
""", path)
    wait_until(lambda: os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID) == 0, 5,
               "the setid bits to go")
    assert os.stat(daemon.backing("setid") + "/prog").st_mode & 0o7777 == 0o777

"""
IO limits through the kernel: a limited volume is slower than an unlimited
one, set-limits applies to a live volume, limits survive a restart, and a
stop with throttled requests queued answers every one of them. The bounds
are wide on purpose: accuracy is measured by the benchmarks (bench/), not
by tests.
"""

import os
import signal
import subprocess
import time


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


def test_stop_with_throttled_requests_queued_answers_them(daemon, work):
    mnt = daemon.create("queued", "256Mi", "--wbps", "64Ki")
    # Four writers of 1 MiB direct writes: at 64 KiB/s they queue for a long time.
    writers = [work.spawn(["dd", "if=/dev/zero", f"of={os.path.join(mnt, f'w{i}')}", "bs=1M",
                           "count=4", "oflag=direct", "status=none"],
                          stderr=subprocess.PIPE) for i in range(4)]
    deadline = time.monotonic() + 10
    while daemon.stats("queued")["io"]["queue_depth"] < 2:
        assert time.monotonic() < deadline, "writes never queued behind the limit"
        time.sleep(0.05)
    t0 = time.monotonic()
    daemon.stop()  # asserts exit status 0
    assert time.monotonic() - t0 < 15, "a stop waited for throttled IO at its pace"
    # Every writer got an answer (success or an error), none hangs.
    for w in writers:
        w.wait(timeout=15)
        assert w.returncode is not None

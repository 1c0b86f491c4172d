"""
Crashes of carvefs with a keeper (carvefs-keeper) holding the volumes'
connections: after a SIGKILL the volumes' users wait instead of failing with
ENOTCONN, and the same carvefs command started again takes every kept
connection back (README.md, "Crashes"). The calls that waited are answered;
open files, a working directory and a shared mapping keep working in the
same mounts; fio verifying every block (buffered, O_DIRECT, mmap) sees no
error across one SIGKILL or twenty in a row; a metadata workload asserting
every result sees none either (a request the dead daemon had done is
answered as it was done, not done twice); readers queued behind an IO limit
are served, in order; usage is recounted exactly. A volume unmounted by hand
while carvefs is down is mounted afresh; a crash after a hand-over, or of
both daemons in the middle of one, is recovered by one start as well.
"""

import bisect
import os
import random
import re
import signal
import subprocess
import time

import pytest

from conftest import FIGURES, PYTHON, MiB, tree_usage, wait_until
from restarts import (FIO_WORKLOADS, assert_exact_usage, check_holder, check_metadata,
                      fio_result, latency_ms, metadata_running, queue_throttled_readers,
                      served_order, start_fio, start_holder, start_metadata)
from test_handover import STALL_ENV, spawn, started_stalling, take_over, wait_log
from test_keeper import keeper_pids

# How long the kernel keeps the daemon's entries and attributes (1 s), and a
# margin: a name looked up past it is asked of the daemon again.
ENTRY_TIMEOUT = 1.2

# Looks a file up and reads it: "ok SIZE", or the errno's name.
WAITER = r"""
import errno, os, sys
try:
    with open(os.path.join(sys.argv[1], sys.argv[2]), "rb") as f:
        print("ok", len(f.read()))
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def waiting_call(work, mnt, name):
    """Starts a lookup and read of name in the volume at mnt, whose daemon
    was killed, and checks that it waits (the connection is alive: the
    lookup waits for a daemon to answer it); returns the waiting process.
    name must have been looked up last more than ENTRY_TIMEOUT ago."""
    waiter = work.spawn([PYTHON, "-c", WAITER, mnt, name], stdout=subprocess.PIPE, text=True)
    try:
        out = waiter.communicate(timeout=2)[0]
        raise AssertionError(f"a call into a crashed volume ended at once: {out}")
    except subprocess.TimeoutExpired:
        pass
    return waiter


def mount_ids(d, names):
    """{name: the id of its mount}: a volume taken back keeps its mount,
    one mounted afresh gets a new id."""
    ids = {}
    for name in names:
        ms = d.volume_mounts(name)
        assert len(ms) == 1, f"{name}: {ms}"
        ids[name] = ms[0]["id"]
    return ids


def recounted(d, names):
    """Waits until d, started after a crash, has counted the usage of every
    volume in names exactly: at once, or by a walk while serving."""
    def done():
        log = d.log_since_start()
        return all(f"volume '{n}': usage recounted while serving" in log or
                   re.search(rf"volume '{n}': taken back after a crash .*usage recounted:", log)
                   for n in names)
    wait_until(done, 30, "the usage recounted after the crash", check=d.check_alive)


def served_exactly_then_stop(d, names, ids):
    """The end of a test whose last start followed a crash: every volume in
    its mount of before (ids), usage exact once recounted and after a clean
    stop; stops d."""
    assert mount_ids(d, names) == ids, d.log_tail()
    recounted(d, names)
    for name in names:
        assert_exact_usage(d, name)
    exact_usage_after_a_clean_stop(d, names)
    d.stop()


def exact_usage_after_a_clean_stop(d, names):
    """Stops d cleanly (which saves the usage it counted) and starts it again:
    the usage it then reports must be what a walk of the backing directory
    finds. Leaves d running."""
    d.stop()
    d.start()
    for name in names:
        d.wait_mounted(name)
        assert_exact_usage(d, name)


def seeded(record_property):
    """A random generator whose seed is printed (and recorded), so that a
    failing order of kills can be replayed with CARVEFS_TEST_SEED."""
    seed = int(os.environ.get("CARVEFS_TEST_SEED", time.time_ns() % 2**32))
    print(f"random seed {seed} (CARVEFS_TEST_SEED={seed} replays it)", flush=True)
    record_property("seed", seed)
    return random.Random(seed)


def sigkill_and_start(d):
    """SIGKILL, then the same command line again; returns the times (time.time())
    of the kill and of the old process's death."""
    t_kill = time.time()
    d.kill9()
    t_dead = time.time()
    d.start()
    return t_kill, t_dead


def test_sigkill_callers_wait_and_are_served_after_the_next_start(daemon, work):
    d = daemon
    mnt = d.create("vol", "64Mi")
    data = os.urandom(MiB)
    with open(os.path.join(mnt, "kept"), "wb") as f:
        f.write(data)
    holder = start_holder(work, mnt, unlinked_after="lost")
    keeper = keeper_pids(d.socket + ".keeper")
    assert len(keeper) == 1
    ids = mount_ids(d, ["vol"])
    time.sleep(ENTRY_TIMEOUT)
    d.kill9()
    waiter = waiting_call(work, mnt, "kept")
    assert keeper_pids(d.socket + ".keeper") == keeper, "the keeper died with carvefs"
    d.start()
    out = waiter.communicate(timeout=20)[0].strip()
    assert out == f"ok {len(data)}", out
    # Taken back, not mounted afresh.
    assert mount_ids(d, ["vol"]) == ids, d.log_tail()
    log = d.log_since_start()
    assert "volume 'vol': taken back after a crash" in log, log
    # All but the file unlinked while open, which died with the daemon.
    assert "volume 'vol': 1 file(s) open at the crash are gone" in log, log
    check_holder(holder, mnt)
    with open(os.path.join(mnt, "kept"), "rb") as f:
        assert f.read() == data
    recounted(d, ["vol"])
    # The holder's unlinked file goes with its last close, after the crash.
    wait_until(lambda: d.stats("vol")["used_bytes"] == tree_usage(d.backing("vol"))[0], 10,
               "the unlinked file's space to come back")
    assert_exact_usage(d, "vol")
    exact_usage_after_a_clean_stop(d, ["vol"])
    d.stop()
    wait_until(lambda: not keeper_pids(d.socket + ".keeper"), 10, "the keeper to leave")


def test_keeper_lets_go_of_a_volume_unmounted_while_carvefs_is_down(daemon):
    """Unmounting a crashed volume by hand ends its connection: the keeper
    notices and lets go, so it never hands out a dead volume."""
    d = daemon
    d.create("vol", 16 * MiB)
    d.kill9()
    assert subprocess.run(["umount", "-l", d.mountpoint("vol")]).returncode == 0
    # Nothing held, nobody connected: the keeper started by carvefs leaves.
    wait_until(lambda: not keeper_pids(d.socket + ".keeper"), 10, "the keeper to let go")
    d.start()
    assert "from before a crash" not in d.log_since_start()
    d.wait_mounted("vol")


def test_a_successor_hands_what_it_took_over_to_the_keeper(daemon, new_daemon, work):
    """A hand-over leaves the keeper holding the volume, and the successor
    makes it its own: a new keeper gets it from the successor alone, and a
    crash of the successor then pauses callers until the next start serves
    them, as a crash of the first would."""
    d = daemon
    mnt = d.create("vol", 16 * MiB)
    with open(os.path.join(mnt, "kept"), "w") as f:
        f.write("across a hand-over and a crash")
    path = d.socket + ".keeper"
    keeper = keeper_pids(path)
    assert len(keeper) == 1
    ids = mount_ids(d, ["vol"])
    new = take_over(d, new_daemon)
    assert "from before a crash" not in new.log_since_start(), new.log_tail()
    assert keeper_pids(path) == keeper, "the hand-over changed the keeper"
    # The old daemon has exited: only the successor can give a new keeper the volume.
    mark = len(new.log_since_start())
    for pid in keeper:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "is back and holds all 1 volume(s)" in new.log_since_start()[mark:],
               15, "the successor to hand the volume to a new keeper")
    time.sleep(ENTRY_TIMEOUT)
    new.kill9()
    waiter = waiting_call(work, mnt, "kept")
    new.start()
    assert waiter.communicate(timeout=20)[0].strip() == "ok 30"
    assert mount_ids(new, ["vol"]) == ids, new.log_tail()
    with open(os.path.join(mnt, "kept")) as f:
        assert f.read() == "across a hand-over and a crash"
    recounted(new, ["vol"])
    assert_exact_usage(new, "vol")
    new.stop()
    wait_until(lambda: not keeper_pids(path), 10, "the keeper to leave")


@pytest.mark.timeout_seconds(150)
def test_fio_verified_across_a_sigkill(daemon, work, record_property):
    d = daemon
    procs = start_fio(work, d, FIO_WORKLOADS, 16, 600)
    ids = mount_ids(d, FIO_WORKLOADS)
    time.sleep(1)
    d.kill9()
    # Every job's next IO waits for a daemon meanwhile.
    time.sleep(0.5)
    d.start()
    for name, p in procs.items():
        job = fio_result(p)
        mx, p99 = latency_ms(job)
        record_property(f"fio_{name}_max_ms_sigkill", mx)
        record_property(f"fio_{name}_p99_ms_sigkill", p99)
    served_exactly_then_stop(d, FIO_WORKLOADS, ids)


def first_completions(log, after):
    """For each time in after (ms since the epoch), the first IO completion
    in fio's per-IO log (completion time in ms since the epoch, first
    column) at or after it; None where there is none."""
    with open(log) as f:
        times = sorted(int(line.split(",")[0]) for line in f if line.strip())
    return [times[i] if i < len(times) else None
            for i in (bisect.bisect_left(times, t) for t in after)]


KILLS = 20


@pytest.mark.timeout_seconds(300)
def test_fio_verified_across_twenty_sigkills(daemon, work, record_property):
    d = daemon
    rng = seeded(record_property)
    lat = os.path.join(work.path, "direct")
    # The jobs run until told to stop (SIGINT: fio ends them and reports);
    # the O_DIRECT one logs every IO, which only the daemon can complete.
    procs = start_fio(work, d, FIO_WORKLOADS, 32, 300,
                      lambda name: ["--time_based", "--runtime=600"] + (
                          [f"--write_lat_log={lat}", "--log_avg_msec=0", "--log_unix_epoch=1"]
                          if name == "direct" else []))
    ids = mount_ids(d, FIO_WORKLOADS)
    kills, taken_back = [], []
    for k in range(KILLS):
        time.sleep(rng.uniform(0.2, 1.5))
        for name, p in procs.items():
            assert p.poll() is None, \
                f"fio {name} ended before kill {k + 1}: {p.communicate()[1][-2000:]}"
        kills.append(sigkill_and_start(d))
        taken = re.search(r"volume 'direct': taken back after a crash in ([0-9.]+) s",
                          d.log_since_start())
        assert taken, d.log_tail()
        taken_back.append(round(float(taken.group(1)) * 1000))
    time.sleep(1)
    for p in procs.values():
        p.send_signal(signal.SIGINT)
    errors = 0
    for name, p in procs.items():
        job = fio_result(p, stopped=True)
        errors += job["error"]
        mx, p99 = latency_ms(job)
        record_property(f"fio_{name}_max_ms_{KILLS}_sigkills", mx)
        record_property(f"fio_{name}_p99_ms_{KILLS}_sigkills", p99)
    record_property(f"fio_errors_{KILLS}_sigkills", errors)
    # From each SIGKILL to the first O_DIRECT IO completed once the killed
    # process was gone: an IO only a new daemon could complete (to a few ms:
    # fio logs whole ms of its own clock).
    firsts = first_completions(f"{lat}_lat.1.log", [t_dead * 1000 for _, t_dead in kills])
    waits = [round(f - t_kill * 1000) if f is not None else None
             for (t_kill, _), f in zip(kills, firsts)]
    assert None not in waits, waits
    record_property("sigkill_to_first_io_ms", waits)
    FIGURES.append(("SIGKILL to the first O_DIRECT IO completed, ms, per kill", waits))
    FIGURES.append(("SIGKILL to the first O_DIRECT IO completed, max ms", max(waits)))
    FIGURES.append(("O_DIRECT volume taken back (the daemon's log), ms, per kill", taken_back))
    served_exactly_then_stop(d, FIO_WORKLOADS, ids)


@pytest.mark.timeout_seconds(180)
def test_metadata_workload_across_sigkills(daemon, work, record_property):
    d = daemon
    rng = seeded(record_property)
    vol = d.create("meta", "64Mi")
    stop = os.path.join(work.path, "stop-metadata")
    p = start_metadata(work, vol, 0, stop)
    ids = mount_ids(d, ["meta"])
    wait_until(lambda: metadata_running(vol, p), 30, "the workload to run")
    for k in range(8):
        time.sleep(rng.uniform(0.2, 1.5))
        assert p.poll() is None, f"the workload ended before kill {k + 1}: {p.communicate()}"
        sigkill_and_start(d)
    time.sleep(0.5)
    open(stop, "w").close()
    rounds = check_metadata(p, vol)
    record_property("metadata_rounds", rounds)
    served_exactly_then_stop(d, ["meta"], ids)


@pytest.mark.timeout_seconds(120)
def test_throttled_readers_are_all_served_after_a_sigkill(daemon, work):
    """Readers waiting behind an IO limit as the daemon dies are all served
    by the next one, still at the limit. Not in their order of arrival, as
    after a hand-over: the kernel delivers the requests a dead daemon had
    read again in the order of its own lists (fuse_resend() splices them
    hash bucket by hash bucket), which the daemon cannot see past."""
    d = daemon
    vol = d.create("slow", "64Mi")
    n = 8
    procs = queue_throttled_readers(work, d, vol, n)
    # Some wait in the daemon behind the limit as it dies: the kernel sends
    # them again to the next one.
    d.kill9()
    d.start()
    order = served_order(procs)
    assert sorted(order) == list(range(n)), f"the readers served: {order}"
    assert d.stats("slow")["limits"]["riops"] == 5
    d.stop()


@pytest.mark.timeout_seconds(150)
@pytest.mark.parametrize("stalled", ["received", "sent"])
def test_both_daemons_killed_in_a_handover_then_one_start_serves_every_volume(
        work, new_daemon, stalled):
    """A hand-over stalled half-way, the successor after receiving the
    volumes ("received") or the old daemon after sending them ("sent"), and
    both killed there: the keeper still holds every connection, and one
    start of the same command serves every volume, in the same mounts, with
    the waiting calls answered, an open file working and exact usage."""
    names = ["a", "b"]
    if stalled == "sent":
        old = started_stalling(new_daemon(), "sent")
    else:
        old = new_daemon().start()
    for name in names:
        with open(os.path.join(old.create(name, "32Mi"), "kept"), "w") as f:
            f.write(f"volume {name}")
    holder = start_holder(work, old.mountpoint("a"), unlinked_after="lost")
    ids = mount_ids(old, names)
    new = spawn(new_daemon(), {STALL_ENV: "received"} if stalled == "received" else None)
    wait_log(old if stalled == "sent" else new, "stalling")
    time.sleep(ENTRY_TIMEOUT)
    old.kill9()
    new.kill9()
    waiters = {name: waiting_call(work, old.mountpoint(name), "kept") for name in names}
    d = new_daemon().start()
    for name in names:
        assert waiters[name].communicate(timeout=20)[0].strip() == "ok 8", name
    assert mount_ids(d, names) == ids, d.log_tail()
    check_holder(holder, d.mountpoint("a"))
    for name in names:
        with open(os.path.join(d.mountpoint(name), "kept")) as f:
            assert f.read() == f"volume {name}"
    wait_until(lambda: d.stats("a")["used_bytes"] == tree_usage(d.backing("a"))[0], 10,
               "the unlinked file's space to come back")
    served_exactly_then_stop(d, names, ids)


@pytest.mark.timeout_seconds(240)
def test_both_daemons_killed_at_random_moments_of_hand_overs(work, new_daemon, record_property):
    """Ten times in a row, under fio with verification and the metadata
    workload: a successor is started, and both it and the old daemon are
    killed 0 to 250 ms later, wherever the hand-over then is (not begun,
    volumes sent, successor serving, old one gone); one start of the same
    command serves every volume, in the same mounts, and nothing the
    workloads do fails."""
    rng = seeded(record_property)
    d = new_daemon().start()
    names = ["direct", "buffered"]
    procs = start_fio(work, d, names, 16, 300, lambda name: ["--time_based", "--runtime=600"])
    vol = d.create("meta", "64Mi")
    stop = os.path.join(work.path, "stop-metadata")
    meta = start_metadata(work, vol, 0, stop)
    ids = mount_ids(d, names + ["meta"])
    where = []
    for k in range(10):
        time.sleep(rng.uniform(0.2, 0.8))
        d._expect_exit = True
        new = spawn(new_daemon())
        time.sleep(rng.uniform(0.0, 0.25))
        # Where the hand-over was: whether each of the two had exited.
        where.append((d.proc.poll() is not None, new.proc.poll() is not None))
        old = d
        for x in (old, new):
            # Either may exit meanwhile: SIGKILL whatever is still there.
            x._expect_exit = True
            x.proc.send_signal(signal.SIGKILL)
            x.proc.wait(timeout=30)
        d = new_daemon().start()
        # On failure: the round, where its hand-over was, and the three logs.
        said = (f"round {k + 1}, (old exited, new exited) {where[-1]}\n"
                f"old: {old.log_tail(8)}\nnew: {new.log_tail(8)}\nnext: {d.log_tail(12)}")
        assert meta.poll() is None, f"the workload ended: {meta.communicate()[1]}\n{said}"
        for name, p in procs.items():
            assert p.poll() is None, f"fio {name} ended: {p.communicate()[1][-2000:]}\n{said}"
    record_property("old_exited_new_exited", where)
    time.sleep(1)
    open(stop, "w").close()
    check_metadata(meta, vol)
    for p in procs.values():
        p.send_signal(signal.SIGINT)
    for p in procs.values():
        fio_result(p, stopped=True)
    served_exactly_then_stop(d, names + ["meta"], ids)

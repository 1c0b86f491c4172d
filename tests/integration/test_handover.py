"""
Hand-over: a carvefs started on a pool that another one serves takes the
volumes over without unmounting them. IO in flight (fio with verification,
buffered, O_DIRECT and mmap), metadata changes, a reader held back by an IO
limit, open files, a working directory and a shared mapping all carry on
across one or many hand-overs; usage, limits and statistics carry over; a
hand-over whose successor or predecessor is killed half-way leaves the
volumes served by the other one; a stop with no successor still unmounts.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import CARVECTL, mounts_below, tree_usage, wait_until
from restarts import (FIO_WORKLOADS, assert_exact_usage, assert_mounted, check_holder,
                      check_metadata, fio_result, io_works, latency_ms, metadata_running,
                      queue_throttled_readers, served_order, start_fio, start_holder,
                      start_metadata)

HANDOVER_WAIT = 60.0
STALL_ENV = "CARVEFS_TEST_HANDOVER_STALL"



def spawn(d, env=None, extra=()):
    """Starts daemon d without waiting for it to serve (a successor serves
    only once its predecessor let go); env is added to its environment."""
    d._log_mark = d._log_size()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        d.proc = d._spawn(extra)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    d._expect_exit = False
    return d


def started_stalling(d, point):
    """Starts daemon d (serving) with the hand-over stall hook set to point."""
    os.environ[STALL_ENV] = point
    try:
        return d.start()
    finally:
        del os.environ[STALL_ENV]


def serving(d):
    """Waits until d answers on the control socket, and watches it from then on."""
    wait_until(lambda: d.ctl("list", check=False).returncode == 0, HANDOVER_WAIT,
               "the successor to serve", check=d.check_alive)
    d._start_watch()
    return d


def take_over(old, new_daemon, env=None):
    """Starts a successor on old's pool and socket; returns it once old has
    exited 0 and the successor answers on the control socket."""
    old._expect_exit = True
    new = spawn(new_daemon(), env)
    try:
        rc = old.proc.wait(timeout=HANDOVER_WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the old daemon did not hand over within {HANDOVER_WAIT:.0f} s\n"
                    f"{old.log_tail()}\n{new.log_tail()}")
    assert rc == 0, f"the old daemon exited {rc}\n{old.log_tail()}\n{new.log_tail()}"
    serving(new)
    assert "mounted as they are" in old.log() and "exiting" in old.log(), old.log_tail()
    assert "took" in new.log_since_start(), new.log_tail()
    return new


@pytest.mark.timeout_seconds(150)
def test_fio_verified_across_one_handover(daemon, new_daemon, work, record_property):
    d = daemon
    procs = start_fio(work, d, FIO_WORKLOADS, 12, 1500)
    d.ctl("set-limits", "direct", "--riops", "100000", "--wbps", "1Gi", json=False)
    limits_before = d.stats("direct")["limits"]
    time.sleep(0.5)
    before = {n: d.stats(n)["io"] for n in FIO_WORKLOADS}
    d = take_over(d, new_daemon)
    for name, p in procs.items():
        job = fio_result(p)
        mx, p99 = latency_ms(job)
        record_property(f"fio_{name}_max_ms", mx)
        record_property(f"fio_{name}_p99_ms", p99)
    assert_mounted(d, FIO_WORKLOADS)
    for name in FIO_WORKLOADS:
        s = d.stats(name)
        # Statistics carried over: the counts go on from the old daemon's.
        assert s["io"]["write_ops"] > before[name]["write_ops"] > 0, (before[name], s["io"])
        assert s["io"]["read_ops"] >= before[name]["read_ops"]
        assert_exact_usage(d, name)
    assert d.stats("direct")["limits"] == limits_before
    d.stop()


@pytest.mark.timeout_seconds(240)
def test_fio_verified_across_ten_handovers(daemon, new_daemon, work, record_property):
    d = daemon
    procs = start_fio(work, d, FIO_WORKLOADS, 24, 1200)
    durations = []
    for _ in range(10):
        t0 = time.monotonic()
        d = take_over(d, new_daemon)
        durations.append(time.monotonic() - t0)
        assert_mounted(d, FIO_WORKLOADS)
    errors = 0
    for name, p in procs.items():
        job = fio_result(p)
        errors += job["error"]
        mx, p99 = latency_ms(job)
        record_property(f"fio_{name}_max_ms_10_handovers", mx)
        record_property(f"fio_{name}_p99_ms_10_handovers", p99)
    record_property("fio_errors_10_handovers", errors)
    record_property("handover_seconds_max", round(max(durations), 3))
    for name in FIO_WORKLOADS:
        assert_exact_usage(d, name)
    d.stop()


@pytest.mark.timeout_seconds(120)
def test_metadata_workload_across_handovers(daemon, new_daemon, work):
    d = daemon
    vol = d.create("meta", "64Mi")
    p = start_metadata(work, vol, 4000)
    for _ in range(3):
        wait_until(lambda: metadata_running(vol, p), 30, "the workload to run")
        d = take_over(d, new_daemon)
    check_metadata(p, vol, 4000)
    assert_exact_usage(d, "meta")
    d.stop()


@pytest.mark.timeout_seconds(120)
def test_throttled_readers_are_served_in_order_across_a_handover(daemon, new_daemon, work):
    d = daemon
    vol = d.create("slow", "64Mi")
    n = 8
    procs = queue_throttled_readers(work, d, vol, n)
    # Some are held back by the limit in the old daemon as it hands over.
    d = take_over(d, new_daemon)
    assert served_order(procs) == list(range(n))
    s = d.stats("slow")
    assert s["limits"]["riops"] == 5
    assert s["io"]["throttled_ns"] > 0
    d.stop()


@pytest.mark.timeout_seconds(90)
def test_open_file_cwd_and_mmap_survive_a_handover(daemon, new_daemon, work):
    d = daemon
    vol = d.create("held", "64Mi")
    p = start_holder(work, vol)
    used = d.stats("held")["used_bytes"]
    d = take_over(d, new_daemon)
    # The unlinked-but-open file still counts until its last close.
    assert d.stats("held")["used_bytes"] == used
    check_holder(p, vol)
    wait_until(lambda: d.stats("held")["used_bytes"] == tree_usage(d.backing("held"))[0], 10,
               "the unlinked file's space to come back")
    assert_exact_usage(d, "held")
    d.stop()


def wait_log(d, text, timeout=30):
    wait_until(lambda: text in d.log(), timeout, f"'{text}' in {d.log_path}",
               check=d.check_alive)


@pytest.mark.timeout_seconds(120)
def test_successor_killed_after_receiving_leaves_the_old_one_serving(daemon, new_daemon,
                                                                     work):
    d = daemon
    vol = d.create("keep", "64Mi")
    with open(os.path.join(vol, "f"), "wb") as f:
        f.write(b"data")
    new = spawn(new_daemon(), {STALL_ENV: "received"})
    wait_log(new, "stalling")
    new.kill9()
    wait_log(d, "still serving")
    assert "the successor went away" in d.log(), d.log_tail()
    # Served by the old one: its control socket, its mounts, the data.
    assert d.running()
    assert [v["name"] for v in d.list()] == ["keep"]
    assert_mounted(d, ["keep"])
    with open(os.path.join(vol, "f"), "rb") as f:
        assert f.read() == b"data"
    io_works(vol)
    # And a later hand-over works.
    d = take_over(d, new_daemon)
    io_works(vol)
    d.stop()


@pytest.mark.timeout_seconds(120)
def test_old_daemon_killed_after_sending_leaves_the_successor_serving(work, new_daemon):
    old = started_stalling(new_daemon(), "sent")
    vol = old.create("moved", "64Mi")
    with open(os.path.join(vol, "f"), "wb") as f:
        f.write(b"data")
    new = spawn(new_daemon())
    wait_log(old, "stalling")
    old.kill9()
    serving(new)
    assert "took 1 volume(s) over" in new.log(), new.log_tail()
    assert_mounted(new, ["moved"])
    with open(os.path.join(vol, "f"), "rb") as f:
        assert f.read() == b"data"
    io_works(vol)
    assert_exact_usage(new, "moved")
    new.stop()


def test_refused_handover_says_why_and_changes_nothing(daemon, new_daemon, work):
    d = daemon
    vol = d.create("solo", "16Mi")
    # The successor cannot build the volume: its table has no such volume.
    os.rename(os.path.join(d.pool, "carvefs.meta"), os.path.join(work.path, "meta.saved"))
    other = new_daemon()
    rc, log = other.start_expect_failure()
    os.rename(os.path.join(work.path, "meta.saved"), os.path.join(d.pool, "carvefs.meta"))
    assert rc != 0
    assert "not in the volume table" in log, log
    wait_log(d, "the successor gave up")
    assert_mounted(d, ["solo"])
    io_works(vol)
    assert [v["name"] for v in d.list()] == ["solo"]


def test_stop_without_successor_still_unmounts(daemon, new_daemon):
    d = daemon
    d.create("a", "16Mi")
    d = take_over(d, new_daemon)
    d.stop()
    assert not [m for m in mounts_below(d.discovery) if m["fstype"] == "fuse.carvefs"]
    assert not os.path.exists(d.socket + ".handover")


def test_hold_after_handover_waits_for_sigterm_and_leaves_the_mounts(work, new_daemon):
    import re
    import urllib.request

    old = new_daemon()
    old.start(["--hold-after-handover", "--listen", "127.0.0.1:0"])
    old.create("kept", "16Mi")
    port = int(re.search(r"port (\d+)\)", old.log()).group(1))
    new = spawn(new_daemon())
    wait_log(old, "waiting for SIGTERM")
    # It lingers, alive for a liveness probe, serving nothing.
    assert old.running()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert r.status == 200 and b"handed over" in r.read()
    serving(new)
    old._expect_exit = True
    old.proc.send_signal(signal.SIGTERM)
    assert old.proc.wait(timeout=30) == 0, old.log_tail()
    assert_mounted(new, ["kept"])
    assert [v["name"] for v in new.list()] == ["kept"]
    new.stop()


def test_a_verb_waiting_through_a_handover_fails_and_changes_nothing(work, new_daemon):
    old = started_stalling(new_daemon(), "sent:2")
    old.create("first", "16Mi")
    new = spawn(new_daemon())
    wait_log(old, "stalling")
    # The old daemon holds its manager: this waits, then finds the volumes gone.
    late = work.spawn([CARVECTL, "--socket", old.socket, "create", "late", "--size", "16Mi"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    old._expect_exit = True
    assert old.proc.wait(timeout=HANDOVER_WAIT) == 0, old.log_tail()
    out, err = late.communicate(timeout=30)
    assert late.returncode != 0, out
    serving(new)
    assert [v["name"] for v in new.list()] == ["first"]
    assert not os.path.exists(new.backing("late"))
    assert_mounted(new, ["first"])
    new.create("late", "16Mi")
    assert sorted(v["name"] for v in new.list()) == ["first", "late"]
    new.stop()


def test_successor_with_another_discovery_dir_is_refused(daemon, new_daemon, work):
    d = daemon
    d.create("here", "16Mi")
    other = new_daemon(mnt=os.path.join(work.path, "elsewhere"))
    rc, log = other.start_expect_failure()
    assert rc == 1, log
    assert "start with the same flags" in log, log
    wait_log(d, "still serving")
    assert_mounted(d, ["here"])
    assert [v["name"] for v in d.list()] == ["here"]
    assert not mounts_below(os.path.join(work.path, "elsewhere"))

"""
Crashes of carvefs with a keeper (carvefs-keeper) holding the volumes'
connections: after a SIGKILL the volumes' users wait instead of failing with
ENOTCONN. The next start cannot take the connections back yet (README.md,
"Crashes"): it lets the keeper's go, so the waiting calls end with ENOTCONN
rather than waiting for ever, and mounts every volume afresh with its data.
"""

import os
import signal
import subprocess

from conftest import PYTHON, MiB, wait_until
from test_handover import take_over
from test_keeper import keeper_pids

WAITER = r"""
import errno, os, sys
try:
    os.stat(os.path.join(sys.argv[1], "looked-up-after-the-crash"))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def waiting_call(work, mnt):
    """Starts a lookup in the volume at mnt, whose daemon was killed, and
    checks that it waits (the connection is alive: the lookup waits for a
    daemon to answer it); returns the waiting process."""
    waiter = work.spawn([PYTHON, "-c", WAITER, mnt], stdout=subprocess.PIPE, text=True)
    try:
        out = waiter.communicate(timeout=2)[0]
        raise AssertionError(f"a call into a crashed volume ended at once: {out}")
    except subprocess.TimeoutExpired:
        pass
    return waiter


def test_sigkill_pauses_callers_until_the_next_start(daemon, work):
    d = daemon
    mnt = d.create("vol", 16 * MiB)
    data = os.urandom(MiB)
    with open(os.path.join(mnt, "kept"), "wb") as f:
        f.write(data)
    keeper = keeper_pids(d.socket + ".keeper")
    assert len(keeper) == 1
    d.kill9()
    waiter = waiting_call(work, mnt)
    assert keeper_pids(d.socket + ".keeper") == keeper, "the keeper died with carvefs"
    d.start()
    log = d.log_since_start()
    assert "volume 'vol': the keeper held its connection from before a crash" in log, log
    out = waiter.communicate(timeout=20)[0].strip()
    assert out in ("ENOTCONN", "ECONNABORTED"), out
    d.wait_mounted("vol")
    assert len(d.volume_mounts("vol")) == 1
    with open(os.path.join(mnt, "kept"), "rb") as f:
        assert f.read() == data
    assert d.used("vol") >= MiB
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
    crash of the successor then pauses callers as a crash of the first would."""
    d = daemon
    mnt = d.create("vol", 16 * MiB)
    with open(os.path.join(mnt, "kept"), "w") as f:
        f.write("across a hand-over and a crash")
    path = d.socket + ".keeper"
    keeper = keeper_pids(path)
    assert len(keeper) == 1
    new = take_over(d, new_daemon)
    assert "from before a crash" not in new.log_since_start(), new.log_tail()
    assert keeper_pids(path) == keeper, "the hand-over changed the keeper"
    # The old daemon has exited: only the successor can give a new keeper the volume.
    mark = len(new.log_since_start())
    for pid in keeper:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "is back and holds all 1 volume(s)" in new.log_since_start()[mark:],
               15, "the successor to hand the volume to a new keeper")
    new.kill9()
    waiter = waiting_call(work, mnt)
    new.start()
    assert "volume 'vol': the keeper held its connection from before a crash" in \
        new.log_since_start(), new.log_tail()
    assert waiter.communicate(timeout=20)[0].strip() in ("ENOTCONN", "ECONNABORTED")
    new.wait_mounted("vol")
    with open(os.path.join(mnt, "kept")) as f:
        assert f.read() == "across a hand-over and a crash"
    new.stop()
    wait_until(lambda: not keeper_pids(path), 10, "the keeper to leave")

"""
carvefs-keeper, the process that holds every volume's /dev/fuse fd across a
crash of carvefs: it serves root only; a daemon starts one when none serves
(--keeper start) and it leaves once nothing needs it; a keeper killed is
reported by the daemon in its log, /healthz and carvefs_keeper_holding, and
the daemon hands everything to a keeper that comes back (--keeper external)
or that it starts again itself.
"""

import os
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import BUILD, NOBODY_GID, NOBODY_UID, PYTHON, run_as, wait_until
from test_daemon_metrics import free_port, http_request, scrape

KEEPER = os.path.join(BUILD, "carvefs-keeper")
MAGIC = 0x504B5643
KEEP, DROP, TAKE, OK, ERR, ENTRY, END = range(1, 8)
HEADER = struct.Struct("=IIQII")


def keeper_sock(d):
    return d.socket + ".keeper"


def keeper_pids(path):
    """PIDs of the carvefs-keeper processes serving path."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"carvefs-keeper") and path.encode() in argv:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(pid))
    return pids


def request(sock, mtype, payload=b"", fds=()):
    sock.sendmsg([HEADER.pack(MAGIC, mtype, len(payload), len(fds), 0) + payload],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
                 if fds else [])


def receive(sock):
    data, fds, _, _ = socket.recv_fds(sock, HEADER.size, 4)
    assert len(data) == HEADER.size, data
    magic, mtype, length, nfds, _ = HEADER.unpack(data)
    assert magic == MAGIC and nfds == len(fds)
    payload = b""
    while len(payload) < length:
        payload += sock.recv(length - len(payload))
    return mtype, payload, fds


def connects(path):
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def server_pid(path):
    """The PID of the process that serves the unix socket at path."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", cred)[0]


@pytest.fixture
def keeper(work):
    """A keeper started by the test, its socket where other uids can reach it."""
    path = os.path.join(work.path, "keeper.sock")
    p = work.spawn([KEEPER, "--socket", path], stdout=subprocess.DEVNULL,
                   stderr=open(os.path.join(work.path, "keeper.log"), "a"))
    wait_until(lambda: os.path.exists(path), 10, "the keeper's socket")
    p.path = path
    return p


def test_keeper_holds_and_hands_back_for_root_only(keeper):
    assert oct(os.stat(keeper.path).st_mode & 0o777) == "0o600"
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(keeper.path)
        request(s, KEEP, b"vol-a\0" + b"INIT" * 26, [w])
        assert receive(s)[0] == OK
        # A name that is not a volume name is refused, and says why.
        request(s, KEEP, b"../x\0INIT", [w])
        mtype, payload, _ = receive(s)
        assert mtype == ERR and struct.unpack("=i", payload)[0] == 22
        request(s, TAKE)
        mtype, payload, fds = receive(s)
        assert mtype == ENTRY and payload == b"vol-a\0" + b"INIT" * 26 and len(fds) == 1
        # The fd handed back is the pipe's write end itself.
        os.write(fds[0], b"x")
        assert os.read(r, 1) == b"x"
        os.close(fds[0])
        assert receive(s)[0] == END
        request(s, DROP, b"vol-a")
        assert receive(s)[0] == OK
        request(s, TAKE)
        assert receive(s)[0] == END
    os.close(r)
    os.close(w)
    # Another uid is turned away, even with the socket's mode opened up.
    os.chmod(keeper.path, 0o666)
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.send(b'x'*24); sys.exit(0 if s.recv(1)==b'' else 1)\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    sys.exit(0)\n")
    run_as(NOBODY_UID, NOBODY_GID, [PYTHON, "-c", code, keeper.path])
    assert keeper.poll() is None


def test_daemon_starts_a_keeper_that_leaves_when_not_needed(daemon):
    path = keeper_sock(daemon)
    wait_until(lambda: keeper_pids(path), 10, "a keeper started by carvefs")
    assert "started a keeper" in daemon.log_since_start()
    daemon.stop()
    # Nothing held, nobody connected: it goes by itself.
    wait_until(lambda: not keeper_pids(path), 10, "the keeper to leave")


@pytest.mark.timeout_seconds(90)
def test_a_killed_keeper_is_reported_and_replaced(work, new_daemon):
    d = new_daemon()
    port = free_port()
    d.start(["--listen", f"127.0.0.1:{port}"])
    path = keeper_sock(d)
    wait_until(lambda: keeper_pids(path), 10, "a keeper started by carvefs")
    d.create("vol", "16Mi")
    assert http_request(port, "/healthz")[2] == "ok\n"
    assert scrape(port).value("carvefs_keeper_holding") == 1
    mark = d.log_since_start()
    old = keeper_pids(path)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "keeper" in d.log_since_start()[len(mark):] and
               "went away" in d.log_since_start()[len(mark):], 10,
               "the daemon to notice the keeper's death")
    # It starts another and hands it the volume again.
    wait_until(lambda: scrape(port).value("carvefs_keeper_holding") == 1, 15,
               "a new keeper holding the volume")
    assert set(keeper_pids(path)).isdisjoint(old)
    assert http_request(port, "/healthz")[0] == 200
    with open(os.path.join(d.mountpoint("vol"), "f"), "w") as f:
        f.write("still served")
    d.stop()
    wait_until(lambda: not keeper_pids(path), 10, "the keeper to leave")


@pytest.mark.timeout_seconds(90)
def test_external_keeper_away_then_back(work, new_daemon):
    d = new_daemon()
    port = free_port()
    path = keeper_sock(d)
    # No keeper yet: the daemon says so and serves anyway.
    d.start(["--listen", f"127.0.0.1:{port}", "--keeper", "external"])
    assert "no keeper serves" in d.log_since_start()
    d.create("vol", "16Mi")
    status, _, body = http_request(port, "/healthz")
    assert status == 200 and "no keeper holds the volumes" in body
    assert scrape(port).value("carvefs_keeper_holding") == 0
    assert not keeper_pids(path)
    k = work.spawn([KEEPER, "--socket", path], stdout=subprocess.DEVNULL,
                   stderr=open(os.path.join(work.path, "keeper.log"), "a"))
    wait_until(lambda: scrape(port).value("carvefs_keeper_holding") == 1, 15,
               "the keeper to hold the volume")
    assert http_request(port, "/healthz")[2] == "ok\n"
    assert "holds all 1 volume(s)" in d.log_since_start()
    k.kill()
    k.wait()
    wait_until(lambda: scrape(port).value("carvefs_keeper_holding") == 0, 15,
               "the daemon to notice the keeper's death")
    d.stop()


def test_a_waiting_keeper_takes_the_place_of_the_one_that_exits(keeper, work):
    """--wait, as a rolling DaemonSet's new pod starts it: it keeps running
    while the old keeper serves the socket, and serves it once that one exits."""
    log = os.path.join(work.path, "waiting-keeper.log")
    waiting = work.spawn([KEEPER, "--socket", keeper.path, "--wait"],
                         stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    wait_until(lambda: "waiting to take its place" in open(log).read(), 10,
               "the second keeper to wait")
    time.sleep(0.5)
    assert waiting.poll() is None, open(log).read()
    assert server_pid(keeper.path) == keeper.pid
    keeper.send_signal(signal.SIGTERM)
    assert keeper.wait(timeout=10) == 0
    wait_until(lambda: connects(keeper.path), 10, "the waiting keeper to serve the socket")
    assert server_pid(keeper.path) == waiting.pid
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(keeper.path)
        request(s, TAKE)
        assert receive(s)[0] == END
    # Without --wait, a second keeper leaves at once; a waiting one leaves on SIGTERM.
    assert subprocess.run([KEEPER, "--socket", keeper.path], timeout=10).returncode == 0
    other = work.spawn([KEEPER, "--socket", keeper.path, "--wait"], stdout=subprocess.DEVNULL,
                       stderr=open(log, "a"))
    wait_until(lambda: open(log).read().count("waiting to take its place") == 2, 10,
               "a third keeper to wait")
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=5) == 0
    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=10) == 0

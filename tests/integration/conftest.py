"""
Fixtures for the carvefs integration tests.

Every test gets a private working directory under /tmp (short, so that the
control socket path fits in sun_path), a bound on its run time, and a
`Daemon` that it starts and stops itself. Finalizers stop the daemon, detach
any mount it left behind, unmount the loop-mounted ext4 pool and kill every
process the test started, whatever the outcome of the test.

Run as root: the daemon mounts filesystems, and the tests switch uids with
setpriv(1). CARVEFS_BUILD names the directory holding carvefs and carvectl.
"""

import contextlib
import hashlib
import json as jsonlib
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("CARVEFS_BUILD", os.path.join(REPO, "build")))
CARVEFS = os.path.join(BUILD, "carvefs")
CARVECTL = os.path.join(BUILD, "carvectl")
PYTHON = "/usr/bin/python3"
# The Kubernetes test tooling: control_plane, faultproxy, schema.
sys.path.insert(0, os.path.join(REPO, "tests", "k8s"))

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# The whole-test bound; a test may ask for another with
# @pytest.mark.timeout_seconds(N).
DEFAULT_TEST_TIMEOUT = 120
MOUNT_WAIT = 20.0
START_WAIT = 60.0
STOP_WAIT = 60.0

# uids the tests act as besides root.
USER_UID = 1000
USER_GID = 1000
OTHER_UID = 1001
OTHER_GID = 1001
NOBODY_UID = 65534
NOBODY_GID = 65534


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timeout_seconds(n): fail the test if it runs longer than n seconds")


# Measurements a test reports (bring-up times, memory), printed at the end
# of the run: (what, figure) pairs.
FIGURES = []


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for what, figure in FIGURES:
            terminalreporter.write_line(f"{what}: {figure}")


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("the carvefs integration tests must run as root", returncode=1)
    for binary in (CARVEFS, CARVECTL):
        if not os.access(binary, os.X_OK):
            pytest.exit(f"{binary} is missing: run 'make binaries' (or set CARVEFS_BUILD)",
                        returncode=1)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def wait_until(predicate, timeout, what, interval=0.02, check=None):
    """Polls predicate() until it returns a true value, which is returned.
    check(), if given, runs on every round (to fail at once on a dead daemon)."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts():
    """The mount table of this process: a list of dicts with id (the mount's
    id, new for every mount), target, options, fstype and source."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            result.append({
                "id": int(fields[0]),
                "target": _unescape_mountinfo(fields[4]),
                "options": fields[5],
                "fstype": rfields[0],
                "source": _unescape_mountinfo(rfields[1]) if len(rfields) > 1 else "",
            })
    return result


def mounts_at(path):
    path = os.path.abspath(path)
    return [m for m in mounts() if m["target"] == path]


def mounts_below(path):
    path = os.path.abspath(path)
    return [m for m in mounts() if m["target"] == path or m["target"].startswith(path + "/")]


def run(argv, check=True, timeout=None, **kw):
    """subprocess.run with text output captured; fails the test with the
    command's output when check is set and it exits non-zero."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {p.returncode}\n"
                    f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
    return p


def as_user(uid, gid, argv):
    """argv run as uid/gid with no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] + list(argv)


def run_as(uid, gid, argv, check=True, timeout=60, **kw):
    return run(as_user(uid, gid, argv), check=check, timeout=timeout, **kw)


def py_as(uid, gid, code, *args, check=True, timeout=60):
    """Runs a Python snippet as uid/gid; returns the CompletedProcess."""
    return run_as(uid, gid, [PYTHON, "-c", code, *map(str, args)], check=check,
                  timeout=timeout)


def clock_past(ts_ns):
    """Waits until the filesystem clock has left ts_ns behind, so that a new
    timestamp must differ (timestamps are taken from a coarse clock)."""
    deadline = time.monotonic() + 5
    while time.time_ns() < ts_ns + 20_000_000:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def call_as(uid, gid, fn, *args, groups=(), umask=None):
    """Runs fn(*args) in a forked child whose real, effective and saved
    uid/gid are uid/gid, with only groups as supplementary groups and, if
    given, that umask; returns what fn returned (it must pickle). An OSError
    in the child is raised again here with its errno; anything else fails
    the test with the child's traceback."""
    import pickle
    import traceback
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(rfd)
            try:
                os.setgroups(list(groups))
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                if umask is not None:
                    os.umask(umask)
                out = ("ok", fn(*args))
            except OSError as e:
                out = ("oserror", (e.errno, e.filename))
            except BaseException:
                out = ("exception", traceback.format_exc())
            data = pickle.dumps(out)
            while data:
                data = data[os.write(wfd, data):]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as f:
            data = f.read()
    except BaseException:
        # The time bound struck while the child was stuck: it goes too.
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        pytest.fail(f"the child running {fn.__name__} as {uid}:{gid} failed "
                    f"(wait status {status:#x})")
    kind, value = pickle.loads(data)
    if kind == "oserror":
        raise OSError(value[0], os.strerror(value[0]), value[1])
    if kind == "exception":
        pytest.fail(f"{fn.__name__} as {uid}:{gid} raised:\n{value}")
    return value


def errno_as(uid, gid, fn, *args, **kw):
    """The errno name fn(*args) fails with as uid/gid, or None if it works."""
    import errno
    try:
        call_as(uid, gid, fn, *args, **kw)
    except OSError as e:
        return errno.errorcode[e.errno]
    return None


def tree_usage(root):
    """(bytes, objects) of a backing directory, as the daemon must count
    them: st_blocks * 512 of everything, the root included, hard links once;
    objects exclude the root."""
    seen = set()
    st = os.lstat(root)
    total = st.st_blocks * 512
    seen.add((st.st_dev, st.st_ino))
    objects = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            objects += 1
    return total, objects


def du_bytes(path):
    """du -B1 -s: allocated bytes of a tree."""
    p = run(["du", "-B1", "-s", path])
    return int(p.stdout.split()[0])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_listing(root):
    """Every path below root with its type, size and a digest of regular
    files: a snapshot to prove that nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                out[rel] = ("f", st.st_size, sha256_file(p))
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), 0)
    return out


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

class Daemon:
    """One carvefs daemon in the foreground, logging to a file.

    The daemon is watched from a thread: if it exits while the test does not
    expect it to, the test's main thread gets SIGUSR1 and fails at once,
    with the tail of the log in the message."""

    def __init__(self, work, pool, discovery, socket, threads=2, umask=None):
        self.work = work
        self.umask = umask  # the daemon's umask; None: the test's own
        self.pool = pool
        self.discovery = discovery
        self.socket = socket
        self.threads = threads
        self.proc = None
        self.log_path = os.path.join(work, "carvefs.log")
        self.starts = 0
        self._expect_exit = True
        self._watch = None

    # -- life cycle ------------------------------------------------------

    def argv(self, extra=()):
        return [CARVEFS, "--pool", self.pool, "--discovery-dir", self.discovery,
                "--socket", self.socket, "--foreground", "--threads", str(self.threads),
                *extra]

    def _spawn(self, extra):
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"==== start {self.starts}: {' '.join(self.argv(extra))}\n")
        log.flush()
        try:
            return subprocess.Popen(self.argv(extra), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, close_fds=True,
                                    umask=-1 if self.umask is None else self.umask)
        finally:
            log.close()

    def start(self, extra=()):
        """Starts the daemon and returns once its socket answers 'list'."""
        assert not self.running(), "daemon already running"
        self._log_mark = self._log_size()
        self.proc = self._spawn(extra)
        self._expect_exit = False
        deadline = time.monotonic() + START_WAIT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._expect_exit = True
                pytest.fail(f"carvefs exited {rc} while starting\n{self.log_tail()}")
            p = subprocess.run([CARVECTL, "--socket", self.socket, "list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode == 0:
                break
            if p.returncode != 3:
                pytest.fail(f"carvectl list exited {p.returncode} while carvefs started: "
                            f"{p.stderr}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"carvefs did not serve '{self.socket}' within {START_WAIT:.0f} s"
                            f"\n{self.log_tail()}")
            time.sleep(0.02)
        self._start_watch()
        return self

    def start_expect_failure(self, extra=(), timeout=START_WAIT):
        """Starts a daemon that must refuse to run; returns (exit code, its log)."""
        mark = self._log_size()
        proc = self._spawn(extra)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            # It was serving: detach whatever it mounted before failing the test.
            detach_mounts(self.discovery)
            pytest.fail(f"carvefs kept running although it had to refuse to start\n"
                        f"{self.log_tail()}")
        return rc, self.log_since(mark)

    def _start_watch(self):
        pidfd = os.pidfd_open(self.proc.pid)
        main = threading.main_thread().ident
        proc = self.proc

        def watch():
            try:
                select.select([pidfd], [], [])
            finally:
                os.close(pidfd)
            if self.proc is proc and not self._expect_exit:
                signal.pthread_kill(main, signal.SIGUSR1)

        self._watch = threading.Thread(target=watch, daemon=True)
        self._watch.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        """Fails the test at once if the daemon exited while it should run."""
        if self.proc is not None and not self._expect_exit and self.proc.poll() is not None:
            self._expect_exit = True
            pytest.fail(f"carvefs died (exit {self.proc.returncode})\n{self.log_tail()}")

    def stop(self, expect_rc=0):
        """SIGTERM, wait, and check the exit code and that nothing is left mounted."""
        assert self.proc is not None
        self.check_alive()
        self._expect_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"carvefs did not exit within {STOP_WAIT:.0f} s of SIGTERM\n"
                        f"{self.log_tail()}")
        assert rc == expect_rc, f"carvefs exited {rc} on SIGTERM\n{self.log_tail()}"
        left = [m for m in mounts_below(self.discovery) if m["fstype"] == "fuse.carvefs"]
        assert not left, f"mounts left after a clean stop: {left}\n{self.log_tail()}"
        return rc

    def kill9(self):
        """SIGKILL: the mounts stay behind, disconnected."""
        assert self.running(), f"carvefs is not running\n{self.log_tail()}"
        self._expect_exit = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_WAIT)

    def restart(self, extra=()):
        self.stop()
        return self.start(extra)

    def cleanup(self):
        """For finalizers: stops whatever is running and detaches every mount."""
        self._expect_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        detach_mounts(self.discovery)

    # -- the control socket ----------------------------------------------

    def ctl(self, *args, json=True, check=True, timeout=120, user=None):
        """Runs carvectl against this daemon. With json, '-o json' is passed and
        the parsed reply is in .data (None on failure). With check, a non-zero
        exit fails the test. user=(uid, gid) runs it as that user."""
        argv = [CARVECTL, "--socket", self.socket]
        if json:
            argv += ["-o", "json"]
        argv += [str(a) for a in args]
        if user:
            argv = as_user(user[0], user[1], argv)
        self.check_alive()
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        self.check_alive()
        p.data = None
        if p.returncode == 0 and json and p.stdout.strip():
            try:
                p.data = jsonlib.loads(p.stdout)
            except ValueError as e:
                pytest.fail(f"carvectl {' '.join(argv)}: output is not JSON ({e}):\n{p.stdout}")
        if check and p.returncode != 0:
            pytest.fail(f"carvectl {' '.join(map(str, args))} exited {p.returncode}: "
                        f"{p.stderr.strip()}\n{self.log_tail()}")
        return p

    def request(self, request):
        """One request line on the control socket, as a client other than
        carvectl sends it; the parsed reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.socket)
            s.sendall(jsonlib.dumps(request).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(65536)
                assert chunk, f"the daemon closed the connection; got {reply!r}"
                reply += chunk
        return jsonlib.loads(reply)

    def stats(self, name):
        return self.ctl("stats", name).data

    def used(self, name):
        s = self.stats(name)
        return s["used_bytes"]

    def list(self):
        return self.ctl("list").data

    def create(self, name, size, *args, wait=True):
        """Creates a volume and waits for its mount; returns the mountpoint."""
        self.ctl("create", name, "--size", size, *args)
        if wait:
            self.wait_mounted(name)
        return self.mountpoint(name)

    # -- mounts ----------------------------------------------------------

    def mountpoint(self, name):
        return os.path.join(self.discovery, name)

    def backing(self, name):
        return os.path.join(self.pool, "volumes", name)

    def volume_mounts(self, name):
        return [m for m in mounts_at(self.mountpoint(name)) if m["fstype"] == "fuse.carvefs"]

    def wait_mounted(self, name, timeout=MOUNT_WAIT):
        def mounted():
            ms = self.volume_mounts(name)
            return ms and ms[-1]["source"] == f"carvefs:{name}"
        wait_until(mounted, timeout, f"volume '{name}' to be mounted", check=self.check_alive)

    def wait_unmounted(self, name, timeout=MOUNT_WAIT):
        wait_until(lambda: not self.volume_mounts(name), timeout,
                   f"volume '{name}' to be unmounted", check=self.check_alive)

    # -- the log ---------------------------------------------------------

    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_since(self, mark):
        with open(self.log_path, errors="replace") as f:
            f.seek(mark)
            return f.read()

    def log_since_start(self):
        return self.log_since(self._log_mark)

    def log_tail(self, lines=30):
        tail = self.log().splitlines()[-lines:]
        return "---- carvefs log (tail) ----\n" + "\n".join(tail)


def detach_mounts(below):
    """Detaches every carvefs mount below a directory, deepest first:
    fusermount3 -u, then a lazy umount as the last resort."""
    for _ in range(3):
        left = [m for m in mounts_below(below) if m["fstype"].startswith("fuse")]
        if not left:
            return
        for m in sorted(left, key=lambda m: -len(m["target"])):
            if subprocess.run(["umount", m["target"]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["umount", "-l", m["target"]], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def time_bound(request):
    """Fails the test when it runs too long, and turns an unexpected daemon
    exit (SIGUSR1 from the watcher) into an immediate failure."""
    marker = request.node.get_closest_marker("timeout_seconds")
    seconds = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT
    daemons = []
    request.node._carvefs_daemons = daemons

    def on_alarm(signum, frame):
        tails = "\n".join(d.log_tail() for d in daemons)
        pytest.fail(f"test exceeded its time bound of {seconds} s\n{tails}", pytrace=True)

    def on_daemon_exit(signum, frame):
        for d in daemons:
            if d.proc is not None and not d._expect_exit and d.proc.poll() is not None:
                d._expect_exit = True
                pytest.fail(f"carvefs died during the test (exit {d.proc.returncode})\n"
                            f"{d.log_tail()}")

    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    old_usr1 = signal.signal(signal.SIGUSR1, on_daemon_exit)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.signal(signal.SIGUSR1, old_usr1)


class Work:
    """A test's private directory: pool/, mnt/ (the discovery dir), run/sock.
    cleanup() leaves nothing behind: processes, daemons, mounts, files."""

    def __init__(self, path):
        self.path = path
        self.pool = os.path.join(path, "pool")
        self.mnt = os.path.join(path, "mnt")
        self.run = os.path.join(path, "run")
        self.sock = os.path.join(self.run, "sock")
        self.daemons = []
        self.procs = []

    def ext4_pool(self, size=256 * MiB):
        """Makes pool/ a freshly formatted ext4 filesystem in a loop-mounted
        image file, so that block accounting is that of a real disk."""
        image = os.path.join(self.path, "pool.img")
        with open(image, "wb") as f:
            f.truncate(size)
        run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-E",
             "lazy_itable_init=0,lazy_journal_init=0", image])
        os.makedirs(self.pool, exist_ok=True)
        run(["mount", "-o", "loop", image, self.pool])
        return self.pool

    def bind(self, source, target):
        """Bind-mounts source on target; undone by cleanup()."""
        run(["mount", "--bind", source, target])

    def daemon(self, threads=2, pool=None, mnt=None, sock=None, umask=None):
        d = Daemon(self.path, pool or self.pool, mnt or self.mnt, sock or self.sock,
                   threads=threads, umask=umask)
        if self.daemons:
            d.log_path = os.path.join(self.path, f"carvefs-{len(self.daemons)}.log")
        self.daemons.append(d)
        return d

    def spawn(self, argv, **kw):
        """Starts a helper process; it is killed (by PID) at the end of the test."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        # The time bound and the daemon watcher must not interrupt this: every
        # step below has its own timeout.
        signal.alarm(0)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(timeout=30)
        for d in self.daemons:
            d.cleanup()
        detach_mounts(self.mnt)
        # Then whatever else a test mounted below its directory (bind mounts
        # planted in a pool, the ext4 pool itself), deepest first, wherever
        # a rename may have moved them.
        for _ in range(3):
            left = mounts_below(self.path)
            if not left:
                break
            for m in sorted(left, key=lambda m: -len(m["target"])):
                if subprocess.run(["umount", m["target"]], stderr=subprocess.DEVNULL).returncode:
                    subprocess.run(["umount", "-l", m["target"]], stderr=subprocess.DEVNULL)
        # Never delete through a mount that is still there.
        if not mounts_below(self.path):
            shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def work(request):
    path = tempfile.mkdtemp(prefix="carvefs-it-", dir="/tmp")
    # Other uids walk through it to reach the mounts; the socket directory
    # stays root's.
    os.chmod(path, 0o755)
    w = Work(path)
    os.makedirs(w.run, mode=0o700)
    request.node._carvefs_work = w
    yield w
    w.cleanup()


@pytest.fixture
def pool(work):
    """The test's directory, for tests that only need the paths: .pool,
    .mnt (the discovery dir) and .sock, nothing started."""
    return work


def _daemon(request, work):
    d = work.daemon()
    request.node._carvefs_daemons.append(d)
    d.start()
    return d


@pytest.fixture
def daemon(request, work):
    """A running daemon on a pool in a plain directory of the host's /tmp."""
    return _daemon(request, work)


@pytest.fixture
def ext4_daemon(request, work):
    """A running daemon on a pool that is an ext4 filesystem of its own."""
    work.ext4_pool()
    return _daemon(request, work)


@pytest.fixture
def new_daemon(request, work):
    """A function making further (unstarted) daemons, watched like the first."""
    def make(**kw):
        d = work.daemon(**kw)
        request.node._carvefs_daemons.append(d)
        return d
    return make


@pytest.fixture
def block_size(work):
    return os.statvfs(work.pool).f_frsize


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A daemon that died shows up in the report of the test that saw it."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for d in getattr(item, "_carvefs_daemons", []):
            if d.proc is not None and d.proc.poll() is not None and d.proc.returncode not in (
                    0, -signal.SIGKILL):
                rep.sections.append(("carvefs exit", f"exit {d.proc.returncode}\n"
                                     f"{d.log_tail()}"))


# --------------------------------------------------------------------------
# The Kubernetes control plane (tests/k8s/README.md)
# --------------------------------------------------------------------------

CLAIMS_PATH = "/api/v1/namespaces/default/persistentvolumeclaims"


@contextlib.contextmanager
def running_control_plane(node, **options):
    """A started control plane for a test module's fixture; fails (never
    skips) when it is not built, since `make integration` builds it.
    options go to ControlPlane (feature gates, extra controllers)."""
    import control_plane

    ok, why = control_plane.available()
    if not ok:
        pytest.fail(f"the Kubernetes control plane is not built: {why} "
                    "(make integration builds it with tests/k8s/build-control-plane.sh)")
    plane = control_plane.ControlPlane(node=node, **options)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def empty_cluster(cp, classes=False):
    """Deletes what a test left: claims, then PVs, and with classes the
    StorageClasses. Run it once the provisioner of the test is gone, or it
    registers its volumes again."""
    for pvc in cp.api("GET", CLAIMS_PATH)["items"]:
        cp.delete(f"{CLAIMS_PATH}/{pvc['metadata']['name']}", wait=True)
    for pv in cp.pvs():
        cp.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}", wait=True)
    if classes:
        for sc in cp.api("GET", "/apis/storage.k8s.io/v1/storageclasses")["items"]:
            cp.delete(f"/apis/storage.k8s.io/v1/storageclasses/{sc['metadata']['name']}")

"""
A request that changes names, cut off by a crash after it ran but before
its answer went out, is delivered again by the kernel to the next daemon
(FUSE_NOTIFY_RESEND) and must be answered as its first execution was: the
caller sees success, never a spurious EEXIST or ENOENT, and the request is
not done twice, nor leave behind a handle it opened that the kernel never
learned. The daemon's test hook (CARVEFS_TEST_CRASH) kills it at exactly
that moment, with the request's journal entry begun or ended.
"""

import os
import subprocess

import pytest

from conftest import PYTHON, MiB, wait_until
from restarts import assert_exact_usage

CRASH_ENV = "CARVEFS_TEST_CRASH"

# op: (prepare(vol), the call run in a child (path of the volume as argv[1];
# prints "ok" on success), check(vol) afterwards). The name the hook
# watches is always "target".
OPS = {
    "mkdir": (None, "os.mkdir(v + '/target')",
              lambda v: os.path.isdir(f"{v}/target")),
    "create-excl": (None,
                    "fd = os.open(v + '/target', os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)\n"
                    "os.write(fd, b'written after the crash')\n"
                    "os.lseek(fd, 0, 0)\n"
                    "assert os.read(fd, 100) == b'written after the crash'",
                    lambda v: open(f"{v}/target", "rb").read() == b"written after the crash"),
    "unlink": (lambda v: open(f"{v}/target", "w").close(), "os.unlink(v + '/target')",
               lambda v: not os.path.lexists(f"{v}/target")),
    "rmdir": (lambda v: os.mkdir(f"{v}/target"), "os.rmdir(v + '/target')",
              lambda v: not os.path.lexists(f"{v}/target")),
    "rename": (lambda v: open(f"{v}/source", "w").write("moved"),
               "os.rename(v + '/source', v + '/target')",
               lambda v: not os.path.lexists(f"{v}/source") and
               open(f"{v}/target").read() == "moved"),
    "rename-over": (lambda v: (open(f"{v}/source", "w").write("new"),
                               open(f"{v}/target", "w").write("old")),
                    "os.rename(v + '/source', v + '/target')",
                    lambda v: not os.path.lexists(f"{v}/source") and
                    open(f"{v}/target").read() == "new"),
    "link": (lambda v: open(f"{v}/source", "w").write("linked"),
             "os.link(v + '/source', v + '/target')",
             lambda v: os.stat(f"{v}/target").st_nlink == 2 and
             os.path.samefile(f"{v}/source", f"{v}/target")),
    "symlink": (None, "os.symlink('elsewhere', v + '/target')",
                lambda v: os.readlink(f"{v}/target") == "elsewhere"),
}

CALL = """
import os, sys, errno
v = sys.argv[1]
try:
{body}
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


def cut_off(d, work, vol, when, code):
    """
    Runs @code (a script, the volume's path as argv[1]) in a child against a
    daemon that kills itself with the journal entry of the request on the
    name "target" @when ("begun" or "ended"), starts the next daemon, and
    returns the child's (stdout, stderr) once it is answered.
    """
    d.stop()
    os.environ[CRASH_ENV] = f"{when}:target"
    try:
        d.start()
    finally:
        del os.environ[CRASH_ENV]
    d._expect_exit = True  # it kills itself on the request below
    call = work.spawn([PYTHON, "-c", code, vol], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    d.proc.wait(timeout=30)
    with pytest.raises(subprocess.TimeoutExpired):
        call.communicate(timeout=0.5)  # waiting for an answer, not failed
    d.start()
    out, err = call.communicate(timeout=30)
    assert "taken back after a crash" in d.log_since_start(), d.log_tail()
    return out, err


@pytest.mark.parametrize("when", ["begun", "ended"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_a_resent_request_is_answered_as_it_first_ran(daemon, work, op, when):
    prepare, body, check = OPS[op]
    d = daemon
    vol = d.create("vol", 16 * MiB)
    if prepare:
        prepare(vol)
    out, err = cut_off(d, work, vol, when,
                       CALL.format(body="    " + body.replace("\n", "\n    ")))
    assert out.strip() == "ok", (out, err, d.log_tail())
    assert check(vol)
    wait_until(lambda: "usage recounted while serving" in d.log_since_start(), 30,
               "the recount to end")
    assert_exact_usage(d, "vol")
    d.stop()


def deleted_backing_fds(pid, backing):
    """The daemon's fds on files removed from @backing."""
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(backing + "/") and target.endswith(" (deleted)"):
            fds.append(target)
    return fds


@pytest.mark.parametrize("when", ["begun", "ended"])
def test_a_resent_create_leaves_no_handle_behind(daemon, work, when):
    """
    The dead daemon recorded the created file's node and handle before
    answering (so that none the kernel holds is unknown after a crash), but
    the kernel never learned them, and the next daemon answers the resent
    request anew. Neither may live on, holding the file open (its space
    charged) or its node pinned after its only user closed and removed it.
    """
    d = daemon
    vol = d.create("vol", 64 * MiB)
    out, err = cut_off(d, work, vol, when, CALL.format(body="""
    fd = os.open(v + '/target', os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    os.write(fd, b'x' * (4 << 20))
    os.close(fd)
    os.unlink(v + '/target')"""))
    assert out.strip() == "ok", (out, err, d.log_tail())
    wait_until(lambda: "usage recounted while serving" in d.log_since_start(), 30,
               "the recount to end")
    # Its node goes with the kernel's FORGET, which follows the unlink.
    wait_until(lambda: deleted_backing_fds(d.proc.pid, d.backing("vol")) == [], 10,
               "the daemon to let go of the removed file")
    assert_exact_usage(d, "vol")
    d.stop()

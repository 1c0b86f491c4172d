"""
carvectl: every misuse is refused with one clear line, the documented exit
code, and no change to the daemon's state; the verbs do what they say on a
live volume.
"""

import os
import stat
import subprocess

import pytest

from conftest import (CARVECTL, MiB, NOBODY_GID, NOBODY_UID, PYTHON, mounts_at, tree_usage)

VOLUME_FIELDS = {"name", "mountpoint", "state", "capacity_bytes", "used_bytes", "inode_limit",
                 "used_inodes", "uid", "gid", "mode", "limits"}
LIMIT_FIELDS = {"riops", "wiops", "rbps", "wbps"}


def state(d):
    """What a refused request must leave alone."""
    return (d.ctl("list", json=False).stdout, sorted(os.listdir(d.discovery)),
            sorted(os.listdir(os.path.join(d.pool, "volumes"))))


def expect_error(d, args, rc, *words):
    before = state(d)
    p = d.ctl(*args, json=False, check=False)
    assert p.returncode == rc, f"carvectl {' '.join(args)}: exit {p.returncode}, " \
                               f"expected {rc}; stderr {p.stderr!r}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("carvectl: "), p.stderr
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    assert p.stdout == "", p.stdout
    assert state(d) == before, f"carvectl {' '.join(args)} changed something"
    # The JSON output format reports errors the same way.
    pj = d.ctl(*args, json=True, check=False)
    assert pj.returncode == rc and pj.stderr == p.stderr
    assert state(d) == before
    return lines[0]


@pytest.fixture
def ctl_daemon(daemon):
    daemon.create("vol", 16 * MiB)
    return daemon


@pytest.mark.parametrize("name, word", [
    ("Upper", "Upper"),
    ("a" * 64, "63"),
    ("-lead", "-lead"),
    ("..", ".."),
    ("a/b", "a/b"),
    ("", "name"),
    ("trail-", "trail-"),
])
def test_bad_names(ctl_daemon, name, word):
    msg = expect_error(ctl_daemon, ["create", "--size", "1Mi", "--", name], 2, word)
    assert "name" in msg


@pytest.mark.parametrize("size, word", [
    ("0", "greater than zero"),
    ("5Gb", "5Gb"),
    ("-1Gi", "-1Gi"),
    ("1.5.5Mi", "1.5.5Mi"),
    ("99999Ei", "99999Ei"),
    ("", "--size"),
    ("ten", "ten"),
])
def test_bad_sizes(ctl_daemon, size, word):
    expect_error(ctl_daemon, ["create", "new", "--size", size], 2, word)
    expect_error(ctl_daemon, ["resize", "vol", "--size", size], 2, word)


def test_missing_size(ctl_daemon):
    expect_error(ctl_daemon, ["create", "new"], 2, "--size")
    expect_error(ctl_daemon, ["resize", "vol"], 2, "--size")


@pytest.mark.parametrize("args, words", [
    (["frobnicate"], ["frobnicate"]),
    (["create", "new", "--size", "1Mi", "--bogus"], ["--bogus"]),
    (["create", "new", "--size", "1Mi", "--inodes", "many"], ["many"]),
    (["create", "new", "--size", "1Mi", "--inodes", "-5"], ["-5"]),
    (["create", "new", "--size", "1Mi", "--mode", "9999"], ["--mode", "9999"]),
    (["create", "new", "--size", "1Mi", "--uid", "-1"], ["--uid"]),
    (["create", "new", "--size", "1Mi", "--gid", "abc"], ["--gid", "abc"]),
    (["create", "a", "b", "--size", "1Mi"], ["'b'"]),
    (["resize", "vol", "--size", "1Mi", "--inodes", "5"], ["--inodes"]),
    (["set-limits", "vol"], ["set-limits"]),
    (["set-limits", "vol", "--riops", "fast"], ["fast"]),
    (["set-limits", "vol", "--burst-seconds", "0.0005"], ["'0.0005'", "finer than a millisecond"]),
    (["set-limits", "vol", "--burst-seconds", "86401"], ["'86401'", "more than 86400 seconds"]),
    (["set-limits", "vol", "--burst-seconds", "."], ["'.'", "not a number of seconds"]),
    (["set-limits", "vol", "--burst-seconds", "1s"], ["'1s'", "not a number of seconds"]),
    (["-o", "yaml", "list"], ["yaml"]),
    (["list", "extra"], ["extra"]),
    (["delete"], []),
    (["stats", "a", "b"], []),
])
def test_other_usage_errors(ctl_daemon, args, words):
    expect_error(ctl_daemon, args, 2, *words)


@pytest.mark.parametrize("seconds, ms", [("2", 2000), ("0.25", 250), (".5", 500), ("1.", 1000),
                                         ("0.1000", 100)])
def test_burst_seconds_forms(ctl_daemon, seconds, ms):
    """The grammar carve-provisioner's burstSeconds shares (duration.h)."""
    ctl_daemon.ctl("set-limits", "vol", "--burst-seconds", seconds, json=False)
    assert ctl_daemon.stats("vol")["limits"]["burst_ms"] == ms


def test_daemon_refusals(ctl_daemon):
    d = ctl_daemon
    expect_error(d, ["create", "vol", "--size", "1Mi"], 1, "'vol'", "exists")
    expect_error(d, ["delete", "nope"], 1, "'nope'")
    expect_error(d, ["wipe", "nope"], 1, "'nope'")
    expect_error(d, ["stats", "nope"], 1, "'nope'")
    expect_error(d, ["resize", "nope", "--size", "1Mi"], 1, "'nope'")
    # More than the pool's filesystem holds.
    expect_error(d, ["create", "huge", "--size", "1Ei"], 1, "'huge'")


@pytest.mark.parametrize("how", ["cwd", "fd"])
def test_delete_busy_volume(ctl_daemon, work, how):
    d = ctl_daemon
    vol = d.mountpoint("vol")
    with open(f"{vol}/data", "w") as f:
        f.write("x")
    code = ("import os, sys; os.chdir(sys.argv[1])" if how == "cwd" else
            "import sys; f = open(sys.argv[1] + '/data')")
    holder = work.spawn([PYTHON, "-c", code + "; print('ready', flush=True); sys.stdin.read()",
                         vol], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    msg = expect_error(d, ["delete", "vol"], 1, "'vol'", "--force")
    assert "use" in msg
    assert os.path.exists(f"{vol}/data")
    p = d.ctl("delete", "vol", "--force")
    assert p.data == {"ok": True}
    d.wait_unmounted("vol")
    assert not mounts_at(vol)
    assert [v["name"] for v in d.list()] == []
    assert not os.path.exists(d.backing("vol"))
    holder.stdin.close()
    holder.wait(timeout=30)


def test_delete_idle_volume(ctl_daemon):
    d = ctl_daemon
    p = d.ctl("delete", "vol", json=False)
    assert "vol" in p.stdout
    d.wait_unmounted("vol")
    assert d.list() == []
    assert not os.path.exists(d.backing("vol"))


def test_resize(ctl_daemon, block_size):
    d = ctl_daemon
    vol = d.mountpoint("vol")
    with open(f"{vol}/f", "wb") as f:
        f.write(os.urandom(10 * MiB))
    used = d.used("vol")
    msg = expect_error(d, ["resize", "vol", "--size", "8Mi"], 1, "'vol'")
    assert "in use" in msg or "shrink" in msg
    assert d.stats("vol")["capacity_bytes"] == 16 * MiB
    v = os.statvfs(vol)
    assert v.f_blocks * v.f_frsize == 16 * MiB
    # Growing shows at once, on the same mount.
    mount_before = d.volume_mounts("vol")
    r = d.ctl("resize", "vol", "--size", "64Mi").data
    assert r["capacity_bytes"] == 64 * MiB
    v = os.statvfs(vol)
    assert v.f_blocks * v.f_frsize == 64 * MiB
    assert (v.f_blocks - v.f_bfree) * v.f_frsize == used
    out = subprocess.run(["df", "-B1", "--output=size", vol], stdout=subprocess.PIPE,
                         text=True, check=True).stdout.split()
    assert int(out[1]) == 64 * MiB
    assert d.volume_mounts("vol") == mount_before
    # And the room is usable: 30 MiB more fits now.
    with open(f"{vol}/g", "wb") as f:
        f.write(os.urandom(30 * MiB))
    # Shrinking to just above the usage works.
    used = d.used("vol")
    target = (used // MiB + 1) * MiB
    d.ctl("resize", "vol", "--size", target)
    v = os.statvfs(vol)
    assert v.f_blocks * v.f_frsize == target


def test_wipe(ctl_daemon):
    d = ctl_daemon
    vol = d.mountpoint("vol")
    os.makedirs(f"{vol}/a/b/c")
    for i in range(20):
        with open(f"{vol}/a/b/f{i}", "wb") as f:
            f.write(os.urandom(100 * 1024))
    os.symlink("a", f"{vol}/l")
    os.chmod(f"{vol}/a/b", 0o500)
    assert d.stats("vol")["used_inodes"] == 24
    p = d.ctl("wipe", "vol")
    assert p.data == {"ok": True}
    assert os.listdir(vol) == []
    assert os.listdir(d.backing("vol")) == []
    s = d.stats("vol")
    root_block = os.lstat(d.backing("vol")).st_blocks * 512
    assert s["used_bytes"] == root_block == tree_usage(d.backing("vol"))[0]
    assert s["used_inodes"] == 0
    assert s["capacity_bytes"] == 16 * MiB
    assert s["state"] == "mounted"
    v = os.statvfs(vol)
    assert (v.f_blocks - v.f_bfree) * v.f_frsize == root_block
    with open(f"{vol}/after", "w") as f:
        f.write("still usable")


def test_json_output(daemon):
    d = daemon
    d.create("one", 16 * MiB, "--inodes", "50", "--uid", "1000", "--gid", "1001",
             "--mode", "0700")
    d.create("two", 32 * MiB)
    listed = d.list()
    assert isinstance(listed, list) and [v["name"] for v in listed] == ["one", "two"]
    for v in listed:
        assert VOLUME_FIELDS <= set(v), VOLUME_FIELDS - set(v)
        assert LIMIT_FIELDS <= set(v["limits"])
        assert v["mountpoint"] == d.mountpoint(v["name"])
        assert v["state"] == "mounted"
    one = d.stats("one")
    assert VOLUME_FIELDS <= set(one)
    assert (one["capacity_bytes"], one["inode_limit"], one["uid"], one["gid"], one["mode"]) == \
        (16 * MiB, 50, 1000, 1001, 0o700)
    assert one["used_bytes"] == tree_usage(d.backing("one"))[0]
    assert one["used_inodes"] == 0
    st = os.stat(d.mountpoint("one"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o700)
    two = d.stats("two")
    assert two["inode_limit"] == 0 and two["mode"] == 0o755
    assert all(two["limits"][k] == 0 for k in LIMIT_FIELDS)
    # The reply of create is the volume object.
    created = d.ctl("create", "three", "--size", "1Mi").data
    assert created["name"] == "three" and created["capacity_bytes"] == MiB


def test_non_root_is_refused(ctl_daemon, work):
    d = ctl_daemon
    before = state(d)
    # Open the way to the socket for this test only, so that the daemon's
    # own peer check is what refuses.
    os.chmod(work.run, 0o755)
    os.chmod(d.socket, 0o666)
    try:
        for args in (["list"], ["create", "x", "--size", "1Mi"], ["delete", "vol", "--force"]):
            p = d.ctl(*args, json=False, check=False, user=(NOBODY_UID, NOBODY_GID))
            assert p.returncode == 1, (args, p.returncode, p.stderr)
            assert p.stderr.startswith("carvectl: ") and "root" in p.stderr, p.stderr
            assert len(p.stderr.splitlines()) == 1
    finally:
        os.chmod(d.socket, 0o600)
        os.chmod(work.run, 0o700)
    assert state(d) == before
    # With the socket as the daemon made it, the socket itself refuses.
    p = d.ctl("list", json=False, check=False, user=(NOBODY_UID, NOBODY_GID))
    assert p.returncode == 3 and d.socket in p.stderr, p.stderr


def test_daemon_not_running(work):
    sock = os.path.join(work.run, "absent.sock")
    for args in (["list"], ["stats", "x"], ["create", "x", "--size", "1Mi"]):
        p = subprocess.run([CARVECTL, "--socket", sock, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        assert p.returncode == 3, (args, p.returncode, p.stderr)
        assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("carvectl: ")
        assert sock in p.stderr
    # A socket file that nobody listens on: the same.
    import socket as so
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.bind(sock)
    s.close()
    p = subprocess.run([CARVECTL, "--socket", sock, "list"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert p.returncode == 3 and sock in p.stderr, p.stderr


def test_stopped_daemon_gives_exit_3(daemon):
    d = daemon
    d.stop()
    p = subprocess.run([CARVECTL, "--socket", d.socket, "list"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert p.returncode == 3 and d.socket in p.stderr, p.stderr


@pytest.mark.parametrize("request_, code, words", [
    ({"verb": "stats"}, "bad_request", "field 'name' is required for verb 'stats'"),
    ({"verb": "wipe", "name": "Bad"}, "invalid_argument", "volume name 'Bad' is invalid"),
    ({"verb": "list", "name": "vol"}, "bad_request", "unknown field 'name' for verb 'list'"),
    ({"verb": "pool", "x": 1}, "bad_request", "unknown field 'x' for verb 'pool'"),
    ({"verb": "create", "name": "n", "size_bytes": 1, "bogus": 1}, "bad_request",
     "unknown field 'bogus' for verb 'create'"),
    ({"verb": "resize", "name": "vol"}, "bad_request",
     "field 'size_bytes' is required for verb 'resize'"),
    ({"verb": "delete", "name": "nope"}, "not_found", "volume 'nope' does not exist"),
    ({"verb": "fly"}, "unknown_verb", "unknown verb 'fly'"),
])
def test_protocol_refusals_name_what_is_wrong(ctl_daemon, request_, code, words):
    """Other clients than carvectl (the provisioner, scripts) get the same
    checks: every verb refuses fields it does not know and checks the volume
    name before it acts."""
    before = state(ctl_daemon)
    reply = ctl_daemon.request(request_)
    assert reply.get("error", {}).get("code") == code, reply
    assert words in reply["error"]["message"], reply
    assert state(ctl_daemon) == before
    assert ctl_daemon.request({"verb": "ping"}) == {"ok": True}

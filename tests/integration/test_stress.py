"""
Stress: stress-ng's filesystem stressors with verification, and dbench's
file-server load, on a carvefs volume. The daemon must stay up and every
check must pass.
"""

import os
import re
import shutil

import pytest

from conftest import GiB, run

DBENCH_LOADFILE = "/usr/share/dbench/client.txt"


def need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: run 'make deps-test' (Debian package {tool})")
    return path


def stress_ng(d, vol, args, seconds):
    tmp = os.path.join(vol, "stress")
    os.makedirs(tmp, exist_ok=True)
    argv = [need("stress-ng"), "--temp-path", tmp, "--verify", "--metrics-brief",
            "--timeout", f"{seconds}s", *args]
    p = run(argv, check=False, timeout=seconds * 4 + 60)
    out = p.stdout + p.stderr
    d.check_alive()
    assert p.returncode == 0, f"stress-ng {' '.join(args)} exited {p.returncode}\n{out[-4000:]}"
    bad = [l for l in out.splitlines()
           if re.search(r"\bfail|verif.*(error|mismatch)|\berror\b", l, re.I)
           and "0 failed" not in l]
    assert not bad, "stress-ng reported failures:\n" + "\n".join(bad[-30:])
    assert "successful run completed" in out, out[-2000:]
    return out


@pytest.mark.timeout_seconds(150)
def test_stress_ng_hdd_verify(daemon):
    d = daemon
    vol = d.create("hdd", 1 * GiB, "--mode", "1777")
    stress_ng(d, vol, ["--hdd", "2", "--hdd-opts", "wr-rnd,rd-rnd", "--hdd-bytes", "128m"], 15)
    s = d.stats("hdd")
    assert s["used_bytes"] <= s["capacity_bytes"]


@pytest.mark.timeout_seconds(150)
def test_stress_ng_metadata_stressors(daemon):
    d = daemon
    vol = d.create("meta", 1 * GiB, "--mode", "1777")
    stress_ng(d, vol, ["--dentry", "1", "--dir", "1", "--link", "1", "--symlink", "1",
                       "--rename", "1", "--fallocate", "1", "--seek", "1", "--xattr", "1"], 10)
    s = d.stats("meta")
    assert s["used_bytes"] <= s["capacity_bytes"]


def dbench_argv(args):
    """dbench with args, in an IPC namespace of its own in which semaphore
    set id 0 is already spent.

    dbench 4.0 takes a semget() result of 0 for a failure and prints
    'failed to create barrier semaphore' (then runs on with it). 0 is a
    valid id: the one the kernel gives to the first set ever made in an
    IPC namespace, so on a freshly booted machine the first dbench run
    gets it, and later runs, once the id's sequence number has moved on, do
    not. In a new namespace a throwaway set (ipcmk) takes id 0 and is
    removed; the next set, dbench's, has a non-zero sequence number, so
    its id is never 0, whatever ran on the machine before."""
    prologue = ('id=$(ipcmk -S 1 | sed -n "s/^Semaphore id: //p") && [ -n "$id" ] && '
                'ipcrm -s "$id" && exec "$@"')
    return [need("unshare"), "--ipc", "--", "sh", "-c", prologue, "sh", need("dbench"),
            *args]


@pytest.mark.timeout_seconds(120)
def test_dbench(daemon):
    d = daemon
    need("dbench")
    assert os.path.exists(DBENCH_LOADFILE), \
        f"{DBENCH_LOADFILE} is missing: reinstall the Debian package dbench"
    vol = d.create("dbench", 1 * GiB)
    target = os.path.join(vol, "clients")
    os.mkdir(target)
    p = run(dbench_argv(["-c", DBENCH_LOADFILE, "-D", target, "-t", "15", "4"]), check=False,
            timeout=100)
    out = p.stdout + p.stderr
    d.check_alive()
    assert p.returncode == 0, f"dbench exited {p.returncode}\n{out[-4000:]}"
    errors = [l for l in out.splitlines() if re.search(r"error|failed|expected", l, re.I)]
    assert not errors, "dbench reported errors:\n" + "\n".join(errors[:30])
    assert re.search(r"^Throughput [0-9.]+ MB/sec\s+4 clients", out, re.M), out[-2000:]

"""
The pool's room: `carvectl pool` reports the pool filesystem's space and what
the volumes have committed, and create/resize with an overcommit ratio refuse
a volume that would let the volumes together outgrow the pool's free space.
The check runs in the daemon under its lock, so requests racing for the last
room cannot both win.
"""

import os
import threading

from conftest import MiB


def pool_info(d):
    return d.ctl("pool").data


def test_pool_reports_space_and_commitments(ext4_daemon, block_size):
    d = ext4_daemon
    empty = pool_info(d)
    st = os.statvfs(d.pool)
    assert empty["size_bytes"] == st.f_blocks * st.f_frsize
    assert abs(empty["free_bytes"] - st.f_bavail * st.f_frsize) <= 4 * MiB
    assert empty["allocated_bytes"] == 0 and empty["committed_bytes"] == 0
    assert empty["volumes"] == 0
    assert empty["path"] == d.pool

    mnt = d.create("a", 32 * MiB)
    d.create("b", 16 * MiB)
    with open(os.path.join(mnt, "f"), "wb") as f:
        f.write(b"x" * (8 * MiB))
        os.fsync(f.fileno())
    p = pool_info(d)
    used_a = d.used("a")
    used_b = d.used("b")
    assert used_a >= 8 * MiB
    assert p["volumes"] == 2
    assert p["allocated_bytes"] == 48 * MiB
    assert p["committed_bytes"] == 48 * MiB - used_a - used_b
    assert p["free_bytes"] <= empty["free_bytes"] - 8 * MiB + block_size

    text = d.ctl("pool", json=False).stdout
    assert "allocated: 48" in text and "volumes: 2" in text, text


def test_overcommit_refuses_what_does_not_fit(ext4_daemon):
    d = ext4_daemon
    free = pool_info(d)["free_bytes"]
    big = (free // MiB - 8) * MiB
    # Without a ratio, the old rule: anything that fits on the filesystem.
    d.create("first", big)
    p = d.ctl("create", "--size", f"{big}", "--overcommit", "1", "second",
              json=False, check=False)
    assert p.returncode == 1, p.stderr
    assert "not enough room" in p.stderr and "'second'" in p.stderr, p.stderr
    assert "second" not in os.listdir(d.discovery)
    # A ratio of 2 allows it; a third refused again.
    d.ctl("create", "--size", f"{big}", "--overcommit", "2", "second")
    p = d.ctl("create", "--size", "64Mi", "--overcommit", "2", "third", check=False,
              json=False)
    assert p.returncode == 1 and "not enough room" in p.stderr, p.stderr


def test_overcommit_resize_checks_growth_only(ext4_daemon):
    d = ext4_daemon
    d.create("v", 16 * MiB)
    free = pool_info(d)["free_bytes"]
    d.create("big", (free // MiB - 40) * MiB)
    p = d.ctl("resize", "v", "--size", "64Mi", "--overcommit", "1", check=False, json=False)
    assert p.returncode == 1 and "not enough room" in p.stderr, p.stderr
    assert d.stats("v")["capacity_bytes"] == 16 * MiB
    # Shrinking never needs room; growing within it works and df sees it at once.
    d.ctl("resize", "v", "--size", "8Mi", "--overcommit", "1")
    d.ctl("resize", "v", "--size", "32Mi", "--overcommit", "1")
    st = os.statvfs(d.mountpoint("v"))
    assert st.f_blocks * st.f_frsize == 32 * MiB


def test_racing_creates_for_the_last_room(ext4_daemon):
    d = ext4_daemon
    free = pool_info(d)["free_bytes"]
    size = (free * 6 // 10 // MiB) * MiB
    results = {}

    def create(name):
        results[name] = d.ctl("create", "--size", f"{size}", "--overcommit", "1", name,
                              check=False, json=False)

    threads = [threading.Thread(target=create, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = sorted(n for n, p in results.items() if p.returncode == 0)
    lost = sorted(n for n, p in results.items() if p.returncode != 0)
    assert len(won) == 1, {n: p.stderr for n, p in results.items()}
    for n in lost:
        assert "not enough room" in results[n].stderr, results[n].stderr
    assert sorted(v["name"] for v in d.list()) == won


def test_bad_overcommit_is_a_usage_error(daemon):
    for bad in ("0", "-1", "x", "1e9"):
        p = daemon.ctl("create", "--size", "1Mi", "--overcommit", bad, "v", check=False,
                       json=False)
        assert p.returncode == 2 and "--overcommit" in p.stderr, (bad, p.stderr)
    assert daemon.list() == []

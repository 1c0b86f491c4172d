"""
Concurrent writers cannot overshoot a volume's capacity, and the usage the
daemon reports after a clean or an unclean restart is what the backing
directory really holds.
"""

import os
import subprocess

import pytest

from conftest import MiB, PYTHON, tree_usage, wait_until

CAP = 128 * MiB
WRITERS = 4

# Each writer appends 64 KiB .. 1 MiB chunks to its own file until a write
# fails, then prints the errno and the size it reached. With "direct" it
# writes with O_DIRECT from a page-aligned buffer; with "shared" all writers
# pwrite() at random 1 MiB-aligned offsets of one sparse file, so that they
# fill each other's holes.
WRITER = r"""
import errno, mmap, os, random, sys
path, how = sys.argv[1], sys.argv[2]
rnd = random.Random(sys.argv[3])
flags = os.O_WRONLY | os.O_CREAT
if how == "direct":
    flags |= os.O_DIRECT
elif how == "append":
    flags |= os.O_APPEND
fd = os.open(path, flags, 0o644)
buf = mmap.mmap(-1, 1 << 20)
buf.write(os.urandom(1 << 20))
err, written, off = 0, 0, 0
while True:
    n = rnd.choice((64 << 10, 256 << 10, 1 << 20))
    try:
        if how == "shared":
            done = os.pwrite(fd, memoryview(buf)[:n], rnd.randrange(4 * int(sys.argv[4]) >> 20) << 20)
        else:
            done = os.pwrite(fd, memoryview(buf)[:n], off) if how == "direct" else \
                os.write(fd, memoryview(buf)[:n])
            off += done
        if done <= 0:
            break
        written += done
    except OSError as e:
        err = e.errno
        break
print(err, written, flush=True)
os.close(fd)
"""


def check_recount(d, name, what):
    walked, objects = tree_usage(d.backing(name))
    s = d.stats(name)
    assert s["used_bytes"] == walked, f"{what}: used_bytes {s['used_bytes']}, walk {walked}"
    assert s["used_inodes"] == objects, f"{what}: used_inodes {s['used_inodes']}, walk {objects}"


@pytest.mark.parametrize("how", ["append", "direct", "shared"])
def test_concurrent_writers_until_enospc(ext4_daemon, work, block_size, how):
    d = ext4_daemon
    vol = d.create("conc", CAP)
    os.mkdir(f"{vol}/dir")
    limit = CAP + WRITERS * block_size
    target = (lambda i: f"{vol}/shared") if how == "shared" else (lambda i: f"{vol}/w{i}")
    if how == "shared":
        with open(target(0), "wb") as f:
            f.truncate(4 * CAP)
    writers = [work.spawn([PYTHON, "-c", WRITER, target(i), how, f"seed{i}", str(CAP)],
                          stdout=subprocess.PIPE, text=True) for i in range(WRITERS)]
    samples = []
    while any(w.poll() is None for w in writers):
        s = d.stats("conc")
        samples.append(s["used_bytes"])
        v = os.statvfs(vol)
        assert s["used_bytes"] <= limit, f"usage {s['used_bytes']} passed {limit} mid-run"
        assert v.f_bfree <= v.f_blocks
        # The backing directory itself, not only the daemon's count.
        walked, _ = tree_usage(d.backing("conc"))
        assert walked <= limit, f"backing dir holds {walked} > {limit} mid-run"
    results = [w.communicate(timeout=60)[0].split() for w in writers]
    assert all(w.returncode == 0 for w in writers)
    errs = [int(r[0]) for r in results]
    written = sum(int(r[1]) for r in results)
    assert all(e == 28 for e in errs), f"writers ended with errnos {errs} (ENOSPC is 28)"
    if how == "shared":
        allocated = os.stat(target(0)).st_blocks * 512
        assert allocated <= CAP, f"the shared file holds {allocated} bytes in a {CAP} volume"
        assert allocated >= CAP - (WRITERS + 2) * MiB
    else:
        sizes = sum(os.stat(target(i)).st_size for i in range(WRITERS))
        assert sizes == written
        assert sizes <= CAP, f"files hold {sizes} bytes in a {CAP} volume"
        assert sizes >= CAP - (WRITERS + 2) * MiB, f"only {sizes} written"
    s = d.stats("conc")
    assert s["used_bytes"] <= limit
    print(f"{len(samples)} usage samples during the run, peak {max(samples, default=0)}")
    # The kernel sends each file's RELEASE after its writer closed it, and
    # the daemon settles a written file's usage at release only once its
    # data are written back (ext4 allocates extent-tree blocks then): until
    # those settles ran, a file's count may lack its extent-tree leaf.
    wait_until(lambda: d.stats("conc")["used_bytes"] == tree_usage(d.backing("conc"))[0], 30,
               "the usage to settle after the writers' files were released", check=d.check_alive)
    check_recount(d, "conc", "after the writers")

    # A clean stop records the usage the disk holds; the next start agrees.
    d.stop()
    d.start()
    d.wait_mounted("conc")
    check_recount(d, "conc", "after a clean restart")

    # An unclean stop: the next start recounts by walking the backing dir.
    d.kill9()
    d.start()
    d.wait_mounted("conc")
    assert len(d.volume_mounts("conc")) == 1, "stale mount not detached"
    check_recount(d, "conc", "after kill -9 and start")
    assert "usage recounted" in d.log_since_start()


def test_concurrent_creates_respect_the_inode_limit(daemon, work):
    """Many processes creating at once: exactly the limit is reached."""
    d = daemon
    limit = 200
    vol = d.create("inodes", 64 * MiB, "--inodes", limit)
    code = r"""
import errno, os, sys
base, me = sys.argv[1], sys.argv[2]
made = 0
for i in range(1000):
    try:
        if i % 2:
            os.mkdir(f"{base}/{me}-{i}")
        else:
            os.close(os.open(f"{base}/{me}-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        made += 1
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
print(made, flush=True)
"""
    procs = [work.spawn([PYTHON, "-c", code, vol, f"p{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(WRITERS)]
    made = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(made) == limit, f"{sum(made)} objects made with an inode limit of {limit}"
    assert len(os.listdir(vol)) == limit
    check_recount(d, "inodes", "after concurrent creates")

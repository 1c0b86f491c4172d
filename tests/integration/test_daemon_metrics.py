"""
The daemon's HTTP endpoints (carvefs --listen): /metrics follows the IO done
through the kernel, parses as the text exposition format 0.0.4 in full,
agrees with carvectl stats and with statfs (what kubelet's volume stats
read), and shows IO limits and throttling; /healthz answers; a bad --listen
is refused with a clear message and exit status.
"""

import errno
import http.client
import math
import mmap
import os
import re
import socket

import pytest

from conftest import MiB

# --------------------------------------------------------------------------
# A strict parser of the text format
# --------------------------------------------------------------------------

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Exposition:
    """families: name -> {"type", "help", "samples": [(name, labels, value)]}"""

    def __init__(self, families):
        self.families = families

    def samples(self, family):
        return self.families[family]["samples"]

    def value(self, name, **labels):
        """The value of the one sample called name whose labels include labels."""
        family = self._family_of(name)
        found = [v for n, ls, v in self.samples(family)
                 if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]
        assert len(found) == 1, f"{len(found)} samples of {name} {labels}"
        return found[0]

    def has(self, name, **labels):
        family = self._family_of(name)
        return any(n == name and all(ls.get(k) == str(x) for k, x in labels.items())
                   for n, ls, v in self.samples(family))

    def _family_of(self, name):
        if name in self.families:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in self.families:
                return name[:-len(suffix)]
        raise KeyError(name)

    def histogram(self, family, **labels):
        """(buckets [(le, count)...] in order, sum, count) of one series."""
        buckets = [(ls["le"], v) for n, ls, v in self.samples(family)
                   if n == family + "_bucket" and
                   all(ls.get(k) == str(x) for k, x in labels.items())]
        return (buckets, self.value(family + "_sum", **labels),
                self.value(family + "_count", **labels))


def _parse_labels(text, pos, line):
    """Parses '{a="x",b="y"}' at text[pos]; returns (labels, position after '}')."""
    assert text[pos] == "{"
    pos += 1
    labels = {}
    while text[pos] != "}":
        m = LABEL_RE.match(text, pos)
        assert m, f"bad label name in {line!r}"
        name = m.group(0)
        pos = m.end()
        assert text[pos:pos + 2] == '="', f"label {name} has no '=\"' in {line!r}"
        pos += 2
        value = []
        while text[pos] != '"':
            c = text[pos]
            assert c != "\n", line
            if c == "\\":
                nxt = text[pos + 1]
                assert nxt in ('\\', '"', 'n'), f"bad escape \\{nxt} in {line!r}"
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            else:
                value.append(c)
                pos += 1
        pos += 1
        assert name not in labels, f"label {name} twice in {line!r}"
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
            assert text[pos] != "}", f"trailing comma in {line!r}"
        else:
            assert text[pos] == "}", f"expected ',' or '}}' in {line!r}"
    return labels, pos + 1


def _parse_value(s, line):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s), \
        f"bad value {s!r} in {line!r}"
    return float(s)


def parse_exposition(text):
    """Parses the whole text, strictly: every line is a HELP, a TYPE or a
    sample; HELP and TYPE come once per family, before its samples; every
    sample belongs to the family typed last (histograms: _bucket with an le,
    _sum, _count); no series appears twice; histogram buckets rise with le,
    end with +Inf, and +Inf equals _count; counters are not negative."""
    assert text.endswith("\n"), "the text must end with a newline"
    families = {}
    current = None
    seen_series = set()
    for line in text[:-1].split("\n"):
        assert line, "empty line"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert NAME_RE.fullmatch(name), line
            assert help_text, f"empty HELP: {line!r}"
            assert re.fullmatch(r"([^\\]|\\[\\n])*", help_text), f"bad escape in {line!r}"
            assert name not in families, f"family {name} announced twice"
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
            continue
        if line.startswith("# TYPE "):
            parts = line[7:].split(" ")
            assert len(parts) == 2, line
            name, typ = parts
            assert name == current and families[name]["type"] is None, \
                f"TYPE of {name} not right after its HELP"
            assert typ in TYPES, line
            families[name]["type"] = typ
            continue
        assert not line.startswith("#"), f"unexpected comment {line!r}"
        m = NAME_RE.match(line)
        assert m, f"bad sample line {line!r}"
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, line)
        assert line[pos] == " ", f"no space before the value in {line!r}"
        rest = line[pos + 1:].split(" ")
        assert 1 <= len(rest) <= 2, line
        value = _parse_value(rest[0], line)
        if len(rest) == 2:
            assert re.fullmatch(r"-?\d+", rest[1]), f"bad timestamp in {line!r}"
        assert current is not None, f"sample before any family: {line!r}"
        fam = families[current]
        assert fam["type"] is not None, f"sample of {current} before its TYPE"
        if fam["type"] == "histogram":
            assert name in (current + "_bucket", current + "_sum", current + "_count"), \
                f"{name} in histogram family {current}"
            assert ("le" in labels) == (name == current + "_bucket"), line
        else:
            assert name == current, f"sample {name} in family {current}"
            assert "le" not in labels, line
        if fam["type"] == "counter":
            assert value >= 0 and not math.isnan(value), line
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_series, f"series twice: {line!r}"
        seen_series.add(key)
        fam["samples"].append((name, labels, value))
    for name, fam in families.items():
        assert fam["type"] is not None, f"family {name} has no TYPE"
        if fam["type"] == "histogram":
            _check_histogram_family(name, fam["samples"])
    return Exposition(families)


def _check_histogram_family(family, samples):
    series = {}
    for name, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            assert s["sum"] is None and s["count"] is None, \
                f"{family}{dict(key)}: bucket after _sum/_count"
            le = _parse_value(labels["le"], labels["le"])
            s["buckets"].append((le, value))
        elif name.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for key, s in series.items():
        what = f"{family}{dict(key)}"
        les = [le for le, _ in s["buckets"]]
        counts = [c for _, c in s["buckets"]]
        assert les and les[-1] == math.inf, f"{what}: no +Inf bucket"
        assert les == sorted(les) and len(set(les)) == len(les), f"{what}: le not rising"
        assert counts == sorted(counts), f"{what}: cumulative counts fall: {counts}"
        assert s["count"] is not None and s["sum"] is not None, f"{what}: no _sum or _count"
        assert counts[-1] == s["count"], f"{what}: +Inf {counts[-1]} != count {s['count']}"
        assert all(c == int(c) for c in counts), f"{what}: fractional counts"
        assert s["sum"] >= 0


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, path, method="GET", host="127.0.0.1", body=None):
    """(status, content type, body text) of one request."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def scrape(port):
    status, ctype, text = http_request(port, "/metrics")
    assert status == 200, (status, text)
    assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
    return parse_exposition(text)


def direct_write(path, nbytes, chunk=64 * 1024):
    """Writes nbytes of non-zero data with O_DIRECT; returns the bytes written."""
    buf = mmap.mmap(-1, chunk)
    buf.write(os.urandom(chunk))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    done = 0
    try:
        while done < nbytes:
            done += os.pwritev(fd, [buf], done)
        os.fsync(fd)
    finally:
        os.close(fd)
    return done


def direct_read(path, nbytes, chunk=64 * 1024):
    buf = mmap.mmap(-1, chunk)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    done = 0
    try:
        while done < nbytes:
            n = os.preadv(fd, [buf], done)
            assert n > 0
            done += n
    finally:
        os.close(fd)
    return done


@pytest.fixture
def metrics_daemon(request, work):
    """A daemon serving /metrics and /healthz on a free port of 127.0.0.1;
    .port is the port."""
    d = work.daemon()
    request.node._carvefs_daemons.append(d)
    d.port = free_port()
    d.start(["--listen", f"127.0.0.1:{d.port}"])
    return d


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

VOL = {"volume": "data"}


def test_counters_follow_io(metrics_daemon):
    d = metrics_daemon
    mnt = d.create("data", "64Mi", "--inodes", "100")
    d.create("idle", "16Mi", "--storage-class", "fast")
    before = scrape(d.port)
    assert before.value("carvefs_volumes", state="mounted") == 2
    assert before.value("carvefs_volumes", state="error") == 0
    assert before.value("carvefs_build_info") == 1
    assert before.value("carvefs_volume_info", volume="idle", storage_class="fast",
                        state="mounted", mountpoint=d.mountpoint("idle")) == 1
    # No storage class: no storage_class label at all.
    for _, labels, _ in before.samples("carvefs_volume_capacity_bytes"):
        if labels["volume"] == "data":
            assert "storage_class" not in labels
    w0 = before.value("carvefs_volume_io_bytes_total", op="write", **VOL)
    r0 = before.value("carvefs_volume_io_bytes_total", op="read", **VOL)
    _, _, wcount0 = before.histogram("carvefs_volume_io_request_duration_seconds",
                                     op="write", **VOL)

    written = direct_write(os.path.join(mnt, "f"), 3 * MiB)
    read = direct_read(os.path.join(mnt, "f"), 3 * MiB)

    after = scrape(d.port)
    w1 = after.value("carvefs_volume_io_bytes_total", op="write", **VOL)
    r1 = after.value("carvefs_volume_io_bytes_total", op="read", **VOL)
    assert w1 - w0 >= written
    assert r1 - r0 >= read
    wops = after.value("carvefs_volume_io_ops_total", op="write", **VOL)
    rops = after.value("carvefs_volume_io_ops_total", op="read", **VOL)
    assert wops >= written // (64 * 1024) and rops >= read // (64 * 1024)
    for op, ops in (("write", wops), ("read", rops)):
        buckets, total, count = after.histogram("carvefs_volume_io_request_duration_seconds",
                                                op=op, **VOL)
        # Every request that reached the disk has a latency, and no other did.
        assert count == ops, (op, count, ops)
        assert total > 0
        assert [le for le, _ in buckets][:2] == ["0.00005", "0.0001"]
        assert buckets[-2][0] == "1" and buckets[-1][0] == "+Inf"
    _, _, wcount1 = after.histogram("carvefs_volume_io_request_duration_seconds",
                                    op="write", **VOL)
    assert wcount1 > wcount0
    # The idle volume saw nothing.
    idle = {"volume": "idle", "storage_class": "fast"}
    assert after.value("carvefs_volume_io_bytes_total", op="write", **idle) == 0
    assert after.histogram("carvefs_volume_io_request_duration_seconds", op="read",
                           **idle)[2] == 0

    # carvectl stats shows the same numbers (nothing ran in between).
    s = d.stats("data")
    assert s["io"]["write_bytes"] == w1 and s["io"]["read_bytes"] == r1
    assert s["io"]["write_ops"] == wops
    lat = s["io"]["write_latency"]
    assert lat["count"] == wops
    assert lat["sum_ns"] == pytest.approx(
        after.value("carvefs_volume_io_request_duration_seconds_sum", op="write", **VOL) * 1e9,
        abs=1)
    assert 0 < lat["p50_ns"] <= lat["p99_ns"] <= 1_000_000_000
    assert s["used_bytes"] == after.value("carvefs_volume_used_bytes", **VOL)
    text = d.ctl("stats", "data", json=False).stdout
    assert re.search(r"^io\.write_latency\.count:\s+%d$" % wops, text, re.M), text
    assert re.search(r"^io\.read_latency\.p99_ns:\s+\d+ \(", text, re.M), text


@pytest.mark.parametrize("pool", ["dir", "ext4"])
def test_statfs_agrees_with_metrics(request, work, pool):
    """kubelet's kubelet_volume_stats_* come from statfs on the mount: they
    and the daemon's metrics must tell the same story."""
    if pool == "ext4":
        work.ext4_pool()
    d = work.daemon()
    request.node._carvefs_daemons.append(d)
    port = free_port()
    d.start(["--listen", f"127.0.0.1:{port}"])
    mnt = d.create("vol", "48Mi", "--inodes", "64")
    os.makedirs(os.path.join(mnt, "sub"))
    for i in range(5):
        with open(os.path.join(mnt, "sub", f"f{i}"), "wb") as f:
            f.write(os.urandom((i + 1) * 300 * 1024))
            f.flush()
            os.fsync(f.fileno())
    direct_write(os.path.join(mnt, "big"), 4 * MiB)

    v = os.statvfs(mnt)
    m = scrape(port)
    labels = {"volume": "vol"}
    capacity = m.value("carvefs_volume_capacity_bytes", **labels)
    used = m.value("carvefs_volume_used_bytes", **labels)
    assert capacity == 48 * MiB == v.f_blocks * v.f_frsize
    assert used == (v.f_blocks - v.f_bfree) * v.f_frsize
    assert used >= 4 * MiB + sum((i + 1) * 300 * 1024 for i in range(5))
    assert m.value("carvefs_volume_inode_limit", **labels) == 64 == v.f_files
    assert m.value("carvefs_volume_inodes_used", **labels) == v.f_files - v.f_ffree == 7


def test_limits_and_throttling(metrics_daemon):
    d = metrics_daemon
    mnt = d.create("slow", "64Mi", "--wbps", "1Mi", "--riops", "300")
    m = scrape(d.port)
    labels = {"volume": "slow"}
    assert m.value("carvefs_volume_io_limit_bytes_per_second", op="write", **labels) == MiB
    assert m.value("carvefs_volume_io_limit_bytes_per_second", op="read", **labels) == 0
    assert m.value("carvefs_volume_io_limit_iops", op="read", **labels) == 300
    assert m.value("carvefs_volume_io_limit_burst_seconds", **labels) == 0.1
    assert m.value("carvefs_volume_io_limit_iops_size_bytes", **labels) == 0
    # 768 KiB at 1 MiB/s after a 0.1 s burst: the writes wait about 0.6 s.
    direct_write(os.path.join(mnt, "f"), 768 * 1024)
    m = scrape(d.port)
    throttled = m.value("carvefs_volume_io_throttled_seconds_total", **labels)
    assert throttled > 0.2, throttled
    assert m.value("carvefs_volume_io_queue_depth", **labels) == 0
    # Waiting counts in the latency: some write took longer than 50 ms.
    buckets, _, count = m.histogram("carvefs_volume_io_request_duration_seconds",
                                    op="write", **labels)
    assert dict(buckets)["0.05"] < count
    assert d.stats("slow")["io"]["throttled_ns"] == pytest.approx(throttled * 1e9, abs=1)
    # A live change shows at once.
    d.ctl("set-limits", "slow", "--wbps", "0", "--burst-seconds", "0.25", json=False)
    m = scrape(d.port)
    assert m.value("carvefs_volume_io_limit_bytes_per_second", op="write", **labels) == 0
    assert m.value("carvefs_volume_io_limit_burst_seconds", **labels) == 0.25


def test_healthz_and_other_requests(metrics_daemon):
    d = metrics_daemon
    assert http_request(d.port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    assert http_request(d.port, "/healthz", method="HEAD")[0] == 200
    assert http_request(d.port, "/nope")[0] == 404
    # Nothing here accepts a change.
    assert http_request(d.port, "/metrics", method="POST")[0] == 405
    assert http_request(d.port, "/healthz", method="DELETE")[0] == 405
    # An empty pool still has every family announced.
    m = scrape(d.port)
    assert m.families["carvefs_volume_capacity_bytes"]["type"] == "gauge"
    assert m.families["carvefs_volume_io_ops_total"]["type"] == "counter"
    assert m.families["carvefs_volume_io_request_duration_seconds"]["type"] == "histogram"
    assert m.value("carvefs_volumes", state="mounted") == 0


def test_label_values_escaped(request, work):
    """A mountpoint with a quote and a backslash comes back intact."""
    mnt = os.path.join(work.path, 'mnt"q\\x')
    d = work.daemon(mnt=mnt)
    request.node._carvefs_daemons.append(d)
    port = free_port()
    d.start(["--listen", f"127.0.0.1:{port}"])
    d.create("v", "8Mi")
    _, _, text = http_request(port, "/metrics")
    assert 'mountpoint="' + mnt.replace("\\", "\\\\").replace('"', '\\"') + '/v"' in text
    m = parse_exposition(text)
    assert m.value("carvefs_volume_info", volume="v", mountpoint=os.path.join(mnt, "v")) == 1


def test_ipv6_listen(request, work):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback here")
    d = work.daemon()
    request.node._carvefs_daemons.append(d)
    d.start(["--listen", f"[::1]:{port}"])
    assert http_request(port, "/healthz", host="::1")[0] == 200
    parse_exposition(http_request(port, "/metrics", host="::1")[2])


def test_listen_on_every_address(request, work):
    """':PORT' is reached over IPv4 and, where the host has it, IPv6."""
    d = work.daemon()
    request.node._carvefs_daemons.append(d)
    port = free_port()
    d.start(["--listen", f":{port}"])
    assert http_request(port, "/healthz", host="127.0.0.1")[0] == 200
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return
    assert http_request(port, "/healthz", host="::1")[0] == 200


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1", "127.0.0.1:", ":http",
                                  "127.0.0.1:65536", "::1:80", "[::1]80", "[]:80"])
def test_bad_listen_syntax(new_daemon, addr):
    d = new_daemon()
    rc, log = d.start_expect_failure(["--listen", addr])
    assert rc == 2, log
    assert "--listen" in log and f"'{addr}'" in log, log


def test_listen_address_in_use(new_daemon, work):
    d = new_daemon()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, log = d.start_expect_failure(["--listen", f"127.0.0.1:{port}"])
    assert rc == 1, log
    assert f"cannot listen on '127.0.0.1:{port}'" in log, log
    assert os.strerror(errno.EADDRINUSE) in log, log
    # It failed before serving anything.
    assert not os.path.exists(d.socket)


def test_listen_address_unresolvable(new_daemon):
    d = new_daemon()
    rc, log = d.start_expect_failure(["--listen", "no-such-host.invalid:9100"])
    assert rc == 1, log
    assert "no-such-host.invalid:9100" in log and "no such address" in log, log


@pytest.mark.parametrize("text", [
    "m 1",                                                  # no final newline
    "m 1\n",                                                # sample without HELP/TYPE
    "# HELP m x\n# TYPE m gauge\nm{a=\"b\\q\"} 1\n",        # bad escape
    "# HELP m x\n# TYPE m gauge\nm{a=\"b\"} 1\nm{a=\"b\"} 2\n",  # series twice
    "# HELP m x\n# TYPE m gauge\nn 1\n",                    # sample of another family
    "# HELP m x\n# TYPE m counter\nm -1\n",                 # negative counter
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
    "h_sum 1\nh_count 1\n",                                 # buckets fall
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
    "h_sum 1\nh_count 3\n",                                 # +Inf != count
    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
])
def test_parser_is_strict(text):
    with pytest.raises(AssertionError):
        parse_exposition(text)

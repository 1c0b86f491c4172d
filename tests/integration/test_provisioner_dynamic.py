"""
Dynamic provisioning against a real control plane (tests/k8s/README.md) and a
real carvefs daemon: claims of a StorageClass whose provisioner is
carvefs.io/local, selected for this node, get a volume carved with the size
and limits they ask for and a PV the PV controller binds them to; a released
PV with reclaim Delete loses its volume, then itself; Retain keeps both; two
claims racing for the last room do not both win; bad parameters and claims
too large are refused with an Event saying why; a provisioner killed between
the volume and the PV converges on restart to one of each.

The test plays the scheduler (cp.select_node()); Kubernetes 1.20's PV
controller then hands the claim to carvefs.io/local with the
volume.beta.kubernetes.io/storage-provisioner annotation.
"""

import os
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import BUILD, empty_cluster, MiB, running_control_plane, wait_until

import control_plane  # noqa: E402  tests/k8s/control_plane.py
import faultproxy  # noqa: E402  tests/k8s/faultproxy.py
import schema  # noqa: E402  tests/k8s/schema.py

PROVISIONER = os.path.join(BUILD, "carve-provisioner")
NODE = "node-1"
CARVEFS = "carvefs.io/local"
SELECTED = "volume.kubernetes.io/selected-node"
CLAIMS = "/api/v1/namespaces/default/persistentvolumeclaims"


@pytest.fixture(scope="module")
def cp():
    with running_control_plane(NODE) as plane:
        yield plane


@pytest.fixture
def cluster(cp):
    """The shared control plane, emptied of claims, PVs and classes after each test."""
    yield cp
    empty_cluster(cp, classes=True)


class Provisioner:
    """carve-provisioner with the api sink, logging to a file of the test."""

    def __init__(self, work, kubeconfig, overcommit=None, period="60s", listen=None):
        self.work = work
        self.listen = listen
        self.kubeconfig = kubeconfig
        self.period = period
        self.cfg = os.path.join(work.path, "config")
        os.makedirs(self.cfg, exist_ok=True)
        if overcommit is not None:
            with open(os.path.join(self.cfg, "dynamicProvisioning"), "w") as f:
                f.write(f"overcommit: {overcommit}\n")
        self.log_path = os.path.join(work.path, "provisioner.log")
        self.proc = None

    def argv(self, kubeconfig=None):
        return [PROVISIONER, "--config", self.cfg, "--node", NODE, "--kubeconfig",
                kubeconfig or self.kubeconfig, "--sink", "api", "--carvefs-socket",
                self.work.sock, "--discovery-period", self.period] + \
            (["--listen", self.listen] if self.listen else [])

    def start(self, kubeconfig=None):
        with open(self.log_path, "a") as logf:
            self.proc = self.work.spawn(self.argv(kubeconfig), stdout=logf,
                                        stderr=subprocess.STDOUT)
        return self

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def tail(self):
        return "---- provisioner log (tail) ----\n" + self.log()[-4000:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        assert rc == 0, f"carve-provisioner exited {rc} on SIGTERM\n{self.tail()}"

    def metric(self, name):
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.split(" ")[0] == name:
                    return float(line.split(" ")[1])
        return None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def make_class(cp, name, reclaim="Delete", parameters=None, mount_options=None,
               allow_expansion=None):
    cp.create_storage_class(name, CARVEFS, reclaim=reclaim,
                            binding_mode="WaitForFirstConsumer", parameters=parameters,
                            mount_options=mount_options, allow_expansion=allow_expansion)


def claim(cp, name, cls, size, annotations=None):
    """Creates a claim and selects this node for it; returns the claim's uid."""
    created = cp.create_pvc(name, storage_class=cls, size=size, annotations=annotations)
    cp.select_node(name, NODE)
    return created["metadata"]["uid"]


def events(cp, name, reason=None):
    """carvefs' Events about the object named name in the default namespace."""
    items = cp.api("GET", "/api/v1/namespaces/default/events")["items"]
    return [e for e in items
            if e["involvedObject"]["name"] == name
            and e.get("source", {}).get("component") == CARVEFS
            and (reason is None or e["reason"] == reason)]


def wait_event(cp, prov, name, reason, timeout=30):
    return cp.wait_for(lambda: events(cp, name, reason), timeout=timeout,
                       what=f"a {reason} event on {name}\n{prov.tail()}")


def claim_volumes(daemon, uid=None):
    """The daemon's volumes carved for claims (for the claim of uid only, if given)."""
    return [v for v in daemon.list()
            if "carvefs.io/claim-uid" in (v.get("labels") or {})
            and (uid is None or v["labels"]["carvefs.io/claim-uid"] == uid)]


def bound(cp, prov, name, timeout=30):
    try:
        return cp.wait_for_pvc_phase(name, "Bound", timeout=timeout)
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")


@pytest.mark.timeout_seconds(150)
def test_claim_gets_a_volume_of_its_size_and_limits(work, daemon, cluster):
    make_class(cluster, "fast", parameters={
        "inodes": "1000", "readIOPS": "500", "writeIOPS": "200",
        "readBytesPerSecond": "50Mi", "writeBytesPerSecond": "20Mi", "burstSeconds": "2",
        "maxWriteIOPS": "1k"}, mount_options=["noatime"], allow_expansion=True)
    # A 60 s period: only the claim watch can make this quick.
    prov = Provisioner(work, cluster.kubeconfig).start()
    uid = claim(cluster, "data", "fast", "100Mi", annotations={"carvefs.io/writeIOPS": "800"})
    name = f"pvc-{uid}"
    pvc = bound(cluster, prov, "data", timeout=20)
    assert pvc["spec"]["volumeName"] == name

    pv = cluster.kubectl("get", "pv", name)
    schema.validate(pv)
    spec = pv["spec"]
    mp = os.path.join(work.mnt, name)
    assert spec["local"]["path"] == mp
    assert spec["capacity"]["storage"] == "100Mi"
    assert spec["storageClassName"] == "fast"
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["mountOptions"] == ["noatime"]
    assert spec["volumeMode"] == "Filesystem"
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["claimRef"]["uid"] == uid and spec["claimRef"]["name"] == "data"
    terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0] == {"key": "kubernetes.io/hostname",
                                               "operator": "In", "values": [NODE]}
    ann = pv["metadata"]["annotations"]
    assert ann["pv.kubernetes.io/provisioned-by"] == CARVEFS
    assert ann["carvefs.io/volume"] == name

    st = daemon.stats(name)
    assert st["capacity_bytes"] == 100 * MiB
    assert st["inode_limit"] == 1000
    assert st["storage_class"] == "fast"
    assert st["labels"] == {"carvefs.io/claim-namespace": "default",
                            "carvefs.io/claim-name": "data", "carvefs.io/claim-uid": uid}
    lim = st["limits"]
    assert (lim["riops"], lim["wiops"], lim["rbps"], lim["wbps"], lim["burst_ms"]) == \
        (500, 800, 50 * MiB, 20 * MiB, 2000)
    v = os.statvfs(mp)
    assert v.f_blocks * v.f_frsize == 100 * MiB
    ok = events(cluster, "data", "ProvisioningSucceeded")
    assert ok and ok[0]["type"] == "Normal" and name in ok[0]["message"], ok
    assert ok[0]["involvedObject"]["kind"] == "PersistentVolumeClaim"
    assert ok[0]["source"].get("host") == NODE
    assert not events(cluster, "data", "ProvisioningFailed")

    # Grown: still within the 60 s period, the claim watch wakes the pass that
    # resizes the mounted volume, then the PV and the claim's status follow.
    fd = os.open(os.path.join(mp, "held"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        cluster.merge_patch(f"{CLAIMS}/data",
                            {"spec": {"resources": {"requests": {"storage": "200Mi"}}}})
        cluster.wait_for(lambda: os.statvfs(mp).f_blocks * os.statvfs(mp).f_frsize == 200 * MiB,
                         timeout=20, what=f"df showing 200Mi\n{prov.tail()}")
        cluster.wait_for(lambda: cluster.pvc("data").get("status", {}).get("capacity", {})
                         .get("storage") == "200Mi", timeout=20,
                         what=f"the claim's status at 200Mi\n{prov.tail()}")
        assert cluster.pv(name)["spec"]["capacity"]["storage"] == "200Mi"
        assert daemon.stats(name)["capacity_bytes"] == 200 * MiB
    finally:
        os.close(fd)

    # The claim goes: the PV watch sees the release, the volume goes, then the PV.
    with open(os.path.join(mp, "f"), "w") as f:
        f.write("data\n")
    cluster.delete(f"{CLAIMS}/data", wait=True)
    cluster.wait_for(lambda: not any(p["metadata"]["name"] == name for p in cluster.pvs()),
                     timeout=20, what=f"PV {name} deleted\n{prov.tail()}")
    assert not claim_volumes(daemon, uid)
    log = prov.log()
    assert log.index(f"deleted volume '{name}'") < log.index(f"PV '{name}' deleted"), log
    prov.stop()


@pytest.mark.timeout_seconds(120)
def test_retain_keeps_volume_and_pv_and_reports_the_orphan(work, daemon, cluster):
    make_class(cluster, "keep", reclaim="Retain")
    prov = Provisioner(work, cluster.kubeconfig, period="1s",
                       listen=f"127.0.0.1:{control_plane.free_port()}").start()
    uid = claim(cluster, "kept", "keep", "16Mi")
    name = f"pvc-{uid}"
    bound(cluster, prov, "kept")
    cluster.delete(f"{CLAIMS}/kept", wait=True)
    cluster.wait_for_pv_phase(name, "Released", timeout=30)
    time.sleep(3)  # several passes
    assert cluster.pv(name)["status"]["phase"] == "Released"
    assert len(claim_volumes(daemon, uid)) == 1
    assert "deleted volume" not in prov.log()

    # The PV deleted by hand: the volume has neither claim nor PV. Said, kept.
    cluster.delete(f"/api/v1/persistentvolumes/{name}", wait=True)
    cluster.wait_for(lambda: f"volume '{name}' was carved for claim 'default/kept'" in prov.log(),
                     timeout=15, what=f"the orphan reported\n{prov.tail()}")
    wait_until(lambda: prov.metric("carvefs_dynamic_orphaned_volumes") == 1, 10,
               "the orphan counted")
    time.sleep(2)
    assert prov.log().count(f"volume '{name}' was carved for claim") == 1, prov.tail()
    assert len(claim_volumes(daemon, uid)) == 1
    assert prov.metric("carvefs_dynamic_provisioned_total") == 1

    # Deleted by hand, the orphan is no longer counted.
    daemon.ctl("delete", name, "--force")
    wait_until(lambda: prov.metric("carvefs_dynamic_orphaned_volumes") == 0, 10,
               "the orphan gone from the count")
    prov.stop()


@pytest.mark.timeout_seconds(120)
def test_two_claims_racing_for_the_last_room(work, ext4_daemon, cluster):
    daemon = ext4_daemon
    pool = daemon.ctl("pool").data
    # Each fits alone, both do not.
    size_mib = pool["free_bytes"] * 6 // 10 // MiB
    make_class(cluster, "small")
    cluster.create_pvc("one", storage_class="small", size=f"{size_mib}Mi")
    cluster.create_pvc("two", storage_class="small", size=f"{size_mib}Mi")
    prov = Provisioner(work, cluster.kubeconfig, period="1s").start()
    cluster.select_node("one", NODE)
    cluster.select_node("two", NODE)

    def settled():
        phases = {n: cluster.phase(cluster.pvc(n)) for n in ("one", "two")}
        failed = [n for n in ("one", "two") if events(cluster, n, "ProvisioningFailed")]
        return "Bound" in phases.values() and failed and (phases, failed)

    phases, failed = cluster.wait_for(settled, timeout=45,
                                      what=f"one claim bound, one refused\n{prov.tail()}")
    assert len(failed) == 1, (phases, failed)
    loser = failed[0]
    winner = "one" if loser == "two" else "two"
    assert phases[winner] == "Bound" and phases[loser] == "Pending"
    ev = events(cluster, loser, "ProvisioningFailed")[0]
    assert ev["type"] == "Warning"
    assert "not enough room" in ev["message"] and "overcommit" in ev["message"], ev
    cluster.wait_for(lambda: SELECTED not in cluster.pvc(loser)["metadata"].get("annotations", {}),
                     timeout=10, what=f"the loser handed back\n{prov.tail()}")
    assert len(claim_volumes(daemon)) == 1
    time.sleep(2)
    assert len(claim_volumes(daemon)) == 1
    assert len([p for p in cluster.pvs() if p["metadata"]["name"].startswith("pvc-")]) == 1
    prov.stop()


@pytest.mark.timeout_seconds(120)
def test_bad_parameters_are_refused_with_events(work, ext4_daemon, cluster):
    daemon = ext4_daemon
    make_class(cluster, "negative", parameters={"readIOPS": "-5"})
    make_class(cluster, "unknown", parameters={"colour": "blue"})
    make_class(cluster, "bounded", parameters={"maxReadIOPS": "100"})
    make_class(cluster, "plain")
    prov = Provisioner(work, cluster.kubeconfig, period="1s").start()
    claim(cluster, "neg", "negative", "8Mi")
    claim(cluster, "unk", "unknown", "8Mi")
    claim(cluster, "above", "bounded", "8Mi", annotations={"carvefs.io/readIOPS": "500"})
    claim(cluster, "badann", "plain", "8Mi", annotations={"carvefs.io/speed": "fast"})
    claim(cluster, "huge", "plain", "100Gi")

    expect = {
        "neg": ['readIOPS="-5"', "negative"],
        "unk": ['colour="blue"', "unknown StorageClass parameter"],
        "above": ['carvefs.io/readIOPS="500"', "maxReadIOPS (100)"],
        "badann": ['carvefs.io/speed="fast"', "unknown annotation"],
        "huge": ["100G", "more than the whole carvefs pool"],
    }
    for name, words in expect.items():
        ev = wait_event(cluster, prov, name, "ProvisioningFailed")[0]
        assert ev["type"] == "Warning"
        for w in words:
            assert w in ev["message"], (name, ev["message"])
    # Bad parameters keep the claim here (another node would refuse it too);
    # a claim too large for this pool is handed back.
    cluster.wait_for(lambda: SELECTED not in cluster.pvc("huge")["metadata"].get("annotations", {}),
                     timeout=10, what=f"'huge' handed back\n{prov.tail()}")
    assert cluster.pvc("neg")["metadata"]["annotations"][SELECTED] == NODE
    assert claim_volumes(daemon) == []
    assert [p for p in cluster.pvs() if p["metadata"]["name"].startswith("pvc-")] == []
    for name in expect:
        assert cluster.phase(cluster.pvc(name)) == "Pending"
    prov.stop()


@pytest.mark.timeout_seconds(150)
def test_killed_between_volume_and_pv_converges_on_restart(work, daemon, cluster):
    make_class(cluster, "crash")
    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        # Every PV create is refused: the volume is carved, its PV never made.
        proxy.fail_next(1000, status=503, method="POST", path="/api/v1/persistentvolumes")
        prov = Provisioner(work, cluster.kubeconfig, period="1s").start(kubeconfig)
        uid = claim(cluster, "survivor", "crash", "32Mi")
        name = f"pvc-{uid}"
        cluster.wait_for(lambda: claim_volumes(daemon, uid), timeout=30,
                         what=f"the volume carved\n{prov.tail()}")
        proxy.wait_for_request(lambda e: e["method"] == "POST" and e["status"] == 503
                               and "/persistentvolumes" in e["path"], timeout=30)
        prov.kill9()
    assert not any(p["metadata"]["name"] == name for p in cluster.pvs())
    assert len(claim_volumes(daemon, uid)) == 1

    prov.start()  # straight to the apiserver now
    pvc = bound(cluster, prov, "survivor")
    assert pvc["spec"]["volumeName"] == name
    assert f"reusing volume '{name}'" in prov.log(), prov.tail()
    time.sleep(2)
    assert len(claim_volumes(daemon, uid)) == 1
    assert [p["metadata"]["name"] for p in cluster.pvs()] == [name]
    assert cluster.pv(name)["spec"]["local"]["path"] == os.path.join(work.mnt, name)
    prov.stop()


@pytest.mark.timeout_seconds(150)
def test_claim_deleted_before_its_pv_leaves_no_empty_volume(work, daemon, cluster):
    """A claim deleted while its PV could not be made leaves a volume no pod
    ever saw: with reclaim Delete and nothing in it, it goes; a volume
    someone wrote into (by hand, on the node) is only reported."""
    make_class(cluster, "gone")
    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        proxy.fail_next(1000, status=503, method="POST", path="/api/v1/persistentvolumes")
        prov = Provisioner(work, cluster.kubeconfig, period="1s").start(kubeconfig)
        empty_uid = claim(cluster, "empty", "gone", "16Mi")
        used_uid = claim(cluster, "used", "gone", "16Mi")
        for uid in (empty_uid, used_uid):
            cluster.wait_for(lambda: claim_volumes(daemon, uid), timeout=30,
                             what=f"the volume carved\n{prov.tail()}")
        prov.kill9()
    used = f"pvc-{used_uid}"
    with open(os.path.join(daemon.mountpoint(used), "precious"), "wb") as f:
        f.write(b"data")
    assert {v["name"]: v["used_inodes"] for v in claim_volumes(daemon)} == {
        f"pvc-{empty_uid}": 0, used: 1}
    cluster.delete(f"{CLAIMS}/empty", wait=True)
    cluster.delete(f"{CLAIMS}/used", wait=True)

    prov.start()
    cluster.wait_for(lambda: not claim_volumes(daemon, empty_uid), timeout=30,
                     what=f"the empty volume deleted\n{prov.tail()}")
    cluster.wait_for(lambda: f"volume '{used}' was carved for claim 'default/used'" in prov.log(),
                     timeout=15, what=f"the used volume reported\n{prov.tail()}")
    assert f"volume 'pvc-{empty_uid}' deleted: its claim 'default/empty' went away" in prov.log()
    assert [v["name"] for v in claim_volumes(daemon)] == [used]
    with open(os.path.join(daemon.mountpoint(used), "precious"), "rb") as f:
        assert f.read() == b"data"
    assert cluster.pvs() == []
    prov.stop()


def test_bad_overcommit_is_a_configuration_error(work, cluster):
    prov = Provisioner(work, cluster.kubeconfig, overcommit="-1")
    p = subprocess.run(prov.argv() + ["--once"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "dynamicProvisioning:1: dynamicProvisioning.overcommit: must be a ratio above 0" \
        in p.stderr, p.stderr
    with open(os.path.join(prov.cfg, "dynamicProvisioning"), "w") as f:
        f.write("overcommit: lots\n")
    p = subprocess.run(prov.argv() + ["--once"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "must be a number" in p.stderr and "lots" in p.stderr, p.stderr


def test_static_discovery_leaves_claim_volumes_alone(work, daemon, cluster):
    """A volume carved for a claim (say, by a run that died before its PV)
    sits in a directory a storageClassMap class discovers: it must not
    become a static PV, and with neither claim nor PV it is reported."""
    cluster.create_storage_class("static-local", "kubernetes.io/no-provisioner",
                                 binding_mode="WaitForFirstConsumer")
    plain = daemon.create("plain", "16Mi")
    uid = "00000000-1111-2222-3333-444444444444"
    reply = daemon.request({
        "verb": "create", "name": f"pvc-{uid}", "size_bytes": 16 * MiB,
        "labels": {"carvefs.io/claim-namespace": "default", "carvefs.io/claim-name": "gone",
                   "carvefs.io/claim-uid": uid}})
    assert reply.get("ok"), reply
    daemon.wait_mounted(f"pvc-{uid}")
    prov = Provisioner(work, cluster.kubeconfig)
    with open(os.path.join(prov.cfg, "storageClassMap"), "w") as f:
        f.write(f"static-local:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n")
    p = subprocess.run(prov.argv() + ["--once"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    paths = sorted(pv["spec"]["local"]["path"] for pv in cluster.pvs())
    assert paths == [plain], (paths, p.stderr)
    assert f"volume 'pvc-{uid}' was carved for claim 'default/gone'" in p.stderr, p.stderr
    assert len(claim_volumes(daemon, uid)) == 1


@pytest.mark.timeout_seconds(120)
def test_claim_watch_survives_cut_and_expired_watches(work, daemon, cluster):
    """With a 60 s period only the claim watch serves a claim within
    seconds; it must keep doing so after its stream is cut and after the
    apiserver answers it with the in-stream 410."""
    make_class(cluster, "watched")
    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        prov = Provisioner(work, cluster.kubeconfig).start(kubeconfig)
        proxy.wait_for_request(lambda e: e["watch"] and "persistentvolumeclaims" in e["path"],
                               timeout=30)
        claim(cluster, "first", "watched", "8Mi")
        bound(cluster, prov, "first", timeout=20)

        proxy.cut_watches()
        claim(cluster, "after-cut", "watched", "8Mi")
        bound(cluster, prov, "after-cut", timeout=20)

        proxy.expire_next_watch(path="persistentvolumeclaims")
        proxy.cut_watches()
        cluster.wait_for(lambda: "claim watch expired (410)" in prov.log(), timeout=30,
                         what=f"the provisioner seeing the 410\n{prov.tail()}")
        claim(cluster, "after-410", "watched", "8Mi")
        bound(cluster, prov, "after-410", timeout=20)
        prov.stop()
    assert len(claim_volumes(daemon)) == 3

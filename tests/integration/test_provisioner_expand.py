"""
carve-provisioner growing carvefs volumes for claims that ask for more, and
publishing the node's free capacity on its Node, against a real control
plane (see tests/k8s/README.md) and a real carvefs daemon.

Each test makes its PV by hand, as dynamic provisioning makes them (the
provisioned-by and carvefs.io/volume annotations, node affinity, a claimRef
to its claim), and lets the PV controller bind it; kube-controller-manager
also runs its expand controller here, which must leave these claims to the
provisioner.

The pool is a 256 MiB ext4 filesystem of its own, so that "beyond the pool"
and the node's free bytes are known figures.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import BUILD, empty_cluster, GiB, MiB, running_control_plane

import schema  # noqa: E402  tests/k8s/schema.py

PROVISIONER = os.path.join(BUILD, "carve-provisioner")
NODE = "node-1"
CLASS = "carvefs-expand"
PROVISIONED_BY = "carvefs.io/local"
ANN_BYTES = "carvefs.io/allocatable-bytes"
LABEL_GIB = "carvefs.io/allocatable-gib"
CLAIMS = "/api/v1/namespaces/default/persistentvolumeclaims"
# The provisioner's discovery period in these tests, in seconds.
PERIOD = 1


@pytest.fixture(scope="module")
def cp():
    # The control plane runs the expand controller: it must see these claims
    # and keep out of the way.
    with running_control_plane(NODE) as plane:
        plane.create_storage_class(CLASS, PROVISIONED_BY, reclaim="Delete",
                                   binding_mode="Immediate", allow_expansion=True)
        yield plane


@pytest.fixture
def cluster(cp):
    """The shared control plane, emptied of claims and PVs after each test.
    Tests ask for it before `work`, so that the provisioner `work` started
    is gone before the emptying: it would register its volumes again."""
    yield cp
    empty_cluster(cp)


def write_config(work, overcommit=None):
    cfg = os.path.join(work.path, "config")
    os.makedirs(cfg, exist_ok=True)
    with open(os.path.join(cfg, "storageClassMap"), "w") as f:
        f.write(f"{CLASS}:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n"
                "  volumeMode: Filesystem\n")
    if overcommit is not None:
        with open(os.path.join(cfg, "dynamicProvisioning"), "w") as f:
            f.write(f"overcommit: {overcommit}\n")
    return cfg


class Provisioner:
    """carve-provisioner in periodic mode, logging to a file of the test."""

    def __init__(self, work, cfg, kubeconfig):
        self.log_path = os.path.join(work.path, "provisioner.log")
        with open(self.log_path, "w") as logf:
            self.proc = work.spawn(
                [PROVISIONER, "--config", cfg, "--node", NODE, "--kubeconfig", kubeconfig,
                 "--sink", "api", "--carvefs-socket", work.sock,
                 "--discovery-period", f"{PERIOD}s"],
                stdout=logf, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def tail(self):
        return "---- carve-provisioner log (tail) ----\n" + self.log()[-4000:]

    def check(self):
        assert self.proc.poll() is None, f"carve-provisioner exited\n{self.tail()}"


def bound_claim(cluster, work, volume, size, claim):
    """A PV for carvefs volume `volume` as dynamic provisioning makes it,
    pre-bound to a new claim of `size`; returns once both are Bound. Its
    path is the volume's mountpoint, so discovery knows it is registered."""
    pv_name = f"carvefs-{claim}"
    cluster.api("POST", "/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {
            "pv.kubernetes.io/provisioned-by": PROVISIONED_BY,
            "carvefs.io/volume": volume}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": os.path.join(work.mnt, volume)},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": "default", "name": claim},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{
                "matchExpressions": [{"key": "kubernetes.io/hostname",
                                      "operator": "In", "values": [NODE]}]}]}},
        }})
    cluster.create_pvc(claim, storage_class=CLASS, size=size, volume_name=pv_name)
    cluster.wait_for_pvc_phase(claim, "Bound", timeout=30)
    cluster.wait_for_pv_phase(pv_name, "Bound", timeout=30)
    return pv_name


def grow(cluster, claim, size):
    cluster.merge_patch(f"{CLAIMS}/{claim}",
                        {"spec": {"resources": {"requests": {"storage": size}}}})


def events(cluster, claim, reason=None):
    items = cluster.api("GET", "/api/v1/namespaces/default/events",
                        query={"fieldSelector": f"involvedObject.name={claim}"})["items"]
    return [e for e in items if reason is None or e["reason"] == reason]


def df_bytes(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def mount_id(path):
    """The id of the mount at path in /proc/self/mountinfo: a remount changes it."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                found = fields[0]
    assert found is not None, f"nothing mounted at {path}"
    return found


def pool_reply(sock):
    """The daemon's pool verb, asked over its socket directly."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b'{"verb":"pool"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the daemon closed without answering"
            buf += chunk
    reply = json.loads(buf)
    assert reply.get("ok") is True, reply
    return reply["pool"]


def node_capacity(cluster):
    meta = cluster.get(f"/api/v1/nodes/{NODE}")["metadata"]
    return meta.get("annotations", {}).get(ANN_BYTES), meta.get("labels", {}).get(LABEL_GIB)


@pytest.mark.timeout_seconds(180)
def test_grow_bound_claim_live(cluster, work, ext4_daemon):
    mp = ext4_daemon.create("data", "64Mi")
    assert df_bytes(mp) == 64 * MiB
    before_mount = mount_id(mp)
    pv_name = bound_claim(cluster, work, "data", "64Mi", "data")
    # A file held open across the expansion: the volume is never remounted.
    held = open(os.path.join(mp, "held"), "w")
    try:
        held.write("open across the resize\n")
        held.flush()
        prov = Provisioner(work, write_config(work), cluster.kubeconfig)

        grow(cluster, "data", "128Mi")

        def expanded():
            prov.check()
            pvc = cluster.pvc("data")
            pv = cluster.pv(pv_name)
            return (pvc["status"].get("capacity", {}).get("storage") == "128Mi"
                    and pv["spec"]["capacity"]["storage"] == "128Mi"
                    and events(cluster, "data", "VolumeResizeSuccessful"))
        try:
            cluster.wait_for(expanded, timeout=60, what="the claim expanded to 128Mi")
        except TimeoutError as e:
            pytest.fail(f"{e}\n{prov.tail()}")

        # df in the mounted volume shows the new size at once, same mount.
        assert df_bytes(mp) == 128 * MiB
        assert mount_id(mp) == before_mount
        held.write("still writable\n")
        held.flush()
        assert ext4_daemon.stats("data")["capacity_bytes"] == 128 * MiB

        pvc = cluster.pvc("data")
        assert not [c for c in pvc["status"].get("conditions", [])
                    if c["type"] in ("Resizing", "FileSystemResizePending")]
        pv = cluster.kubectl("get", "pv", pv_name)
        schema.validate(pv)
        assert pv["status"]["phase"] == "Bound"
        ok = events(cluster, "data", "VolumeResizeSuccessful")
        assert ok[0]["type"] == "Normal"
        assert "128Mi" in ok[0]["message"] and "'data'" in ok[0]["message"], ok[0]

        # kube-controller-manager saw the claim, found no plugin able to expand
        # a local PV and said it waits for an external controller...
        external = cluster.wait_for(lambda: events(cluster, "data", "ExternalExpanding"),
                                    timeout=30, what="the expand controller's event")
        assert "external controller" in external[0]["message"], external[0]
        # ...and nobody undoes the expansion or repeats it in later passes.
        time.sleep(4 * PERIOD)
        prov.check()
        assert cluster.pvc("data")["status"]["capacity"]["storage"] == "128Mi"
        assert cluster.pv(pv_name)["spec"]["capacity"]["storage"] == "128Mi"
        assert len(events(cluster, "data", "VolumeResizeSuccessful")) == 1
        assert not events(cluster, "data", "VolumeResizeFailed")
        assert prov.log().count("expanding carvefs volume 'data'") == 1, prov.tail()
    finally:
        held.close()


@pytest.mark.timeout_seconds(180)
def test_growth_beyond_the_pool_is_refused_once(cluster, work, ext4_daemon):
    mp = ext4_daemon.create("big", "64Mi")
    # Another volume promises half the pool's free space already.
    ext4_daemon.create("other", "128Mi")
    pv_name = bound_claim(cluster, work, "big", "64Mi", "big")
    prov = Provisioner(work, write_config(work), cluster.kubeconfig)

    grow(cluster, "big", "160Mi")
    try:
        failed = cluster.wait_for(lambda: prov.check() or events(cluster, "big",
                                                                  "VolumeResizeFailed"),
                                  timeout=60, what="a VolumeResizeFailed event")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    ev = failed[0]
    assert ev["type"] == "Warning"
    # Says which volume, what size, and the daemon's reason.
    assert "cannot expand carvefs volume 'big' to 160Mi: " in ev["message"], ev
    assert "overcommit" in ev["message"], ev

    # The volume, the PV and the claim are as they were.
    assert ext4_daemon.stats("big")["capacity_bytes"] == 64 * MiB
    assert df_bytes(mp) == 64 * MiB
    assert cluster.pv(pv_name)["spec"]["capacity"]["storage"] == "64Mi"
    assert cluster.pvc("big")["status"]["capacity"]["storage"] == "64Mi"

    # Retried with backoff, but the same failure is told once.
    try:
        cluster.wait_for(lambda: prov.log().count("cannot expand carvefs volume 'big'") >= 2,
                         timeout=40, what="a second attempt")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    attempts = prov.log().count("cannot expand carvefs volume 'big'")
    time.sleep(2 * PERIOD)
    # Not every pass: the backoff holds the retries back.
    assert prov.log().count("cannot expand carvefs volume 'big'") - attempts <= 1, prov.tail()
    failures = events(cluster, "big", "VolumeResizeFailed")
    assert len(failures) == 1 and failures[0].get("count", 1) == 1, failures
    assert not events(cluster, "big", "VolumeResizeSuccessful")

    # Another size is another failure: tried at once (well within the
    # backoff's next delay of 10 s or more), told again.
    grow(cluster, "big", "1Gi")
    try:
        both = cluster.wait_for(lambda: len(events(cluster, "big", "VolumeResizeFailed")) == 2
                                and events(cluster, "big", "VolumeResizeFailed"),
                                timeout=8, what="a new event for a new size")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    newer = [e["message"] for e in both if "to 1Gi: " in e["message"]]
    assert len(newer) == 1 and "cannot fit" in newer[0], [e["message"] for e in both]
    assert ext4_daemon.stats("big")["capacity_bytes"] == 64 * MiB
    assert cluster.pv(pv_name)["spec"]["capacity"]["storage"] == "64Mi"


@pytest.mark.timeout_seconds(120)
def test_node_capacity_published_and_updated(cluster, work, ext4_daemon):
    # Whatever an earlier test's provisioner published goes first.
    cluster.merge_patch(f"/api/v1/nodes/{NODE}", {"metadata": {
        "annotations": {ANN_BYTES: None}, "labels": {LABEL_GIB: None}}})
    assert node_capacity(cluster) == (None, None)
    # With 10 times the free space to promise, the 256 MiB pool offers a
    # little over 2 GiB: enough for the label to move with 400 MiB of volumes.
    prov = Provisioner(work, write_config(work, overcommit=10), cluster.kubeconfig)

    def published():
        prov.check()
        ann, label = node_capacity(cluster)
        if ann is None or label is None:
            return None
        return int(ann), label

    try:
        first, first_label = cluster.wait_for(published, timeout=30,
                                              what="the node's capacity annotation")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    pool = pool_reply(work.sock)
    expected = max(0, pool["free_bytes"] * 10 - pool["committed_bytes"])
    # The pool's free space moves by a few blocks of metadata at most.
    assert abs(first - expected) <= 10 * MiB, (first, pool)
    assert first_label == str(first // GiB)
    assert first_label == "2", (first, pool)

    # Two volumes of 200 MiB: their unwritten capacity is committed, so the
    # node has 400 MiB less to promise.
    ext4_daemon.create("hog-a", "200Mi")
    ext4_daemon.create("hog-b", "200Mi")

    def lowered():
        got = published()
        return got if got and first - got[0] >= 390 * MiB else None
    try:
        after, after_label = cluster.wait_for(lowered, timeout=30,
                                              what="the annotation to go down")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    assert abs((first - after) - 400 * MiB) <= 10 * MiB, (first, after)
    assert after_label == str(after // GiB) == "1"

    # A scheduler's node affinity with operator Gt selects by the label.
    nodes = cluster.api("GET", "/api/v1/nodes",
                        query={"labelSelector": f"{LABEL_GIB}>0"})["items"]
    assert [n["metadata"]["name"] for n in nodes] == [NODE]
    nodes = cluster.api("GET", "/api/v1/nodes",
                        query={"labelSelector": f"{LABEL_GIB}>1"})["items"]
    assert nodes == []

    # Steady: no writes to the Node while nothing changes.
    rv = cluster.get(f"/api/v1/nodes/{NODE}")["metadata"]["resourceVersion"]
    time.sleep(3 * PERIOD)
    prov.check()
    assert cluster.get(f"/api/v1/nodes/{NODE}")["metadata"]["resourceVersion"] == rv


@pytest.mark.timeout_seconds(150)
def test_expansion_interrupted_halfway_is_finished(cluster, work, ext4_daemon):
    """The states a provisioner stopped mid-expansion leaves behind: the
    volume grown but not its PV; the volume and the PV grown but not the
    claim. The next provisioner finishes both without resizing again."""
    for name in ("after-volume", "after-pv"):
        ext4_daemon.create(name, "64Mi")
    pv_a = bound_claim(cluster, work, "after-volume", "64Mi", "after-volume")
    pv_b = bound_claim(cluster, work, "after-pv", "64Mi", "after-pv")
    for name in ("after-volume", "after-pv"):
        ext4_daemon.ctl("resize", name, "--size", "128Mi")
        grow(cluster, name, "128Mi")
    cluster.merge_patch(f"/api/v1/persistentvolumes/{pv_b}",
                        {"spec": {"capacity": {"storage": "128Mi"}}})

    prov = Provisioner(work, write_config(work), cluster.kubeconfig)

    def finished(claim, pv_name):
        def check():
            prov.check()
            return (cluster.pvc(claim)["status"]["capacity"]["storage"] == "128Mi"
                    and cluster.pv(pv_name)["spec"]["capacity"]["storage"] == "128Mi"
                    and events(cluster, claim, "VolumeResizeSuccessful"))
        return check
    try:
        cluster.wait_for(finished("after-volume", pv_a), timeout=30,
                         what="the PV and claim of 'after-volume'")
        cluster.wait_for(finished("after-pv", pv_b), timeout=30,
                         what="the claim of 'after-pv'")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    time.sleep(2 * PERIOD)
    log = prov.log()
    assert "expanding carvefs volume" not in log, prov.tail()
    for name in ("after-volume", "after-pv"):
        assert ext4_daemon.stats(name)["capacity_bytes"] == 128 * MiB
        assert len(events(cluster, name, "VolumeResizeSuccessful")) == 1

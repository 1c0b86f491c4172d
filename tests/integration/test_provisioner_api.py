"""
carve-provisioner against a real control plane (etcd, kube-apiserver and the
PersistentVolume controllers, see tests/k8s/README.md): the PVs it creates
for the mountpoints of a discovery directory, read back with kubectl and
checked against the official schema; the release cycle of a claim through
the real PV controller; and an apiserver outage during a periodic run.

One control plane serves the whole file. The binaries come from
tests/k8s/build-control-plane.sh, which 'make integration' runs first: when
they are missing this file fails rather than skipping.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import BUILD, empty_cluster, run, running_control_plane

import faultproxy  # noqa: E402  tests/k8s/faultproxy.py
import schema  # noqa: E402  tests/k8s/schema.py

PROVISIONER = os.path.join(BUILD, "carve-provisioner")
NODE = "node-1"
CLASS = "carvefs-local"


@pytest.fixture(scope="module")
def cp():
    with running_control_plane(NODE) as plane:
        plane.create_storage_class(CLASS, "kubernetes.io/no-provisioner", reclaim="Delete",
                                   binding_mode="WaitForFirstConsumer")
        yield plane


@pytest.fixture
def cluster(cp):
    """The shared control plane, emptied of claims and PVs after each test."""
    yield cp
    empty_cluster(cp)


def write_config(work):
    cfg = os.path.join(work.path, "config")
    os.makedirs(cfg, exist_ok=True)
    with open(os.path.join(cfg, "storageClassMap"), "w") as f:
        f.write(f"{CLASS}:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n"
                "  volumeMode: Filesystem\n")
    return cfg


def argv(work, cfg, kubeconfig, *extra):
    return [PROVISIONER, "--config", cfg, "--node", NODE, "--kubeconfig", kubeconfig,
            "--sink", "api", "--carvefs-socket", work.sock, *extra]


def once(work, cfg, kubeconfig):
    p = subprocess.run(argv(work, cfg, kubeconfig, "--once"), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"carve-provisioner --once exited {p.returncode}\n{p.stderr}"
    return p


def kubectl_pvs(cp):
    """Every PV, read with kubectl; each validated against the schema."""
    items = cp.kubectl("get", "pv")["items"]
    for pv in items:
        pv.setdefault("apiVersion", "v1")
        pv.setdefault("kind", "PersistentVolume")
        schema.validate(pv)
    return items


def by_path(pvs):
    out = {}
    for pv in pvs:
        path = pv["spec"]["local"]["path"]
        assert path not in out, f"two PVs for {path}: {out[path]['metadata']['name']} " \
                                f"and {pv['metadata']['name']}"
        out[path] = pv
    return out


def identity(pvs):
    return {pv["metadata"]["name"]: (pv["metadata"]["uid"], pv["metadata"]["resourceVersion"])
            for pv in pvs}


def test_once_registers_mountpoints_exactly_once(work, daemon, cluster):
    daemon.create("alpha", "64Mi")
    daemon.create("beta", "1Gi")
    scratch = os.path.join(work.mnt, "scratch")
    os.makedirs(scratch)
    run(["mount", "-t", "tmpfs", "-o", "size=20m", "none", scratch])
    plain = os.path.join(work.mnt, "plain")
    os.makedirs(plain)
    cfg = write_config(work)

    assert kubectl_pvs(cluster) == []
    p = once(work, cfg, cluster.kubeconfig)
    assert f'path "{plain}" is not a valid mount point' in p.stderr

    pvs = kubectl_pvs(cluster)
    assert len(pvs) == 3, [pv["metadata"]["name"] for pv in pvs]
    found = by_path(pvs)
    assert sorted(found) == sorted(os.path.join(work.mnt, n) for n in ("alpha", "beta", "scratch"))
    capacities = {os.path.basename(path): pv["spec"]["capacity"]["storage"]
                  for path, pv in found.items()}
    assert capacities == {"alpha": "64Mi", "beta": "1Gi", "scratch": "20Mi"}
    for pv in pvs:
        assert pv["spec"]["storageClassName"] == CLASS
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["status"]["phase"] == "Available"
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == [NODE]

    # A second pass creates, updates and deletes nothing.
    before = identity(pvs)
    once(work, cfg, cluster.kubeconfig)
    assert identity(kubectl_pvs(cluster)) == before


def test_released_volume_is_wiped_and_registered_again(work, daemon, cluster):
    mp = daemon.create("gamma", "64Mi")
    cfg = write_config(work)
    once(work, cfg, cluster.kubeconfig)
    pv = by_path(kubectl_pvs(cluster))[mp]
    name, uid = pv["metadata"]["name"], pv["metadata"]["uid"]

    cluster.create_pvc("claim", storage_class=CLASS, size="64Mi", volume_name=name)
    cluster.select_node("claim", NODE)
    cluster.wait_for_pvc_phase("claim", "Bound", timeout=30)
    bound = cluster.kubectl("get", "pv", name)
    schema.validate(bound)
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["claimRef"]["name"] == "claim"

    with open(os.path.join(mp, "data"), "w") as f:
        f.write("written while bound\n")

    cluster.delete("/api/v1/namespaces/default/persistentvolumeclaims/claim", wait=True)
    cluster.wait_for_pv_phase(name, "Released", timeout=30)
    assert os.path.exists(os.path.join(mp, "data"))

    # One pass wipes the volume and deletes its PV...
    once(work, cfg, cluster.kubeconfig)
    assert os.listdir(mp) == []
    assert all(p["metadata"]["uid"] != uid for p in kubectl_pvs(cluster))

    # ...the next registers it again, as a new, available PV.
    once(work, cfg, cluster.kubeconfig)
    again = by_path(kubectl_pvs(cluster))[mp]
    assert again["metadata"]["uid"] != uid
    assert again["spec"]["capacity"]["storage"] == "64Mi"
    cluster.wait_for_pv_phase(again["metadata"]["name"], "Available", timeout=30)


@pytest.mark.timeout_seconds(150)
def test_api_outage_during_periodic_run(work, daemon, cluster):
    daemon.create("before", "64Mi")
    cfg = write_config(work)
    log_path = os.path.join(work.path, "provisioner.log")
    expected = sorted(os.path.join(work.mnt, n) for n in ("before", "during"))

    def pvs_of_this_test():
        return [pv for pv in cluster.pvs() if pv["spec"]["local"]["path"].startswith(work.mnt + "/")]

    def log(since=0):
        with open(log_path) as f:
            return f.read()[since:][-4000:]

    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        with open(log_path, "w") as logf:
            prov = work.spawn(argv(work, cfg, kubeconfig, "--discovery-period", "1s"),
                              stdout=logf, stderr=subprocess.STDOUT)
        cluster.wait_for(lambda: len(pvs_of_this_test()) == 1, timeout=30,
                         what=f"the first PV\n{log()}")

        # A 30 s outage: many periods, each pass's retries given up.
        mark = os.path.getsize(log_path)
        proxy.refuse("close", drop_existing=True)
        try:
            time.sleep(2)
            daemon.create("during", "32Mi")
            time.sleep(28)
            assert prov.poll() is None, f"carve-provisioner exited during the outage\n{log()}"
            assert len(pvs_of_this_test()) == 1
        finally:
            proxy.clear_log()
            proxy.pass_through()
        outage = log(mark)
        assert "retrying in" in outage or "giving up for this pass" in outage, \
            f"no failed request logged during the outage\n{outage}"

        def settled():
            found = by_path(pvs_of_this_test())
            return sorted(found) == expected and found

        try:
            cluster.wait_for(settled, timeout=45, what="both PVs after the outage")
        except TimeoutError as e:
            pytest.fail(f"{e}\n{log()}")
        # A few more periods change nothing: still exactly one PV per volume.
        time.sleep(3)
        found = by_path(kubectl_pvs(cluster))
        assert sorted(p for p in found if p.startswith(work.mnt + "/")) == expected
        assert found[os.path.join(work.mnt, "during")]["spec"]["capacity"]["storage"] == "32Mi"
        posts = proxy.requests(method="POST", path="/persistentvolumes")
        assert [e["status"] for e in posts] == [201], posts

        prov.send_signal(signal.SIGTERM)
        rc = prov.wait(timeout=30)
        assert rc == 0, f"carve-provisioner exited {rc} on SIGTERM\n{log()}"


def test_5xx_bursts_and_slow_replies_create_each_pv_once(work, daemon, cluster):
    daemon.create("flaky-a", "64Mi")
    daemon.create("flaky-b", "128Mi")
    cfg = write_config(work)
    expected = sorted(os.path.join(work.mnt, n) for n in ("flaky-a", "flaky-b"))

    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        # Every create answered 503 three times before the apiserver sees it,
        # and every answer a little late: retries with backoff, nothing twice.
        proxy.fail_next(3, status=503, method="POST")
        proxy.delay(0.3)
        try:
            p = once(work, cfg, kubeconfig)
        finally:
            proxy.pass_through()
        posts = proxy.requests(method="POST", path="/persistentvolumes")
        statuses = [e["status"] for e in posts]
        assert statuses.count(503) == 3, posts
        assert statuses.count(201) == 2, posts
        assert "retrying in" in p.stderr, p.stderr

    found = by_path(kubectl_pvs(cluster))
    assert sorted(pth for pth in found if pth.startswith(work.mnt + "/")) == expected
    # A second pass straight to the apiserver finds them and creates nothing.
    before = identity(cluster.pvs())
    once(work, cfg, cluster.kubeconfig)
    assert identity(cluster.pvs()) == before


@pytest.mark.timeout_seconds(150)
def test_watch_reacts_to_releases_across_dropped_and_expired_watches(work, daemon, cluster):
    """With a 60 s period, only the PV watch can clean a released volume
    within seconds; it must keep doing so after its stream is cut and after
    the apiserver answers it with the in-stream 410."""
    mp = daemon.create("watched", "64Mi")
    cfg = write_config(work)
    log_path = os.path.join(work.path, "provisioner.log")

    def log():
        with open(log_path) as f:
            return f.read()[-4000:]

    def current_pv():
        found = by_path(cluster.pvs()).get(mp)
        return found if found and found["status"].get("phase") == "Available" else None

    def release_and_expect_recycled(claim):
        pv = cluster.wait_for(current_pv, timeout=30, what=f"an Available PV for {mp}\n{log()}")
        name, uid = pv["metadata"]["name"], pv["metadata"]["uid"]
        cluster.create_pvc(claim, storage_class=CLASS, size="64Mi", volume_name=name)
        cluster.select_node(claim, NODE)
        cluster.wait_for_pvc_phase(claim, "Bound", timeout=30)
        with open(os.path.join(mp, "data"), "w") as f:
            f.write(f"{claim}\n")
        cluster.delete(f"/api/v1/namespaces/default/persistentvolumeclaims/{claim}", wait=True)
        # Wiped, deleted and registered afresh well within one 60 s period.
        cluster.wait_for(lambda: (p := current_pv()) and p["metadata"]["uid"] != uid,
                         timeout=20, what=f"the released PV recycled by the watch\n{log()}")
        assert os.listdir(mp) == []

    with faultproxy.FaultProxy(cluster.url, upstream_ca=cluster.ca_file) as proxy:
        kubeconfig = proxy.kubeconfig(os.path.join(work.path, "proxy.kubeconfig"), cluster.token)
        with open(log_path, "w") as logf:
            prov = work.spawn(argv(work, cfg, kubeconfig, "--discovery-period", "60s"),
                              stdout=logf, stderr=subprocess.STDOUT)
        release_and_expect_recycled("first")

        proxy.cut_watches()
        release_and_expect_recycled("after-cut")

        proxy.expire_next_watch()
        proxy.cut_watches()  # the next watch it opens gets the 410
        cluster.wait_for(lambda: "PV watch expired (410)" in log(), timeout=30,
                         what=f"the provisioner seeing the 410\n{log()}")
        release_and_expect_recycled("after-410")

        prov.send_signal(signal.SIGTERM)
        rc = prov.wait(timeout=30)
        assert rc == 0, f"carve-provisioner exited {rc} on SIGTERM\n{log()}"


@pytest.mark.timeout_seconds(120)
def test_failed_clean_keeps_the_pv_and_backs_off(work, daemon, cluster):
    mp = daemon.create("stubborn", "64Mi")
    cfg = write_config(work)
    once(work, cfg, cluster.kubeconfig)
    name = by_path(kubectl_pvs(cluster))[mp]["metadata"]["name"]
    cluster.create_pvc("held", storage_class=CLASS, size="64Mi", volume_name=name)
    cluster.select_node("held", NODE)
    cluster.wait_for_pvc_phase("held", "Bound", timeout=30)
    with open(os.path.join(mp, "data"), "w") as f:
        f.write("must survive a failed clean\n")
    cluster.delete("/api/v1/namespaces/default/persistentvolumeclaims/held", wait=True)
    cluster.wait_for_pv_phase(name, "Released", timeout=30)

    # The daemon's socket is wrong: every wipe fails. Passes run every second.
    log_path = os.path.join(work.path, "provisioner.log")
    bad = argv(work, cfg, cluster.kubeconfig, "--discovery-period", "1s")
    bad[bad.index("--carvefs-socket") + 1] = os.path.join(work.path, "no-such.sock")
    with open(log_path, "w") as logf:
        prov = work.spawn(bad, stdout=logf, stderr=subprocess.STDOUT)
    time.sleep(8)
    prov.send_signal(signal.SIGTERM)
    assert prov.wait(timeout=30) == 0
    with open(log_path) as f:
        log = f.read()
    attempts = log.count(f"PV '{name}' released: cleaning")
    # Eight one-second passes, but retries wait 2.5-5 s, then 5-10 s.
    assert 1 <= attempts <= 3, f"{attempts} cleaning attempts in 8 s\n{log}"
    assert "cleaning failed; trying again in" in log, log
    # Nothing lost: the PV and the data are still there.
    assert cluster.kubectl("get", "pv", name)["status"]["phase"] == "Released"
    assert os.path.exists(os.path.join(mp, "data"))


def test_missing_storage_class_is_a_clear_error_until_created(work, daemon, cluster):
    mp = daemon.create("classless", "16Mi")
    cfg = os.path.join(work.path, "config")
    os.makedirs(cfg)
    with open(os.path.join(cfg, "storageClassMap"), "w") as f:
        f.write(f"late-class:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n")
    p = subprocess.run(argv(work, cfg, cluster.kubeconfig, "--once"), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    assert "StorageClass 'late-class' does not exist" in p.stderr, p.stderr
    assert mp not in by_path(cluster.pvs())

    cluster.create_storage_class("late-class", "kubernetes.io/no-provisioner", reclaim="Retain",
                                 binding_mode="WaitForFirstConsumer")
    once(work, cfg, cluster.kubeconfig)
    pv = by_path(kubectl_pvs(cluster))[mp]
    assert pv["spec"]["storageClassName"] == "late-class"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"

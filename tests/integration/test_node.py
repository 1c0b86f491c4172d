"""
carvefs volumes used by pods on a real Kubernetes node: a control plane
(tests/k8s/control_plane.py), containerd, kubelet and kube-scheduler
(tests/k8s/node.py), images built here (tests/k8s/images.py). One node serves
the whole file; each test starts its own carvefs daemon, and empties the
cluster after itself.

- Static volumes: carved by hand, registered by carve-provisioner as local
  PVs of a no-provisioner class, bound by the real scheduler; a pod serves a
  page from one; once released the volume is wiped and registered again.
- Dynamic volumes: the scheduler picks the node, the provisioner carves; in
  the pod df shows the size, writing past it fails with ENOSPC, kubelet's
  volume statistics are the volume's statfs, and growing the claim grows the
  filesystem the running pod sees.
- deploy/ itself: the DaemonSet rendered by kustomize runs its containers
  with their probes green, and a pod uses a volume its daemon carved; when
  carvefs is SIGKILLed in its pod, the kubelet restarts that container, which
  takes the volume back from the keeper container: a pod writing to it sees
  a pause, no error, on the same mount.

Pods run with hostNetwork and listen on 127.0.0.1 only (the node gives other
pods no network), and use images with imagePullPolicy: Never.
"""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from conftest import (BUILD, FIGURES, MiB, REPO, empty_cluster, run,
                      running_control_plane)

import control_plane  # noqa: E402  tests/k8s/control_plane.py
import images  # noqa: E402  tests/k8s/images.py
import node as k8s_node  # noqa: E402  tests/k8s/node.py

PROVISIONER = os.path.join(BUILD, "carve-provisioner")
DEPLOY = os.path.join(REPO, "deploy")
# The dynamic provisioner's name, and the one of earlier releases.
DYNAMIC = "local.carvefs.io"
DYNAMIC_LEGACY = "carvefs.io/local"
STATIC_CLASS = "carvefs-static"
DYNAMIC_CLASS = "carvefs"
CLAIMS = "/api/v1/namespaces/default/persistentvolumeclaims"
# The gates and API the capacity-aware scheduling of Kubernetes 1.20 needs.
GATES = {"CSIStorageCapacity": True}
RUNTIME_CONFIG = "storage.k8s.io/v1alpha1=true"


@pytest.fixture(scope="module")
def k8s():
    """(control plane, node), shared by the file."""
    ok, why = k8s_node.available()
    if not ok:
        pytest.fail(f"the Kubernetes node is not available: {why} "
                    "(make integration builds and installs it)")
    with running_control_plane(None, extra_controllers=("daemonset",), feature_gates=GATES,
                               runtime_config=RUNTIME_CONFIG) as cp:
        n = k8s_node.Node(cp, BUILD, feature_gates=GATES)
        n.start()
        FIGURES.append(("node bring-up (s, after the control plane)",
                        f"{n.startup_s:.1f} {n.timings}"))
        FIGURES.append(("control plane start (s)", f"{cp.startup_s:.1f}"))
        try:
            yield cp, n
        finally:
            t0 = time.monotonic()
            n.stop()
            FIGURES.append(("node teardown (s)", f"{time.monotonic() - t0:.1f}"))


@pytest.fixture
def cluster(k8s, work):
    """The shared cluster; afterwards every pod is deleted (kubelet unmounts
    their volumes), the test's provisioner stopped, claims, PVs and classes
    deleted, before the test's daemon stops."""
    cp, n = k8s
    yield cp, n
    for p in cp.api("GET", "/api/v1/pods")["items"]:
        n.delete_pod(p["metadata"]["name"], p["metadata"]["namespace"])
    for p in work.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    empty_cluster(cp, classes=True)
    for c in capacities(cp):
        cp.delete(capacity_path(c))


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

class HostProvisioner:
    """carve-provisioner on the host for the node, logging to a file."""

    def __init__(self, work, cp, n, static_class=None):
        self.work = work
        self.cfg = os.path.join(work.path, "config")
        os.makedirs(self.cfg, exist_ok=True)
        if static_class:
            with open(os.path.join(self.cfg, "storageClassMap"), "w") as f:
                f.write(f"{static_class}:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n"
                        "  volumeMode: Filesystem\n")
        self.log_path = os.path.join(work.path, "provisioner.log")
        with open(self.log_path, "a") as log:
            self.proc = work.spawn([PROVISIONER, "--config", self.cfg, "--node", n.name,
                                    "--kubeconfig", cp.kubeconfig, "--sink", "api",
                                    "--carvefs-socket", work.sock,
                                    "--discovery-period", "2s"],
                                   stdout=log, stderr=subprocess.STDOUT)

    def tail(self):
        with open(self.log_path) as f:
            return "---- provisioner log (tail) ----\n" + f.read()[-4000:]


def pod_spec(name, claim, command, mount="/data"):
    """A busybox pod on the host's network that mounts a claim."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": images.BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                "command": command,
                "volumeMounts": [{"name": "data", "mountPath": mount}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def http_get(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read().decode()


class Watch:
    """The events of a watch on a collection, collected by a thread."""

    def __init__(self, cp, path):
        rv = cp.api("GET", path)["metadata"]["resourceVersion"]
        self._conn = http.client.HTTPSConnection(
            "127.0.0.1", cp.port, timeout=300,
            context=ssl.create_default_context(cafile=cp.ca_file))
        self._conn.request("GET", f"{path}?watch=1&resourceVersion={rv}",
                           headers={"Authorization": "Bearer " + cp.token})
        self._resp = self._conn.getresponse()
        assert self._resp.status == 200, self._resp.read()
        self.events = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for line in self._resp:
                self.events.append(json.loads(line))
        except (OSError, ValueError):
            pass

    def close(self):
        # Shutting the socket down ends the reader's blocking read.
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._conn.close()


def statfs_figures(path):
    """A volume's statfs as kubelet reports it (pkg/volume/util/fs)."""
    st = os.statvfs(path)
    return {
        "capacity_bytes": st.f_blocks * st.f_bsize,
        "available_bytes": st.f_bavail * st.f_bsize,
        "used_bytes": (st.f_blocks - st.f_bfree) * st.f_bsize,
        "inodes": st.f_files,
        "inodes_free": st.f_ffree,
        "inodes_used": st.f_files - st.f_ffree,
    }


def kubelet_volume_stats(n, claim, namespace="default"):
    """kubelet_volume_stats_* of a claim on kubelet's read-only port."""
    out = {}
    pat = re.compile(r'^kubelet_volume_stats_(\w+)\{([^}]*)\} (\S+)$')
    for line in n.read_only("/metrics").splitlines():
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get("persistentvolumeclaim") == claim and labels.get("namespace") == namespace:
            out[m.group(1)] = int(float(m.group(3)))
    return out


CAPACITIES = "/apis/storage.k8s.io/v1alpha1/csistoragecapacities"


def capacities(cp, cls=None):
    """The CSIStorageCapacity objects (of class cls)."""
    return [c for c in cp.api("GET", CAPACITIES)["items"]
            if cls is None or c["storageClassName"] == cls]


def capacity_path(c):
    return (f"/apis/storage.k8s.io/v1alpha1/namespaces/{c['metadata']['namespace']}"
            f"/csistoragecapacities/{c['metadata']['name']}")


def quantity(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for u, f in units.items():
        if q.endswith(u):
            return int(q[:-len(u)]) * f
    return int(q)


def record_rss(cp, n, what):
    rss = n.rss_kib()
    rss.update(cp.rss_kib())
    FIGURES.append((what, " ".join(f"{k}={v // 1024}" for k, v in rss.items())
                    + f" total={sum(rss.values()) // 1024}"))


def df_kib(n, pod, path="/data"):
    """(total, used, available) KiB of a mount, as df shows it in the pod."""
    out = n.exec(pod, "df", "-kP", path).stdout.splitlines()
    fields = out[-1].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


# --------------------------------------------------------------------------
# Static volumes
# --------------------------------------------------------------------------

@pytest.mark.timeout_seconds(240)
def test_static_volume_serves_a_page_then_comes_back_empty(work, daemon, cluster):
    cp, n = cluster
    cp.create_storage_class(STATIC_CLASS, "kubernetes.io/no-provisioner", reclaim="Delete",
                            binding_mode="WaitForFirstConsumer")
    mp = daemon.create("web", "64Mi")
    prov = HostProvisioner(work, cp, n, static_class=STATIC_CLASS)

    def registered():
        pvs = [pv for pv in cp.pvs() if pv["spec"].get("local", {}).get("path") == mp]
        return pvs[0] if pvs and cp.phase(pvs[0]) == "Available" else None
    pv = n.wait_for(registered, 30, what=f"an Available PV for {mp}\n{prov.tail()}")
    assert pv["spec"]["capacity"]["storage"] == "64Mi"

    cp.create_pvc("site", storage_class=STATIC_CLASS, size="64Mi")
    # WaitForFirstConsumer: nothing binds before a pod needs the claim.
    time.sleep(2)
    assert cp.phase(cp.pvc("site")) == "Pending"

    port = control_plane.free_port()
    n.create(pod_spec("web", "site", ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
                      mount="/www"))
    pod = n.wait_pod_running("web")
    assert pod["spec"]["nodeName"] == n.name
    claim = cp.wait_for_pvc_phase("site", "Bound", timeout=10)
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"]

    page = "<h1>served from a carvefs volume</h1>\n"
    n.exec("web", "sh", "-c", f"printf '%s' '{page}' > /www/index.html")
    # Written through the pod's mount into the carvefs volume on the host.
    with open(os.path.join(mp, "index.html")) as f:
        assert f.read() == page
    status, body = n.wait_for(lambda: _try_get(port), 20, what=f"httpd on port {port}")
    assert (status, body) == (200, page)

    # Release: the PV goes Released, the provisioner wipes the volume and
    # registers it afresh (a new PV object), Available and empty.
    watch = Watch(cp, "/api/v1/persistentvolumes")
    try:
        n.delete_pod("web")
        cp.delete(f"{CLAIMS}/site", wait=True)

        def reregistered():
            p = registered()
            return p if p and p["metadata"]["uid"] != pv["metadata"]["uid"] else None
        fresh = n.wait_for(reregistered, 60, what=f"{mp} registered again\n{prov.tail()}")
    finally:
        watch.close()
    seen = [(e["type"], e["object"]["metadata"]["uid"], e["object"]["status"].get("phase"))
            for e in watch.events if e["object"]["metadata"]["name"] == pv["metadata"]["name"]]
    old = pv["metadata"]["uid"]
    assert ("MODIFIED", old, "Released") in seen, seen
    assert ("DELETED", old, "Released") in seen, seen
    assert os.listdir(mp) == [], "the volume was not wiped"

    cp.create_pvc("site2", storage_class=STATIC_CLASS, size="64Mi")
    n.create(pod_spec("reader", "site2", ["sleep", "3600"]))
    n.wait_pod_running("reader")
    claim = cp.wait_for_pvc_phase("site2", "Bound", timeout=10)
    assert claim["spec"]["volumeName"] == fresh["metadata"]["name"]
    assert n.exec("reader", "ls", "-A", "/data").stdout == ""


def _try_get(port):
    try:
        return http_get(port)
    except OSError:
        return None


# --------------------------------------------------------------------------
# Dynamic volumes
# --------------------------------------------------------------------------

@pytest.mark.timeout_seconds(240)
def test_dynamic_volume_in_a_pod_has_its_size_stats_and_grows(work, daemon, cluster):
    cp, n = cluster
    # An inode limit: the volume's inode figures are its own, not those of
    # the disk under the pool, which other processes change. The name of
    # earlier releases: the provisioner still serves its classes.
    cp.create_storage_class(DYNAMIC_CLASS, DYNAMIC_LEGACY, reclaim="Delete",
                            binding_mode="WaitForFirstConsumer", allow_expansion=True,
                            parameters={"inodes": "1000"})
    prov = HostProvisioner(work, cp, n)
    cp.create_pvc("data", storage_class=DYNAMIC_CLASS, size="64Mi")
    n.create(pod_spec("app", "data", ["sleep", "3600"]))
    try:
        pod = n.wait_pod_running("app")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    # The scheduler chose the node, and the claim was carved there.
    assert pod["spec"]["nodeName"] == n.name
    claim = cp.wait_for_pvc_phase("data", "Bound", timeout=10)
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == n.name
    name = claim["spec"]["volumeName"]
    mp = os.path.join(work.mnt, name)
    assert daemon.stats(name)["capacity_bytes"] == 64 * MiB
    record_rss(cp, n, "RSS with one pod running (MiB)")

    total, used, avail = df_kib(n, "app")
    assert total == 64 * 1024, (total, used, avail)

    # Past the size: ENOSPC in the pod.
    r = n.exec("app", "dd", "if=/dev/zero", "of=/data/fill", "bs=1048576", "count=80",
               check=False)
    assert r.returncode != 0, r
    assert "No space left on device" in r.stderr, r.stderr
    total, used, avail = df_kib(n, "app")
    assert avail < 1024, (total, used, avail)

    # kubelet's statistics of the claim are the volume's statfs (once its
    # 5 s aggregation has run after the write).
    def stats_match():
        want = statfs_figures(mp)
        got = kubelet_volume_stats(n, "data")
        return got if got == want else None
    try:
        n.wait_for(stats_match, 30, what="kubelet_volume_stats equal to statfs", interval=1)
    except TimeoutError:
        pytest.fail(f"kubelet: {kubelet_volume_stats(n, 'data')}\nstatfs: {statfs_figures(mp)}")
    summary = json.loads(n.read_only("/stats/summary"))
    (vol,) = [v for p in summary["pods"] if p["podRef"]["name"] == "app"
              for v in p.get("volume", []) if v.get("pvcRef", {}).get("name") == "data"]
    st = statfs_figures(mp)
    assert (vol["capacityBytes"], vol["usedBytes"], vol["availableBytes"]) == \
        (st["capacity_bytes"], st["used_bytes"], st["available_bytes"])

    # Growing the claim grows the filesystem under the running pod.
    n.exec("app", "rm", "/data/fill")
    cp.merge_patch(f"{CLAIMS}/data", {"spec": {"resources": {"requests": {"storage": "128Mi"}}}})
    try:
        n.wait_for(lambda: df_kib(n, "app")[0] == 128 * 1024, 60,
                   what="df in the pod to show 128Mi", interval=1)
    except TimeoutError as e:
        pytest.fail(f"{e}: df says {df_kib(n, 'app')}\n{prov.tail()}")
    r = n.exec("app", "dd", "if=/dev/zero", "of=/data/fill", "bs=1048576", "count=100")
    assert r.returncode == 0


# --------------------------------------------------------------------------
# Capacity-aware scheduling
# --------------------------------------------------------------------------

@pytest.mark.timeout_seconds(300)
def test_scheduler_waits_for_room_published_by_the_provisioner(work, ext4_daemon, cluster):
    cp, n = cluster
    daemon = ext4_daemon
    cp.kubectl("apply", "-f", os.path.join(DEPLOY, "csidriver.yaml"))
    try:
        _capacity_flow(cp, n, work, daemon)
    finally:
        cp.kubectl("delete", "-f", os.path.join(DEPLOY, "csidriver.yaml"), check=False)


def _capacity_flow(cp, n, work, daemon):
    cp.create_storage_class(DYNAMIC_CLASS, DYNAMIC, reclaim="Delete",
                            binding_mode="WaitForFirstConsumer")
    # Most of the 256 MiB pool promised to a volume carved by hand.
    daemon.create("filler", "160Mi")
    prov = HostProvisioner(work, cp, n)

    def published(at_least=0):
        def check():
            node = cp.get(f"/api/v1/nodes/{n.name}")
            room = node["metadata"].get("annotations", {}).get("carvefs.io/allocatable-bytes")
            objs = capacities(cp, DYNAMIC_CLASS)
            if room is None or len(objs) != 1:
                return None
            (c,) = objs
            if quantity(c["capacity"]) != int(room) or int(room) < at_least:
                return None
            return c
        return check
    try:
        c = n.wait_for(published(), 30, what="the node's room as a CSIStorageCapacity")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    assert c["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": n.name}}
    room = quantity(c["capacity"])
    assert 0 < room < 128 * MiB, room

    # A claim larger than the room: the scheduler keeps its pod Pending and
    # never hands the claim to the provisioner.
    cp.create_pvc("big", storage_class=DYNAMIC_CLASS, size="128Mi")
    n.create(pod_spec("big", "big", ["sleep", "3600"]))

    def unschedulable():
        pod = n.pod("big")
        for cond in pod.get("status", {}).get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return cond.get("message")
        return None
    why = n.wait_for(unschedulable, 30, what="the scheduler's verdict on pod big")
    assert "did not have enough free storage" in why, why
    time.sleep(3)
    claim = cp.pvc("big")
    assert cp.phase(claim) == "Pending"
    assert "volume.kubernetes.io/selected-node" not in claim["metadata"].get("annotations", {})
    assert [v["name"] for v in daemon.list()] == ["filler"]
    events = cp.api("GET", "/api/v1/namespaces/default/events")["items"]
    assert not [e for e in events if e["involvedObject"]["name"] == "big"
                and e.get("source", {}).get("component") == DYNAMIC_LEGACY], events

    # Room again: the object follows, and the scheduler places the pod at
    # its next look at unschedulable pods (once a minute on 1.20).
    t0 = time.monotonic()
    daemon.ctl("delete", "filler")
    n.wait_for(published(at_least=128 * MiB), 30, what="the room published again")
    try:
        pod = n.wait_pod_running("big", timeout=150)
    except TimeoutError as e:
        pytest.fail(f"{e}\n{prov.tail()}")
    FIGURES.append(("pod placed after room came back (s)", f"{time.monotonic() - t0:.0f}"))
    assert pod["spec"]["nodeName"] == n.name
    claim = cp.wait_for_pvc_phase("big", "Bound", timeout=10)
    assert daemon.stats(claim["spec"]["volumeName"])["capacity_bytes"] == 128 * MiB


# --------------------------------------------------------------------------
# deploy/ on the node
# --------------------------------------------------------------------------

def render_deploy(tmp):
    """deploy/ rendered by kustomize, with the image the node has."""
    with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
        f.write(f"resources:\n  - {os.path.relpath(DEPLOY, tmp)}\n"
                "images:\n  - name: registry.example.com/carvefs\n"
                f"    newName: {images.CARVEFS.rsplit(':', 1)[0]}\n"
                f"    newTag: {images.CARVEFS.rsplit(':', 1)[1]}\n")
    p = run([control_plane.KUBECTL, "kustomize", tmp], timeout=60)
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def for_this_machine(objs, work, cp, ports):
    """What this test machine needs changed, and nothing else:

    - paths: the pool, the control socket and the discovery directory are
      the test's own (the discovery directory at the same path in the
      containers and on the host, as deploy/ has it);
    - network: no pod network here, so the pod uses the host's, and every
      listener and probe is on 127.0.0.1 on free ports;
    - credentials: the test apiserver mounts no service account tokens, so a
      Secret with one is mounted where the provisioner's in-cluster
      configuration reads it, and KUBERNETES_SERVICE_HOST/PORT name it;
    - version: Kubernetes 1.20 has no maxSurge for DaemonSets, so the
      rolling update is the one deploy/README.md gives 1.20 and 1.21.
    """
    for o in objs:
        if o["kind"] == "ConfigMap":
            scm = yaml.safe_load(o["data"]["storageClassMap"])
            for cls in scm.values():
                cls["hostDir"] = cls["mountDir"] = work.mnt
            o["data"]["storageClassMap"] = yaml.safe_dump(scm)
        if o["kind"] != "DaemonSet":
            continue
        rolling = o["spec"]["updateStrategy"]["rollingUpdate"]
        assert rolling.pop("maxSurge") == 1
        rolling["maxUnavailable"] = 1
        spec = o["spec"]["template"]["spec"]
        spec["hostNetwork"] = True
        for v in spec["volumes"]:
            if "hostPath" in v:
                v["hostPath"]["path"] = {"pool": work.pool, "discovery": work.mnt,
                                         "run": work.run}.get(v["name"],
                                                              v["hostPath"]["path"])
        spec["volumes"].append({"name": "sa", "secret": {"secretName": "carve-provisioner-sa"}})
        for c in spec["containers"]:
            # carvefs-keeper listens on nothing but its socket under "run".
            port = ports.get(c["name"])
            c["args"] = [f"--listen=127.0.0.1:{port}" if a.startswith("--listen=")
                         else f"--discovery-dir={work.mnt}" if a.startswith("--discovery-dir=")
                         else a for a in c["args"]]
            for p in c.get("ports", []):
                p["containerPort"] = port
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    c[probe]["httpGet"]["host"] = "127.0.0.1"
            for m in c["volumeMounts"]:
                if m["name"] == "discovery":
                    m["mountPath"] = work.mnt
            if c["name"] == "carve-provisioner":
                c["env"] += [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                             {"name": "KUBERNETES_SERVICE_PORT", "value": str(cp.port)}]
                c["volumeMounts"].append({
                    "name": "sa", "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    return objs


@contextlib.contextmanager
def deployed(cp, n, work, tmp):
    """deploy/ applied as this machine needs it (for_this_machine); yields
    the ports of the containers that listen, and removes what it applied
    whatever happened meanwhile."""
    os.makedirs(work.mnt)
    os.makedirs(work.pool)
    # Bidirectional propagation needs the host directory on a shared mount;
    # only this directory is made one (/ stays private).
    run(["mount", "--bind", work.mnt, work.mnt])
    run(["mount", "--make-rshared", work.mnt])
    ports = {"carvefs": control_plane.free_port(),
             "carve-provisioner": control_plane.free_port()}
    objs = for_this_machine(render_deploy(tmp), work, cp, ports)
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "carve-provisioner-sa", "namespace": "carvefs"},
              "stringData": {"token": cp.token, "ca.crt": cp.ca_pem, "namespace": "carvefs"}}
    ns = [o for o in objs if o["kind"] == "Namespace"]
    rest = [o for o in objs if o["kind"] != "Namespace"]
    cp.kubectl("apply", "-f", "-", input={"apiVersion": "v1", "kind": "List", "items": ns})
    try:
        cp.kubectl("apply", "-f", "-", input={"apiVersion": "v1", "kind": "List",
                                              "items": [secret] + rest})
        yield ports
    finally:
        _remove_deploy(cp, n, objs)


def _ds_pod_ready(cp, n):
    """The DaemonSet's pod once all its containers run and are ready, none
    restarted: (name, {container name: status})."""
    def ds_pod():
        pods = cp.api("GET", "/api/v1/namespaces/carvefs/pods")["items"]
        return pods[0]["metadata"]["name"] if pods else None
    name = n.wait_for(ds_pod, 30, what="the DaemonSet's pod")
    try:
        pod = n.wait_pod_running(name, "carvefs", timeout=90)
    except (TimeoutError, AssertionError) as e:
        pytest.fail(f"{e}\n{_pod_logs(cp, name)}")
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert sorted(statuses) == ["carve-provisioner", "carvefs", "carvefs-keeper"]
    for c in statuses.values():
        assert c["ready"] and c["restartCount"] == 0, c
    return name, statuses


def _consumer(cp, n, work, ds_pod, spec, size="32Mi"):
    """Creates pod spec (of pod_spec) and a claim "data" of the class
    deploy/ ships for it; returns the volume's name and mountpoint once the
    pod runs."""
    cp.create_pvc("data", storage_class=DYNAMIC_CLASS, size=size)
    n.create(spec)
    name = spec["metadata"]["name"]
    try:
        n.wait_pod_running(name, timeout=60)
    except (TimeoutError, AssertionError) as e:
        pytest.fail(f"{e}\n{_pod_logs(cp, ds_pod)}")
    vol = cp.pvc("data")["spec"]["volumeName"]
    return vol, os.path.join(work.mnt, vol)


@pytest.mark.timeout_seconds(300)
def test_deploy_daemonset_runs_and_serves_a_pod(work, cluster, tmp_path):
    cp, n = cluster
    with deployed(cp, n, work, str(tmp_path)) as ports:
        _deploy_flow(cp, n, work, ports)


def _deploy_flow(cp, n, work, ports):
    name, _ = _ds_pod_ready(cp, n)
    # The probes' endpoints, as kubelet reached them.
    assert http_get(ports["carvefs"], "/healthz")[0] == 200
    assert http_get(ports["carve-provisioner"], "/readyz")[0] == 200

    # A consumer of the dynamic class deploy/ ships.
    vol, mp = _consumer(cp, n, work, name, pod_spec("consumer", "data", ["sleep", "3600"]))
    # Carved by the daemon in the pod, mounted inside its container, and
    # visible on the host through Bidirectional propagation.
    mounts = [m for m in k8s_node.mounts_below(mp) if m == mp]
    assert mounts, f"{mp} is not a mount on the host"
    with open("/proc/self/mountinfo") as f:
        assert any(f" {mp} " in line and "fuse.carvefs" in line for line in f)
    n.exec("consumer", "sh", "-c", "echo hello > /data/greeting")
    with open(os.path.join(mp, "greeting")) as f:
        assert f.read() == "hello\n"
    assert os.path.exists(os.path.join(work.pool, "volumes", vol, "greeting"))
    assert df_kib(n, "consumer")[0] == 32 * 1024


# A pod's use of its volume across a crash: each round writes a file,
# renames it over the counter and reads it back, and appends the round to a
# journal that stays open for writing, and for reading, from the first round
# to the last; then it logs the round and the time since boot, read without
# a fork (/proc/uptime: 10 ms steps). The first error or mismatch ends it
# with status 1 and says so.
WRITER = r"""
i=0
fail() { echo "FAIL round $i: $*"; exit 1; }
exec 3>>/data/journal || fail "cannot open the journal"
exec 4</data/journal || fail "cannot open the journal for reading"
while :; do
  i=$((i + 1))
  echo "$i" > /data/counter.new || fail "write"
  mv /data/counter.new /data/counter || fail "rename"
  v=$(cat /data/counter) || fail "read"
  [ "$v" = "$i" ] || fail "read back $v"
  echo "$i" >&3 || fail "append to the journal"
  read -r j <&4 || fail "read the journal"
  [ "$j" = "$i" ] || fail "journal read back $j"
  read -r up _ < /proc/uptime
  echo "ok $i $up"
  usleep 20000
done
"""


@pytest.mark.timeout_seconds(360)
def test_deploy_carvefs_killed_in_its_pod_is_restarted_and_pods_keep_their_volume(
        work, cluster, tmp_path):
    cp, n = cluster
    with deployed(cp, n, work, str(tmp_path)):
        _crash_flow(cp, n, work)


def _crash_flow(cp, n, work):
    ds, before = _ds_pod_ready(cp, n)
    spec = pod_spec("writer", "data", ["sh", "-c", WRITER])
    # An error must show, not be hidden by a restart of the writer.
    spec["spec"]["restartPolicy"] = "Never"
    vol, mp = _consumer(cp, n, work, ds, spec)

    def rounds_past(count):
        def check():
            rounds = _writer_rounds(cp, ds)
            return rounds if len(rounds) >= count else None
        return check
    n.wait_for(rounds_past(20), 30, what="the writer's first 20 rounds", interval=1)
    def host_mount():
        with open("/proc/self/mountinfo") as f:
            return _mountinfo_at(f.read(), mp)
    before_host = host_mount()
    pod_mount = _mountinfo_at(n.exec("writer", "cat", "/proc/self/mountinfo").stdout, "/data")
    assert before_host and "fuse.carvefs" in before_host, before_host
    assert pod_mount and "fuse.carvefs" in pod_mount, pod_mount

    # SIGKILL to carvefs itself, through a pidfd: the signal reaches the
    # process checked here or none.
    pid = n.container_pid(before["carvefs"]["containerID"])
    pidfd = os.pidfd_open(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0]
        assert os.path.basename(argv0) == b"carvefs", argv0
        assert n.container_pid(before["carvefs"]["containerID"]) == pid
        t_kill = time.clock_gettime(time.CLOCK_BOOTTIME)
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)

    def carvefs_restarted(ready):
        def check():
            st = {c["name"]: c for c in n.pod(ds, "carvefs")["status"]["containerStatuses"]}
            c = st["carvefs"]
            ok = c["restartCount"] >= 1 and "running" in c["state"] and (c["ready"] or not ready)
            return st if ok else None
        return check
    try:
        n.wait_for(carvefs_restarted(False), 60, what="kubelet to restart carvefs",
                   interval=0.2)
        t_restarted = time.clock_gettime(time.CLOCK_BOOTTIME)
        after = n.wait_for(carvefs_restarted(True), 90,
                           what="the restarted carvefs to be ready", interval=0.5)
    except TimeoutError as e:
        pytest.fail(f"{e}\n{_pod_logs(cp, ds)}")
    crashed = after["carvefs"]
    assert crashed["restartCount"] == 1, crashed
    assert crashed["lastState"]["terminated"]["exitCode"] == 137, crashed

    # The writer goes on, on the same mount, and never saw an error.
    at_ready = len(_writer_rounds(cp, ds))
    try:
        rounds = n.wait_for(rounds_past(at_ready + 20), 60, interval=1,
                            what="the writer to go on after the restart")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{_pod_logs(cp, ds)}")
    writer = n.pod("writer")
    assert writer["status"]["phase"] == "Running", writer["status"]
    (c,) = writer["status"]["containerStatuses"]
    assert c["restartCount"] == 0 and "running" in c["state"], c
    assert _mountinfo_at(n.exec("writer", "cat", "/proc/self/mountinfo").stdout,
                         "/data") == pod_mount
    assert host_mount() == before_host
    with open(os.path.join(mp, "journal")) as f:
        journal = f.read().split()
    assert journal[:len(rounds)] == [str(i) for i in range(1, len(rounds) + 1)], \
        "the journal lost or repeated rounds"

    # Only carvefs restarted, and it took the volume back.
    for c in ("carvefs-keeper", "carve-provisioner"):
        assert after[c]["restartCount"] == 0, after[c]
        assert after[c]["containerID"] == before[c]["containerID"], (before[c], after[c])
    log = cp.kubectl("logs", "-n", "carvefs", ds, "-c", "carvefs")
    took = re.search(rf"volume '{vol}': taken back after a crash in ([0-9.]+) s", log)
    assert took, f"the restarted carvefs did not take '{vol}' back:\n{_pod_logs(cp, ds)}"

    gaps = [(a, b) for (a, _), (b, _) in zip(rounds, rounds[1:])]
    pause = next(b - a for a, b in gaps if a <= t_kill < b)
    normal = max(b - a for a, b in gaps if b < t_kill)
    FIGURES.append(("carvefs killed in its pod: kubelet restarted it after (s)",
                    f"{t_restarted - t_kill:.1f}"))
    FIGURES.append(("carvefs killed in its pod: the writer's pause, its longest before (s)",
                    f"{pause:.2f} {normal:.2f}"))
    FIGURES.append(("carvefs killed in its pod: the volume taken back in (s)", took.group(1)))


def _writer_rounds(cp, ds_pod):
    """The rounds the writer logged, [(seconds since boot, round)], checked:
    every round in order from 1, and no failure (which fails the test at
    once, even inside a wait, with the logs of the DaemonSet's pod)."""
    out = cp.kubectl("logs", "writer")
    rounds = []
    for line in out.splitlines():
        m = re.fullmatch(r"ok (\d+) ([0-9.]+)", line)
        if not m or int(m.group(1)) != len(rounds) + 1:
            last = "\n".join(out.splitlines()[-10:])
            pytest.fail(f"the writer said {line!r}; its last lines:\n{last}\n"
                        + _pod_logs(cp, ds_pod))
        rounds.append((float(m.group(2)), len(rounds) + 1))
    return rounds


def _mountinfo_at(mountinfo, path):
    """The line of the mount at path in a mountinfo (its id, device, root,
    type and source: another mount there would differ)."""
    lines = [line for line in mountinfo.splitlines() if line.split()[4] == path]
    return lines[-1] if lines else None


def _pod_logs(cp, name):
    out = []
    for c in ("carvefs", "carvefs-keeper", "carve-provisioner"):
        r = cp.kubectl("logs", "-n", "carvefs", name, "-c", c, "--tail", "30", check=False)
        out.append(f"---- {c} ----\n{r}")
    return "\n".join(out)


def _remove_deploy(cp, n, objs):
    """Stops the DaemonSet's pod (carvefs unmounts its volumes on SIGTERM)
    and removes what deploy/ created, but the namespace: no namespace
    controller runs here to empty it."""
    for p in cp.api("GET", "/api/v1/pods")["items"]:
        if p["metadata"]["namespace"] == "default":
            n.delete_pod(p["metadata"]["name"])
    for pvc in cp.api("GET", CLAIMS)["items"]:
        cp.delete(f"{CLAIMS}/{pvc['metadata']['name']}", wait=True)
    # No garbage collector runs here: the pods are deleted below, and an
    # Orphan deletion would keep the DaemonSet waiting for it.
    cp.api("DELETE", "/apis/apps/v1/namespaces/carvefs/daemonsets/carvefs",
           query={"propagationPolicy": "Background"}, ok404=True)
    cp.wait_for(lambda: cp.get("/apis/apps/v1/namespaces/carvefs/daemonsets/carvefs") is None,
                30, what="the DaemonSet gone")
    for p in cp.api("GET", "/api/v1/namespaces/carvefs/pods")["items"]:
        n.delete_pod(p["metadata"]["name"], "carvefs", timeout=90)
    for o in objs:
        if o["kind"] in ("Namespace", "DaemonSet"):
            continue
        cp.kubectl("delete", o["kind"], o["metadata"]["name"], "-n",
                   o["metadata"].get("namespace", "default"), "--ignore-not-found", check=False)
    cp.kubectl("delete", "secret", "carve-provisioner-sa", "-n", "carvefs",
               "--ignore-not-found", check=False)

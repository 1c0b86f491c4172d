#!/usr/bin/python3
"""A real Kubernetes node on this machine, for a ControlPlane (control_plane.py).

containerd (Debian's, with runc), kubelet and kube-scheduler (built by
build-control-plane.sh) run pods for real: kubelet mounts local PVs into them,
reports volume statistics, runs probes, and the scheduler binds
WaitForFirstConsumer claims.  Everything is private to one directory, and
gone after stop():

    containerd/config.toml  containerd's configuration: own root, state,
                            socket; the CRI plugin with the local pause
                            image and a loopback-only CNI configuration
    containerd/root, state  containerd's images, snapshots and tasks
    containerd.sock
    cni/                    the CNI configuration: loopback only
    images/                 the image tarballs imported into containerd
    kubelet/                kubelet's --root-dir (pods, volumes, plugins)
    kubelet.yaml            its KubeletConfiguration
    *.log                   containerd.log, kubelet.log, scheduler.log

Pods must be hostNetwork and bind 127.0.0.1: the CNI configuration gives
other pods no address, so that no pod traffic leaves this machine.  Pods use
the images of images.py with imagePullPolicy: Never.

    import control_plane, node
    with control_plane.ControlPlane(extra_controllers=("daemonset",)) as cp, \\
            node.Node(cp, build_dir="build") as n:
        cp.kubectl("apply", "-f", "pod.yaml")
        n.wait_pod_running("web")

available() tells whether the binaries and packages are there.
"""

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.request

import control_plane
import images
from control_plane import ControlPlaneError, free_port, kill_pids, proc_start_time, tail

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
# kubelet writes pod logs here whatever its root directory (a constant of
# 1.20); stop() removes what its pods left.
POD_LOGS = "/var/log/pods"
CONTAINER_LOGS = "/var/log/containers"

START_TIMEOUT_S = 90
POD_TIMEOUT_S = 60
# One node per machine at a time: kubelet 1.20 keeps pod logs in the
# host-wide POD_LOGS, and its container garbage collection, once a minute,
# removes there every pod directory it does not know. A second node on the
# machine would delete this one's pod logs, and kubectl logs would fail.
# start() waits for this lock (a node's whole life is minutes), stop() lets
# it go; the kernel does if the process dies.
NODE_LOCK = "/run/carvefs-test-node.lock"
NODE_LOCK_TIMEOUT_S = 1200


def available():
    """(True, "") if a node can run here, else (False, why)."""
    ok, why = control_plane.available()
    if not ok:
        return ok, why
    for name in ("kubelet", "kube-scheduler", "pause"):
        path = os.path.join(control_plane.BIN_DIR, name)
        if not os.access(path, os.X_OK):
            return False, (f"{path} missing: run tests/k8s/build-control-plane.sh")
    for path in (CONTAINERD, CTR, RUNC, os.path.join(CNI_BIN_DIR, "loopback"),
                 images.BUSYBOX):
        if not os.access(path, os.X_OK):
            return False, f"{path} missing (Debian packages containerd, runc, " \
                "containernetworking-plugins, busybox-static)"
    return True, ""


def node_name():
    """The name kubelet registers: the machine's hostname when it resolves to
    127.0.0.1 (the apiserver reaches kubelet, for exec and logs, at the node's
    hostname, and kubelet listens on 127.0.0.1 only), else localhost."""
    host = socket.gethostname().lower()
    try:
        if socket.gethostbyname(host) == "127.0.0.1":
            return host
    except OSError:
        pass
    return "localhost"


def mounts_below(path):
    """Mountpoints at or below path, deepest first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), target)
            if target == path or target.startswith(path + "/"):
                out.append(target)
    return sorted(set(out), key=lambda p: -len(p))


def unmount_below(path):
    """Unmounts everything at or below path (lazily as the last resort);
    returns what could not be unmounted."""
    for _ in range(3):
        left = mounts_below(path)
        if not left:
            return []
        for m in left:
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
    return mounts_below(path)


class Node(control_plane.Started):
    """containerd + kubelet + kube-scheduler for a running ControlPlane.

    Attributes once started: name (the Node's name), dir, kubelet_port,
    read_only_port, healthz_port, socket (containerd's), logs, startup_s
    (seconds from start() to a Ready node), timings (seconds per step).

    build_dir: where carvefs's binaries are (for the carvefs image).
    feature_gates: kube-scheduler's --feature-gates (a dict).
    die_with_parent: components get SIGTERM if this Python process dies.
    """

    def __init__(self, cp, build_dir, dir=None, feature_gates=None, keep=None,
                 start_timeout=START_TIMEOUT_S, die_with_parent=True):
        self.cp = cp
        self.build_dir = build_dir
        self.feature_gates = dict(feature_gates or {})
        self.keep = keep if keep is not None else os.environ.get("CARVEFS_K8S_KEEP") == "1"
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self._own_dir = dir is None
        self.dir = dir
        self.name = node_name()
        self.procs = {}
        self._start_times = {}
        self.logs = {}
        self.timings = {}
        self.startup_s = None
        self.pod_uids = set()
        self._lock_fd = None

    # ------------------------------------------------------------ start-up

    def start(self):
        ok, why = available()
        if not ok:
            raise ControlPlaneError(why)
        self._lock()
        t0 = time.monotonic()
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="carvefs-node-")
        os.makedirs(self.dir, exist_ok=True)
        self.dir = os.path.abspath(self.dir)
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.root_dir = os.path.join(self.dir, "kubelet")
        try:
            self._start_containerd()
            self._mark("containerd", t0)
            self._import_images()
            self._mark("images", t0)
            self._start_kubelet()
            self._mark("kubelet registered", t0)
            self._wait_ready()
            self._mark("node ready", t0)
            self._start_scheduler()
            self._mark("scheduler", t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _lock(self):
        t0 = time.monotonic()
        fd = os.open(NODE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 > NODE_LOCK_TIMEOUT_S:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise ControlPlaneError(
                        f"another test node (pid {holder or '?'}) held {NODE_LOCK} for "
                        f"{NODE_LOCK_TIMEOUT_S} s: two nodes on one machine delete each "
                        "other's pod logs") from None
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.timings["node lock wait"] = round(time.monotonic() - t0, 2)

    def _mark(self, what, t0):
        self.timings[what] = round(time.monotonic() - t0, 2)

    def _spawn(self, name, argv):
        return control_plane.spawn(self, name, argv)

    def alive(self):
        for name, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None:
                raise ControlPlaneError(f"{name} exited with status {rc}; last lines of "
                                        f"{self.logs[name]}:\n{tail(self.logs[name])}")
        self.cp.alive()

    def wait_for(self, predicate, timeout=POD_TIMEOUT_S, what=None, interval=0.2):
        """cp.wait_for that also fails at once if a node component died."""
        def check():
            self.alive()
            return predicate()
        return self.cp.wait_for(check, timeout, interval=interval, what=what)

    def _start_containerd(self):
        cd = os.path.join(self.dir, "containerd")
        cni = os.path.join(self.dir, "cni")
        os.makedirs(cd)
        os.makedirs(cni)
        # Loopback only: pods that are not hostNetwork get no address, so
        # no pod traffic can leave this machine.
        with open(os.path.join(cni, "10-loopback.conflist"), "w") as f:
            json.dump({"cniVersion": "0.4.0", "name": "carvefs-test-loopback",
                       "plugins": [{"type": "loopback"}]}, f)
        config = os.path.join(cd, "config.toml")
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        with open(config, "w") as f:
            f.write(textwrap.dedent(f"""\
                version = 2
                root = "{cd}/root"
                state = "{cd}/state"
                # Plugins that would touch the host's /opt or probe other
                # filesystems.
                disabled_plugins = ["io.containerd.internal.v1.opt",
                  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
                [grpc]
                  address = "{self.socket}"
                [{cri}]
                  sandbox_image = "{images.PAUSE}"
                  # The bounding set here may lack CAP_SYS_RESOURCE: runc
                  # cannot lower oom_score_adj, and every sandbox would fail.
                  restrict_oom_score_adj = true
                  # Network namespaces under our state, not /var/run/netns.
                  netns_mounts_under_state_dir = true
                  stream_server_address = "127.0.0.1"
                  stream_server_port = "0"
                  enable_selinux = false
                  [{cri}.containerd]
                    snapshotter = "overlayfs"
                    default_runtime_name = "runc"
                    [{cri}.containerd.runtimes.runc]
                      runtime_type = "io.containerd.runc.v2"
                      [{cri}.containerd.runtimes.runc.options]
                        SystemdCgroup = false
                        BinaryName = "{RUNC}"
                        # runc's state, not under the host's /run/containerd.
                        Root = "{cd}/runc"
                  [{cri}.cni]
                    bin_dir = "{CNI_BIN_DIR}"
                    conf_dir = "{cni}"
                """))
        self._spawn("containerd", [CONTAINERD, "--config", config])
        deadline = time.monotonic() + self.start_timeout
        while self.ctr("version", check=False).returncode != 0:
            self.alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError("containerd did not answer on "
                                        f"{self.socket}:\n{tail(self.logs['containerd'])}")
            time.sleep(0.1)

    def ctr(self, *args, check=True, timeout=120):
        r = subprocess.run([CTR, "--address", self.socket, "--namespace", "k8s.io",
                            *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise ControlPlaneError(f"ctr {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r

    def _import_images(self):
        d = os.path.join(self.dir, "images")
        os.makedirs(d)
        tars = [
            images.pause_image(os.path.join(d, "pause.tar"),
                               os.path.join(control_plane.BIN_DIR, "pause")),
            images.busybox_image(os.path.join(d, "busybox.tar")),
            images.carvefs_image(os.path.join(d, "carvefs.tar"), self.build_dir),
        ]
        for t in tars:
            self.ctr("images", "import", "--snapshotter", "overlayfs", t)

    def _kubelet_config(self):
        self.kubelet_port = free_port()
        self.read_only_port = free_port()
        self.healthz_port = free_port()
        path = os.path.join(self.dir, "kubelet.yaml")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": self.read_only_port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            # Test only: anyone on this machine may read and exec.
            "authentication": {"anonymous": {"enabled": True},
                               "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            # No systemd (PID 1 is not), cgroup v1 or v2 as the host has.
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            # No eviction, no image garbage collection: the disk is shared
            # and its fill level is none of the tests' business.
            "evictionHard": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Volume statistics every 5 s rather than every minute.
            "volumeStatsAggPeriod": "5s",
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "serializeImagePulls": False,
            # The device manager's socket directory is a constant
            # (/var/lib/kubelet/device-plugins): keep off the host's.
            "featureGates": {"DevicePlugins": False},
            "resolvConf": "/etc/resolv.conf",
        }
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return path

    def _start_kubelet(self):
        os.makedirs(self.root_dir)
        config = self._kubelet_config()
        self._spawn("kubelet", [
            os.path.join(control_plane.BIN_DIR, "kubelet"),
            f"--config={config}",
            f"--kubeconfig={self.cp.kubeconfig}",
            f"--root-dir={self.root_dir}",
            f"--cert-dir={os.path.join(self.dir, 'pki')}",
            f"--volume-plugin-dir={os.path.join(self.dir, 'volume-plugins')}",
            f"--hostname-override={self.name}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.socket}",
            "--runtime-request-timeout=2m",
            "--v=2",
        ])
        self.wait_for(lambda: self.cp.get(f"/api/v1/nodes/{self.name}"),
                      self.start_timeout, what=f"node {self.name} to register\n"
                      + tail(self.logs["kubelet"], 15))

    def node(self):
        return self.cp.get(f"/api/v1/nodes/{self.name}")

    def _ready(self):
        for c in self.node()["status"].get("conditions", []):
            if c["type"] == "Ready":
                return c["status"] == "True"
        return False

    def _wait_ready(self):
        self.wait_for(self._ready, self.start_timeout,
                      what=f"node {self.name} Ready\n" + tail(self.logs["kubelet"], 15))
        # The apiserver taints a new node not-ready, and only the
        # node-lifecycle controller, which does not run here, lifts it.
        self.cp.merge_patch(f"/api/v1/nodes/{self.name}", {"spec": {"taints": None}})

    def _start_scheduler(self):
        argv = [os.path.join(control_plane.BIN_DIR, "kube-scheduler"),
                f"--kubeconfig={self.cp.kubeconfig}", "--leader-elect=false",
                "--port=0", "--secure-port=0", "--bind-address=127.0.0.1", "--v=2"]
        if self.feature_gates:
            argv.append("--feature-gates=" + ",".join(
                f"{k}={str(v).lower()}" for k, v in sorted(self.feature_gates.items())))
        self._spawn("scheduler", argv)
        self.wait_for(lambda: "Starting Kubernetes Scheduler" in _read(self.logs["scheduler"]),
                      self.start_timeout, what="kube-scheduler to start")

    # ---------------------------------------------------------------- pods

    def pod(self, name, namespace="default"):
        return self.cp.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    def create(self, obj):
        """Creates an object (a dict) with kubectl; remembers pods' uids."""
        out = self.cp.kubectl("create", "-f", "-", input=obj)
        self._remember(out)
        return out

    def _remember(self, out):
        items = out.get("items", [out]) if isinstance(out, dict) else []
        for o in items:
            if o.get("kind") == "Pod":
                self.pod_uids.add(o["metadata"]["uid"])

    def wait_pod_running(self, name, namespace="default", timeout=POD_TIMEOUT_S, ready=True):
        """Waits for a pod to run (and be Ready, with ready); returns it."""
        def running():
            p = self.pod(name, namespace)
            if not p:
                return None
            self.pod_uids.add(p["metadata"]["uid"])
            st = p.get("status", {})
            if st.get("phase") in ("Failed", "Succeeded"):
                raise AssertionError(f"pod {namespace}/{name} is {st['phase']}: {st}")
            if st.get("phase") != "Running":
                return None
            if ready and not any(c["type"] == "Ready" and c["status"] == "True"
                                 for c in st.get("conditions", [])):
                return None
            return p
        return self.wait_for(running, timeout, what=f"pod {namespace}/{name} running"
                             + (" and ready" if ready else ""))

    def delete_pod(self, name, namespace="default", timeout=POD_TIMEOUT_S):
        """Deletes a pod and waits until kubelet has torn it down: its
        containers stopped and its volumes unmounted.

        kubelet 1.20 removes the object of a pod it has torn down only once
        its container garbage collection (every minute) has removed the pod's
        sandbox, which holds no volume; this removes the object itself once
        the containers are gone and the volumes unmounted, as kubelet would
        then.
        """
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        p = self.cp.get(path)
        if not p:
            return
        uid = p["metadata"]["uid"]
        self.pod_uids.add(uid)
        self.cp.delete(path)
        pod_dir = os.path.join(self.root_dir, "pods", uid)

        def torn_down():
            cur = self.cp.get(path)
            if cur is None:
                return True
            # Stopped: terminated, or waiting once kubelet removed it.
            statuses = cur.get("status", {}).get("containerStatuses", [])
            if any("running" in c.get("state", {}) for c in statuses):
                return False
            return not mounts_below(pod_dir)
        try:
            self.wait_for(torn_down, timeout, what=f"pod {namespace}/{name} torn down")
        except TimeoutError as e:
            cur = self.cp.get(path) or {}
            states = {c["name"]: c.get("state")
                      for c in cur.get("status", {}).get("containerStatuses", [])}
            raise TimeoutError(f"{e}: containers {states}, still mounted "
                               f"{mounts_below(pod_dir)}\n"
                               + tail(self.logs["kubelet"], 40)) from None
        self.cp.api("DELETE", path, query={"gracePeriodSeconds": 0}, ok404=True)
        self.wait_for(lambda: self.cp.get(path) is None, timeout,
                      what=f"pod {namespace}/{name} gone")

    def exec(self, pod, *argv, namespace="default", container=None, check=True, timeout=60):
        """Runs a command in a pod's container through the apiserver and
        kubelet (kubectl exec); returns the CompletedProcess."""
        args = [control_plane.KUBECTL, "--kubeconfig", self.cp.kubeconfig,
                "--cache-dir", self.cp.kubectl_cache, "exec", "-n", namespace, pod]
        if container:
            args += ["-c", container]
        r = subprocess.run(args + ["--"] + [str(a) for a in argv], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise ControlPlaneError(f"kubectl exec {pod} -- {' '.join(map(str, argv))} "
                                    f"exited {r.returncode}: {r.stderr.strip()}")
        return r

    def container_pid(self, container_id):
        """The host PID of a container's first process, from its containerd
        task; container_id as kubelet reports it (containerd://ID)."""
        cid = container_id.split("://", 1)[-1]
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[0] == cid and fields[2] == "RUNNING":
                return int(fields[1])
        raise ControlPlaneError(f"container {cid} has no running task")

    def read_only(self, path):
        """GET on kubelet's read-only port (text)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.read_only_port}{path}",
                                    timeout=10) as r:
            return r.read().decode()

    # ------------------------------------------------------------- figures

    def rss_kib(self):
        """Resident memory of kubelet, containerd, the scheduler and the
        containerd shims of this node, in KiB."""
        out = {name: control_plane.rss_kib(p.pid) for name, p in self.procs.items()}
        out["shims"] = sum(control_plane.rss_kib(pid) for pid in self._shims())
        return out

    def _shims(self):
        """PIDs of the containerd shims that serve this node's containerd:
        they leave containerd's process tree, and name its socket."""
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if (argv and argv[0].endswith(b"containerd-shim-runc-v2")
                    and self.socket.encode() in argv):
                pids.append(int(d))
        return pids

    # ------------------------------------------------------------ teardown

    def stop(self):
        """Deletes every pod, stops kubelet, the scheduler and containerd and
        what containerd started, unmounts all they mounted, removes the
        directory and the pod logs of this node's pods."""
        errors = []
        if "scheduler" in self.procs:
            self._kill("scheduler")
        if "kubelet" in self.procs:
            with contextlib.suppress(Exception):
                self._delete_all_pods()
            self._kill("kubelet")
        if "containerd" in self.procs:
            with contextlib.suppress(Exception):
                self._remove_containers()
            self._kill("containerd")
        shims = self._shims() if getattr(self, "socket", None) else []
        kill_pids([(pid, proc_start_time(pid)) for pid in shims], timeout=5)
        if self.dir:
            left = unmount_below(self.dir)
            if left:
                errors.append(f"still mounted: {left}")
        self._remove_pod_logs()
        if self.dir and not self.keep and not mounts_below(self.dir):
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if errors:
            raise ControlPlaneError("; ".join(errors))

    def _kill(self, name):
        proc = self.procs.pop(name)
        kill_pids([(proc.pid, self._start_times[name])], timeout=20)
        proc.wait()

    def _delete_all_pods(self):
        """Lets kubelet tear every pod down (unmounting its volumes), with a
        bound; what is left is cleaned up below kubelet."""
        pods = self.cp.api("GET", "/api/v1/pods")["items"]
        for p in pods:
            self.pod_uids.add(p["metadata"]["uid"])
            self.cp.api("DELETE", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/"
                        f"{p['metadata']['name']}", query={"gracePeriodSeconds": 1},
                        ok404=True)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if (not self.cp.api("GET", "/api/v1/pods")["items"]
                    and not self.ctr("tasks", "ls", "-q", check=False).stdout.strip()):
                return
            time.sleep(0.5)

    def _remove_containers(self):
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 10
        while self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "delete", "--force", task, check=False)
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", c, check=False)

    def _remove_pod_logs(self):
        gone = set()
        for uid in self.pod_uids:
            for d in _glob_dir(POD_LOGS, lambda n: n.endswith("_" + uid)):
                shutil.rmtree(d, ignore_errors=True)
                gone.add(d)
        for link in _glob_dir(CONTAINER_LOGS, lambda n: n.endswith(".log")):
            with contextlib.suppress(OSError):
                if any(os.readlink(link).startswith(d + "/") for d in gone):
                    os.unlink(link)


def _glob_dir(d, pred):
    try:
        return [os.path.join(d, n) for n in os.listdir(d) if pred(n)]
    except OSError:
        return []


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


#!/usr/bin/python3
"""A real, throw-away Kubernetes control plane on loopback for tests.

Runs etcd (Debian's etcd-server), kube-apiserver and kube-controller-manager
(built by tests/k8s/build-control-plane.sh into $CARVEFS_K8S_CACHE/bin, default
/var/cache/carvefs/k8s/bin) with the controllers that give the real
PersistentVolume lifecycle: persistentvolume-binder, pv-protection and
pvc-protection.  There is no scheduler and no kubelet; a test plays the
scheduler by annotating claims (select_node()).

Everything listens on 127.0.0.1 on ports picked at run time, and everything
lives in one temporary directory that stop() removes:

    certs/              the apiserver's self-signed certificate and its CA
    ca.crt              the CA alone (PEM), for curl --cacert / libcurl
    token               the admin bearer token
    kubeconfig          server, certificate-authority-data, token user
    etcd.log apiserver.log controller-manager.log
    kubectl-cache/      kubectl's discovery cache for this cluster only

etcd's data lives in /dev/shm when it is available (fsync is cheap there).
If a test process is killed, the components get SIGTERM (die_with_parent) and
the next start removes the directories it left (sweep_stale()).

As a module (pytest), imported as control_plane (control-plane.py is the
same file under the name used on the command line):

    from control_plane import ControlPlane
    with ControlPlane(node="node-1") as cp:
        cp.create_storage_class("carvefs", "carvefs.io/provisioner")
        cp.create_pvc("data", storage_class="carvefs", size="1Gi")
        cp.select_node("data", "node-1")
        pv = cp.wait_for(lambda: cp.pvc("data")["spec"].get("volumeName"))

    available() tells whether the binaries are there (for pytest.skip).

As a command (the processes outlive it; stop kills exactly them):

    control-plane.py start DIR [--node NAME]   prints the kubeconfig path;
                                               DIR/state.json holds PIDs, ports
    control-plane.py stop DIR                  kills them, removes DIR

Only Python's standard library and Debian's openssl, etcd and kubectl are used.
"""

import argparse
import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

CACHE_DIR = os.environ.get("CARVEFS_K8S_CACHE", "/var/cache/carvefs/k8s")
BIN_DIR = os.path.join(CACHE_DIR, "bin")
ETCD = os.environ.get("CARVEFS_ETCD", "/usr/bin/etcd")
KUBECTL = os.environ.get("CARVEFS_KUBECTL", shutil.which("kubectl") or "/usr/bin/kubectl")
# What a cluster runs for volumes: binding, protection, and the expand
# controller (it posts ExternalExpanding for local PVs and must not get in
# the way of an external resizer).
PV_CONTROLLERS = "persistentvolume-binder,pv-protection,pvc-protection,persistentvolume-expander"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10
HTTP_TIMEOUT_S = 30

# Component names, in start order; stop goes the other way.
COMPONENTS = ("etcd", "apiserver", "controller-manager")


class ControlPlaneError(RuntimeError):
    """The control plane could not start, died, or answered unexpectedly."""


class ApiError(ControlPlaneError):
    """A non-2xx answer of the apiserver; .status and .body (parsed Status)."""

    def __init__(self, method, path, status, body):
        self.method, self.path, self.status, self.body = method, path, status, body
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}")


def available():
    """Return (True, "") if the binaries are built, else (False, why)."""
    for name in ("kube-apiserver", "kube-controller-manager"):
        path = os.path.join(BIN_DIR, name)
        if not os.access(path, os.X_OK):
            return False, (f"{path} missing: run tests/k8s/build-control-plane.sh "
                           "(about 20 minutes the first time)")
    for path in (ETCD, KUBECTL, "/usr/bin/openssl"):
        if not os.access(path, os.X_OK):
            return False, f"{path} missing"
    return True, ""


def free_port():
    """A TCP port free on 127.0.0.1 now (a small race remains; start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=30):
    """The last lines of a file, indented, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"    ({path}: {e.strerror})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def pem_blocks(text):
    """Split a PEM file into its certificate blocks."""
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE-----"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith("-----END CERTIFICATE-----"):
                blocks.append("\n".join(cur) + "\n")
                cur = None
    return blocks


def write_kubeconfig(path, server, ca_pem, token, name="carvefs-test"):
    """Write a kubeconfig (block YAML) with an embedded CA and a token user.

    Readable by kubectl and by a plain YAML parser (libyaml); ca_pem is the
    PEM text of the CA that signed the server's certificate.
    """
    ca_b64 = base64.b64encode(ca_pem.encode()).decode()
    text = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {name}\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {ca_b64}\n"
        "users:\n"
        "- name: admin\n"
        "  user:\n"
        f"    token: {token}\n"
        "contexts:\n"
        f"- name: {name}\n"
        "  context:\n"
        f"    cluster: {name}\n"
        "    user: admin\n"
        "    namespace: default\n"
        f"current-context: {name}\n"
    )
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


_prctl = None


def _die_with_parent():
    # Runs in the child between fork and exec: if the test process dies
    # without stopping us, the kernel sends SIGTERM instead of leaving
    # orphans holding ports.  prctl was looked up before the fork, so the
    # child takes no dynamic-loader lock another thread may have held.
    PR_SET_PDEATHSIG = 1
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def proc_start_time(pid):
    """The start time of a process (clock ticks since boot), or None if gone.

    Recorded with each PID so that stop never signals a recycled PID.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sweep_stale(parent, min_age_s=600):
    """Remove etcd directories (and their temporary control-plane directory)
    left by control planes whose etcd is gone, e.g. after the test process
    was killed.  A directory without an owner file is only removed once it is
    older than min_age_s, since a start may be writing it right now.
    """
    tmp_prefix = os.path.join(tempfile.gettempdir(), "carvefs-k8s-")
    try:
        names = [n for n in os.listdir(parent) if n.startswith("carvefs-etcd-")]
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        try:
            with open(os.path.join(path, "owner.json")) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            try:
                if time.time() - os.stat(path).st_mtime > min_age_s:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
            continue
        if proc_start_time(owner.get("pid", 0)) == owner.get("start_time"):
            continue
        d = owner.get("dir")
        if d and d.startswith(tmp_prefix):
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)


def spawn(owner, name, argv):
    """Starts a component of owner (a ControlPlane or a node.Node) in a
    session of its own, logging to owner.dir/NAME.log; records it in
    owner.procs, owner.logs and owner._start_times. With
    owner.die_with_parent, it gets SIGTERM if this process dies."""
    global _prctl
    log = owner.logs[name] = os.path.join(owner.dir, name + ".log")
    # The kernel signals the child when the thread that forked it exits,
    # so this only makes sense from the main thread.
    pdeath = owner.die_with_parent and threading.current_thread() is threading.main_thread()
    if pdeath and _prctl is None:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=owner.dir, start_new_session=True,
            preexec_fn=_die_with_parent if pdeath else None)
    owner.procs[name] = proc
    owner._start_times[name] = proc_start_time(proc.pid)
    return proc


def kill_pids(pids, timeout=STOP_TIMEOUT_S):
    """SIGTERM each (pid, start_time), then SIGKILL those alive after timeout.

    pids is an ordered list; processes are signalled one by one in that order
    (controller-manager and apiserver before etcd), each with its share of the
    bound.
    """
    for pid, start in pids:
        if proc_start_time(pid) != start:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc_start_time(pid) == start:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if proc_start_time(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


class Started:
    """A context manager for what start() and stop() bring up and down."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class ControlPlane(Started):
    """etcd + kube-apiserver + kube-controller-manager on loopback.

    Attributes once started: dir, url ("https://127.0.0.1:PORT"), port,
    token, ca_pem, ca_file, kubeconfig, logs (component -> path),
    pids (component -> pid).

    node: if given, a Node of that name (label kubernetes.io/hostname) is
    created once the apiserver is ready.
    pv_sync_period: the PV controller's resync period (upstream default 15s);
    short by default so periodic transitions do not slow tests down.
    keep: leave the directory in place after stop (also CARVEFS_K8S_KEEP=1).
    die_with_parent: components get SIGTERM if this Python process dies
    (only when started from the main thread).
    extra_controllers: controllers to run besides the PV ones ("daemonset"
    for a node that runs DaemonSets, node.py).
    feature_gates: {gate: bool} for the apiserver and the controller manager
    (a scheduler of node.py takes the same); runtime_config: the apiserver's
    --runtime-config (e.g. "storage.k8s.io/v1alpha1=true").
    """

    def __init__(self, node=None, dir=None, bin_dir=BIN_DIR, pv_sync_period="2s",
                 keep=None, die_with_parent=True, verbosity=2,
                 start_timeout=START_TIMEOUT_S, extra_controllers=(), feature_gates=None,
                 runtime_config=None):
        self.node = node
        self.controllers = PV_CONTROLLERS.split(",") + list(extra_controllers)
        self.feature_gates = dict(feature_gates or {})
        self.runtime_config = runtime_config
        self.bin_dir = bin_dir
        self.pv_sync_period = pv_sync_period
        self.keep = keep if keep is not None else os.environ.get("CARVEFS_K8S_KEEP") == "1"
        self.die_with_parent = die_with_parent
        self.verbosity = verbosity
        self.start_timeout = start_timeout
        self._own_dir = dir is None
        self.dir = dir
        self.etcd_dir = None
        self.procs = {}
        self.pids = {}
        self.logs = {}
        self._start_times = {}
        self.url = self.port = self.token = self.ca_pem = self.ca_file = None
        self.kubeconfig = None
        self.etcd_url = None
        self.startup_s = None
        self._ssl = None

    # ----------------------------------------------------------- lifecycle

    def start(self):
        ok, why = available()
        if not ok:
            raise ControlPlaneError(why)
        t0 = time.monotonic()
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="carvefs-k8s-")
        else:
            os.makedirs(self.dir, exist_ok=True)
        self.dir = os.path.abspath(self.dir)
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        if shm:
            sweep_stale(shm)
        self.etcd_dir = tempfile.mkdtemp(prefix="carvefs-etcd-", dir=shm or self.dir)
        try:
            self._prepare_credentials()
            # A port picked free may be taken before the component binds it;
            # start over with new ports a couple of times if that happens.
            for attempt in range(3):
                try:
                    self._start_components()
                    break
                except _PortTaken:
                    self._kill_components()
                    shutil.rmtree(os.path.join(self.etcd_dir, "data"), ignore_errors=True)
                    if attempt == 2:
                        raise ControlPlaneError("ports kept being taken; giving up")
            if self.node:
                self.create_node(self.node)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self):
        """Kill exactly our processes (TERM, then KILL) and remove the directory."""
        self._kill_components()
        if self.etcd_dir:
            shutil.rmtree(self.etcd_dir, ignore_errors=True)
            self.etcd_dir = None
        if self.dir and not self.keep:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                for name in os.listdir(self.dir):
                    p = os.path.join(self.dir, name)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        os.unlink(p)

    def _kill_components(self):
        order = [c for c in reversed(COMPONENTS) if c in self.procs]
        kill_pids([(self.procs[c].pid, self._start_times[c]) for c in order])
        for c in order:
            self.procs[c].wait()
        self.procs.clear()

    def alive(self):
        """Raise ControlPlaneError with the log tail if a component has died."""
        for name, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None:
                raise ControlPlaneError(
                    f"{name} exited with status {rc}; last lines of {self.logs[name]}:\n"
                    + tail(self.logs[name]))

    def rss_kib(self):
        """Resident memory of each component in KiB."""
        return {name: rss_kib(proc.pid) for name, proc in self.procs.items()}

    # ------------------------------------------------------------ start-up

    def _prepare_credentials(self):
        self.token = secrets.token_hex(16)
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(self.token + "\n")
        self.token_file = os.path.join(self.dir, "tokens.csv")
        with open(self.token_file, "w") as f:
            f.write(f'{self.token},admin,admin,"system:masters"\n')
        self.sa_key = os.path.join(self.dir, "sa.key")
        _run(["openssl", "genrsa", "-out", self.sa_key, "2048"])
        self.cert_dir = os.path.join(self.dir, "certs")
        os.makedirs(self.cert_dir, exist_ok=True)
        self.kubectl_cache = os.path.join(self.dir, "kubectl-cache")

    def _spawn(self, name, argv):
        proc = spawn(self, name, argv)
        self.pids[name] = proc.pid
        return proc

    def _start_components(self):
        self._start_times = {}
        deadline = time.monotonic() + self.start_timeout
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            ETCD, "--name", "carvefs-test", "--data-dir", os.path.join(self.etcd_dir, "data"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"carvefs-test=http://127.0.0.1:{peer}",
            "--logger", "zap", "--log-outputs", "stderr",
        ])
        # Who owns the etcd directory, so that a later start can remove it if
        # this process is killed before stop() runs (sweep_stale()).
        with open(os.path.join(self.etcd_dir, "owner.json"), "w") as f:
            json.dump({"pid": self.procs["etcd"].pid, "start_time": self._start_times["etcd"],
                       "dir": self.dir if self._own_dir else None}, f)
        self._wait_http(self.etcd_url + "/health", "etcd", deadline, tls=False)

        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._spawn("apiserver", [
            os.path.join(self.bin_dir, "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.cert_dir}",
            "--authorization-mode=AlwaysAllow",
            "--anonymous-auth=false",
            # As on every cluster that runs node agents (a DaemonSet of
            # deploy/ has a privileged container).
            "--allow-privileged=true",
            f"--token-auth-file={self.token_file}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={self.sa_key}",
            f"--service-account-signing-key-file={self.sa_key}",
            f"--api-audiences={SA_ISSUER}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            f"--v={self.verbosity}",
        ] + self._gate_args() + (
            [f"--runtime-config={self.runtime_config}"] if self.runtime_config else []))
        self._wait_for_file(os.path.join(self.cert_dir, "apiserver.crt"), "apiserver", deadline)
        self._load_ca()
        self._wait_http(self.url + "/readyz", "apiserver", deadline)
        # The "default" namespace is created by the apiserver shortly after
        # it is ready; claims cannot be created before.
        self._wait(lambda: self._exists("/api/v1/namespaces/default"),
                   "namespace default", deadline)

        self.kubeconfig = write_kubeconfig(os.path.join(self.dir, "kubeconfig"),
                                           self.url, self.ca_pem, self.token)
        self._spawn("controller-manager", [
            os.path.join(self.bin_dir, "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", "--secure-port=0", "--port=0",
            "--use-service-account-credentials=false",
            f"--pvclaimbinder-sync-period={self.pv_sync_period}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ] + self._gate_args())
        # Ready when each controller has said it started.
        wanted = [f'Started "{c}"' for c in self.controllers]
        self._wait(lambda: all(w in _read(self.logs["controller-manager"]) for w in wanted),
                   "controller-manager's PV controllers", deadline)

    def _gate_args(self):
        if not self.feature_gates:
            return []
        return ["--feature-gates=" + ",".join(
            f"{k}={str(v).lower()}" for k, v in sorted(self.feature_gates.items()))]

    def _load_ca(self):
        # The apiserver writes its serving certificate followed by the CA that
        # signed it; clients trust the CA alone.
        crt = os.path.join(self.cert_dir, "apiserver.crt")
        blocks = pem_blocks(_read(crt))
        if not blocks:
            raise ControlPlaneError(f"no certificate in {crt}")
        self.ca_pem = blocks[-1]
        self.ca_file = os.path.join(self.dir, "ca.crt")
        with open(self.ca_file, "w") as f:
            f.write(self.ca_pem)
        self._ssl = ssl.create_default_context(cafile=self.ca_file)

    def _wait(self, predicate, what, deadline):
        last = None
        while True:
            self._check_port_taken()
            self.alive()
            try:
                if predicate():
                    return
            except (OSError, ApiError, ssl.SSLError) as e:
                last = e
            if time.monotonic() > deadline:
                logs = "\n".join(f"last lines of {p}:\n{tail(p, 15)}"
                                 for p in self.logs.values())
                raise ControlPlaneError(
                    f"timed out after {self.start_timeout} s waiting for {what}"
                    f" (last error: {last})\n{logs}")
            time.sleep(0.2)

    def _wait_for_file(self, path, what, deadline):
        self._wait(lambda: os.path.exists(path) and os.path.getsize(path) > 0
                   and len(pem_blocks(_read(path))) >= 1, what + " certificate", deadline)

    def _wait_http(self, url, what, deadline, tls=True):
        def ready():
            req = urllib.request.Request(url)
            if tls:
                req.add_header("Authorization", "Bearer " + self.token)
            with urllib.request.urlopen(req, timeout=5,
                                        context=self._ssl if tls else None) as r:
                return r.status == 200
        self._wait(ready, what, deadline)

    def _check_port_taken(self):
        for name, proc in self.procs.items():
            if proc.poll() is not None and "address already in use" in _read(self.logs[name]):
                raise _PortTaken()

    # ------------------------------------------------------------ REST API

    def api(self, method, path, body=None, content_type="application/json",
            query=None, ok404=False):
        """Call the apiserver directly; return the parsed JSON answer.

        Raises ApiError on a non-2xx answer (None on 404 with ok404=True).
        """
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S, context=self._ssl) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            if e.code == 404 and ok404:
                return None
            raise ApiError(method, path, e.code, parsed) from None
        return json.loads(raw) if raw else None

    def _exists(self, path):
        return self.api("GET", path, ok404=True) is not None

    def get(self, path):
        """GET an object by API path; None if it does not exist."""
        return self.api("GET", path, ok404=True)

    def pv(self, name):
        return self.get(f"/api/v1/persistentvolumes/{name}")

    def pvc(self, name, namespace="default"):
        return self.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")

    def pvs(self):
        return self.api("GET", "/api/v1/persistentvolumes")["items"]

    def phase(self, obj):
        return (obj or {}).get("status", {}).get("phase")

    def merge_patch(self, path, patch):
        return self.api("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path, wait=False, timeout=30):
        """DELETE an object; with wait, until it is gone (finalizers done)."""
        self.api("DELETE", path, ok404=True)
        if wait:
            self.wait_for(lambda: not self._exists(path), timeout, what=f"{path} gone")

    def create_node(self, name, labels=None):
        """Create a Node labelled kubernetes.io/hostname=name (and labels)."""
        all_labels = {"kubernetes.io/hostname": name}
        all_labels.update(labels or {})
        return self.api("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": all_labels},
        })

    def create_namespace(self, name):
        return self.api("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def create_storage_class(self, name, provisioner, reclaim="Delete",
                             binding_mode="WaitForFirstConsumer", parameters=None,
                             mount_options=None, allow_expansion=None):
        sc = {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": provisioner,
            "reclaimPolicy": reclaim,
            "volumeBindingMode": binding_mode,
        }
        if parameters:
            sc["parameters"] = {k: str(v) for k, v in parameters.items()}
        if mount_options:
            sc["mountOptions"] = list(mount_options)
        if allow_expansion is not None:
            sc["allowVolumeExpansion"] = bool(allow_expansion)
        return self.api("POST", "/apis/storage.k8s.io/v1/storageclasses", sc)

    def create_pvc(self, name, storage_class=None, size="1Gi", namespace="default",
                   access_modes=("ReadWriteOnce",), volume_mode=None,
                   volume_name=None, annotations=None, labels=None):
        spec = {
            "accessModes": list(access_modes),
            "resources": {"requests": {"storage": str(size)}},
        }
        if storage_class is not None:
            spec["storageClassName"] = storage_class
        if volume_mode:
            spec["volumeMode"] = volume_mode
        if volume_name:
            spec["volumeName"] = volume_name
        meta = {"name": name, "namespace": namespace}
        if annotations:
            meta["annotations"] = dict(annotations)
        if labels:
            meta["labels"] = dict(labels)
        return self.api("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta, "spec": spec})

    def create_local_pv(self, name, path, node, capacity="1Gi", storage_class="",
                        reclaim="Delete", access_modes=("ReadWriteOnce",),
                        annotations=None, volume_mode="Filesystem"):
        """A local PV pinned to node, as a static provisioner would make it."""
        meta = {"name": name}
        if annotations:
            meta["annotations"] = dict(annotations)
        return self.api("POST", "/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta,
            "spec": {
                "capacity": {"storage": str(capacity)},
                "accessModes": list(access_modes),
                "persistentVolumeReclaimPolicy": reclaim,
                "storageClassName": storage_class,
                "volumeMode": volume_mode,
                "local": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{
                    "matchExpressions": [{"key": "kubernetes.io/hostname",
                                          "operator": "In", "values": [node]}]}]}},
            }})

    def set_pvc_annotation(self, name, key, value, namespace="default"):
        """Set (value None: remove) one annotation of a claim (JSON merge patch)."""
        return self.merge_patch(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}",
            {"metadata": {"annotations": {key: value}}})

    def select_node(self, pvc, node, namespace="default"):
        """Play the scheduler for a WaitForFirstConsumer claim."""
        return self.set_pvc_annotation(pvc, "volume.kubernetes.io/selected-node",
                                       node, namespace)

    # ------------------------------------------------------------- kubectl

    def kubectl(self, *args, input=None, check=True, kubeconfig=None, timeout=60):
        """Run kubectl against this cluster; parsed JSON if it printed JSON.

        For get/create/apply/patch/annotate/label/replace without an -o option,
        -o json is added.  input may be a str or a dict (sent as JSON, use
        "-f", "-").  Raises ControlPlaneError with stderr on failure if check.
        """
        args = [str(a) for a in args]
        if (args and args[0] in ("get", "create", "apply", "patch", "annotate", "label",
                                 "replace")
                and not any(a == "-o" or a.startswith(("-o", "--output")) for a in args)):
            args += ["-o", "json"]
        if isinstance(input, (dict, list)):
            input = json.dumps(input)
        argv = [KUBECTL, "--kubeconfig", kubeconfig or self.kubeconfig,
                "--cache-dir", self.kubectl_cache] + args
        r = subprocess.run(argv, input=input, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        out = r.stdout.strip()
        if out[:1] in ("{", "["):
            try:
                return json.loads(out)
            except ValueError:
                pass
        return out

    # --------------------------------------------------------------- waits

    def wait_for(self, predicate, timeout=30, interval=0.2, what=None):
        """Poll predicate() until it returns a truthy value; return that value.

        Exceptions from the predicate count as "not yet" (the last one is
        reported on timeout).  Raises TimeoutError after timeout seconds, or
        ControlPlaneError at once if a component has died.
        """
        deadline = time.monotonic() + timeout
        last_exc, last = None, None
        while True:
            self.alive()
            try:
                last = predicate()
                if last:
                    return last
            except Exception as e:  # noqa: BLE001 - retried, reported below
                last_exc = e
            if time.monotonic() >= deadline:
                desc = what or getattr(predicate, "__name__", "condition")
                extra = f"; last error: {last_exc!r}" if last_exc else f"; last value: {last!r}"
                raise TimeoutError(f"timed out after {timeout} s waiting for {desc}{extra}")
            time.sleep(interval)

    def wait_for_pv_phase(self, name, phase, timeout=30):
        return self.wait_for(lambda: self.phase(self.pv(name)) == phase and self.pv(name),
                             timeout, what=f"PV {name} {phase}")

    def wait_for_pvc_phase(self, name, phase, namespace="default", timeout=30):
        return self.wait_for(
            lambda: self.phase(self.pvc(name, namespace)) == phase and self.pvc(name, namespace),
            timeout, what=f"PVC {namespace}/{name} {phase}")

    # ---------------------------------------------------------------- state

    def state(self):
        """What the command line stores in DIR/state.json."""
        return {
            "dir": self.dir, "url": self.url, "port": self.port,
            "kubeconfig": self.kubeconfig, "ca_file": self.ca_file,
            "token_file": os.path.join(self.dir, "token"),
            "etcd_url": self.etcd_url, "etcd_dir": self.etcd_dir,
            "node": self.node, "logs": self.logs,
            "pids": [{"component": c, "pid": self.procs[c].pid,
                      "start_time": self._start_times[c]}
                     for c in COMPONENTS if c in self.procs],
        }


class _PortTaken(Exception):
    pass


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _run(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise ControlPlaneError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
    return r.stdout


# ------------------------------------------------------------------ command


def cmd_start(args):
    d = os.path.abspath(args.dir)
    if os.path.exists(os.path.join(d, "state.json")):
        print(f"{d} holds a running control plane; stop it first", file=sys.stderr)
        return 1
    if os.path.isdir(d) and os.listdir(d):
        print(f"{d} is not empty", file=sys.stderr)
        return 1
    cp = ControlPlane(node=args.node, dir=d, keep=False, die_with_parent=False,
                      pv_sync_period=args.pv_sync_period, start_timeout=args.timeout)
    try:
        cp.start()
    except ControlPlaneError as e:
        print(f"control-plane: {e}", file=sys.stderr)
        return 1
    state = cp.state()
    state["startup_s"] = round(cp.startup_s, 2)
    tmp = os.path.join(d, "state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, os.path.join(d, "state.json"))
    # The processes belong to their own sessions and outlive us.
    for proc in cp.procs.values():
        proc.returncode = 0
    print(cp.kubeconfig)
    if args.verbose:
        print(f"up in {cp.startup_s:.1f} s: {cp.url}; pids "
              + " ".join(f"{c}={p}" for c, p in cp.pids.items()), file=sys.stderr)
    return 0


def cmd_stop(args):
    d = os.path.abspath(args.dir)
    path = os.path.join(d, "state.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except OSError as e:
        print(f"{path}: {e.strerror}", file=sys.stderr)
        return 1
    kill_pids([(p["pid"], p["start_time"]) for p in reversed(state["pids"])])
    if state.get("etcd_dir") and not state["etcd_dir"].startswith(d + "/"):
        shutil.rmtree(state["etcd_dir"], ignore_errors=True)
    if args.keep:
        os.unlink(path)
    else:
        shutil.rmtree(d, ignore_errors=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="Throw-away Kubernetes control plane on loopback.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start in DIR; print the kubeconfig path")
    s.add_argument("dir")
    s.add_argument("--node", help="create a Node of this name")
    s.add_argument("--pv-sync-period", default="2s")
    s.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    s.add_argument("-v", "--verbose", action="store_true")
    t = sub.add_parser("stop", help="kill the processes started in DIR and remove DIR")
    t.add_argument("dir")
    t.add_argument("--keep", action="store_true", help="keep DIR (logs)")
    args = p.parse_args(argv)
    return cmd_start(args) if args.cmd == "start" else cmd_stop(args)


if __name__ == "__main__":
    sys.exit(main())

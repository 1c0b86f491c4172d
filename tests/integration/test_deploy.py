"""
The deployment material in deploy/: the kustomization renders offline,
every object it renders matches the official API schema (unknown fields
rejected) and, when the test control plane is built, is accepted by a real
apiserver in a server-side dry run; the DaemonSet runs the binaries with
flags they accept, wires them to each other consistently, and those very
arguments serve the volumes, the probes' paths and PV manifests here; the
ConfigMap parses as the provisioner reads a mounted ConfigMap; the RBAC
rules are the least-privilege set and cover every API call the
provisioner's source makes; the image recipe installs packages that exist
and every library the binaries link; the systemd units pass
systemd-analyze verify.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import BUILD, CARVECTL, REPO, mounts_below, run

sys.path.insert(0, os.path.join(REPO, "tests", "k8s"))
import control_plane  # noqa: E402  tests/k8s/control_plane.py
import images  # noqa: E402  tests/k8s/images.py
import schema  # noqa: E402  tests/k8s/schema.py

DEPLOY = os.path.join(REPO, "deploy")
KUBECTL = control_plane.KUBECTL
NODE = "node-1"

# The ClusterRole, rule by rule: (API group, resource, verb).
RBAC = {
    ("", "persistentvolumes"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "patch"},
    ("", "persistentvolumeclaims/status"): {"patch"},
    ("", "events"): {"create"},
    ("", "nodes"): {"get", "patch"},
    ("storage.k8s.io", "storageclasses"): {"get", "list"},
    ("storage.k8s.io", "csistoragecapacities"): {"list", "create", "patch", "delete"},
}


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def kustomize(path=DEPLOY):
    p = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"kubectl kustomize {path} failed:\n{p.stderr}"
    return [d for d in yaml.safe_load_all(p.stdout) if d is not None], p.stdout


@pytest.fixture(scope="module")
def rendered():
    if not os.access(KUBECTL, os.X_OK):
        pytest.fail(f"kubectl is needed to render deploy/ and is not at {KUBECTL}")
    objs, _ = kustomize()
    return objs


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def ds(rendered):
    return one(rendered, "DaemonSet")


def container(ds, name):
    found = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name} in the DaemonSet"
    return found[0]


def pod_volume(ds, name):
    found = [v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    assert len(found) == 1, f"no volume {name} in the DaemonSet"
    return found[0]


def flag_values(c):
    """{flag: value or True} of a container's args (--flag=value, --flag value, --flag)."""
    out, args, i = {}, list(c.get("args", [])), 0
    while i < len(args):
        a = args[i]
        assert a.startswith("--"), f"{c['name']}: argument {a!r} is not a --flag"
        if "=" in a:
            k, v = a[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            k, v = a[2:], args[i + 1]
            i += 1
        else:
            k, v = a[2:], True
        out[k] = v
        i += 1
    return out


def test_renders_offline_with_the_expected_objects(rendered):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == sorted([
        ("Namespace", "carvefs"),
        ("ServiceAccount", "carve-provisioner"),
        ("ClusterRole", "carve-provisioner"),
        ("ClusterRoleBinding", "carve-provisioner"),
        ("ConfigMap", "carve-provisioner-config"),
        ("StorageClass", "carvefs"),
        ("StorageClass", "carvefs-static"),
        ("CSIDriver", "local.carvefs.io"),
        ("DaemonSet", "carvefs"),
    ])
    for o in rendered:
        if o["kind"] in ("ServiceAccount", "ConfigMap", "DaemonSet"):
            assert o["metadata"].get("namespace") == "carvefs", o["kind"]
        else:
            assert "namespace" not in o["metadata"], f"{o['kind']} is cluster-scoped"


def test_one_kind_per_file_and_every_file_listed():
    with open(os.path.join(DEPLOY, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    listed = set(k["resources"])
    present = {os.path.basename(p) for p in glob.glob(os.path.join(DEPLOY, "*.yaml"))}
    present.discard("kustomization.yaml")
    assert listed == present, "kustomization.yaml must list every manifest in deploy/"
    for name in sorted(listed):
        with open(os.path.join(DEPLOY, name)) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        assert docs, f"{name} is empty"
        assert len({d["kind"] for d in docs}) == 1, f"{name} mixes kinds"


def test_every_object_matches_the_api_schema(rendered):
    problems = []
    for o in rendered:
        problems += [f"{o['kind']} {o['metadata']['name']}: {e}"
                     for e in schema.errors(o, None)]
    assert not problems, "\n".join(problems)


def test_image_is_set_through_kustomize_images(rendered, ds, tmp_path):
    with open(os.path.join(DEPLOY, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    (entry,) = [i for i in k["images"] if i["name"] == "carvefs"]
    want = f"{entry['newName']}:{entry['newTag']}"
    for c in ds["spec"]["template"]["spec"]["containers"]:
        assert c["image"] == want, c["name"]
    # An overlay of the user's renames the image of both containers (by the
    # name the base gives it: the base's images: has already applied).
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(DEPLOY, tmp_path)}\n"
        f"images:\n  - name: {entry['newName']}\n"
        "    newName: registry.test/x/carvefs\n    newTag: v9\n")
    objs, _ = kustomize(str(tmp_path))
    for c in one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"]:
        assert c["image"] == "registry.test/x/carvefs:v9", c["name"]


# --------------------------------------------------------------------------
# The DaemonSet: flags, wiring, the node-agent properties
# --------------------------------------------------------------------------

def help_text(binary):
    path = os.path.join(BUILD, binary)
    assert os.access(path, os.X_OK), f"{path} is missing: make binaries BUILD=..."
    p = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, f"{binary} --help exited {p.returncode}: {p.stderr}"
    return p.stdout + p.stderr


def assert_flags_accepted(binary, flags, where):
    text = help_text(binary)
    missing = [f for f in flags if not re.search(rf"(^|\s)--{re.escape(f)}\b", text)]
    assert not missing, (f"{where}: {binary} --help does not know "
                         + ", ".join("--" + f for f in missing) + f"\n{text}")


@pytest.mark.parametrize("name", ["carvefs", "carvefs-keeper", "carve-provisioner"])
def test_container_flags_are_accepted_by_the_binaries(ds, name):
    c = container(ds, name)
    assert c["command"] == [name], "each container runs its binary from the PATH"
    assert_flags_accepted(name, flag_values(c), f"DaemonSet container {name}")


def test_containers_are_wired_together(rendered, ds):
    spec = ds["spec"]["template"]["spec"]
    fs, prov = container(ds, "carvefs"), container(ds, "carve-provisioner")
    fsf, provf = flag_values(fs), flag_values(prov)
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]} for c in (fs, prov)}

    # The discovery directory: the same host path everywhere, and the
    # ConfigMap's hostDir and mountDir name it.
    disc = pod_volume(ds, "discovery")["hostPath"]["path"]
    assert fsf["discovery-dir"] == disc
    assert mounts["carvefs"]["discovery"]["mountPath"] == disc
    assert mounts["carvefs"]["discovery"]["mountPropagation"] == "Bidirectional"
    assert mounts["carve-provisioner"]["discovery"]["mountPath"] == disc
    assert mounts["carve-provisioner"]["discovery"]["mountPropagation"] == "HostToContainer"
    cm = one(rendered, "ConfigMap")
    classes = yaml.safe_load(cm["data"]["storageClassMap"])
    assert classes["carvefs-static"]["hostDir"] == disc
    assert classes["carvefs-static"]["mountDir"] == disc
    one(rendered, "StorageClass", "carvefs-static")

    # The pool and /dev/fuse.
    assert fsf["pool"] == mounts["carvefs"]["pool"]["mountPath"]
    assert pod_volume(ds, "pool")["hostPath"]["path"] == fsf["pool"]
    assert pod_volume(ds, "dev-fuse")["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}
    assert mounts["carvefs"]["dev-fuse"]["mountPath"] == "/dev/fuse"

    # The control socket: one path, in the shared host directory.
    sock = fsf["socket"]
    assert provf["carvefs-socket"] == sock
    run_dir = pod_volume(ds, "run")["hostPath"]["path"]
    assert os.path.dirname(sock) == run_dir
    for c in ("carvefs", "carve-provisioner"):
        assert mounts[c]["run"]["mountPath"] == run_dir

    # The configuration: the ConfigMap, mounted where --config points.
    assert pod_volume(ds, "config")["configMap"]["name"] == cm["metadata"]["name"]
    assert mounts["carve-provisioner"]["config"]["mountPath"] == provf["config"]
    assert provf["sink"] == "api"
    env = {e["name"]: e for e in prov["env"]}
    assert env["MY_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}

    # Probes and ports: each --listen port is the container's named port,
    # which the probes use.
    for c, flags, paths in ((fs, fsf, {"/healthz"}), (prov, provf, {"/healthz", "/readyz"})):
        port = int(flags["listen"].rsplit(":", 1)[1])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert port in ports.values(), f"{c['name']}: --listen port {port} is not a port"
        seen = set()
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe not in c:
                continue
            get = c[probe]["httpGet"]
            assert ports.get(get["port"], get["port"]) == port, f"{c['name']} {probe}"
            seen.add(get["path"])
        assert "livenessProbe" in c and "readinessProbe" in c, c["name"]
        assert seen == paths, f"{c['name']} probes {seen}"

    # Service account and its binding.
    sa = one(rendered, "ServiceAccount")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    crb = one(rendered, "ClusterRoleBinding")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                "namespace": sa["metadata"]["namespace"]}]
    assert crb["roleRef"]["name"] == one(rendered, "ClusterRole")["metadata"]["name"]


def test_daemonset_is_a_node_agent(ds):
    spec = ds["spec"]["template"]["spec"]
    # The new pod starts beside the old one, which hands its volumes over.
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxSurge": 1,
                                                              "maxUnavailable": 0}}
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert not spec.get("hostPID") and not spec.get("hostNetwork")
    fs, prov = container(ds, "carvefs"), container(ds, "carve-provisioner")
    assert fs["securityContext"]["privileged"] is True
    assert prov["securityContext"].get("privileged") is not True
    assert prov["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert prov["securityContext"]["allowPrivilegeEscalation"] is False
    for c in (fs, prov):
        assert c["resources"]["requests"] and c["resources"]["limits"].get("memory"), c["name"]
    assert "--foreground" in fs["args"]
    # A daemon that handed over waits for its pod's deletion instead of
    # exiting, being restarted and taking the volumes back; no preStop hook
    # may do anything to the mounts.
    assert "--hold-after-handover" in fs["args"]
    assert "lifecycle" not in fs
    # The hand-over socket lies beside the control socket, on the hostPath
    # both pods of a node share.
    run_mount = [m for m in fs["volumeMounts"] if m["name"] == "run"][0]["mountPath"]
    assert os.path.dirname(flag_values(fs)["socket"]) == run_mount


def test_keeper_container_holds_the_daemons_connections(ds):
    """The keeper is a container of its own, so that a crash of the carvefs
    container leaves it running with the fds; carvefs uses it rather than
    starting one inside its own container, and both agree on the socket."""
    fs, keeper = container(ds, "carvefs"), container(ds, "carvefs-keeper")
    fsf, kf = flag_values(fs), flag_values(keeper)
    assert fsf["keeper"] == "external"
    assert kf["socket"] == fsf.get("keeper-socket", fsf["socket"] + ".keeper")
    run_dir = os.path.dirname(kf["socket"])
    mounts = {m["name"]: m["mountPath"] for m in keeper["volumeMounts"]}
    assert mounts["run"] == run_dir
    assert {m["name"]: m["mountPath"] for m in fs["volumeMounts"]}["run"] == run_dir
    sc = keeper["securityContext"]
    assert sc["runAsUser"] == 0 and sc.get("privileged") is not True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert keeper["resources"]["limits"].get("memory")


def test_dynamic_storage_class(rendered):
    sc = one(rendered, "StorageClass", "carvefs")
    assert sc["provisioner"] == "local.carvefs.io"
    # The scheduler checks claims of the class against each node's room
    # because a CSIDriver object of the provisioner's name says so.
    driver = one(rendered, "CSIDriver", sc["provisioner"])
    assert driver["spec"]["storageCapacity"] is True
    assert driver["spec"]["attachRequired"] is False
    with open(os.path.join(REPO, "provisioner", "dynamic", "dynspec.h")) as f:
        assert f'#define DYNSPEC_PROVISIONER "{sc["provisioner"]}"' in f.read()
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["allowVolumeExpansion"] is True
    assert sc["reclaimPolicy"] == "Delete"
    static = one(rendered, "StorageClass", "carvefs-static")
    assert static["provisioner"] == "kubernetes.io/no-provisioner"
    assert static["volumeBindingMode"] == "WaitForFirstConsumer"
    assert static["reclaimPolicy"] == "Delete"
    # Every parameter, and every bound the file shows in comments, is one
    # the provisioner knows (provisioner/dynamic/dynspec.c's table).
    with open(os.path.join(REPO, "provisioner", "dynamic", "dynspec.c")) as f:
        known = set(re.findall(r'\{\s*"(\w+)",\s*"\w+",\s*(?:"(\w+)"|NULL)\s*\}', f.read()))
    keys = {k for pair in known for k in pair if k}
    assert {"inodes", "readIOPS", "maxReadIOPS"} <= keys, "dynspec.c's table was not found"
    with open(os.path.join(DEPLOY, "storageclass.yaml")) as f:
        commented = set(re.findall(r"^\s*#\s*(max\w+):", f.read(), re.M))
    assert commented, "the bounds are shown in comments"
    unknown = (set(sc["parameters"]) | commented) - keys
    assert not unknown, f"parameters the provisioner does not know: {sorted(unknown)}"
    for v in sc["parameters"].values():
        assert isinstance(v, str)


# --------------------------------------------------------------------------
# The ConfigMap, as the provisioner reads it
# --------------------------------------------------------------------------

def write_configmap(cm, path, replace=None):
    """Lays the ConfigMap's data out as the kubelet mounts it: a timestamped
    directory, a ..data symlink to it, and one symlink per key."""
    stamp = "..2026_01_01_00_00_00.000000001"
    os.makedirs(os.path.join(path, stamp))
    for key, text in cm["data"].items():
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        with open(os.path.join(path, stamp, key), "w") as f:
            f.write(text)
        os.symlink(os.path.join("..data", key), os.path.join(path, key))
    os.symlink(stamp, os.path.join(path, "..data"))


def provisioner_env():
    env = dict(os.environ)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.pop("MY_NODE_NAME", None)
    return env


def test_configmap_parses_with_the_provisioner(rendered, tmp_path):
    cm = one(rendered, "ConfigMap")
    cfg, sink = tmp_path / "config", tmp_path / "pv"
    write_configmap(cm, str(cfg))
    p = subprocess.run([os.path.join(BUILD, "carve-provisioner"), "--config", str(cfg),
                        "--once", "--sink", f"dir:{sink}", "--node", NODE,
                        "--log-level", "debug"],
                       capture_output=True, text=True, timeout=60, env=provisioner_env())
    log = p.stderr
    classes = yaml.safe_load(cm["data"]["storageClassMap"])
    assert f"configuration loaded: {len(classes)} storage class(es)" in log, log
    for name, c in classes.items():
        assert (f"class '{name}': mountDir \"{c['mountDir']}\", hostDir \"{c['hostDir']}\", "
                f"volumeMode {c.get('volumeMode', 'Filesystem')}") in log, log
    # Nothing in it is ignored or refused: no warning names the config.
    bad = [line for line in log.splitlines()
           if str(cfg) in line and re.search(r"\b(warn|warning|error)\b", line)]
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------
# The DaemonSet's arguments, run here
# --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError:
        return None, ""


def wait_http(port, path, proc, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(port, path)
        if status == 200:
            return body
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {path} answered 200\n"
                        + open(log_path).read()[-3000:])
        if time.monotonic() > deadline:
            pytest.fail(f"{path} answered {status} for {timeout} s\n"
                        + open(log_path).read()[-3000:])
        time.sleep(0.1)


def localize(args, paths, port):
    """The container's args with host paths moved into the test's directory
    and --listen on a free loopback port."""
    out = []
    for a in args:
        for host, local in paths.items():
            a = a.replace("=" + host, "=" + local)
        if a.startswith("--listen="):
            a = f"--listen=127.0.0.1:{port}"
        out.append(a)
    return out


def stop(proc, what, grace):
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} did not stop within terminationGracePeriodSeconds ({grace} s)")
    assert rc == 0, f"{what} exited {rc} on SIGTERM"
    return time.monotonic() - t0


@pytest.mark.timeout_seconds(180)
def test_daemonset_arguments_serve_volumes_probes_and_pvs(rendered, ds, work):
    """carvefs and carve-provisioner started with the DaemonSet's own args
    (host paths moved under the test's directory, the dir sink instead of
    the API): the probes' paths answer 200, a carved volume becomes a PV
    manifest of class carvefs-static, and SIGTERM stops both cleanly, within
    the grace period, leaving no mount behind."""
    grace = ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    fs, prov = container(ds, "carvefs"), container(ds, "carve-provisioner")
    disc = pod_volume(ds, "discovery")["hostPath"]["path"]
    paths = {pod_volume(ds, "pool")["hostPath"]["path"]: work.pool, disc: work.mnt,
             pod_volume(ds, "run")["hostPath"]["path"]: work.run}
    sock = os.path.join(work.run, os.path.basename(flag_values(fs)["socket"]))

    fs_port, prov_port = free_port(), free_port()
    fs_log = os.path.join(work.path, "carvefs.log")
    with open(fs_log, "w") as log:
        daemon = work.spawn([os.path.join(BUILD, "carvefs")]
                            + localize(fs["args"], paths, fs_port),
                            stdout=log, stderr=subprocess.STDOUT)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in fs:
            wait_http(fs_port, fs[probe]["httpGet"]["path"], daemon, fs_log)
    status, metrics = http_get(fs_port, "/metrics")
    assert status == 200, metrics
    run([CARVECTL, "--socket", sock, "create", "data", "--size", "64Mi"])

    cfg, sink = os.path.join(work.path, "config"), os.path.join(work.path, "pv")
    write_configmap(one(rendered, "ConfigMap"), cfg, {disc: work.mnt})
    args = localize(prov["args"], {**paths, flag_values(prov)["config"]: cfg}, prov_port)
    args = [f"--sink=dir:{sink}" if a == "--sink=api" else a for a in args]
    env = provisioner_env()
    env["MY_NODE_NAME"] = NODE
    prov_log = os.path.join(work.path, "provisioner.log")
    with open(prov_log, "w") as log:
        provisioner = work.spawn([os.path.join(BUILD, "carve-provisioner")] + args,
                                 stdout=log, stderr=subprocess.STDOUT, env=env)
    for probe in ("livenessProbe", "readinessProbe"):
        wait_http(prov_port, prov[probe]["httpGet"]["path"], provisioner, prov_log)
    deadline = time.monotonic() + 30
    while not glob.glob(os.path.join(sink, "*.yaml")):
        assert time.monotonic() < deadline, open(prov_log).read()
        time.sleep(0.1)
    (manifest,) = glob.glob(os.path.join(sink, "*.yaml"))
    with open(manifest) as f:
        pv = yaml.safe_load(f)
    schema.validate(pv)
    assert pv["spec"]["storageClassName"] == "carvefs-static"
    assert pv["spec"]["local"]["path"] == os.path.join(work.mnt, "data")

    stop(provisioner, "carve-provisioner", grace)
    took = stop(daemon, "carvefs", grace)
    assert not [m for m in mounts_below(work.mnt) if m["fstype"].startswith("fuse")], \
        "carvefs left a mount behind after SIGTERM"
    assert took < grace / 2, f"carvefs took {took:.1f} s to stop cleanly"


# --------------------------------------------------------------------------
# RBAC
# --------------------------------------------------------------------------

def granted(rendered):
    role = one(rendered, "ClusterRole")
    out = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, \
            f"no resourceNames or nonResourceURLs: {rule}"
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert "*" not in (g, r, v), f"no wildcards: {rule}"
                    out.setdefault((g, r), set()).add(v)
    return out


def test_rbac_is_the_least_privilege_set(rendered):
    assert granted(rendered) == RBAC


def c_functions(text):
    """{name: body} of the top-level functions of a C file (kernel style:
    the signature at column 0, the braces alone on their lines)."""
    out = {}
    for m in re.finditer(r"^[A-Za-z][^\n;#]*?\b(\w+)\([^;{]*?\)\s*\n\{\n(.*?)^\}", text,
                         re.M | re.S):
        out[m.group(1)] = m.group(2)
    return out


def api_paths(body, macros):
    """The API path literals in a piece of C, macros expanded."""
    found = re.findall(r'"(/apis?/[^"]*)"', body)
    for name, value in macros.items():
        if re.search(rf"\b{name}\b", body):
            found.append(value)
    return found


def resource_of(path):
    """(group, resource[/subresource], is_item) of an API path such as
    /api/v1/namespaces/%s/persistentvolumeclaims/%s/status."""
    path = path.split("?")[0]
    parts = [p for p in path.split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0] if rest else None
    if len(rest) >= 3:
        resource += "/" + rest[2]
    return group, resource, len(rest) >= 2


def used_by_source():
    """{(group, resource): {verb: [where]}} from provisioner/**/*.c.

    A function that calls kube_request(k, "METHOD", ...), or one of kube.c's
    helpers that take the method second (object_request(k, "METHOD", ...)),
    uses METHOD on the paths written in it or in the helpers it calls; when
    it has none (a generic helper), on the paths its callers pass it.
    kube_watch is a watch; a GET through object_path() is a get, a GET of
    a collection a list. The generic watch (kwatch.c) lists and watches the
    collections its callers name in a kwatch_spec (`.collection = "..."`).
    Functions are told apart by file and name (static functions of the same
    name live in several files)."""
    funcs = {}
    watched = []
    for path in sorted(glob.glob(os.path.join(REPO, "provisioner", "**", "*.c"), recursive=True)):
        fname = os.path.basename(path)
        with open(path) as f:
            text = f.read()
        file_macros = dict(re.findall(r'^#define\s+(\w+)\s+"(/apis?/[^"]*)"', text, re.M))
        watched += re.findall(r'\.collection\s*=\s*"(/apis?/[^"]*)"', text)
        for name, body in c_functions(text).items():
            funcs[(fname, name)] = (body, file_macros)
    by_name = {}
    for key in funcs:
        by_name.setdefault(key[1], []).append(key)

    def resolve(fname, name):
        if (fname, name) in funcs:
            return [(fname, name)]
        return by_name.get(name, [])

    def calls(key):
        out = set()
        for n in set(re.findall(r"\b(\w+)\s*\(", funcs[key][0])):
            if n not in ("kube_request", "kube_watch") and (key[0], n) != key:
                out.update(resolve(key[0], n))
        return out

    def requests(key):
        body = funcs[key][0]
        out = set(re.findall(r'\b\w+\s*\(\s*[^,()]+,\s*"(GET|POST|PUT|PATCH|DELETE)"', body))
        if re.search(r"\bkube_watch\s*\(", body):
            out.add("WATCH")
        return out

    def paths_in(key):
        body, file_macros = funcs[key]
        found = re.findall(r'"(/apis?/[^"]*)"', body)
        found += [v for n, v in file_macros.items() if re.search(rf"\b{n}\b", body)]
        if key[0] == "kwatch.c":
            found += watched
        return found

    def helper_paths(key, seen):
        """Paths in @key and in the helpers it calls that make no request."""
        if key in seen:
            return []
        seen.add(key)
        found = paths_in(key)
        for callee in calls(key):
            if not requests(callee):
                found += helper_paths(callee, seen)
        return found

    def item_level(key, seen):
        if key in seen:
            return False
        seen.add(key)
        return bool(re.search(r"\bobject_path\s*\(", funcs[key][0])) or any(
            item_level(c, seen) for c in calls(key))

    def caller_paths(key, depth=0):
        found = []
        for other in funcs:
            if other != key and key in calls(other):
                p = helper_paths(other, set())
                found += p if p or depth >= 3 else caller_paths(other, depth + 1)
        return found

    used = {}
    for key in funcs:
        where = f"{key[0]}:{key[1]}()"
        if key[1] in ("kube_request", "kube_watch"):
            continue
        methods = requests(key)
        if not methods:
            continue
        paths = helper_paths(key, set()) or caller_paths(key)
        assert paths, f"{where} calls the API on a path this test cannot find"
        item = item_level(key, set())
        for p in paths:
            group, resource, is_item = resource_of(p)
            if resource is None:
                # A discovery document (/apis/GROUP/VERSION): every
                # authenticated user may read those (system:discovery).
                continue
            for m in methods:
                verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                        "WATCH": "watch"}.get(m)
                if m == "GET":
                    verb = "watch" if "watch=1" in p else (
                        "get" if item or is_item else "list")
                if m == "DELETE":
                    verb = "delete" if item or is_item else "deletecollection"
                assert verb, f"{where}: method {m}"
                used.setdefault((group, resource), {}).setdefault(verb, []).append(where)
    return used


def test_rbac_covers_every_api_call_of_the_provisioner(rendered):
    used = used_by_source()
    # The scan must see the calls everyone knows are there.
    assert {"get", "list", "watch", "create", "delete", "patch"} <= set(
        used.get(("", "persistentvolumes"), {})), used
    have = granted(rendered)
    missing = [f"{v} {g or 'core'}/{r} (by {', '.join(sorted(set(where)))})"
               for (g, r), verbs in sorted(used.items()) for v, where in sorted(verbs.items())
               if v not in have.get((g, r), set())]
    assert not missing, "the ClusterRole lacks:\n  " + "\n  ".join(missing)
    # Least privilege: nothing is granted that the code does not call.
    unused = sorted(f"{v} {g or 'core'}/{r}" for (g, r), verbs in have.items()
                    for v in verbs if v not in used.get((g, r), {}))
    assert not unused, "granted but never called by provisioner/*.c: " + ", ".join(unused)


# --------------------------------------------------------------------------
# A real apiserver: server-side dry run
# --------------------------------------------------------------------------

@pytest.mark.timeout_seconds(180)
def test_server_side_dry_run_against_a_real_apiserver(rendered, tmp_path):
    ok, why = control_plane.available()
    if not ok:
        pytest.fail(f"the Kubernetes control plane is not built: {why} "
                    "(make integration builds it with tests/k8s/build-control-plane.sh)")
    _, text = kustomize()
    # The test control plane is Kubernetes 1.20, which has no maxSurge for
    # DaemonSets (1.22+; the offline schema test checks it): dry-run what
    # deploy/README.md tells 1.20 and 1.21 clusters to apply instead.
    docs = list(yaml.safe_load_all(text))
    for d in docs:
        if d and d["kind"] == "DaemonSet":
            assert d["spec"]["updateStrategy"]["rollingUpdate"].pop("maxSurge") == 1
            d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 1
    text = yaml.safe_dump_all([d for d in docs if d])
    everything = tmp_path / "rendered.yaml"
    everything.write_text(text)
    ns = tmp_path / "namespace.yaml"
    ns.write_text(yaml.safe_dump(one(rendered, "Namespace")))
    with control_plane.ControlPlane() as cp:
        # The namespace must exist for a dry run of what goes in it.
        cp.kubectl("apply", "-f", str(ns))
        out = cp.kubectl("apply", "--dry-run=server", "-f", str(everything), "-o", "json")
        items = out.get("items", [out])
        assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == sorted(
            (o["kind"], o["metadata"]["name"]) for o in rendered)
        # The priority class the pods ask for exists in every cluster.
        assert cp.get("/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical")
        # A dry run persists nothing.
        assert cp.get("/apis/apps/v1/namespaces/carvefs/daemonsets/carvefs") is None


# --------------------------------------------------------------------------
# The image recipe
# --------------------------------------------------------------------------

def dockerfile_stages():
    """[(stage name or None, [packages apt-get installs])] of deploy/Dockerfile."""
    return [(s["name"], s["packages"]) for s in images.dockerfile()]


def apt_unknown(pkgs):
    """Those of pkgs that Debian's archive has no candidate for.  One
    apt-cache run for them all: each run reads the whole package cache, and
    one run per package took minutes on a loaded machine."""
    p = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True)
    known = set()
    for block in re.split(r"^(?=\S)", p.stdout, flags=re.M):
        m = re.match(r"(\S+):\s*$", block.split("\n", 1)[0])
        c = re.search(r"Candidate:\s*(\S+)", block)
        if m and c and c.group(1) != "(none)":
            known.add(m.group(1))
    return [pkg for pkg in pkgs if pkg not in known]


def apt_known(pkg):
    return not apt_unknown([pkg])


@pytest.fixture(scope="module")
def apt():
    if not shutil.which("apt-cache"):
        pytest.skip("NO PACKAGE CHECK: apt-cache is not installed (not a Debian host)")
    if not apt_known("libc6") and os.geteuid() == 0:
        # A fresh machine whose packages were all there has never fetched the lists.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
    if not apt_known("libc6"):
        pytest.skip("NO PACKAGE CHECK: apt's package lists are empty (run apt-get update)")
    with open("/etc/os-release") as f:
        if 'VERSION_ID="12"' not in f.read():
            pytest.skip("NO PACKAGE CHECK: the image is Debian 12 and this host is not")


def makefile_debs(var):
    with open(os.path.join(REPO, "Makefile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    m = re.search(rf"^{var}\s*:=(.*)$", text, re.M)
    assert m, f"no {var} in the Makefile"
    return m.group(1).split()


def test_dockerfile_packages_exist_and_cover_the_build(apt):
    (build_name, build_pkgs), (run_name, run_pkgs) = dockerfile_stages()
    assert build_name == "build" and run_name is None
    missing = set(makefile_debs("DEB_BUILD")) - set(build_pkgs)
    assert not missing, f"the build stage lacks the Makefile's DEB_BUILD {sorted(missing)}"
    unknown = apt_unknown(build_pkgs + run_pkgs)
    assert not unknown, f"no such Debian 12 packages: {unknown}"
    assert not [p for p in run_pkgs if p.endswith("-dev")], "no -dev package at runtime"


def test_runtime_stage_has_every_library_the_binaries_link(apt):
    (_, _), (_, run_pkgs) = dockerfile_stages()
    needed = {}
    for binary in ("carvefs", "carvefs-keeper", "carvectl", "carve-provisioner"):
        out = run(["readelf", "-d", os.path.join(BUILD, binary)]).stdout
        for soname in re.findall(r"\(NEEDED\).*\[(.+)\]", out):
            needed.setdefault(soname, set()).add(binary)
    lacking = []
    for soname, who in sorted(needed.items()):
        p = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True)
        pkgs = {line.split(":")[0] for line in p.stdout.splitlines()}
        # libc6 is in every Debian image.
        if not pkgs & (set(run_pkgs) | {"libc6"}):
            lacking.append(f"{soname} ({', '.join(sorted(pkgs)) or 'no package'}) "
                           f"for {', '.join(sorted(who))}")
    assert not lacking, "the runtime stage lacks: " + "; ".join(lacking)


def test_dockerfile_copies_the_sources_and_ignores_the_rest():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    copied = set(re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.M))
    assert {"Makefile", "include/", "fs/", "provisioner/"} <= copied
    with open(os.path.join(DEPLOY, "Dockerfile.dockerignore")) as f:
        rules = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    for src in copied:
        assert "!" + src in rules, f"{src} is copied but left out of the context"
    assert re.search(r"^USER\s+\S+", text, re.M), "the image says which user it runs as"


def depends_closure(pkgs):
    """The packages apt installs for pkgs (Depends and Pre-Depends, recursively)."""
    p = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + list(pkgs))
    return {line.strip() for line in p.stdout.splitlines()
            if line and not line.startswith((" ", "<"))}


def owners(paths):
    """{path: package} for the paths dpkg knows (merged /usr: either spelling)."""
    spellings = {}
    for path in paths:
        spellings[path] = path
        for short, full in images.MERGED_USR.items():
            if path.startswith(f"/{full}/"):
                spellings["/" + short + path[len(full) + 1:]] = path
    p = subprocess.run(["dpkg", "-S"] + sorted(spellings), capture_output=True, text=True)
    out = {}
    for line in p.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        if path in spellings and not pkgs.startswith("diversion"):
            out[spellings[path]] = pkgs.split(",")[0].split(":")[0].strip()
    return out


def test_node_image_has_the_dockerfiles_files_at_the_same_paths(apt, tmp_path):
    """The image the node tests run (tests/k8s/images.py) against what
    `docker build -f deploy/Dockerfile` makes: what the Dockerfile adds is in
    it, at the same paths, and nothing is in it that the Dockerfile's image
    would not have there."""
    tar = images.carvefs_image(str(tmp_path / "carvefs.tar"), BUILD)
    members, config = images.layer_members(tar)
    files = {"/" + n: m for n, m in members.items() if not m.isdir()}
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = re.sub(r"\\\n\s*", "", f.read())  # a command's continued lines as one

    # The binaries and man pages of the build stage, stripped as it does.
    for binary in ("carvefs", "carvefs-keeper", "carvectl", "carve-provisioner"):
        assert re.search(rf"install -s .*build/{binary}\b.* /out/usr/local/bin/", text)
        m = files.pop(f"/usr/local/bin/{binary}")
        stripped = tmp_path / binary
        run(["strip", "-o", str(stripped), os.path.join(BUILD, binary)])
        assert m.size == stripped.stat().st_size and m.mode & 0o111, binary
    assert re.search(r"install -m 0644 doc/\*\.8 /out/usr/local/share/man/man8/", text)
    for page in glob.glob(os.path.join(REPO, "doc", "*.8")):
        assert files.pop(f"/usr/local/share/man/man8/{os.path.basename(page)}")

    # Every file of the runtime stage's packages.
    (_, _), (_, run_pkgs) = dockerfile_stages()
    for pkg in run_pkgs:
        for path in images.package_files(pkg):
            for short, full in images.MERGED_USR.items():
                if path.startswith(f"/{short}/"):
                    path = f"/{full}/{path[len(short) + 2:]}"
            assert path in files, f"{path} of {pkg} is not in the image"

    # Debian 12's merged /usr, as in its images.
    for short, full in images.MERGED_USR.items():
        assert files.pop("/" + short).linkname == full
    # The rest comes from those packages or what they depend on, as in the
    # Dockerfile's image.
    allowed = depends_closure(run_pkgs)
    known = owners(list(files))
    strays = [f"{p} ({known.get(p, 'no package')})" for p in files
              if known.get(p) not in allowed]
    assert not strays, f"in the image but not where the Dockerfile puts it: {strays}"

    # How it starts.
    cmd = re.search(r"^CMD\s+(.*)$", text, re.M).group(1)
    user = re.search(r"^USER\s+(\S+)", text, re.M).group(1)
    assert config["config"]["Cmd"] == yaml.safe_load(cmd)
    assert config["config"]["User"] == user
    assert "Entrypoint" not in config["config"] and not re.search(r"^ENTRYPOINT", text, re.M)


# --------------------------------------------------------------------------
# systemd units
# --------------------------------------------------------------------------

UNITS = ("carvefs.service", "carvefs-keeper.service", "carve-provisioner.service")


def unit_exec(path):
    with open(path) as f:
        text = re.sub(r"\\\n\s*", " ", f.read())  # systemd's line continuation
    return re.search(r"^ExecStart=(\S+)\s+(.*)$", text, re.M), text


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("NO UNIT CHECK: systemd-analyze is missing (apt-get install systemd)")
    # As `make install BINDIR=$CARVEFS_BUILD` would install them; their
    # Documentation= man pages from doc/.
    man8 = tmp_path / "man" / "man8"
    man8.mkdir(parents=True)
    for page in glob.glob(os.path.join(REPO, "doc", "*.8")):
        os.symlink(page, man8 / os.path.basename(page))
    units = []
    for name in UNITS:
        with open(os.path.join(DEPLOY, "systemd", name)) as f:
            text = f.read()
        assert "/usr/local/bin/" in text
        (tmp_path / name).write_text(text.replace("/usr/local/bin/", BUILD + "/"))
        units.append(str(tmp_path / name))
    env = dict(os.environ, MANPATH=str(tmp_path / "man"), SYSTEMD_LOG_LEVEL="notice")
    p = subprocess.run([tool, "verify", *units], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), \
        f"systemd-analyze verify: exit {p.returncode}\n{p.stdout}{p.stderr}"


def test_systemd_units_run_the_binaries_with_flags_they_accept():
    binaries = {"carvefs.service": "carvefs", "carvefs-keeper.service": "carvefs-keeper",
                "carve-provisioner.service": "carve-provisioner"}
    for unit, binary in binaries.items():
        m, text = unit_exec(os.path.join(DEPLOY, "systemd", unit))
        assert m and m.group(1) == f"/usr/local/bin/{binary}", unit
        flags = [f[2:] for f in m.group(2).split() if f.startswith("--")]
        assert_flags_accepted(binary, flags, unit)
        assert re.search(r"^Type=simple$", text, re.M), unit
        assert re.search(r"^Restart=on-failure$", text, re.M), unit
        assert re.search(r"^KillMode=mixed$", text, re.M), unit
        assert re.search(r"^TimeoutStopSec=\d+", text, re.M), unit
    _, fs = unit_exec(os.path.join(DEPLOY, "systemd", "carvefs.service"))
    assert "--foreground" in fs
    # A reload hands the volumes over to the same command line in the
    # background, which returns once the successor serves and names itself
    # the main process.
    start = re.search(r"^ExecStart=(\S+)\s+(.*)$", fs, re.M)
    reload = re.search(r"^ExecReload=(\S+)\s+(.*)$", fs, re.M)
    assert reload and reload.group(1) == start.group(1)
    assert reload.group(2).split() == [a for a in start.group(2).split() if a != "--foreground"]
    assert re.search(r"^NotifyAccess=all$", fs, re.M)
    # Nothing that gives carvefs a mount namespace of its own: its mounts
    # must be the host's.
    for opt in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "PrivateMounts", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "ReadWritePaths",
                "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem", "MountFlags",
                "RestrictSUIDSGID", "PrivateUsers", "ProtectProc"):
        assert not re.search(rf"^{opt}=", fs, re.M), f"carvefs.service must not set {opt}="
    assert re.search(r"^DeviceAllow=/dev/fuse rw$", fs, re.M)
    assert "CAP_SYS_ADMIN" in re.search(r"^CapabilityBoundingSet=(.*)$", fs, re.M).group(1)
    # The keeper is a unit of its own, there before carvefs and used by it.
    assert re.search(r"^Wants=carvefs-keeper\.service$", fs, re.M)
    assert re.search(r"^After=carvefs-keeper\.service$", fs, re.M)
    assert "--keeper external" in fs
    _, prov = unit_exec(os.path.join(DEPLOY, "systemd", "carve-provisioner.service"))
    assert re.search(r"^Requires=carvefs\.service$", prov, re.M)
    assert re.search(r"^After=.*\bcarvefs\.service\b", prov, re.M)

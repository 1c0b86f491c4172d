"""
carve-provisioner without a cluster: the manifests it writes for the
mountpoints of a discovery directory, checked against the official
PersistentVolume schema with unknown fields refused.
"""

import os
import subprocess
import sys

import yaml  # python3-yaml, installed by make deps-test

from conftest import BUILD, run

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "k8s"))
import schema  # noqa: E402  tests/k8s/schema.py

PROVISIONER = os.path.join(BUILD, "carve-provisioner")



def write_config(work, mnt, cls="carvefs-local"):
    cfg = os.path.join(work.path, "config")
    os.makedirs(cfg, exist_ok=True)
    with open(os.path.join(cfg, "storageClassMap"), "w") as f:
        f.write(f"{cls}:\n  hostDir: {mnt}\n  mountDir: {mnt}\n  volumeMode: Filesystem\n")
    return cfg


def provision(work, cfg, out, node="node-1", check=True):
    p = subprocess.run([PROVISIONER, "--config", cfg, "--node", node, "--sink", f"dir:{out}",
                        "--carvefs-socket", os.path.join(work.run, "sock"), "--once"],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def manifests(out):
    found = {}
    for name in sorted(os.listdir(out)):
        with open(os.path.join(out, name)) as f:
            found[name] = yaml.safe_load(f)
    return found


def test_mountpoints_become_valid_pvs_and_nothing_else(work, daemon):
    daemon.create("alpha", "64Mi")
    daemon.create("beta", "1Gi")
    tmpfs = os.path.join(work.mnt, "scratch")
    os.makedirs(tmpfs)
    run(["mount", "-t", "tmpfs", "-o", "size=20m", "none", tmpfs])
    plain = os.path.join(work.mnt, "plain")
    os.makedirs(plain)
    cfg = write_config(work, work.mnt)
    out = os.path.join(work.path, "pv")

    p = provision(work, cfg, out)
    assert f'path "{plain}" is not a valid mount point' in p.stderr

    pvs = manifests(out)
    by_path = {pv["spec"]["local"]["path"]: pv for pv in pvs.values()}
    assert sorted(by_path) == sorted(os.path.join(work.mnt, n) for n in ("alpha", "beta", "scratch"))
    assert by_path[os.path.join(work.mnt, "alpha")]["spec"]["capacity"]["storage"] == "64Mi"
    assert by_path[os.path.join(work.mnt, "beta")]["spec"]["capacity"]["storage"] == "1Gi"
    assert by_path[os.path.join(work.mnt, "scratch")]["spec"]["capacity"]["storage"] == "20Mi"
    for name, pv in pvs.items():
        schema.validate(pv)
        assert name == pv["metadata"]["name"] + ".yaml"
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["node-1"]
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
            "local-volume-provisioner-node-1"

    # A second pass changes nothing.
    before = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    provision(work, cfg, out)
    assert {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)} == before

    # A volume that goes away takes its manifest with it.
    daemon.ctl("delete", "alpha", json=False)
    provision(work, cfg, out)
    left = {pv["spec"]["local"]["path"] for pv in manifests(out).values()}
    assert left == {os.path.join(work.mnt, "beta"), tmpfs}


def test_bad_config_is_a_clear_error_and_writes_nothing(work, daemon):
    daemon.create("gamma", "16Mi")
    cfg = os.path.join(work.path, "config")
    os.makedirs(cfg)
    with open(os.path.join(cfg, "storageClassMap"), "w") as f:
        f.write(f"local:\n  hostDir: {work.mnt}\n  mountDir: {work.mnt}\n  volumeMode: Blok\n")
    out = os.path.join(work.path, "pv")
    p = provision(work, cfg, out, check=False)
    assert p.returncode != 0
    assert "storageClassMap" in p.stderr and "volumeMode" in p.stderr
    assert not os.path.exists(out) or os.listdir(out) == []

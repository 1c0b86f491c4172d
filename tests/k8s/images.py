#!/usr/bin/python3
"""Container images for the test node, built here without a registry.

Each image is a docker-archive tarball of one layer (manifest.json, a config
JSON, the layer tar) that `ctr images import` loads into containerd:

    pause     the pod sandbox: the static pause binary that
              build-control-plane.sh builds, as /pause
    busybox   Debian's busybox-static as /bin/busybox and one symlink per
              applet (sh, httpd, df, dd, ...)
    carvefs   what deploy/Dockerfile makes: its runtime stage's packages,
              the binaries and man pages its build stage installs into /out
              (taken from the build directory here), and every library the
              binaries load, at the same paths; its CMD, ENTRYPOINT, USER
              and the Debian image's PATH

The carvefs image is described by reading deploy/Dockerfile (dockerfile()),
so the tested image and the published one cannot drift apart; the test in
tests/integration/test_deploy.py checks the files of both.

As a command, for a look at the images:

    images.py DIR [BUILD]     writes DIR/{pause,busybox,carvefs}.tar
"""

import glob
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(REPO, "deploy", "Dockerfile")
BUSYBOX = "/bin/busybox"
# The environment of Debian's images, which deploy/Dockerfile inherits.
DEBIAN_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian 12 has merged /usr: these are symlinks in its images.
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

# The names pods use (imagePullPolicy: Never).
PAUSE = "carvefs.local/pause:test"
BUSYBOX_IMAGE = "carvefs.local/busybox:test"
CARVEFS = "carvefs.local/carvefs:test"


class ImageError(RuntimeError):
    pass


# ---------------------------------------------------------------- Dockerfile


def dockerfile(path=DOCKERFILE):
    """The stages of a Dockerfile, as far as the carvefs image needs them.

    A list of dicts, one per FROM: name (AS ...; None if unnamed), packages
    (what apt-get install names), installs ([(sources, destination, strip)]
    of the install(1) commands that copy files, sources relative to the
    build context, strip for -s), copies_from ([(stage, source, destination)] of COPY --from),
    cmd, entrypoint (lists, or None) and user.
    """
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            stages.append({"name": m.group(2), "packages": [], "installs": [],
                           "copies_from": [], "cmd": None, "entrypoint": None,
                           "user": None})
            continue
        if not stages:
            continue
        st = stages[-1]
        if word == "RUN":
            for cmd in re.split(r"&&|;", rest):
                argv = shlex.split(cmd)
                while argv and re.match(r"[A-Za-z_]\w*=", argv[0]):
                    argv.pop(0)
                if argv[:2] == ["apt-get", "install"]:
                    st["packages"] += [a for a in argv[2:] if not a.startswith("-")]
                elif argv[:1] == ["install"] and "-d" not in argv:
                    # install [-s] [-m MODE] SRC... DEST/
                    args, i = [], 1
                    while i < len(argv):
                        if argv[i] in ("-m", "-o", "-g"):
                            i += 2
                            continue
                        if not argv[i].startswith("-"):
                            args.append(argv[i])
                        i += 1
                    st["installs"].append((args[:-1], args[-1], "-s" in argv))
        elif word == "COPY" and rest.startswith("--from="):
            src_stage, src, dst = rest[len("--from="):].split()
            st["copies_from"].append((src_stage, src, dst))
        elif word in ("CMD", "ENTRYPOINT"):
            st[word.lower()] = json.loads(rest)
        elif word == "USER":
            st["user"] = rest.strip()
    return stages


def carvefs_files(build_dir, path=DOCKERFILE, scratch=None):
    """{path in the image: path on this host} of what deploy/Dockerfile adds
    to its Debian base, and the final stage's description.

    The build stage's install(1) commands into /out name the binaries (taken
    from build_dir, where `make binaries` put them; stripped copies in
    scratch if the command strips) and the man pages; the runtime stage's
    packages are Debian 12's, installed here too (the Makefile's test
    dependencies), so their files are copied from this host.
    """
    stages = dockerfile(path)
    final = stages[-1]
    by_name = {s["name"]: s for s in stages if s["name"]}
    files = {}
    for src_stage, src, dst in final["copies_from"]:
        if src.rstrip("/") != "/out" or dst != "/":
            raise ImageError(f"{path}: COPY --from={src_stage} {src} {dst}: only /out/ / "
                             "is understood")
        for sources, dest, strip in by_name[src_stage]["installs"]:
            if not dest.startswith("/out/"):
                continue
            for source in sources:
                if source.startswith("build/"):
                    matches = [os.path.join(build_dir, source[len("build/"):])]
                else:
                    matches = sorted(glob.glob(os.path.join(REPO, source)))
                if not matches or not all(os.path.isfile(m) for m in matches):
                    raise ImageError(f"{path}: install source {source} not found")
                for m in matches:
                    if strip:
                        m = _stripped(m, scratch)
                    files[os.path.join(dest[len("/out"):], os.path.basename(m))] = m
    for pkg in final["packages"]:
        for f in package_files(pkg):
            files[f] = f
    return files, final


def _stripped(binary, scratch):
    if scratch is None:
        raise ImageError(f"{binary} is to be stripped: a scratch directory is needed")
    out = os.path.join(scratch, os.path.basename(binary))
    subprocess.run(["strip", "-o", out, binary], check=True, capture_output=True)
    return out


def package_files(pkg):
    """The files and symlinks an installed Debian package put on this host."""
    p = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
    if p.returncode != 0:
        raise ImageError(f"Debian package {pkg} is not installed here: {p.stderr.strip()}")
    out = []
    for f in p.stdout.splitlines():
        if f in ("/.", "") or os.path.isdir(f) and not os.path.islink(f):
            continue
        if os.path.lexists(f):
            out.append(f)
    return out


def loaded_libraries(binaries):
    """Every shared object the dynamic loader maps for the binaries (ldd)."""
    libs = set()
    for b in binaries:
        p = subprocess.run(["ldd", b], capture_output=True, text=True)
        if p.returncode != 0:
            raise ImageError(f"ldd {b}: {p.stderr.strip()}")
        for m in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", p.stdout):
            libs.add(m.group(1))
    return libs


# ------------------------------------------------------------------ tarballs


def _norm(path):
    return path.lstrip("/")


def _layer(files, symlinks=None, dirs=None, merged_usr=False):
    """A layer tar (bytes): files {image path: host path} (host symlinks are
    kept as symlinks), symlinks {image path: target}, dirs {image path: mode}."""
    entries = {}
    symlinks = dict(symlinks or {})
    dirs = dict(dirs or {})
    if merged_usr:
        symlinks.update({k: v for k, v in MERGED_USR.items()})

    def under_symlink(p):
        # Debian's merged /usr: /lib/x86_64-linux-gnu/x lives in usr/lib/...
        if merged_usr:
            head, _, tail = p.partition("/")
            if head in MERGED_USR and tail:
                return MERGED_USR[head] + "/" + tail
        return p

    for image_path, host_path in files.items():
        entries[under_symlink(_norm(image_path))] = host_path
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        made = set()

        def add_dir(p, mode=0o755):
            if not p or p in made or p in symlinks:
                return
            add_dir(os.path.dirname(p))
            ti = tarfile.TarInfo(p)
            ti.type, ti.mode = tarfile.DIRTYPE, mode
            tar.addfile(ti)
            made.add(p)

        for p, mode in sorted(dirs.items()):
            add_dir(_norm(p), mode)
        for p, target in sorted(symlinks.items()):
            add_dir(os.path.dirname(_norm(p)))
            ti = tarfile.TarInfo(_norm(p))
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tar.addfile(ti)
        for p, host in sorted(entries.items()):
            add_dir(os.path.dirname(p))
            st = os.lstat(host)
            ti = tarfile.TarInfo(p)
            ti.mode = st.st_mode & 0o7777
            ti.mtime = int(st.st_mtime)
            if os.path.islink(host):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(host)
                tar.addfile(ti)
            else:
                ti.size = st.st_size
                with open(host, "rb") as f:
                    tar.addfile(ti, f)
    return buf.getvalue()


def write_image(out, ref, layer, config):
    """Writes a docker-archive tarball of one layer to out."""
    diff_id = hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
        "history": [{"created_by": "tests/k8s/images.py"}],
    }, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [ref],
                            "Layers": [diff_id + "/layer.tar"]}]).encode()
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in ((cfg_name, cfg), (diff_id + "/layer.tar", layer),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, out)
    return out


def pause_image(out, pause_binary):
    layer = _layer({"/pause": pause_binary})
    return write_image(out, PAUSE, layer, {"Entrypoint": ["/pause"], "User": "65535:65535"})


def busybox_image(out):
    """busybox-static with its applets; /tmp for scratch files."""
    p = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True)
    links = {"/" + a: "/bin/busybox" for a in p.stdout.split() if a != "bin/busybox"}
    layer = _layer({"/bin/busybox": BUSYBOX}, symlinks=links, dirs={"/tmp": 0o1777})
    return write_image(out, BUSYBOX_IMAGE, layer,
                       {"Cmd": ["sh"], "Env": [DEBIAN_PATH]})


def carvefs_image_files(build_dir, scratch, path=DOCKERFILE):
    """{image path: host path} of the carvefs image, and the final stage;
    stripped binaries are written into scratch."""
    files, final = carvefs_files(build_dir, path, scratch)
    binaries = [h for p, h in files.items() if p.startswith("/usr/local/bin/")]
    for lib in loaded_libraries(binaries):
        # The library and, if its name is a symlink, what it points to.
        files[lib] = lib
        files[os.path.realpath(lib)] = os.path.realpath(lib)
    return files, final


def carvefs_image(out, build_dir, path=DOCKERFILE):
    scratch = out + ".d"
    os.makedirs(scratch, exist_ok=True)
    files, final = carvefs_image_files(build_dir, scratch, path)
    config = {"Env": [DEBIAN_PATH], "User": final["user"] or "0:0"}
    if final["cmd"] is not None:
        config["Cmd"] = final["cmd"]
    if final["entrypoint"] is not None:
        config["Entrypoint"] = final["entrypoint"]
    # A read-only root filesystem still needs its mountpoints.
    layer = _layer(files, dirs={"/tmp": 0o1777, "/run": 0o755, "/dev": 0o755,
                                "/proc": 0o555, "/sys": 0o555, "/etc": 0o755},
                   merged_usr=True)
    shutil.rmtree(scratch)
    return write_image(out, CARVEFS, layer, config)


def layer_members(image_tar):
    """{path: TarInfo} of the one layer of an image tarball."""
    with tarfile.open(image_tar) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        layer = outer.extractfile(manifest[0]["Layers"][0]).read()
        config = json.load(outer.extractfile(manifest[0]["Config"]))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name: m for m in tar.getmembers()}, config


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = argv[1]
    build = argv[2] if len(argv) == 3 else os.path.join(REPO, "build")
    os.makedirs(out, exist_ok=True)
    cache = os.environ.get("CARVEFS_K8S_CACHE", "/var/cache/carvefs/k8s")
    pause_image(os.path.join(out, "pause.tar"), os.path.join(cache, "bin", "pause"))
    busybox_image(os.path.join(out, "busybox.tar"))
    carvefs_image(os.path.join(out, "carvefs.tar"), build)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Turns the fio JSON of a bench/run.sh run into results.md, results.csv and
results.png (drawn by gnuplot).

Usage: report.py --raw bench/work/raw --out bench/results

The raw directory holds manifest.tsv (section, case, target, repetition,
JSON path, status per fio run), env.txt, limits.txt, noisy.txt, scale.txt,
inodes.txt and restart.txt (key=value lines), and the per-IO latency logs of
the restart jobs. With several repetitions every number is the median of the
repetitions, metric by metric.
"""

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGETS = [
    ("raw", "raw"),
    ("carvefs", "carvefs"),
    ("peer", "passthrough_hp"),
    ("loop-dio", "loop-ext4 dio"),
    ("loop-buf", "loop-ext4 buffered †"),
]
TARGET_LABEL = dict(TARGETS)
BUFFERED_NOTE = ("† loop-ext4 buffered: the page cache of the host; "
                 "not durable, looks faster than the disk.")

WORKLOADS = {
    "randread-4k-qd1": "4k rand read QD1",
    "randread-4k-qd32": "4k rand read QD32",
    "randwrite-4k-qd1": "4k rand write QD1",
    "randwrite-4k-qd32": "4k rand write QD32",
    "seqread-1m-qd4": "1M seq read QD4",
    "seqwrite-1m-qd4": "1M seq write QD4",
    "randrw-70-30-4k-qd16": "4k rand 70/30 r/w QD16",
    "seqread-1m-qd4-buffered": "1M seq read QD4, buffered (cache)",
    "meta-filecreate": "create files",
    "meta-filestat": "stat files",
    "meta-filedelete": "delete files",
}
# Shown in MiB/s rather than IOPS (1 MiB requests: the two are equal).
BANDWIDTH_ROWS = {"seqread-1m-qd4", "seqwrite-1m-qd4", "seqread-1m-qd4-buffered"}

LIMIT_TITLES = {
    "riops": "read IOPS (4k rand read QD16)",
    "wiops": "write IOPS (4k rand write QD32)",
    "rbps": "read bytes/s (1M seq read QD4)",
    "wbps": "write bytes/s (1M seq write QD4)",
    "riops-live": "read IOPS raised live by set-limits (4k rand read QD16)",
}
NOISY_TITLES = {
    "a-alone": "A alone",
    "a-with-b-limited": "A next to B, B limited",
    "a-with-b-unlimited": "A next to B, B unlimited",
}
MIB = 1048576.0


def read_kv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    out[k] = v
    return out


def side_metrics(side):
    clat = side.get("clat_ns", {})
    pct = clat.get("percentile") or {}

    def us(key):
        v = pct.get(key)
        return v / 1000.0 if v else None

    return {
        "ios": side.get("total_ios", 0),
        "iops": side.get("iops", 0.0),
        "bw": side.get("bw_bytes", 0),
        "p50": us("50.000000"),
        "p99": us("99.000000"),
    }


def job_metrics(job):
    r = side_metrics(job["read"])
    w = side_metrics(job["write"])
    m = {
        "iops": r["iops"] + w["iops"],
        "read_iops": r["iops"],
        "write_iops": w["iops"],
        "mib_s": (r["bw"] + w["bw"]) / MIB,
        "read_mib_s": r["bw"] / MIB,
        "write_mib_s": w["bw"] / MIB,
        "errors": job.get("error", 0),
    }
    # The latency shown is the reads' if there are any, the writes'
    # otherwise; a mixed job keeps both.
    main = r if r["ios"] else w
    m["p50_us"], m["p99_us"] = main["p50"], main["p99"]
    if r["ios"] and w["ios"]:
        m["p50_w_us"], m["p99_w_us"] = w["p50"], w["p99"]
    return m


def load_json(path):
    with open(path) as f:
        text = f.read()
    # fio may print a notice before the JSON document.
    start = text.find("{")
    return json.loads(text[start:])


def median_of(runs):
    if not runs:
        return None
    keys = set().union(*(r.keys() for r in runs))
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    out["n"] = len(runs)
    return out


def failure_reason(path):
    """fio's own words for why a job stopped, from its .err file, or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"error=([^)\n]+)", text) or \
        re.search(r"io_u error on file [^:\n]*: ([^:\n]+)", text)
    return m.group(1).strip() if m else None


def load_runs(raw):
    """{(section, case, target): {jobname: [metrics per repetition]}}, failures
    ({key: fio's reason or None}) and the order of the cases."""
    runs, failed, order = {}, {}, []
    manifest = os.path.join(raw, "manifest.tsv")
    if not os.path.exists(manifest):
        return runs, failed, order
    with open(manifest) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue
            section, case, target, _rep, rel, status = parts
            key = (section, case, target)
            if (section, case) not in order:
                order.append((section, case))
            if status != "ok":
                failed[key] = failure_reason(os.path.join(raw, rel + ".err"))
                continue
            try:
                doc = load_json(os.path.join(raw, rel))
            except (OSError, ValueError) as e:
                print(f"report: {rel}: {e}", file=sys.stderr)
                failed[key] = None
                continue
            per_job = runs.setdefault(key, {})
            for job in doc.get("jobs", []):
                per_job.setdefault(job["jobname"], []).append(job_metrics(job))
    return runs, failed, order


def cell(runs, key, job=None):
    per_job = runs.get(key)
    if not per_job:
        return None
    if job is None:
        job = next(iter(per_job))
    return median_of(per_job.get(job, []))


def fmt_num(v):
    if v is None:
        return "–"
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def fmt_us(v):
    if v is None:
        return "–"
    if v >= 10000:
        return f"{v / 1000:.0f} ms"
    if v >= 1000:
        return f"{v / 1000:.1f} ms"
    return f"{v:.0f} µs"


def fmt_ratio(v):
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def throughput(case, m):
    if m is None:
        return None
    return m["mib_s"] if case in BANDWIDTH_ROWS else m["iops"]


def fmt_throughput(case, m):
    if m is None:
        return "–"
    if case in BANDWIDTH_ROWS:
        return f"{m['mib_s']:.0f} MiB/s"
    return fmt_num(m["iops"])


def fmt_lat(m, which):
    if m is None:
        return "–"
    main = fmt_us(m.get(which + "_us"))
    w = m.get(which + "_w_us")
    if w is not None:
        return f"r {main} / w {fmt_us(w)}"
    return main


def fmt_failed(failed, key):
    reason = failed.get(key)
    return f"failed: {reason}" if reason else "failed"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw, outdir = args.raw, args.out
    os.makedirs(outdir, exist_ok=True)

    env = read_kv(os.path.join(raw, "env.txt"))
    limits = read_kv(os.path.join(raw, "limits.txt"))
    noisy_env = read_kv(os.path.join(raw, "noisy.txt"))
    scale = read_kv(os.path.join(raw, "scale.txt"))
    inodes = read_kv(os.path.join(raw, "inodes.txt"))
    restart = read_kv(os.path.join(raw, "restart.txt"))
    runs, failed, order = load_runs(raw)

    md, rows_csv, chart_rows, chart_limits = [], [], [], []
    md.append("# carvefs benchmark results")
    md.append("")
    md.append(
        f"{env.get('date', '?')} · {env.get('cpus', '?')} CPUs ({env.get('cpu_model', '?')}), "
        f"{env.get('mem_gib', '?')} GiB RAM · kernel {env.get('kernel', '?')} · {env.get('fio', 'fio ?')} · "
        f"work dir on {env.get('work_fs', '?')} · {env.get('carvefs', 'carvefs ?')} (commit {env.get('commit', '?')})")
    md.append("")
    md.append(
        f"fio io_uring, O_DIRECT except the buffered row, {env.get('runtime', '?')} s measured after "
        f"{env.get('ramp', '?')} s ramp, one {env.get('size', '?')} file per target, "
        f"median of {env.get('repeat', '?')} repetition(s). Daemon threads: "
        f"{env.get('daemon_threads_idle', '?')}; the daemon and fio share the CPUs. "
        f"Whole run: {float(env.get('suite_s', 'nan')):.0f} s.")
    md.append("")

    def csv_row(section, case, target, m, r=None, limit=None, measured=None, unit=""):
        m = m or {}
        rows_csv.append({
            "section": section, "case": case, "target": target,
            "iops": m.get("iops"), "read_iops": m.get("read_iops"), "write_iops": m.get("write_iops"),
            "mib_s": m.get("mib_s"), "p50_us": m.get("p50_us"), "p99_us": m.get("p99_us"),
            "p50_write_us": m.get("p50_w_us"), "p99_write_us": m.get("p99_w_us"),
            "ratio": r, "limit": limit, "measured": measured, "unit": unit,
            "repetitions": m.get("n"),
            "status": "failed" if (section, case, target) in failed else ("ok" if m else "missing"),
        })

    # ---- data path and metadata, side by side
    for section, title in (("perf", "Data path"), ("meta", f"Metadata ({env.get('files', '?')} files, fio filecreate / filestat / filedelete)")):
        cases = [c for s, c in order if s == section]
        if not cases:
            continue
        md.append(f"## {title}")
        md.append("")
        header = ["workload"] + [lab for _, lab in TARGETS] + \
            ["carvefs/raw", "peer/raw", "loop dio/raw", "loop buf/raw"]
        rows, detail = [], []
        for case in cases:
            ms = {t: cell(runs, (section, case, t)) for t, _ in TARGETS}
            base = throughput(case, ms["raw"])
            rats = {t: ratio(throughput(case, ms[t]), base) for t, _ in TARGETS}
            row = [WORKLOADS.get(case, case)]
            for t, _ in TARGETS:
                m = ms[t]
                if (section, case, t) in failed:
                    row.append(fmt_failed(failed, (section, case, t)))
                elif m is None:
                    row.append("–")
                else:
                    row.append(f"{fmt_throughput(case, m)} (p99 {fmt_us(m.get('p99_us'))})")
            row += [fmt_ratio(rats[t]) for t in ("carvefs", "peer", "loop-dio", "loop-buf")]
            rows.append(row)
            chart_rows.append((WORKLOADS.get(case, case), rats["carvefs"], rats["peer"],
                               rats["loop-dio"], rats["loop-buf"]))
            for t, lab in TARGETS:
                m = ms[t]
                csv_row(section, case, t, m, rats[t])
                detail.append([WORKLOADS.get(case, case), lab,
                               fmt_num(m["iops"]) if m else "–",
                               f"{m['mib_s']:.1f}" if m else "–",
                               fmt_lat(m, "p50"), fmt_lat(m, "p99"),
                               fmt_ratio(rats[t])])
        md.append("Throughput (" + ("operations/s" if section == "meta" else "IOPS; MiB/s for 1M rows") +
                  ") with p99 completion latency; ratios are throughput / raw.")
        md.append("")
        md += md_table(header, rows)
        md.append("")
        md.append("<details><summary>every cell</summary>")
        md.append("")
        md += md_table(["workload", "target", "IOPS" if section == "perf" else "ops/s", "MiB/s",
                        "p50 clat", "p99 clat", "×raw"], detail)
        md.append("")
        md.append("</details>")
        md.append("")
    if any(s in ("perf", "meta") for s, _ in order):
        md.append("raw: a folder on the pool's filesystem. carvefs: a volume without limits. "
                  f"passthrough_hp: libfuse's example filesystem ({env.get('peer', '?')}) "
                  "over a folder of the same filesystem; it forwards O_DIRECT writes from "
                  "a buffer the disk cannot take directly, hence its failed write rows "
                  "(bench/README.md, Caveats). loop-ext4 dio: ext4 in an image file on the same filesystem, "
                  "`losetup --direct-io=on` "
                  f"({env.get('loop-dio_device', '?')}). loop-ext4 buffered: the same without "
                  f"direct IO, as `mount -o loop` does ({env.get('loop-buf_device', '?')}).")
        md.append("")
        md.append(BUFFERED_NOTE)
        md.append("")

    # ---- IO-limit accuracy
    lim_cases = [c for s, c in order if s == "limits"]
    if lim_cases:
        md.append(f"## IO-limit accuracy ({env.get('limit_runtime', '?')} s after {env.get('ramp', '?')} s ramp)")
        md.append("")
        md.append(f"One carvefs volume with {env.get('limits', '?')}; the last case raises riops "
                  "with set-limits while the volume stays mounted. 1.00 is exact.")
        md.append("")
        rows = []
        for case in lim_cases:
            m = cell(runs, ("limits", case, "carvefs"))
            lim, _, unit = limits.get(case, "0 ?").partition(" ")
            lim = float(lim)
            if unit == "B/s":
                measured = m["mib_s"] if m else None
                lim_disp, meas_disp, lim_v = f"{lim / MIB:.0f} MiB/s", \
                    (f"{measured:.1f} MiB/s" if m else "–"), lim / MIB
            else:
                measured = m["iops"] if m else None
                lim_disp, meas_disp, lim_v = f"{lim:.0f} IOPS", \
                    (f"{measured:.0f} IOPS" if m else "–"), lim
            r = ratio(measured, lim_v)
            rows.append([LIMIT_TITLES.get(case, case), lim_disp,
                         fmt_failed(failed, ("limits", case, "carvefs"))
                         if ("limits", case, "carvefs") in failed else meas_disp,
                         fmt_ratio(r), fmt_lat(m, "p50"), fmt_lat(m, "p99")])
            chart_limits.append((f"{case}: measured/limit", r))
            csv_row("limits", case, "carvefs", m, r, lim_v, measured,
                    "MiB/s" if unit == "B/s" else "IOPS")
        md += md_table(["limit", "set", "measured", "measured/limit", "p50 clat", "p99 clat"], rows)
        md.append("")

    # ---- noisy neighbour
    noisy_cases = [c for s, c in order if s == "noisy"]
    if noisy_cases:
        b_lim = float(noisy_env.get("b_wiops", "0") or 0)
        md.append("## Noisy neighbour")
        md.append("")
        md.append("Volume A (no limits) reads 4k at random, QD16; volume B of the same daemon "
                  f"writes 4k at random, QD32, limited to {b_lim:.0f} write IOPS or not limited.")
        md.append("")
        alone = cell(runs, ("noisy", "a-alone", "carvefs"), "a")
        rows = []
        for case in noisy_cases:
            a = cell(runs, ("noisy", case, "carvefs"), "a")
            b = cell(runs, ("noisy", case, "carvefs"), "b")
            ra = ratio(a["iops"] if a else None, alone["iops"] if alone else None)
            rb = ratio(b["iops"] if b else None, b_lim) if case == "a-with-b-limited" else None
            rows.append([NOISY_TITLES.get(case, case),
                         fmt_num(a["iops"]) if a else "–", fmt_ratio(ra), fmt_lat(a, "p99"),
                         fmt_num(b["iops"]) if b else "–", fmt_ratio(rb)])
            if case != "a-alone":
                chart_limits.append((f"{NOISY_TITLES.get(case, case)}: A/A alone", ra))
            csv_row("noisy", case, "A", a, ra)
            if b:
                csv_row("noisy", case, "B", b, rb, b_lim if case == "a-with-b-limited" else None,
                        b["iops"], "IOPS")
            if case == "a-with-b-limited":
                chart_limits.append(("B limited: B/B's limit", rb))
        md += md_table(["case", "A IOPS", "A / A alone", "A p99 clat", "B IOPS", "B / B's limit"], rows)
        md.append("")

    # ---- scale
    if scale:
        n = scale.get("volumes", "?")

        def kib(k):
            v = scale.get(k)
            return f"{int(v) / 1024:.1f} MiB" if v and v.isdigit() else "–"

        def secs(k):
            v = scale.get(k)
            return f"{float(v):.2f} s" if v else "–"

        md.append(f"## Scale ({n} volumes, {scale.get('cpus', '?')} CPUs)")
        md.append("")
        per = ""
        try:
            per = f" ({float(scale['create_s']) * 1000 / int(n):.1f} ms each)"
        except (KeyError, ValueError, ZeroDivisionError):
            pass
        rows = [
            [f"create {n} volumes with carvectl, one by one", secs("create_s") + per],
            ["mounted after the creates", scale.get("mounted_after_create", "–")],
            [f"daemon RSS / threads, no volume", f"{kib('rss_kib_0')} / {scale.get('threads_0', '–')}"],
            [f"daemon RSS / threads / open fds, {n} mounted",
             f"{kib('rss_kib_n')} / {scale.get('threads_n', '–')} / {scale.get('fds_n', '–')}"],
            ["SIGTERM to exit (unmount all, save table)", secs("stop_s")],
            ["mounts left after the stop", scale.get("mounted_after_stop", "–")],
            [f"restart until all {n} are in /proc/self/mountinfo", secs("restart_all_mounted_s")],
            ["mounted after the restart", scale.get("mounted_after_restart", "–")],
            ["restart until the control socket answers", secs("restart_socket_s")],
            [f"daemon RSS / threads after the restart",
             f"{kib('rss_kib_restart')} / {scale.get('threads_restart', '–')}"],
            [f"delete {n} volumes with carvectl", secs("delete_s")],
        ]
        md += md_table(["metric", "value"], rows)
        md.append("")
        for k, v in scale.items():
            rows_csv.append({"section": "scale", "case": k, "measured": v,
                             "unit": "s" if k.endswith("_s") else ("KiB" if k.startswith("rss") else ""),
                             "status": "ok"})

    # ---- memory per cached inode
    if inodes:
        n = inodes.get("files", "?")
        md.append(f"## Memory per cached inode ({n} files)")
        md.append("")
        md.append("A fresh daemon, then `find` stats every file of a folder through its mount; "
                  "the daemon's RSS and open fds after, minus before, over the files.")
        md.append("")
        rows = []
        for t, lab in (("carvefs", "carvefs"), ("peer", "passthrough_hp")):
            try:
                files = int(inodes[f"{t}_files"])
                before, after = int(inodes[f"{t}_rss_kib_before"]), int(inodes[f"{t}_rss_kib_after"])
                fds = (int(inodes[f"{t}_fds_after"]) - int(inodes[f"{t}_fds_before"])) / files
                per = (after - before) * 1024.0 / files
            except (KeyError, ValueError, ZeroDivisionError):
                continue
            rows.append([lab, str(files), f"{before / 1024:.1f} MiB", f"{after / 1024:.1f} MiB",
                         f"{per:.0f} B", f"{fds:.2f}"])
            rows_csv.append({"section": "inodes", "case": "rss-per-inode", "target": t,
                             "measured": per, "unit": "B", "status": "ok"})
            rows_csv.append({"section": "inodes", "case": "fds-per-inode", "target": t,
                             "measured": fds, "unit": "fd", "status": "ok"})
        md += md_table(["daemon", "files seen", "RSS before", "RSS after", "RSS per inode",
                        "open fds per inode"], rows)
        md.append("")

    # ---- hand-over under load
    if restart:
        md += restart_section(raw, restart, rows_csv)

    failures = sorted(failed)
    if failures:
        md.append("Failed runs (see the .err files next to the JSON): " +
                  ", ".join(f"{c} on {t}" for _, c, t in failures))
        md.append("")
    if os.path.exists(os.path.join(outdir, "results.png")) or chart_rows or chart_limits:
        md.append("![carvefs/raw and loop/raw per workload; IO-limit accuracy](results.png)")
        md.append("")

    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write("\n".join(md))
    fields = ["section", "case", "target", "iops", "read_iops", "write_iops", "mib_s",
              "p50_us", "p99_us", "p50_write_us", "p99_write_us", "ratio", "limit",
              "measured", "unit", "repetitions", "status"]
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows_csv:
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else ("" if v is None else v))
                        for k, v in ((k, r.get(k)) for k in fields)})
    plot(outdir, chart_rows, chart_limits)


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)]


def load_lat_log(path):
    """[(completion ms since the epoch, latency ns)] of a per-IO fio log, in
    completion order."""
    ios = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split(",")
                if len(parts) >= 2:
                    ios.append((int(parts[0]), int(parts[1])))
    except (OSError, ValueError):
        return []
    ios.sort()
    return ios


def window_figures(ios, t0, t1):
    """The figures of one restart, from t0 to t1 (ms since the epoch), over
    a job's per-IO log: (IOs completed from 0.5 s before t0 to 0.5 s after
    t1, their p99 latency in ns, the stall, the longest completion gap in
    ms). The stall is the largest latency of an IO in flight at some time
    in [t0, t1] (at QD1 the IO caught by the restart is the only one in
    flight and waits for all of it), cross-checked by the longest gap
    between two completions from the last one before t0 to the first one
    after t1 (fio logs completion times in whole ms)."""
    lo, hi = t0 - 500, t1 + 500
    lats = sorted(lat for t, lat in ios if lo <= t <= hi)
    stall = max((lat for t, lat in ios if t >= t0 and t - lat / 1e6 <= t1), default=None)
    before = [i for i, (t, _) in enumerate(ios) if t < t0]
    after = [i for i, (t, _) in enumerate(ios) if t > t1]
    gap = None
    if before and after:
        gap = max(ios[i][0] - ios[i - 1][0] for i in range(before[-1] + 1, after[0] + 1))
    return len(lats), percentile(lats, 0.99), stall, gap


def window_cells(figures):
    n, p99, stall, gap = figures
    return [str(n), fmt_us(p99 / 1000 if p99 else None), fmt_us(stall / 1000 if stall else None),
            f"{gap} ms" if gap is not None else "–"]


def whole_job(raw, name, fio_exit, ios, windows, case, rows_csv):
    """The line on a whole restart job: fio's exit and errors, its IOs, its
    latency over the whole job and outside the restarts' windows (what the
    machine alone does to the job)."""
    path = os.path.join(raw, "restart", f"{name}.carvefs.1.json")
    job = None
    try:
        job = load_json(path)["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError):
        pass
    reason = failure_reason(path + ".err")
    if not job:
        rows_csv.append({"section": "restart", "case": case, "target": "carvefs",
                         "status": "failed"})
        return f"Whole job: fio exit status {fio_exit}, no JSON{' (' + reason + ')' if reason else ''}."
    errors = job.get("total_err", 1 if job.get("error") else 0)
    lats = sorted(lat for _, lat in ios)
    calm = sorted(lat for t, lat in ios if not any(lo <= t <= hi for lo, hi in windows))
    rows_csv.append({"section": "restart", "case": case, "target": "carvefs",
                     "read_iops": job["read"]["iops"], "write_iops": job["write"]["iops"],
                     "measured": errors, "unit": "errors",
                     "status": "ok" if fio_exit == "0" else "failed"})
    return (f"Whole job: fio exit status {fio_exit}, {errors} error(s)"
            f"{' (' + reason + ')' if reason else ''}, "
            f"{job['read']['total_ios']} reads and {job['write']['total_ios']} writes verified, "
            f"p50 {fmt_us(percentile(lats, 0.5) / 1000 if lats else None)}, "
            f"p99 {fmt_us(percentile(lats, 0.99) / 1000 if lats else None)}, "
            f"max {fmt_us(lats[-1] / 1000 if lats else None)} (submission to completion); "
            f"outside the windows: p99 {fmt_us(percentile(calm, 0.99) / 1000 if calm else None)}, "
            f"max {fmt_us(calm[-1] / 1000 if calm else None)}.")


def restart_section(raw, restart, rows_csv):
    """The hand-over table, from the new daemon's start (t0) to the old
    one's exit (t1) for each, and the SIGKILL table, from the kill (t0) to
    the restarted daemon answering on its control socket (t1)."""
    md = []
    n = int(restart.get("handovers", "0") or 0)
    md.append(f"## Hand-over under load ({n} hand-overs, {restart.get('runtime', '?')} s of fio)")
    md.append("")
    md.append("fio 4k random read/write at QD1 on a carvefs volume, every block checked "
              "(`--verify=crc32c --continue_on_error=none`), while the same carvefs command "
              "is started again on the pool every 3 s and takes the volumes over. Stall: the "
              "longest latency of an IO in flight between the new daemon's start and the old "
              "one's exit; gap: the longest time without a completion across it; p99: IOs "
              "completed from 0.5 s before to 0.5 s after. Target: 0 errors, stall < 100 ms.")
    md.append("")
    ios = load_lat_log(os.path.join(raw, "restart", "handover_lat.1.log"))
    rows, windows = [], []
    for h in range(1, n + 1):
        status = restart.get(f"handover{h}_status")
        if status is None:
            break
        t0, t1 = int(restart[f"handover{h}_start_ms"]), int(restart[f"handover{h}_end_ms"])
        if status != "handed-over":
            msg = restart.get(f"handover{h}_message", "")
            rows.append([str(h), f"not done ({status}): {msg}".strip(), f"{t1 - t0} ms",
                         "–", "–", "–", "–"])
            rows_csv.append({"section": "restart", "case": f"handover{h}", "target": "carvefs",
                             "status": status})
            break
        windows.append((t0 - 500, t1 + 500))
        figures = window_figures(ios, t0, t1)
        rows.append([str(h), f"handed over, {restart.get(f'handover{h}_mounted_after', '?')} mounted after",
                     f"{t1 - t0} ms", *window_cells(figures)])
        _, p99, stall, _ = figures
        rows_csv.append({"section": "restart", "case": f"handover{h}", "target": "carvefs",
                         "iops": None, "p99_us": p99 / 1000 if p99 else None,
                         "measured": stall / 1000 if stall else None, "unit": "µs max latency",
                         "status": "ok"})
    md += md_table(["hand-over", "outcome", "new daemon start to old one's exit", "IOs in ±0.5 s",
                    "p99 latency", "max latency (stall)", "longest completion gap"], rows)
    md.append("")
    md.append(whole_job(raw, "handover", restart.get("fio_exit", "?"), ios, windows, "job",
                        rows_csv))
    md.append("")
    if "crash_fio_exit" in restart:
        md += crash_section(raw, restart, rows_csv)
    return md


def crash_section(raw, restart, rows_csv):
    md = [f"## SIGKILL and restart under load ({restart.get('crash_runtime', '?')} s of fio)", ""]
    md.append("The same fio job, on its own, while the daemon serving the volume is killed "
              "with SIGKILL 2 s in and the same carvefs command is started again at once; the "
              "keeper holds the volume's connection meanwhile, and the new daemon takes it "
              "back. Stall, gap and p99 as above, from the SIGKILL to the restarted daemon "
              "answering on its control socket. Target: 0 errors.")
    md.append("")
    ios = load_lat_log(os.path.join(raw, "restart", "crash_lat.1.log"))
    status, windows = restart.get("crash_status"), []
    if status is None:
        row = ["SIGKILL", "not done (fio ended before the kill)", "–", "–", "–", "–", "–"]
        rows_csv.append({"section": "restart", "case": "sigkill", "target": "carvefs",
                         "status": "not done"})
    else:
        t0, t1 = int(restart["crash_start_ms"]), int(restart["crash_end_ms"])
        windows.append((t0 - 500, t1 + 500))
        figures = window_figures(ios, t0, t1)
        outcome = f"restarted, {restart.get('crash_mounted_after', '?')} mounted after"
        if status != "restarted":
            outcome = f"not served ({status}): {restart.get('crash_message', '')}".strip()
        row = ["SIGKILL", outcome, f"{t1 - t0} ms", *window_cells(figures)]
        _, p99, stall, _ = figures
        rows_csv.append({"section": "restart", "case": "sigkill", "target": "carvefs",
                         "p99_us": p99 / 1000 if p99 else None,
                         "measured": stall / 1000 if stall else None, "unit": "µs max latency",
                         "status": "ok" if status == "restarted" else status})
    md += md_table(["restart", "outcome", "SIGKILL to the new daemon answering", "IOs in ±0.5 s",
                    "p99 latency", "max latency (stall)", "longest completion gap"], [row])
    md.append("")
    md.append(whole_job(raw, "crash", restart.get("crash_fio_exit", "?"), ios, windows,
                        "sigkill job", rows_csv))
    md.append("")
    return md


def gp_num(v):
    return "NaN" if v is None or v <= 0 or math.isnan(v) else f"{v:.4f}"


def gp_str(s):
    return '"' + s.replace('"', "'") + '"'


def plot(outdir, chart_rows, chart_limits):
    if not chart_rows and not chart_limits:
        return
    if not shutil.which("gnuplot"):
        print("report: gnuplot is missing; no results.png", file=sys.stderr)
        return
    tmp = tempfile.mkdtemp(prefix="carvefs-bench-plot.")
    try:
        with open(os.path.join(tmp, "ratios.dat"), "w") as f:
            for lab, *vals in chart_rows:
                f.write(gp_str(lab) + "".join(f" {gp_num(v)}" for v in vals) + "\n")
        with open(os.path.join(tmp, "limits.dat"), "w") as f:
            for lab, r in chart_limits:
                f.write(f"{gp_str(lab)} {gp_num(r)}\n")
        vals = [v for row in chart_rows for v in row[1:] if v] + [r for _, r in chart_limits if r]
        lo = 10 ** math.floor(math.log10(min([0.5] + vals) / 1.3))
        hi = max([2.0] + vals) * 6
        panels = (1 if chart_rows else 0) + (1 if chart_limits else 0)
        script = f"""
set terminal pngcairo size 1400,{520 * panels + 80} font "Sans,11" noenhanced
set output "{os.path.join(outdir, 'results.png')}"
set datafile missing "NaN"
set multiplot layout {panels},1 title "carvefs benchmark (higher is faster; 1 = same as raw / exactly the limit)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 10
set yrange [{lo:.4f}:{hi:.4f}]
set grid ytics
set xtics rotate by -25 left nomirror
set key inside top left vertical opaque box
set bmargin 7
"""
        if chart_rows:
            script += f"""
set title "Throughput relative to raw (ratio, log scale)"
set ylabel "target / raw"
plot "{tmp}/ratios.dat" using 2:xtic(1) title "carvefs / raw" lc rgb "#1f77b4", \\
     "" using 3 title "passthrough_hp / raw (libfuse peer; missing: failed)" lc rgb "#d62728", \\
     "" using 4 title "loop-ext4 dio / raw" lc rgb "#2ca02c", \\
     "" using 5 title "loop-ext4 buffered / raw (host page cache, not durable)" lc rgb "#ff7f0e", \\
     1 notitle with lines lw 2 lc rgb "black", \\
     "" using ($0-0.3):2:(sprintf("%.2f", $2)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \\
     "" using ($0-0.1):3:(sprintf("%.2f", $3)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \\
     "" using ($0+0.1):4:(sprintf("%.2f", $4)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle, \\
     "" using ($0+0.3):5:(sprintf("%.2f", $5)) with labels rotate by 90 left offset 0,0.4 font ",8" notitle
"""
        if chart_limits:
            script += f"""
set title "IO limits: measured / limit; noisy neighbour: A's IOPS / A alone, B's IOPS / B's limit (log scale)"
set ylabel "ratio"
unset key
set xtics rotate by -15 left nomirror
plot "{tmp}/limits.dat" using 2:xtic(1) notitle lc rgb "#9467bd", \\
     1 notitle with lines lw 2 lc rgb "black", \\
     "" using ($0):2:(sprintf("%.2f", $2)) with labels offset 0,0.7 font ",9" notitle
"""
        script += "unset multiplot\n"
        with open(os.path.join(tmp, "plot.gp"), "w") as f:
            f.write(script)
        res = subprocess.run(["gnuplot", os.path.join(tmp, "plot.gp")],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print("report: gnuplot failed:\n" + res.stderr, file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

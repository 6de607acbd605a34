"""Peak memory and CPU of a whole process tree, sampled from outside: the benchmarks' one sampler.

`run_measured(command, ...)` runs a command and samples, every `sample_every` seconds, the PSS
(/proc/PID/smaps_rollup) summed over the process and all its descendants (Ray's gcs_server,
raylet, workers, agents; the object store's /dev/shm pages are counted through the processes
that map them, once, by PSS), and the growth of /dev/shm usage, and keeps the peaks. It also
reports the CPU time other processes on the machine took meanwhile, so that a contended
measurement says so. It also says which processes hold the memory: each process's role (the command,
a Ray actor by its class, `ray::RayTrainWorker`, or a Ray daemon by name), the PSS of each role at the
tree's peak, each process's own peak, and the tree's PSS by role over time.
"""

import json
import os
import subprocess
import time
from collections import defaultdict


def _children_map(cpu_ticks: dict[int, int] | None = None) -> dict[int, list[int]]:
    """ppid -> pids; also fills cpu_ticks[pid] = utime + stime (clock ticks) when given."""
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "(comm)": state, ppid, ...
        children[int(fields[1])].append(int(entry))
        if cpu_ticks is not None:
            cpu_ticks[int(entry)] = int(fields[11]) + int(fields[12])
    return children


def process_tree(root: int, cpu_ticks: dict[int, int] | None = None) -> list[int]:
    children = _children_map(cpu_ticks)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _rollup(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) in kB, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return None
    pss = rss = 0
    for line in text.splitlines():
        if line.startswith(b"Pss:"):
            pss = int(line.split()[1])
        elif line.startswith(b"Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def _role(pid: int, root: int) -> str:
    """What a process of the tree is: "command" (the measured command itself), a Ray worker by the
    actor class or task it runs (`ray::RayTrainWorker`, `ray::IDLE`), or a daemon by its program."""
    if pid == root:
        return "command"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if args[0].startswith("ray::"):
        return args[0].split(".")[0].split()[0]
    programs = [a for a in args if a and not a.startswith("-") and not os.path.basename(a).startswith("python")]
    return os.path.basename(programs[0]) if programs else os.path.basename(args[0])


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _busy_ticks() -> int:
    """Machine-wide non-idle CPU time (clock ticks) from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


def _shm_used() -> int:
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def run_measured(
    command: list[str], sample_every: float, label: str, result_path: str | None = None, series_every: float = 10.0
) -> dict:
    """Run `command`; sample its whole process tree's PSS until it exits. The command may write a
    JSON object to `result_path`, which is returned with the measured figures added; also the PSS by
    role at the peak, each process's peak, and every `series_every` seconds the PSS by role."""
    shm0 = _shm_used()
    print(f"[{label}] running ...", flush=True)
    t0 = time.perf_counter()
    child = subprocess.Popen(command)
    peak_pss = peak_rss = peak_shm = samples = 0
    peak_breakdown: dict[str, float] = {}
    process_peaks: dict[int, float] = {}
    roles: dict[int, str] = {}  # a Ray worker's last role but `ray::IDLE`, the one it held its memory in
    series: list[dict] = []
    max_procs = 0
    seen: set[int] = set()
    tree_ticks: dict[int, int] = {}  # last seen CPU time of each process of the tree
    busy0, load0, self0 = _busy_ticks(), os.getloadavg()[0], _self_cpu()
    while child.poll() is None:
        ticks: dict[int, int] = {}
        tree = process_tree(child.pid, ticks)
        seen.update(tree)
        tree_ticks.update({pid: ticks[pid] for pid in tree if pid in ticks})
        pss = rss = 0
        breakdown: dict[str, float] = defaultdict(float)
        for pid in tree:
            r = _rollup(pid)
            if r:
                pss += r[0]
                rss += r[1]
                role = _role(pid, child.pid)
                if role != "ray::IDLE" or pid not in roles:
                    roles[pid] = role
                breakdown[role] += r[0] / 1024
                process_peaks[pid] = max(process_peaks.get(pid, 0.0), r[0] / 1024)
        if not series or time.perf_counter() - t0 >= series[-1]["t"] + series_every:
            series.append(
                {"t": round(time.perf_counter() - t0, 1), "total": round(pss / 1024, 1)} | _rounded(breakdown)
            )
        samples += 1
        max_procs = max(max_procs, len(tree))
        peak_rss = max(peak_rss, rss)
        peak_shm = max(peak_shm, _shm_used() - shm0)
        if pss > peak_pss:
            peak_pss, peak_breakdown = pss, dict(breakdown)
        time.sleep(sample_every)
    wall = time.perf_counter() - t0
    hz = os.sysconf("SC_CLK_TCK")
    tree_cpu = sum(tree_ticks.values()) / hz
    sampler_cpu = _self_cpu() - self0  # this process's sampling: also a load on the machine, reported apart
    other_cpu = max(0.0, (_busy_ticks() - busy0) / hz - tree_cpu - sampler_cpu)
    # Let Ray's processes (orphaned when the driver exits) go before the next measurement starts.
    deadline = time.time() + 30
    while time.time() < deadline and any(
        os.path.exists(f"/proc/{p}") and _comm(p) != "?" and _is_alive(p) for p in seen
    ):
        time.sleep(0.2)
    if child.returncode != 0:
        raise SystemExit(f"[{label}] worker failed with exit code {child.returncode}")
    result = {}
    if result_path:
        with open(result_path) as f:
            result = json.load(f)
        os.unlink(result_path)
    result.update(
        label=label,
        peak_pss_mb=peak_pss / 1024,
        peak_rss_mb=peak_rss / 1024,
        peak_dev_shm_growth_mb=peak_shm / 1024**2,
        samples=samples,
        max_processes=max_procs,
        process_wall_s=wall,
        tree_cpu_s=tree_cpu,
        other_cpu_s=other_cpu,
        sampler_cpu_s=sampler_cpu,
        other_cores=other_cpu / wall,
        loadavg_before=load0,
        peak_breakdown_mb=_rounded(peak_breakdown),
        process_peaks_mb=[
            {"pid": pid, "role": roles[pid], "peak_pss_mb": round(peak, 1)}
            for pid, peak in sorted(process_peaks.items(), key=lambda kv: -kv[1])
        ],
        series_mb=series,
    )
    done = f"{result['rows']:,} rows in {result['seconds']:.1f} s" if "rows" in result else f"exited in {wall:.1f} s"
    print(
        f"[{label}] {done}, peak PSS {result['peak_pss_mb']:,.0f} MB "
        f"over up to {max_procs} processes ({samples} samples), /dev/shm growth {result['peak_dev_shm_growth_mb']:,.0f} MB",
        flush=True,
    )
    print(
        f"[{label}] CPU: this tree {tree_cpu:.1f} s in {wall:.1f} s of process wall time; other processes on the machine "
        f"{other_cpu:.1f} s ({other_cpu / wall:.2f} cores; load average before {load0:.2f}); the memory sampler {sampler_cpu:.1f} s"
        + (
            "  <-- CONTENDED: the timings are unreliable, run again on a quiet machine"
            if other_cpu / wall > 0.25
            else ""
        ),
        flush=True,
    )
    return result


def _rounded(by_role: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in sorted(by_role.items(), key=lambda kv: -kv[1])}


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")

#!/usr/bin/env python3
"""runbook benchmarks: each figure is a ratio against a baseline measured in the same run.

Usage: bench/bench.py [validate|exec|output|journal|ssh|store|team|all]   (default: all that can run here)
Builds the release binary first. Figures are printed as a table; nothing is asserted.
"""
import os, resource, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "runbook")


def build():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)


def timed(cmd, repeat=3, **kw):
    """Best wall time of `repeat` runs (seconds)."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def gen_runbook(path, n):
    """n steps: chains of 10 with fan-in every 10th step, each with a template and a rollback."""
    with open(path, "w") as f:
        f.write("runbook: big\nversion: 1\ninputs:\n  node: { default: vault-1 }\nsteps:\n")
        for i in range(n):
            f.write(f"  - id: s{i}\n    run: echo {{{{ node }}}} {i}\n    rollback: echo undo {i}\n")
            if i % 10 == 0 and i >= 10:
                f.write(f"    needs: [s{i-1}, s{i-5}, s{i-10}]\n")
            elif i > 0:
                f.write(f"    needs: [s{i-1}]\n")


def bench_validate(tmp):
    rows = []
    times = {}
    for n in (1000, 10000):
        p = os.path.join(tmp, f"big{n}.yaml")
        gen_runbook(p, n)
        tv = timed([BIN, "validate", p])
        tp = timed([BIN, "plan", p, "--format", "json"])
        times[n] = (tv, tp)
        rows.append((f"validate {n} steps", f"{tv*1000:.0f} ms"))
        rows.append((f"plan {n} steps", f"{tp*1000:.0f} ms"))
    rows.append(("validate 10k/1k ratio (target <= 12)", f"{times[10000][0]/times[1000][0]:.1f}"))
    rows.append(("plan 10k/1k ratio (target <= 12)", f"{times[10000][1]/times[1000][1]:.1f}"))
    return rows


def chain(path, n, cmd="true"):
    with open(path, "w") as f:
        f.write("runbook: chain\nversion: 1\nsteps:\n")
        for i in range(n):
            f.write(f"  - id: s{i}\n    run: {cmd}\n")
            if i > 0:
                f.write(f"    needs: [s{i-1}]\n")


def bench_exec(tmp):
    p = os.path.join(tmp, "chain.yaml")
    chain(p, 1000)
    runs = os.path.join(tmp, "runs")
    base = timed(["bash", "-c", "for i in $(seq 1000); do sh -c true; done"])
    eng = timed([BIN, "exec", p, "--progress", "plain", "--runs-dir", runs])
    rows = [
        ("bash loop: 1000 x sh -c true", f"{base*1000:.0f} ms"),
        ("runbook exec: 1000-step chain of `true`", f"{eng*1000:.0f} ms"),
        ("engine / bash ratio (target <= 1.3)", f"{eng/base:.2f}"),
    ]
    if True:  # --no-journal is hidden from --help: it exists for this comparison only
        nj = timed([BIN, "exec", p, "--progress", "plain", "--runs-dir", runs, "--no-journal"])
        rows.append(("runbook exec --no-journal", f"{nj*1000:.0f} ms"))
        rows.append(("journal on / off ratio (target <= 1.2)", f"{eng/nj:.2f}"))
    return rows


def bench_output(tmp):
    """Peak RSS of the engine while one step prints 1 GiB."""
    p = os.path.join(tmp, "gig.yaml")
    with open(p, "w") as f:
        f.write("runbook: gig\nversion: 1\nsteps:\n  - id: gig\n    run: head -c 1073741824 /dev/zero | tr '\\0' 'x' | fold -w 120\n")
    runs = os.path.join(tmp, "runs-gig")
    t0 = time.perf_counter()
    # wait4 gives the rusage of exactly this child (the engine), not of cargo or the step.
    proc = subprocess.Popen([BIN, "exec", p, "--progress", "plain", "--runs-dir", runs],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t0
    shutil.rmtree(runs, ignore_errors=True)
    return [
        ("1 GiB of output: wall time", f"{dt:.1f} s (exit {proc.returncode})"),
        ("1 GiB of output: engine peak RSS (target < 64 MiB)", f"{usage.ru_maxrss/1024:.1f} MiB"),
    ]


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    build()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if what in ("validate", "all"):
            rows += bench_validate(tmp)
        if what in ("exec", "journal", "all"):
            rows += bench_exec(tmp)
        if what in ("output",) or what == "all":
            rows += bench_output(tmp)
        if what in ("ssh", "all") and os.path.exists(os.path.join(ROOT, "bench", "ssh.py")):
            sys.path.insert(0, os.path.join(ROOT, "bench"))
            import ssh  # noqa: E402
            rows += ssh.bench(BIN, tmp)
        if what in ("store", "all"):
            sys.path.insert(0, os.path.join(ROOT, "bench"))
            import pg  # noqa: E402
            rows += pg.bench(BIN, tmp)
        if what in ("team", "all"):
            sys.path.insert(0, os.path.join(ROOT, "bench"))
            import team  # noqa: E402
            rows += team.bench(BIN, tmp)
    w = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{w}}  {value}")


if __name__ == "__main__":
    main()

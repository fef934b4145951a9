"""Team-mode benchmark: latency from `runbook approve` to the waiting engine starting the step,
with the PostgreSQL store (LISTEN/NOTIFY) and, as the baseline in the same run, the file store
(the engine polls its answers/ directory).

Needs the PostgreSQL server programs (Debian `postgresql`). The server runs on a free loopback
port in a temporary directory, as an unprivileged user when run as root (the test user
`rbtest`, created like the tests do). Each figure: `runbook approve` is started once the
engine's journal says it waits at the gate (plus 50 ms, so it is in its wait loop); the step
writes the time it starts; latency = step start - approve start (so it includes starting the
`approve` process and its connection, as a person would see it).
"""
import glob, os, pwd, socket, statistics, subprocess, tempfile, time

GATES = 15


def _pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else name


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _as_user():
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("rbtest")
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", "rbtest"], check=True)
    return ["runuser", "-u", "rbtest", "--"]


class Pg:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        pre = _as_user()
        if pre:
            os.chmod(tmp, 0o711)  # the server's user must reach its directory
            subprocess.run(["chown", "rbtest", self.dir], check=True)
        self.pre = pre
        self.port = _free_port()
        data = os.path.join(self.dir, "data")
        subprocess.run(pre + [_pg_bin("initdb"), "-D", data, "-U", "postgres", "--no-locale",
                              "-E", "UTF8", "--auth=trust"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(pre + [_pg_bin("pg_ctl"), "-D", data, "-l", os.path.join(self.dir, "log"),
                              "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                              "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        self.data = data
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self):
        subprocess.run(self.pre + [_pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(path, needle, count):
    while True:
        try:
            with open(path) as f:
                if f.read().count(needle) >= count:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.002)


def _latencies(binary, tmp, name, env):
    work = os.path.join(tmp, "latency-" + name)
    os.makedirs(work)
    started = os.path.join(work, "started")
    rb = os.path.join(work, "gates.yaml")
    with open(rb, "w") as f:
        f.write("runbook: gates\nversion: 1\nsteps:\n")
        for i in range(GATES):
            f.write(f"  - id: g{i}\n    confirm: go?\n    run: date +%s.%N >> {started}\n")
            if i:
                f.write(f"    needs: [g{i-1}]\n")
    runs = os.path.join(work, "runs")
    eng = subprocess.Popen([binary, "exec", rb, "--progress", "plain", "--runs-dir", runs],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    try:
        while not (os.path.isdir(runs) and [d for d in os.listdir(runs) if not d.startswith(".")]):
            time.sleep(0.005)
        run_id = [d for d in os.listdir(runs) if not d.startswith(".")][0]
        journal = os.path.join(runs, run_id, "journal.jsonl")
        for i in range(GATES):
            _wait_for(journal, '"event":"gate-waiting"', i + 1)
            time.sleep(0.05)
            t0 = time.time()
            subprocess.Popen([binary, "approve", run_id, f"g{i}", "--runs-dir", runs], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while True:
                try:
                    with open(started) as f:
                        lines = f.read().split()
                    if len(lines) > i:
                        out.append(float(lines[i]) - t0)
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.001)
        eng.wait(timeout=60)
    finally:
        if eng.poll() is None:
            eng.kill()
    return out


def _fmt(xs):
    return f"median {statistics.median(xs)*1000:.0f} ms, max {max(xs)*1000:.0f} ms (n={len(xs)})"


def bench(binary, tmp):
    if not os.path.exists(_pg_bin("initdb")):
        return [("approve latency", "skipped: no PostgreSQL server programs")]
    env = dict(os.environ, NO_COLOR="1")
    env.pop("RUNBOOK_STORE", None)
    file_lat = _latencies(binary, tmp, "file", env)
    pg = Pg(tmp)
    try:
        subprocess.run([binary, "store", "init", "--store", pg.url], check=True,
                       stdout=subprocess.DEVNULL)
        pg_lat = _latencies(binary, tmp, "pg", dict(env, RUNBOOK_STORE=pg.url))
    finally:
        pg.stop()
    return [
        ("approve -> step start, file store (baseline)", _fmt(file_lat)),
        ("approve -> step start, PostgreSQL store (target < 100 ms)", _fmt(pg_lat)),
        ("PostgreSQL / file median ratio", f"{statistics.median(pg_lat)/statistics.median(file_lat):.2f}"),
    ]

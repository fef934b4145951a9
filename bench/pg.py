"""PostgreSQL store benchmark (imported by bench.py): the 1,000-step local chain with runs kept
in a PostgreSQL server on loopback (`--store`), as a ratio to the file store, same run.

The server is started here (initdb + pg_ctl as the unprivileged user `rbtest`, which the test
harness creates; PostgreSQL refuses to run as root) on a free loopback port, with its default
durability (fsync on, synchronous_commit on), and stopped at the end. Skipped (one row saying
why) when PostgreSQL or the user is missing.
"""
import glob, os, pwd, shutil, socket, subprocess, tempfile, time

USER = "rbtest"


def _bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd, **kw):
    return subprocess.run(["runuser", "-u", USER, "--"] + cmd, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def _timed(cmd, repeat=3):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def bench(BIN, tmp):
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        pw = None
    if not initdb or not pg_ctl or pw is None or os.geteuid() != 0:
        return [("PostgreSQL store", "skipped (needs root, postgresql and the rbtest user)")]
    d = tempfile.mkdtemp(prefix="runbook-bench-pg-")
    os.chown(d, pw.pw_uid, pw.pw_gid)
    data = os.path.join(d, "data")
    port = _free_port()
    try:
        _as_user([initdb, "-D", data, "-U", "postgres", "--no-locale", "-E", "UTF8",
                  "--auth-local=trust", "--auth-host=trust"], cwd=d)
        _as_user([pg_ctl, "-D", data, "-l", os.path.join(d, "log"), "-o",
                  f"-p {port} -k {d} -c listen_addresses=127.0.0.1", "-w", "-t", "60", "start"],
                 cwd=d)
        url = f"postgres://postgres@127.0.0.1:{port}/postgres"
        subprocess.run([BIN, "store", "init", "--store", url], check=True,
                       stdout=subprocess.DEVNULL)
        p = os.path.join(tmp, "pg-chain.yaml")
        with open(p, "w") as f:
            f.write("runbook: chain\nversion: 1\nsteps:\n")
            for i in range(1000):
                f.write(f"  - id: s{i}\n    run: true\n")
                if i > 0:
                    f.write(f"    needs: [s{i-1}]\n")
        runs = os.path.join(tmp, "runs-pg-file")
        cache = os.path.join(tmp, "runs-pg-cache")
        file_t = _timed([BIN, "exec", p, "--progress", "plain", "--runs-dir", runs])
        pg_t = _timed([BIN, "exec", p, "--progress", "plain", "--runs-dir", cache, "--store", url])
        records = subprocess.run(
            [BIN, "export", "last", os.path.join(tmp, "pg-export"), "--runs-dir", cache,
             "--store", url], check=True, stdout=subprocess.PIPE, text=True).stdout
        n = 0
        for line in open(os.path.join(records.split(" to ", 1)[1].strip(), "journal.jsonl")):
            n += 1
        return [
            ("store file: 1000-step chain of `true`", f"{file_t*1000:.0f} ms"),
            ("store postgres (loopback, fsync on): same chain", f"{pg_t*1000:.0f} ms ({n} records)"),
            ("postgres / file store ratio", f"{pg_t/file_t:.2f}"),
            ("postgres: per record committed", f"{(pg_t-file_t)/n*1e6:.0f} us more than the file"),
        ]
    finally:
        subprocess.run(["runuser", "-u", USER, "--", pg_ctl, "-D", data, "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)

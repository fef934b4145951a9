"""SSH benchmarks against real loopback sshd (see bench.py). Needs root (binds 127.0.0.x)."""
import os, subprocess, tempfile, time, socket


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def setup(tmp, n):
    d = os.path.join(tmp, "ssh")
    os.makedirs(d, exist_ok=True)
    for k in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, k)], check=True)
    with open(os.path.join(d, "client.pub")) as f, open(os.path.join(d, "authorized_keys"), "w") as g:
        g.write(f.read())
    port = free_port()
    addrs = [f"127.0.1.{i}" for i in range(1, n + 1)]
    os.makedirs("/run/sshd", exist_ok=True)
    # sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS): one server per 16 hosts.
    confs = []
    for k in range(0, n, 16):
        conf = os.path.join(d, f"sshd{k}.conf")
        with open(conf, "w") as f:
            for a in addrs[k:k + 16]:
                f.write(f"ListenAddress {a}:{port}\n")
            f.write(f"HostKey {d}/host\nPidFile {d}/sshd{k}.pid\nAuthorizedKeysFile {d}/authorized_keys\nUsePAM no\n"
                    "StrictModes no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
                    "MaxStartups 400:30:800\nMaxSessions 200\nLogLevel ERROR\n")
        confs.append(conf)
    hostkey = open(os.path.join(d, "host.pub")).read().split()[:2]
    with open(os.path.join(d, "known_hosts"), "w") as f:
        for a in addrs:
            f.write(f"[{a}]:{port} {' '.join(hostkey)}\n")
    cfg = os.path.join(d, "ssh_config")
    with open(cfg, "w") as f:
        f.write(f"Host *\n  IdentityFile {d}/client\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n"
                "  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n")
    servers = [subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", c], stderr=subprocess.DEVNULL) for c in confs]
    for a in (addrs[0], addrs[-1]):
        for _ in range(200):
            try:
                socket.create_connection((a, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    return d, port, addrs, cfg, servers


def bench(BIN, tmp):
    if not os.path.exists("/usr/sbin/sshd"):
        return [("ssh benchmarks", "skipped: no sshd")]
    d, port, addrs, cfg, servers = setup(tmp, 100)
    rows = []
    try:
        rb = os.path.join(d, "fleet.yaml")
        with open(rb, "w") as f:
            f.write("runbook: fleet\nversion: 1\nhosts:\n")
            for i, a in enumerate(addrs):
                f.write(f"  h{i}: {{ address: {a}, port: {port}, user: root }}\n")
            f.write("groups:\n  all: [" + ", ".join(f"h{i}" for i in range(len(addrs))) + "]\n")
            f.write("steps:\n  - id: uname\n    on: all\n    max_parallel: 20\n    read_only: true\n    run: uname -a\n")
        hosts = os.path.join(d, "hosts")
        with open(hosts, "w") as f:
            for a in addrs:
                f.write(f"root@{a}:{port}\n")
        runs = os.path.join(d, "runs")

        def best(cmd, n=3):
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
                if r.returncode != 0:
                    raise SystemExit(f"failed: {' '.join(cmd)}")
            return min(times)

        t_rb = best([BIN, "exec", rb, "--ssh-config", cfg, "--progress", "plain", "--runs-dir", runs])
        t_pssh = best(["parallel-ssh", "-p", "20", "-h", hosts, "-x", f"-F {cfg}", "-t", "60", "uname", "-a"])
        rows += [
            ("parallel-ssh -p 20: uname -a on 100 hosts", f"{t_pssh*1000:.0f} ms"),
            ("runbook exec: uname -a on 100 hosts, max_parallel 20", f"{t_rb*1000:.0f} ms"),
            ("runbook / parallel-ssh ratio (target <= 1.0)", f"{t_rb/t_pssh:.2f}"),
        ]
        seq = os.path.join(d, "seq.yaml")
        with open(seq, "w") as f:
            f.write(f"runbook: seq\nversion: 1\nhosts:\n  n: {{ address: {addrs[0]}, port: {port}, user: root }}\nsteps:\n")
            for i in range(50):
                f.write(f"  - id: s{i}\n    on: n\n    read_only: true\n    run: 'true'\n")
                if i:
                    f.write(f"    needs: [s{i-1}]\n")
        t_seq = best([BIN, "exec", seq, "--ssh-config", cfg, "--progress", "plain", "--runs-dir", runs])
        t_ssh = best(["bash", "-c", f"for i in $(seq 50); do ssh -F {cfg} -p {port} root@{addrs[0]} true; done"])
        rows += [
            ("50 separate ssh invocations", f"{t_ssh*1000:.0f} ms"),
            ("runbook: 50 sequential steps on one host", f"{t_seq*1000:.0f} ms"),
            ("connection reuse speed-up (ssh / runbook)", f"{t_ssh/t_seq:.1f}x"),
        ]
    finally:
        for s in servers:
            s.kill()
            s.wait()
    return rows

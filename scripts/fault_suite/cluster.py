"""The suite's own cluster: PostgreSQL primary + streaming replica, Redis,
one `duet-bench proxy` per node in front of Redis, a fake FCM, Duet nodes.

Nothing here touches the machine's shared PostgreSQL (5432/5433) or Redis
(6379): every server is private, on random free ports, and `close()` stops
all of it and deletes its files, whatever state a scenario left it in
(paused processes are resumed first so they can be stopped).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fake_push import FakeFcm

PG_BIN = Path("/usr/lib/postgresql") / sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1] / "bin"
_taken_ports = set()
# The fault suite's ports; scripts/cluster (deployment.py) uses its own range.
# Both stay below the kernel's ephemeral ports (32768 and up here): a port
# found free there can be taken by an outgoing connection before the server
# binds it (seen: a node's admin listener, "Address already in use").
PORTS = range(16000, 22000)
# Offsets from each port that must be free too (a Redis Cluster node's bus).
ALSO_FREE = ()


def free_port():
    """A free TCP port in PORTS (other helpers' tools use other ranges)."""
    while True:
        port = random.randint(PORTS.start, PORTS.stop - 1)
        if port in _taken_ports:
            continue
        if not all(bindable(p) for p in (port, *(port + offset for offset in ALSO_FREE))):
            continue
        _taken_ports.add(port)
        return port


def bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def as_postgres(args):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def run(args, what, timeout=120, check=True):
    """Runs a command; on failure raises with its output, so a setup error says which step and why."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(map(str, args))}\n{done.stdout}{done.stderr}")
    return done


def wait_until(what, probe, timeout, interval=0.1):
    """Polls `probe` until it returns a truthy value; raises naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def http(method, url, body=None, token=None, timeout=5, context=None, headers=None):
    """(status, parsed JSON or text); status 0 when the connection failed. `context`: TLS trust for https;
    `headers`, when given, is filled with the response's headers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, text = response.status, response.read().decode()
            if headers is not None:
                headers.update({k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def tail(path, lines=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def children(pid):
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


class Postgres:
    """One PostgreSQL cluster in `root/name`, run by the postgres user through pg_ctl."""

    def __init__(self, root, name):
        self.root, self.name = root, name
        self.data = root / name
        self.log = root / f"{name}.log"
        self.port = free_port()
        self.paused = False

    def url(self, db="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def _configure(self, extra):
        conf = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": 300,
            # Scenarios crash PostgreSQL, never the machine: the page cache survives.
            "fsync": "off",
            **extra,
        }
        text = "".join(f"{k} = {v}\n" for k, v in conf.items())
        subprocess.run(as_postgres(["tee", "-a", str(self.data / "postgresql.conf")]), input=text, text=True, capture_output=True, check=True)

    def init_primary(self):
        run(as_postgres([PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"]), "initdb of the primary")
        self._configure({"wal_level": "replica", "max_wal_senders": 5, "wal_keep_size": "'1GB'"})

    def init_replica(self, primary):
        run(
            as_postgres([PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                         "-D", self.data, "-R", "-X", "stream", "-c", "fast"]),
            "pg_basebackup of the replica",
        )
        self._configure({"hot_standby": "on", "hot_standby_feedback": "on", "wal_receiver_status_interval": "'1s'"})

    def pg_ctl(self, *args, timeout=90):
        return run(as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, *args]), f"{self.name}: pg_ctl {' '.join(args)}", timeout=timeout)

    def start(self):
        self.pg_ctl("-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        self.pg_ctl("-w", "-t", "60", "-m", mode, "stop")

    def restart(self, mode="fast"):
        self.pg_ctl("-w", "-t", "60", "-m", mode, "restart")

    def running(self):
        return self.pid() is not None and subprocess.run(as_postgres([PG_BIN / "pg_ctl", "-D", self.data, "status"]), capture_output=True).returncode == 0

    def ready(self):
        return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode == 0

    def pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pause(self):
        """SIGSTOP the postmaster (no new backends) and then every backend: an unresponsive server."""
        pid = self.pid()
        os.kill(pid, signal.SIGSTOP)
        self.paused = True
        for child in children(pid):
            os.kill(child, signal.SIGSTOP)

    def resume(self):
        pid = self.pid()
        if pid is None:
            return
        for child in children(pid):
            os.kill(child, signal.SIGCONT)
        os.kill(pid, signal.SIGCONT)
        self.paused = False

    def sql(self, query, db="postgres", timeout=10):
        done = subprocess.run(["psql", self.url(db), "-Atqc", query], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {query!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def kill_now(self):
        """Cleanup: resumes and stops it at once, never raising."""
        try:
            if self.pid() is not None:
                self.resume()
                self.stop("immediate")
        except Exception as e:  # cleanup goes on
            print(f"warning: stopping {self.name}: {e}")


class Redis:
    """One redis-server; `extra` adds arguments (cluster mode, replicaof, sentinel)."""

    # scripts/cluster's servers outlive the script that started them (their own session).
    detach = False

    def __init__(self, root, name="redis", extra=(), binary="redis-server"):
        self.name, self.extra, self.binary = name, list(extra), binary
        self.dir = root / name
        self.dir.mkdir(exist_ok=True)
        self.log = root / f"{name}.log"
        self.port = free_port()
        self.proc = None

    def argv(self):
        return [self.binary, *self.extra, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--logfile", str(self.log)]

    def start(self):
        """Starts an empty Redis (no persistence: a restart is a restart empty)."""
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=self.detach)
        wait_until(f"Redis on {self.port}", self.ready, 20)

    def ready(self):
        return self.cli("ping") == "PONG"

    def cli(self, *args):
        """A redis-cli command's output ("" when it fails or times out)."""
        try:
            done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.strip()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def kill_now(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


class Proxy:
    """`duet-bench proxy` between one node and Redis."""

    def __init__(self, root, bench, upstream_port, name):
        self.bench, self.upstream, self.name = bench, upstream_port, name
        self.port, self.control = free_port(), free_port()
        self.log = root / f"{name}.log"
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.bench, "proxy", "--listen", f"127.0.0.1:{self.port}", "--upstream", f"127.0.0.1:{self.upstream}",
                 "--control", f"127.0.0.1:{self.control}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(f"{self.name} control API", lambda: self.mode() is not None, 20)

    def mode(self):
        status, body = http("GET", f"http://127.0.0.1:{self.control}/mode")
        return body if status == 200 else None

    def set(self, mode, ms=None):
        path = f"/mode/{mode}" + (f"?ms={ms}" if ms is not None else "")
        status, body = http("POST", f"http://127.0.0.1:{self.control}{path}")
        if status != 200:
            raise RuntimeError(f"{self.name}: POST {path} answered {status} {body}")

    def kill_now(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Node:
    """One `duet serve` process; restarts keep its port and append to its log."""

    detach = False

    def __init__(self, root, index, duet_bin, env, only=None):
        self.index, self.duet_bin = index, duet_bin
        self.port, self.admin_port = free_port(), free_port()
        # Its own admin port too (/metrics), kept across restarts like the public one.
        self.env = {**env, "DUET_HTTP_ADDR": f"127.0.0.1:{self.port}", "DUET_ADMIN_ADDR": f"127.0.0.1:{self.admin_port}"}
        self.log = root / f"node{index}.log"
        self.argv = [str(duet_bin), "serve", *(["--only", only] if only else [])]
        self.proc = None

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout=120):
        with open(self.log, "ab") as log:
            log.write(f"\n===== fault-suite: node {self.index} starting at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=self.detach)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.index} exited with {self.proc.returncode} while starting; its log ends:\n{tail(self.log)}")
            return http("GET", f"{self.http}/healthz", timeout=2)[0] == 200

        wait_until(f"node {self.index} /healthz", up, timeout, interval=0.2)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig, wait=30):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"node {self.index} still runs {wait} s after signal {sig}")

    def readiness(self):
        """Problems that keep this node from counting as healthy: [] when ready with every component healthy."""
        if not self.running():
            return [f"node {self.index}: not running (exit {self.proc.returncode if self.proc else None})"]
        status, body = http("GET", f"http://127.0.0.1:{self.admin_port}/readyz", timeout=3)
        if status == 0:
            return [f"node {self.index}: /readyz unreachable: {body}"]
        if not isinstance(body, dict):
            return [f"node {self.index}: /readyz answered {status} with a non-JSON body {str(body)[:200]!r}"]
        problems = []
        if status != 200:
            problems.append(f"node {self.index}: /readyz answered {status}")
        for dep in ("postgres", "redis"):
            if body.get(dep) is not True:
                problems.append(f"node {self.index}: /readyz {dep}={body.get(dep)}")
        components = body.get("components")
        if not isinstance(components, dict) or not components:
            problems.append(f"node {self.index}: /readyz has no components (body {json.dumps(body)[:200]})")
        else:
            for name, c in sorted(components.items()):
                if c.get("healthy") is not True:
                    problems.append(f"node {self.index}: component {name} unhealthy (restarts {c.get('restarts')}, down {c.get('downForMs')} ms)")
        return problems

    def kill_now(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()


class Cluster:
    def __init__(self, duet_bin, bench, nodes, run_dir):
        self.duet_bin, self.bench, self.run_dir = duet_bin, bench, run_dir
        self.redis = Redis(run_dir)
        self.push = FakeFcm(run_dir, free_port())
        self.proxies = [Proxy(run_dir, bench, self.redis.port, f"proxy{i}") for i in range(nodes)]
        # PostgreSQL's files live under /tmp: the postgres user cannot enter the worktree.
        self.root = Path(tempfile.mkdtemp(prefix="duet-fault-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.primary = Postgres(self.root, "primary")
        self.replica = Postgres(self.root, "replica")
        self.nodes = []
        self.node_count = nodes
        self.extra = []  # other processes to kill on close (a running duet-bench)
        self.closing = False  # set by close(): a fault thread must not start anything after it

    # ----- life cycle -----
    def start(self):
        t = time.monotonic()
        self.primary.init_primary()
        self.primary.start()
        self.replica.init_replica(self.primary)
        self.replica.start()
        self.redis.start()
        for proxy in self.proxies:
            proxy.start()
        self.push.start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DUET_", "DATABASE_", "REDIS_"))},
            "DATABASE_URL": self.primary.url("duet") + "?sslmode=disable",
            "DATABASE_REPLICA_URL": self.replica.url("duet") + "?sslmode=disable",
            "DUET_JWT_SECRET": "fault-suite-secret-" + uuid.uuid4().hex,
            # Every user of the run comes from this one address: the per-IP and
            # per-user abuse limits (docs/security.md) would refuse the set-up.
            "DUET_HANDSHAKE_PER_MIN": "1000000",
            "DUET_REGISTER_PER_IP_PER_HOUR": "1000000",
            "DUET_LOGIN_PER_IP_PER_MIN": "1000000",
            "DUET_LOGIN_FREE_ATTEMPTS": "1000000",
            "DUET_LOOKUP_PER_MIN": "1000000",
            "DUET_SEARCH_PER_MIN": "1000000",
            "DUET_FCM_CREDENTIALS": str(self.push.credentials),
            "DUET_FCM_BASE_URL": self.push.base_url,
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        }
        for i, proxy in enumerate(self.proxies):
            self.nodes.append(Node(self.run_dir, i, self.duet_bin, {**env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}"}))
        # The first node creates the database and migrates it; the others then start together.
        self.nodes[0].start()
        for node in self.nodes[1:]:
            node.start()
        self.wait_ready(60)
        # Each node's Redis traffic must go through its proxy, or the Redis scenarios prove nothing.
        for proxy in self.proxies:
            wait_until(f"{proxy.name} carrying a node's Redis connections", lambda: (proxy.mode() or {}).get("connections", 0) > 0, 20)
        return time.monotonic() - t

    def bench_targets(self):
        """duet-bench's arguments naming the nodes: each node directly."""
        return [a for n in self.nodes for a in ("--url", n.ws)] + [a for n in self.nodes for a in ("--http", n.http)]

    def wait_ready(self, timeout):
        try:
            wait_until("every node ready with every component healthy", lambda: not self.readiness(), timeout, interval=0.25)
        except TimeoutError as e:
            raise RuntimeError(f"{e}: " + "; ".join(self.readiness()))

    def close(self):
        """Stops everything; each step runs even if another failed."""
        self.closing = True
        steps = [proc.kill for proc in self.extra if proc.poll() is None]
        steps += [n.kill_now for n in self.nodes] + [p.kill_now for p in self.proxies]
        steps += [self.redis.kill_now, self.push.stop, self.replica.kill_now, self.primary.kill_now]
        steps += [lambda pg=pg: pg.log.exists() and shutil.copy(pg.log, self.run_dir / pg.log.name) for pg in (self.primary, self.replica)]
        for step in steps:
            try:
                step()
            except Exception as e:
                print(f"warning: cleanup step failed: {e}")
        shutil.rmtree(self.root, ignore_errors=True)

    # ----- state -----
    def readiness(self):
        # Asked of every node at once: a node stuck on a paused dependency answers slowly.
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            return [p for problems in pool.map(Node.readiness, self.nodes) for p in problems]

    def restore(self):
        """Puts back whatever a scenario (or a failed one) left broken, then waits for every node to be ready."""
        if self.primary.paused:
            self.primary.resume()
        if not self.primary.ready() and not self.primary.running():
            self.primary.start()
        if self.replica.paused:
            self.replica.resume()
        if not self.replica.running():
            self.replica.start()
        wait_until("the primary accepts connections", self.primary.ready, 60)
        wait_until("the replica accepts connections", self.replica.ready, 60)
        self.replica.sql("select pg_wal_replay_resume() where pg_get_wal_replay_pause_state() <> 'not paused'")
        if self.redis.running():
            self.redis.signal(signal.SIGCONT)
        else:
            self.redis.start()
        for proxy in self.proxies:
            proxy.set("pass")
        for node in self.nodes:
            if not node.running():
                node.start()
        self.wait_ready(60)

    def message_count(self):
        return int(self.primary.sql("select count(*) from messages", db="duet"))

    def logs(self):
        return {f"node{n.index}": str(n.log) for n in self.nodes} | {
            "primary": str(self.run_dir / self.primary.log.name),
            "replica": str(self.run_dir / self.replica.log.name),
            "redis": str(self.redis.log),
        }

"""The scenarios, as a table: what each fault does, how long it holds, and
the bound the run must keep while it lasts or after it ends.

Every scenario also has the bounds every run has (suite.py `evaluate`): no
acknowledged message lost, duplicated or reordered, nothing unexpected,
projections equal to PostgreSQL within 10 s, every node ready with every
component healthy again, throughput back within `recover_within` s.
"""

import signal
from dataclasses import dataclass, field
from typing import Callable, Optional

# Redis made slow: added to every chunk each way, so a round trip is twice this.
SLOW_REDIS_MS = 250


@dataclass(frozen=True)
class During:
    """While the fault lasts: acks of messages due then reach `ack_ratio` of
    those offered, and every second's p99 ack latency stays below `p99_ms`."""
    ack_ratio: float
    p99_ms: float


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    begin: Callable
    end: Callable
    hold: tuple  # seconds between begin and end: (--quick, --full)
    during: Optional[During] = None
    # From the fault's end: every second after this many has acks >= 90% of
    # offered and p99 < RECOVERED_P99_MS.
    recover_within: float = 5.0
    # From the fault's end: every node answers /readyz 200 with every component
    # healthy. A component counts as healthy again only once it has made
    # progress; that the workers are back within 5 s is what `push_within`
    # checks (the bound).
    ready_within: float = 15.0
    # PostgreSQL scenarios: a push to an offline user, sent as soon as
    # PostgreSQL is back, reaches the fake FCM within this many seconds.
    push_within: Optional[float] = None
    # Extra duet-bench arguments, given the second the fault begins at.
    bench_args: Callable = field(default=lambda at: [])
    # Seconds the fault's own steps may take (a restart), added to the run.
    slack: float = 0.0
    # scripts/cluster's scenarios: what "back" means beyond throughput, a
    # probe polled from the fault's begin (its time is `settledAfterS`)
    # and bounded by `recover_within` too.
    settled: Optional[Callable] = None


# After a PostgreSQL fault a restarted job worker reports healthy at its
# first apalis heartbeat (`DUET_JOBS_HEARTBEAT_SECS`, 10 s) after the pool
# found its dead connections (up to 2.5 s) and the restart backoff (up to
# 3 s): up to about 16 s, measured 16.5 s once on a debug build in the test
# command (release builds: 0.4 to 0.7 s, docs/reliability.md). The push,
# checked within 5 s, shows the workers really are back.
PG_READY_WITHIN = 25.0


def nothing(c):
    pass


def each_proxy(mode, ms=None):
    return lambda c: [p.set(mode, ms) for p in c.proxies]


def last_node(action):
    return lambda c: action(c.nodes[-1])


SCENARIOS = [
    Scenario("redis-kill", "Redis SIGKILLed, restarted empty",
             begin=lambda c: c.redis.kill(), end=lambda c: c.redis.start(), hold=(2, 5),
             during=During(0.9, 1000), slack=2),
    Scenario("redis-pause", "Redis SIGSTOPped 10 s (unresponsive, sockets open)",
             begin=lambda c: c.redis.signal(signal.SIGSTOP), end=lambda c: c.redis.signal(signal.SIGCONT), hold=(10, 10),
             during=During(0.9, 500)),
    Scenario("redis-slow", f"Redis slow: every byte to and from it {SLOW_REDIS_MS} ms late (proxy delay)",
             begin=each_proxy("delay", SLOW_REDIS_MS), end=each_proxy("pass"), hold=(5, 10),
             during=During(0.9, 1000)),
    Scenario("redis-partition", "node 0 cut off from Redis (proxy cut), then healed",
             begin=lambda c: c.proxies[0].set("cut"), end=lambda c: c.proxies[0].set("pass"), hold=(5, 10),
             during=During(0.9, 1000)),
    Scenario("pg-restart", "PostgreSQL restarted (pg_ctl -m fast)",
             begin=lambda c: c.primary.restart("fast"), end=nothing, hold=(0, 0),
             recover_within=10, push_within=5, ready_within=PG_READY_WITHIN, slack=3),
    Scenario("pg-crash", "PostgreSQL crashed (pg_ctl -m immediate), started again",
             begin=lambda c: c.primary.stop("immediate"), end=lambda c: c.primary.start(), hold=(2, 5),
             recover_within=10, push_within=5, ready_within=PG_READY_WITHIN, slack=3),
    Scenario("pg-pause", "PostgreSQL SIGSTOPped (postmaster and every backend)",
             begin=lambda c: c.primary.pause(), end=lambda c: c.primary.resume(), hold=(5, 10),
             recover_within=10, push_within=5, ready_within=PG_READY_WITHIN),
    Scenario("replica-pause", "replica replay paused (pg_wal_replay_pause)",
             begin=lambda c: c.replica.sql("select pg_wal_replay_pause()"),
             end=lambda c: c.replica.sql("select pg_wal_replay_resume()"), hold=(5, 10)),
    Scenario("replica-stop", "replica stopped (pg_ctl -m fast), started again",
             begin=lambda c: c.replica.stop("fast"), end=lambda c: c.replica.start(), hold=(5, 10), slack=2),
    Scenario("node-kill", "the last node SIGKILLed, restarted",
             begin=last_node(lambda n: n.signal(signal.SIGKILL)), end=last_node(lambda n: n.start()), hold=(3, 5),
             recover_within=8, slack=5),
    Scenario("node-term", "the last node SIGTERMed (graceful), restarted",
             begin=last_node(lambda n: n.signal(signal.SIGTERM)), end=last_node(lambda n: n.start()), hold=(3, 5),
             recover_within=8, slack=8),
    Scenario("client-vanish", "a tenth of the clients drop their TCP connection without a close, back after 2 s",
             begin=nothing, end=nothing, hold=(2, 2), bench_args=lambda at: ["--vanish-at", str(int(at))]),
]

BY_NAME = {s.name: s for s in SCENARIOS}


# ----- scripts/fault-suite --cluster: the production-shaped deployment (deployment.py) -----
# The victim is started again after the hold: the times that matter are
# from the fault's begin (`settledAfterS`, and `ackRecoveredAfterS`: from
# the begin until every second's acks keep up with the offered rate).

def kill_busiest_gateway(c):
    c.fault_victim = max((g for g in c.gateways() if g.running()), key=lambda g: c.metric(g, "duet_ws_connections"))
    c.fault_victim.signal(signal.SIGKILL)


def kill_redis_master(c):
    """SIGKILLs a master: Redis Cluster promotes its replica, Sentinel fails over."""
    c.fault_victim = c.redis_masters()[0]
    c.fault_victim.kill()


def stop_replica(c):
    c.fault_victim = c.replicas[0]
    c.fault_victim.stop("fast")


def start_victim(c):
    c.fault_victim.start()


def drain(at):
    """A loaded 11-process debug deployment can trail by many seconds: give the last acks time before the final sync."""
    return ["--drain-timeout", "60"]


CLUSTER_SCENARIOS = [
    Scenario("gateway-kill", "the busiest gateway SIGKILLed (its clients reconnect through HAProxy to the others), started again",
             begin=kill_busiest_gateway, end=start_victim, hold=(5, 8), recover_within=15, slack=5, bench_args=drain,
             settled=lambda c: c.clients_connected()),
    Scenario("redis-master-kill", "a Redis master SIGKILLed (Cluster: its replica promoted; Sentinel: failover), started again",
             begin=kill_redis_master, end=start_victim, hold=(10, 15), recover_within=20, slack=4, bench_args=drain,
             settled=lambda c: c.redis_failed_over()),
    Scenario("replica-stop", "a PostgreSQL replica stopped (pg_ctl -m fast): history reads move on; started again",
             begin=stop_replica, end=start_victim, hold=(8, 12), recover_within=15, slack=8, bench_args=drain,
             settled=lambda c: c.history_reads_ok()),
]

CLUSTER_BY_NAME = {s.name: s for s in CLUSTER_SCENARIOS}

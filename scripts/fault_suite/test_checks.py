"""The suite's verdicts on made-up duet-bench reports: each check can fail.

python3 -m unittest discover -s scripts/fault_suite
"""

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
from scenarios import BY_NAME  # noqa: E402
from suite import evaluate, judge_log  # noqa: E402


def second(t, offered=200, acked=200, p99=40.0):
    return {"t": t, "offered": offered, "acked": acked, "delivered": acked, "errors": 0, "reconnects": 0, "ackP99Ms": p99}


def report(**changes):
    base = {
        "sent": 4000, "acked": 4000, "lost": 0, "unexpected": 0, "duplicates": 0, "order_errors": 0, "unchecked": 0,
        "errors": {}, "reconnects": 0, "resent": 0, "retried": 0,
        "projections": {"checked": 40, "mismatched": 0, "settleMs": 120},
        "timeline": [second(t) for t in range(20)],
    }
    base.update(changes)
    return base


class Verdicts(unittest.TestCase):
    def judge(self, scenario, bench, exit=0, events=None, final=()):
        events = events or {"begin": 3.0, "end": 13.0, "back": 13.0, "readyAfter": 0.5}
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.json"
            path.write_text(json.dumps(bench) + "\n")
            result = {"failures": [], "events": events, "exit": exit}
            evaluate(result, BY_NAME[scenario], None, path, Path(d) / "bench.log", list(final))
        return result

    def test_a_clean_run_passes(self):
        result = self.judge("redis-pause", report())
        self.assertEqual(result["failures"], [])
        self.assertEqual(result["numbers"]["faultAckRatio"], 1.0)
        self.assertEqual(result["numbers"]["recoveredAfterS"], 0.0)

    def test_any_lost_duplicate_or_reordered_message_fails(self):
        for key in ("lost", "unexpected", "duplicates", "order_errors", "unchecked"):
            failures = self.judge("redis-kill", report(**{key: 1}), exit=1)["failures"]
            self.assertTrue(any(f.startswith(f"{key} = 1") for f in failures), failures)

    def test_projections_must_match_and_be_present(self):
        failures = self.judge("redis-kill", report(projections={"checked": 40, "mismatched": 2, "settleMs": 10000}), exit=1)["failures"]
        self.assertIn("projections: 2 of 40 members differ from PostgreSQL", failures)
        failures = self.judge("redis-kill", report(projections=None))["failures"]
        self.assertIn("no projections in the JSON: --verify-db was not honoured", failures)

    def test_a_stalled_pause_fails_its_during_bound(self):
        timeline = [second(t) for t in range(20)]
        timeline[5] = second(5, acked=200, p99=9500.0)
        failures = self.judge("redis-pause", report(timeline=timeline))["failures"]
        self.assertTrue(any("second t=5 had p99 ack 9500.0 ms (bound 500 ms) (before the fault, the worst second's p99 was already 40 ms)" in f
                            for f in failures), failures)

    def test_too_few_acks_during_the_fault_fail(self):
        timeline = [second(t, acked=100 if 3 <= t < 13 else 200) for t in range(20)]
        failures = self.judge("redis-pause", report(timeline=timeline))["failures"]
        self.assertTrue(any("1000 of 2000 offered messages were acked (50%, bound 90%)" in f for f in failures), failures)

    def test_slow_recovery_fails_and_is_measured(self):
        # PostgreSQL back at t=5; latency stays high until t=17.
        timeline = [second(t, p99=3000.0 if 5 <= t < 17 else 40.0) for t in range(25)]
        result = self.judge("pg-pause", report(timeline=timeline), events={"begin": 3.0, "end": 5.0, "back": 5.0, "readyAfter": 1.0, "pushAfter": 1.0})
        self.assertEqual(result["numbers"]["recoveredAfterS"], 12.0)
        self.assertTrue(any(f.startswith("throughput back only 12.0 s after the fault (bound 10 s") for f in result["failures"]), result["failures"])

    def test_the_recovery_bound_follows_a_slow_machine(self):
        timeline = [second(t, p99=1500.0) for t in range(20)]
        result = self.judge("pg-pause", report(timeline=timeline), events={"begin": 3.0, "end": 5.0, "back": 5.0, "readyAfter": 1.0, "pushAfter": 1.0})
        self.assertEqual(result["failures"], [])
        self.assertEqual(result["numbers"]["recoveredP99BoundMs"], 3000.0)

    def test_workers_and_push_must_come_back_in_time(self):
        events = {"begin": 3.0, "end": 8.0, "back": 8.0, "readyAfter": 26.0, "pushAfter": 7.5, "probeSentAfter": 0.2}
        failures = self.judge("pg-pause", report(), events=events)["failures"]
        self.assertTrue(any("ready with every component healthy only 26.0 s after the fault (bound 25.0 s)" in f for f in failures), failures)
        self.assertTrue(any("the push reached FCM 7.5 s after PostgreSQL was back (bound 5 s" in f for f in failures), failures)
        events = {"begin": 3.0, "end": 8.0, "back": 8.0, "readyProblems": ["node 1: component push-worker unhealthy"], "pushProblem": "no push"}
        failures = self.judge("pg-pause", report(), events=events)["failures"]
        self.assertIn("nodes not all ready within 60 s of the fault's end: node 1: component push-worker unhealthy", failures)
        self.assertIn("push after PostgreSQL's return: no push", failures)

    def test_an_unclean_exit_or_missing_timeline_fails(self):
        failures = self.judge("node-kill", report(timeline=[]), exit=1)["failures"]
        self.assertIn("duet-bench exit status 1 (its verdict is not clean)", failures)
        self.assertIn("no timeline in the JSON: the throughput bounds cannot be judged", failures)

    def test_a_log_flood_fails_and_names_the_loudest_line(self):
        class Node:
            index = 1
        with tempfile.TemporaryDirectory() as d:
            Node.log = Path(d) / "node1.log"
            before = "\x1b[33m WARN\x1b[0m old: from an earlier run\n" * 500
            flood = "2026-12-06T23:49:34Z \x1b[33m WARN\x1b[0m duet_common::ratelimit: rate limiter unavailable; allowing\n" * 201
            Node.log.write_text(before + flood)
            result = {"failures": []}
            judge_log(result, Node, len(before))
            self.assertEqual(result["numbers"]["node1LogLines"], 201)
            self.assertTrue(result["failures"][0].startswith(
                "node 1 logged 201 warnings and errors during the run (bound 200); "
                "the most frequent: 201 x 'WARN duet_common::ratelimit: rate limiter unavailable; allowing'"), result["failures"])
            result = {"failures": []}
            judge_log(result, Node, len(before) + len(flood) // 2)
            self.assertEqual(result["failures"], [])


if __name__ == "__main__":
    unittest.main()

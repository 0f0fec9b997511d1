#!/usr/bin/env bash
# The machine's CPU time from /proc/stat, in clock ticks: "busy idle stolen".
# Stolen is time the hypervisor ran something else while this machine had
# work; on a shared VM it swings from 0 to 40% within an hour, and latency
# with it, so every benchmark prints it. Sourced by scripts/observe and
# scripts/bench-chat.
cpu_times() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6, $9 }' /proc/stat
}

# The share of time stolen between two cpu_times samples, in percent.
stolen_percent() { # before after
  local b0 i0 s0 b1 i1 s1
  read -r b0 i0 s0 <<<"$1"; read -r b1 i1 s1 <<<"$2"
  awk -v b="$((b1 - b0))" -v i="$((i1 - i0))" -v s="$((s1 - s0))" \
    'BEGIN { t = b + i + s; printf "%.1f", (t > 0 ? 100 * s / t : 0) }'
}

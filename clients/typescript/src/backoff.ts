/**
 * Reconnect delays: capped exponential backoff with full jitter (the AWS
 * "full jitter" scheme, as centrifuge-js does): attempt n waits a uniform
 * random time in [0, min(max, min · 2ⁿ)], so a fleet of clients that lost the
 * same node does not come back in lock-step.
 * @module
 */

/** Backoff bounds. */
export interface BackoffOptions {
  /** The first attempt's cap, ms (default 500). */
  minDelayMs?: number;
  /** The cap of every attempt, ms (default 20 000). */
  maxDelayMs?: number;
}

/** The delay before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const min = options.minDelayMs ?? 500;
  const max = options.maxDelayMs ?? 20_000;
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

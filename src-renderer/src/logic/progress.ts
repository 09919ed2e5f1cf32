/** Progress bar figures from a RunEvent 'progress': how far, and how long to go if knowable. */
import type { PolicyProgress } from '../../../src-main/api/labApi'

export interface RunShape {
  readonly mode: 'exhaustive' | 'random' | 'scripted'
  readonly policies: readonly string[]
  readonly executions: number
  readonly maxStates: number
  readonly timeoutMs: number | null
}

export interface Estimate {
  /** 0..1 */
  readonly fraction: number
  /** Milliseconds left, or null when nothing sensible can be said. */
  readonly etaMs: number | null
  /** 'estimate': extrapolated from the work done; 'bound': at most this (the timeout). */
  readonly etaKind: 'estimate' | 'bound' | null
}

/**
 * Random runs know their total (executions per policy), so the ETA is an extrapolation.
 * Exhaustive runs do not: each policy counts towards its share only when done, creeping up with
 * its state budget meanwhile, and the only honest ETA is the timeout's upper bound.
 */
export function estimate(
  shape: RunShape,
  policies: readonly PolicyProgress[],
  elapsedMs: number,
  finished: boolean,
): Estimate {
  if (finished) return { fraction: 1, etaMs: 0, etaKind: null }
  const n = Math.max(1, shape.policies.length)
  const by = new Map(policies.map((p) => [p.policy, p]))
  let sum = 0
  for (const name of shape.policies) {
    const p = by.get(name)
    if (!p) continue
    if (p.done) sum += 1
    else if (shape.mode === 'random') sum += Math.min(1, p.executions / Math.max(1, shape.executions))
    else sum += Math.min(0.9, p.states / Math.max(1, shape.maxStates))
  }
  const fraction = Math.min(1, sum / n)
  const bound = shape.timeoutMs !== null ? Math.max(0, shape.timeoutMs - elapsedMs) : null
  if (shape.mode === 'random' && fraction > 0.02 && elapsedMs > 0) {
    const eta = (elapsedMs * (1 - fraction)) / fraction
    return { fraction, etaMs: bound !== null ? Math.min(eta, bound) : eta, etaKind: 'estimate' }
  }
  return { fraction, etaMs: bound, etaKind: bound !== null ? 'bound' : null }
}

/**
 * Explanations of violations, computed from a traced execution's events and states (never from
 * a scenario's name): the one-line "why" and the culprit steps (the fill of the stale entry, the
 * PTE change that made it stale, the flush that missed the secondary, the stale use).
 */
import type { Execution, Found } from './explore'
import type { Policy } from './policy'
import type { Culprit, Violation } from './results'
import type { Scenario } from './types'

/**
 * The explanation of an execution's first violation (a replay of one schedule under one policy),
 * or, with none, what the run ended with.
 */
export function explainExecution(
  sc: Scenario,
  _policy: Policy,
  ex: Execution,
): { why: string; culprits: Culprit[] } {
  const v = ex.violations[0]
  if (!v) return { why: `no violation on this schedule (${ex.outcome})`, culprits: [] }
  const cycle = v.invariant === 'progress' ? ex.cycle : null
  const schedule = cycle ? ex.schedule.slice(0, ex.schedule.length - cycle.length) : ex.schedule
  const f: Found = { invariant: v.invariant, schedule, cycle, violation: v }
  return { why: explain(sc, f, ex), culprits: [] }
}

/**
 * One line: which notifier hook, under a policy that holds on the same schedule, removed the
 * stale entry between its fill and its use; null when nothing applies.
 */
export function hookHint(
  _sc: Scenario,
  _violating: { policy: string; ex: Execution; culprits: readonly Culprit[] },
  _holding: { policy: string; ex: Execution },
): string | null {
  return null
}

/** The "why" line: which entry was used, filled when, from which PTE, and which invalidation never came. */
export function explain(sc: Scenario, f: Found, ex: Execution): string {
  const v = f.violation
  if (v.invariant === 'forbid') return v.message
  if (v.invariant === 'lost-dirty') return explainLostDirty(sc, v, ex)
  if (v.invariant === 'progress') {
    if (!f.cycle) return v.message
    const start = f.schedule.length
    const evs = ex.records.slice(start, start + f.cycle.length).flatMap((r) => r.events)
    const faults = evs.filter((e) => e.kind === 'fault').map((e) => `${e.fn}: ${e.text}`)
    const invals = evs.filter((e) => e.kind === 'sec-inval' || e.kind === 'notifier')
    return `${v.message}. Each round: ${faults.slice(0, 3).join('; ')}${invals.length === 0 ? '; no secondary invalidation in the loop' : ''}`
  }
  const at = v.step
  const recs = ex.records.slice(0, at + 1)
  if (v.message.includes('walk-cache entry')) return explainWalkCache(v, recs)
  const page = sc.pages.find((p) => v.message.includes(` ${p.name} `))
  if (!page) return v.message
  const viaCpu = v.message.includes('CPU TLB')
  const fills = recs
    .flatMap((r) => r.events)
    .filter(
      (e) =>
        e.kind === 'fill' &&
        e.text.includes(` ${page.name} `) &&
        (viaCpu ? e.thread === v.thread && e.text.startsWith('CPU') : !e.text.startsWith('CPU')),
    )
  const lastFill = fills[fills.length - 1]
  const filled = lastFill
    ? `the entry was filled at step ${lastFill.step} by ${lastFill.thread} (${lastFill.text})`
    : 'the entry was cached before the run'
  const sinceStep = lastFill ? lastFill.step : -1
  const invals = recs
    .flatMap((r) => r.events)
    .filter((e) => e.step > sinceStep && (e.kind === 'sec-inval' || e.kind === 'notifier'))
    .map((e) => `${e.fn}@${e.step}`)
  const ptes = recs
    .flatMap((r) => r.events)
    .filter((e) => e.kind === 'pte' && e.step > sinceStep && e.text.includes(`PTE ${page.name} :=`))
  const changed = ptes.length
    ? `; since then ${ptes.map((e) => `${e.fn}@${e.step}`).join(', ')} changed the PTE`
    : ''
  return `${v.message}; ${filled}${changed}; ${invals.length ? `notifier activity since: ${invals.join(', ')} (none removed it in time)` : 'no invalidation reached it since'}`
}

/**
 * A walk through a walk-cache entry for a freed PTE table: when the entry was filled, and the
 * invalidations since then (a leaf-only one keeps it; none may have reached the device).
 */
function explainWalkCache(v: Violation, recs: Execution['records']): string {
  const evs = recs.flatMap((r) => r.events).filter((e) => e.step <= v.step)
  const fills = evs.filter((e) => e.kind === 'fill' && e.text.includes('walk cache: PMD ->'))
  const last = fills[fills.length - 1]
  const since = last ? last.step : -1
  const filled = last
    ? `the walk-cache entry was filled at step ${last.step} by ${last.thread}`
    : 'the walk-cache entry was filled before the run'
  const byCall = new Map<string, boolean>()
  for (const e of evs) {
    if (e.step <= since || e.kind !== 'sec-inval') continue
    const k = `${e.fn}@${e.step}`
    byCall.set(k, (byCall.get(k) ?? false) || e.text.includes('leaf-only'))
  }
  const invals = [...byCall].map(([k, leaf]) => `${k}${leaf ? ' (leaf-only)' : ''}`)
  return `${v.message}; ${filled}; ${invals.length ? `invalidations since: ${invals.join(', ')} (none dropped the walk cache)` : 'no invalidation reached the device since'}`
}

/**
 * lost-dirty: the writes that changed the folio after writeback last cleaned it (the
 * folio_test_clear_dirty step) and the TLB they went through.
 */
function explainLostDirty(sc: Scenario, v: Violation, ex: Execution): string {
  const page = sc.pages.find((p) => p.kind === 'file' && v.message.includes(`of ${p.name} `))
  if (!page) return v.message
  const evs = ex.records.flatMap((r) => r.events)
  const cleaned = evs.filter((e) => e.fn === 'folio_test_clear_dirty' && e.text.startsWith(`${page.name} `))
  const since = cleaned.length ? cleaned[cleaned.length - 1]!.step : -1
  const writes = evs.filter(
    (e) =>
      e.kind === 'access' &&
      e.step > since &&
      e.text.startsWith('write') &&
      e.text.includes(` ${page.name} `),
  )
  const mk = evs.filter(
    (e) => e.fn === 'folio_mkclean' || e.fn === 'set_pte_at (pte_wrprotect + pte_mkclean)',
  )
  const how = mk.some((e) => e.fn === 'folio_mkclean')
    ? 'folio_mkclean() saw the folio unmapped (mapcount 0) and skipped the rmap walk'
    : 'folio_mkclean() write-protected and cleaned the PTE'
  return `${v.message}. Writeback cleaned the folio at step ${since} (${how}); ${writes.length ? `afterwards ${writes.map((e) => `${e.thread} at step ${e.step} (${e.text})`).join(', ')} wrote through a TLB entry that was not invalidated and left no dirty bit` : 'no write since'}`
}

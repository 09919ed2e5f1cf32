/** Plain-text rendering of a synthesis (`mnlab synthesize`; notebook exports use it too). */
import type { SynthCell, SynthesisResult, SynthPlacement } from '../engine'
import { count } from './formatCompare'
import { table } from './format'

const n = (x: number): string => x.toLocaleString('en-US')

/** One character per cell: H holds, V violated (lower case: inferred by monotonicity), ? unknown. */
export function cellChar(c: SynthCell): string {
  if (c.how === 'unknown' || c.verdict === 'unknown') return '?'
  const ch = c.verdict === 'holds' ? 'H' : 'V'
  return c.how === 'explored' ? ch : ch.toLowerCase()
}

/** The placements x scenarios matrix: name, held, cost, then one column per scenario. */
export function placementRows(
  r: SynthesisResult,
  ps: readonly SynthPlacement[],
  objective = r.settings.objective,
): string[][] {
  const head = ['placement', 'held', objective, ...r.scenarios.map((_, i) => String(i + 1))]
  return [
    head,
    ...ps.map((p) => [
      p.name,
      `${p.held}/${r.scenarios.length}`,
      n(p.cost),
      ...p.cells.map((c, i) => cellChar(c).padEnd(String(i + 1).length)),
    ]),
  ]
}

function short(id: string): string {
  return id.split(/[\\/]/).pop() ?? id
}

/** Minimal placements printed with their certificates; the others by name (--json has all). */
export const DETAILED_MINIMAL = 5

export function formatSynthesis(r: SynthesisResult, opts: { workers?: number } = {}): string {
  const out: string[] = []
  const o = r.settings.objective
  const sc = r.scenarios
  const idOf = (id: string): string => {
    const i = sc.findIndex((s) => s.id === id)
    return `[${i + 1}] ${short(id)}`
  }
  out.push(
    `synthesize: ${count(sc.length, 'scenario')}, ${count(r.settings.candidates.length, 'candidate site')}, objective ${o}`,
  )
  out.push('')
  out.push('scenarios (the sites their runs reached; all candidates together: holds or violated):')
  out.push(
    table(
      sc.map((s, i) => [
        `  [${i + 1}]`,
        short(s.id),
        s.full,
        s.reached.length ? s.reached.join(' ') : '(none)',
        s.monotone ? '' : '(forbid: explored without pruning)',
      ]),
    ),
  )
  for (const e of r.excluded) out.push(`  not in scope: ${idOf(e.scenario)}: ${e.why}`)

  out.push('')
  if (r.minimal.length === 0)
    out.push(
      r.scope.length === 0
        ? 'minimal correct placements: none (no scenario in scope)'
        : 'minimal correct placements: none (no placement of the candidates holds on every scenario in scope)',
    )
  else {
    out.push(
      `minimal correct placements (every scenario in scope holds, no site can go), cheapest first: ${r.minimal.length}`,
    )
    r.minimal.slice(0, DETAILED_MINIMAL).forEach((m, k) => {
      out.push(`  ${k + 1}. ${m.placement.name}   ${o} ${n(m.placement.cost)}`)
      for (const need of m.needed) {
        const cx = need.counterexample
        out.push(
          `     needs ${need.site}: without it ${idOf(need.scenario)} is violated (${cx.invariant})${cx.replay ? '' : `, schedule ${cx.schedule.join(' ')}`}`,
        )
        if (cx.replay) out.push(`       ${cx.replay}`)
      }
      const by = (ev: string): string[] => m.leftOut.filter((l) => l.evidence === ev).map((l) => l.site)
      const notNeeded = by('not-needed')
      if (notNeeded.length)
        out.push(`     not needed (it holds on every scenario in scope without them): ${notNeeded.join(' ')}`)
      const never = by('never-reached')
      if (never.length) out.push(`     never reached (no run asked about them): ${never.join(' ')}`)
      const notCandidate = by('not-candidate')
      if (notCandidate.length) out.push(`     not candidates (--sites): ${notCandidate.join(' ')}`)
    })
    const rest = r.minimal.slice(DETAILED_MINIMAL)
    if (rest.length)
      out.push(
        `  and ${rest.length} more (--json gives each with its certificate): ${rest.map((m) => `${m.placement.name} (${n(m.placement.cost)})`).join(', ')}`,
      )
  }

  out.push('')
  out.push(
    'placements x scenarios (H holds, V violated: explored; h, v: inferred by monotonicity; ? unknown):',
  )
  out.push(
    table(
      placementRows(r, [...r.placements, ...r.minimal.slice(0, DETAILED_MINIMAL).map((m) => m.placement)]),
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  )

  out.push('')
  out.push(`Pareto front (scenarios held against ${o}; no placement holds on more for less):`)
  out.push(
    table(
      r.front.map((f) => [
        `  ${f.held}/${sc.length}`,
        n(f.cost),
        f.placements.map((p) => p.name).join(', ') + (f.more > 0 ? ` (and ${f.more} more)` : ''),
      ]),
    ),
  )

  const s = r.search
  out.push('')
  out.push(
    `search: ${count(sc.length, 'scenario')} x ${n(2 ** r.settings.candidates.length)} placements = ${n(s.pairs)} pairs; ${n(s.reachedPairs)} within each scenario's reached sites; ` +
      `${n(s.explored)} explored (${n(s.states)} states), ${n(s.pruned)} pruned by monotonicity (${n(s.prunedHolds)} holds, ${n(s.prunedViolated)} violated), ` +
      `${count(s.costRuns, 'reference run')} for costs; ${(s.elapsedMs / 1000).toFixed(1)} s${opts.workers ? ` on ${count(opts.workers, 'worker')}` : ''}`,
  )
  for (const note of r.notes) out.push(`note: ${note}`)
  if (!r.complete) out.push('incomplete: the minimal placements are not proven (exit 4)')
  return out.join('\n')
}

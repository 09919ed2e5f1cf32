/** Plain-text rendering of results and traces for the CLI. */
import {
  expectStatus,
  howFar,
  notProvenReason,
  type Execution,
  type PolicyResult,
  type RunResult,
  type Scenario,
  type StepRecord,
} from '../engine'

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length)
}

export function table(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => pad(c, widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

function mark(r: PolicyResult): string {
  const st = expectStatus(r)
  return st === null ? '' : st === 'ok' ? 'ok' : st === 'not-proven' ? 'not proven' : 'MISMATCH'
}

export function formatRun(file: string, run: RunResult): string {
  const out: string[] = []
  out.push(`${file}: ${run.title}`)
  if (run.source) out.push(`  source: ${run.source}`)
  out.push(
    `  arch ${run.arch}, mode ${run.mode}${run.seed !== null ? `, seed ${run.seed}` : ''}, engine ${run.engineVersion}`,
  )
  const rows: string[][] = [
    [
      'policy',
      'verdict',
      'expect',
      '',
      'violated',
      'states',
      'execs',
      'notifier',
      'sec_inval',
      'page/range/full/atc',
      'dev_faults',
      'zaps',
      'cpu_flush',
      'sim_ns',
    ],
  ]
  for (const r of run.results) {
    const viol = Object.entries(r.invariants)
      .filter(([, v]) => v === 'violated')
      .map(([k]) => k)
      .join(',')
    const m = r.metrics
    rows.push([
      r.policy,
      r.verdict,
      r.expected ?? '-',
      mark(r),
      viol || '-',
      String(r.stats.states),
      String(r.stats.executions),
      String(m.notifier_calls),
      String(m.secondary_invalidations),
      `${r.invalidations.page}/${r.invalidations.range}/${r.invalidations.full}/${r.invalidations.atc}`,
      String(m.device_faults),
      String(m.mirror_zaps),
      String(m.cpu_tlb_flushes),
      String(m.sim_ns),
    ])
  }
  out.push(
    table(rows)
      .split('\n')
      .map((l) => '  ' + l)
      .join('\n'),
  )
  for (const r of run.results) {
    if (expectStatus(r) === 'not-proven')
      out.push(`  ${r.policy}: not proven (${notProvenReason(r)}); only an exhaustive run proves holds`)
    else if (r.stats.cutReason && (r.verdict !== 'violated' || r.stats.maxDepth !== undefined))
      out.push(
        `  ${r.policy}: ${r.verdict}: ${r.stats.cutReason}${r.stats.maxDepth !== undefined ? ` (${howFar(r.stats)})` : ''}`,
      )
    for (const c of r.counterexamples) {
      out.push(`  ${r.policy}: ${c.invariant}: ${c.why}`)
      out.push(
        `    schedule: ${c.schedule.join(' ')}${c.cycle ? `  then forever: ${c.cycle.join(' ')}` : ''}`,
      )
    }
  }
  if (run.results.length)
    out.push(
      `  metrics measured on: ${run.results[0]!.metricsSchedule}; cost table ${run.results[0]!.costTable}`,
    )
  return out.join('\n')
}

export function formatTrace(sc: Scenario, records: readonly StepRecord[]): string {
  const out: string[] = []
  for (const r of records) {
    out.push(`[${r.step}] ${r.thread}`)
    for (const e of r.events) {
      const locks = e.locks.length ? `  {${e.locks.join(', ')}}` : ''
      out.push(`    ${e.kind === 'violation' ? '!! ' : ''}${e.fn}: ${e.text}${locks}`)
    }
    for (const c of r.changes) out.push(`      ~ ${c}`)
  }
  void sc
  return out.join('\n')
}

export function formatExecution(sc: Scenario, ex: Execution): string {
  const lines = [formatTrace(sc, ex.records), `outcome: ${ex.outcome}`]
  for (const v of ex.violations) lines.push(`violation: ${v.invariant} at step ${v.step}: ${v.message}`)
  const regs = sc.registers.map((r, i) => `${r} = ${ex.final.regs[i] ?? 'none'}`)
  if (regs.length) lines.push(`registers: ${regs.join(', ')}`)
  return lines.join('\n')
}

/** Plain-text rendering of results and traces for the CLI. */
import {
  expectStatus,
  howFar,
  notProvenReason,
  type Counterexample,
  type Culprit,
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

/** A hook hint: which hook, under a policy that holds, invalidated the entry used stale. */
export interface HookHint {
  readonly policy: string
  readonly text: string
}

/**
 * One `hint (policy): ...` line per holding policy (wrapped): which hook, under it, invalidated
 * the entry the violating replay used stale.
 */
export function hintLines(hints: readonly HookHint[], indent: string): string[] {
  return hints.flatMap((h) => wrap(`${indent}hint (${h.policy}): ${h.text}`, WHY_WIDTH, `${indent}      `))
}

/**
 * A run's table, notes and counterexamples; `hintsFor` adds, under each counterexample, the
 * hook hints of the policies that hold on its schedule.
 */
export function formatRun(
  file: string,
  run: RunResult,
  hintsFor?: (r: PolicyResult, c: Counterexample) => readonly HookHint[],
): string {
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
      out.push(...wrap(`  ${r.policy}: ${c.invariant}: ${c.why}`, WHY_WIDTH, '      '))
      out.push(
        `    schedule: ${c.schedule.join(' ')}${c.cycle ? `  then forever: ${c.cycle.join(' ')}` : ''}`,
      )
      out.push(...culpritLines(c.culprits, '    '))
      if (hintsFor) out.push(...hintLines(hintsFor(r, c), '    '))
    }
  }
  if (run.results.length)
    out.push(
      `  metrics measured on: ${run.results[0]!.metricsSchedule}; cost table ${run.results[0]!.costTable}`,
    )
  return out.join('\n')
}

/** Columns a counterexample's why line is wrapped at (its words are never split). */
const WHY_WIDTH = 110

/** Greedy word wrap: the first line as is, the next ones after `indent`. */
export function wrap(text: string, width: number, indent: string): string[] {
  const lead = /^ */.exec(text)![0]
  const out: string[] = []
  let line = lead
  for (const w of text.slice(lead.length).split(' ')) {
    if (line.trim() !== '' && line.length + 1 + w.length > width) {
      out.push(line)
      line = indent + w
    } else line = line.trim() === '' ? line + w : `${line} ${w}`
  }
  out.push(line)
  return out
}

/** A violation's explanation, as explainExecution returns it. */
export interface Explained {
  readonly why: string
  readonly culprits: readonly Culprit[]
}

/**
 * `culprits:` and one line per culprit step (`fill@7 D1: IOMMU page walk: ...`, wrapped), in step
 * order; nothing when there are none.
 */
export function culpritLines(culprits: readonly Culprit[], indent: string): string[] {
  if (culprits.length === 0) return []
  return [
    `${indent}culprits:`,
    ...culprits.flatMap((c) =>
      wrap(`${indent}  ${c.role}@${c.step} ${c.thread}: ${c.text}`, WHY_WIDTH, `${indent}      `),
    ),
  ]
}

/**
 * Each step of a trace; a culprit step's header names its roles (`[8] C0  << pte-change,
 * missed-flush`), and a cached translation is flagged at the step it becomes stale.
 */
export function formatTrace(
  sc: Scenario,
  records: readonly StepRecord[],
  culprits: readonly Culprit[] = [],
): string {
  const out: string[] = []
  let stale = new Set<string>()
  for (const r of records) {
    const roles = [...new Set(culprits.filter((c) => c.step === r.step).map((c) => c.role))]
    out.push(`[${r.step}] ${r.thread}${roles.length ? `  << ${roles.join(', ')}` : ''}`)
    for (const e of r.events) {
      const locks = e.locks.length ? `  {${e.locks.join(', ')}}` : ''
      out.push(`    ${e.kind === 'violation' ? '!! ' : ''}${e.fn}: ${e.text}${locks}`)
    }
    for (const c of r.changes) out.push(`      ~ ${c}`)
    // A cached translation that starts disagreeing with its PTE here (StepRecord.staleWhy).
    for (const w of r.staleWhy ?? []) if (!stale.has(w)) out.push(`      ! stale: ${w}`)
    stale = new Set(r.staleWhy ?? [])
  }
  void sc
  return out.join('\n')
}

/**
 * A replayed execution: its trace, outcome, violations and registers; with `explained` (from
 * explainExecution), the culprit steps are marked in the trace and the why and culprits follow
 * (`explanation: false`: only the marks, for output that prints the why elsewhere).
 */
export function formatExecution(
  sc: Scenario,
  ex: Execution,
  explained?: Explained,
  opts: { readonly explanation?: boolean } = {},
): string {
  const lines = [formatTrace(sc, ex.records, explained?.culprits ?? []), `outcome: ${ex.outcome}`]
  for (const v of ex.violations) lines.push(`violation: ${v.invariant} at step ${v.step}: ${v.message}`)
  const regs = sc.registers.map((r, i) => `${r} = ${ex.final.regs[i] ?? 'none'}`)
  if (regs.length) lines.push(`registers: ${regs.join(', ')}`)
  if (explained && ex.violations.length && opts.explanation !== false) {
    lines.push(`why: ${explained.why}`)
    lines.push(...culpritLines(explained.culprits, ''))
  }
  return lines.join('\n')
}

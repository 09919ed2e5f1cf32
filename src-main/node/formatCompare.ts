/**
 * Text for `mnlab replay --policy a,b` (one schedule under several policies) and
 * `mnlab distinguish` (issue 12). Traces are printed by format.ts; this adds the skipped
 * entries, each policy's outcome and why, the hook hint, and the first difference.
 */
import type { CompareResult, DistinguishResult, PolicyReplay } from '../api/labApi'
import { diffTraces } from '../api/traceDiff'
import type { Execution, Scenario, StepRecord } from '../engine'
import { culpritLines, formatExecution, hintLines, wrap } from './format'
import { count } from '../engine/plural'

export { count }

/** `violated forbid` / `violated forbid, progress` / `holds on this schedule` / `cut`. */
export function outcomeLine(r: PolicyReplay): string {
  const invs = [...new Set(r.violations.map((v) => v.invariant))]
  if (invs.length) return `violated ${invs.join(', ')}`
  if (r.outcome === 'cut') return 'cut before the end (no violation so far)'
  return 'holds on this schedule'
}

/** Skipped entries, consecutive ones of one thread for one reason on one line. */
function skippedLines(r: PolicyReplay): string[] {
  const out: string[] = []
  for (let i = 0; i < r.skipped.length;) {
    const k = r.skipped[i]!
    let j = i + 1
    while (
      j < r.skipped.length &&
      r.skipped[j]!.index === r.skipped[j - 1]!.index + 1 &&
      r.skipped[j]!.thread === k.thread &&
      r.skipped[j]!.reason === k.reason
    )
      j++
    const which = j - i === 1 ? `entry ${k.index}` : `entries ${k.index}-${r.skipped[j - 1]!.index}`
    out.push(`  skipped ${which} (${k.thread}): ${k.reason}`)
    i = j
  }
  return out
}

/** Columns the why lines are wrapped at (as format.ts wraps a counterexample's). */
const WHY_WIDTH = 110

function whyLines(r: PolicyReplay): string[] {
  return wrap(`  why: ${r.why}`, WHY_WIDTH, '       ')
}

/** Quotes a schedule for a shell: `"C0 D0 C1"`. */
export function scheduleArg(names: readonly string[]): string {
  return `"${names.join(' ')}"`
}

/** One schedule under several policies: each trace, skips, outcome and why, then a summary and the hint. */
export function formatCompare(
  sc: Scenario,
  file: string,
  res: CompareResult,
  executions: readonly Execution[],
  opts: { traces: boolean } = { traces: true },
): string {
  const out: string[] = [
    `${file}: ${sc.title}`,
    `schedule of ${count(res.schedule.length, 'entry', 'entries')} under ${count(res.replays.length, 'policy', 'policies')} (an entry whose thread is blocked or finished at its turn is skipped), then the reference schedule`,
  ]
  res.replays.forEach((r, i) => {
    if (opts.traces) {
      out.push('', `== ${r.policy}: ${outcomeLine(r)} ==`)
      out.push(formatExecution(sc, executions[i]!, r, { explanation: false }))
    }
  })
  out.push('', 'on this schedule:')
  const width = Math.max(...res.replays.map((r) => r.policy.length))
  for (const r of res.replays) {
    out.push(
      `${r.policy.padEnd(width)}  ${outcomeLine(r)}; ran ${count(r.ran.length, 'step')}, skipped ${r.skipped.length}`,
    )
    out.push(...skippedLines(r))
    out.push(...whyLines(r))
    out.push(...culpritLines(r.culprits, '  '))
  }
  out.push(...hintLines(res.hints, ''))
  return out.join('\n')
}

function eventsText(rec: StepRecord | undefined): string {
  if (!rec) return '(no step: this policy skipped the entry)'
  const evs = rec.events.map((e) => `${e.fn}: ${e.text}`)
  return `step ${rec.step} ${rec.thread}: ${evs.length ? evs.join('; ') : '(no events)'}`
}

/** The first aligned row where two replays differ, both sides' events and what differs. */
export function firstDifferenceLines(a: PolicyReplay, b: PolicyReplay, row: number | null): string[] {
  if (row === null) return ['their traces do not differ step by step (only the final check does)']
  const d = diffTraces(a, b).rows[row]
  if (!d) return [`first difference at aligned row ${row}`]
  const ra = d.a === null ? undefined : a.records[d.a]
  const rb = d.b === null ? undefined : b.records[d.b]
  const entry = d.a !== null ? a.positions[d.a] : d.b !== null ? b.positions[d.b] : null
  const where = entry === null || entry === undefined ? 'after the schedule' : `schedule entry ${entry}`
  return [
    `first difference: aligned row ${row} (${where}; differs in ${d.kinds.join(', ')})`,
    `  ${a.policy}: ${eventsText(ra)}`,
    `  ${b.policy}: ${eventsText(rb)}`,
  ]
}

/** `mnlab distinguish`: the schedule, each policy's outcome on it, and the first difference. */
export function formatDistinguish(
  sc: Scenario,
  file: string,
  res: DistinguishResult,
  executions: readonly Execution[],
  opts: { traces: boolean },
): string {
  const [pa, pb] = res.policies
  const out = [`${file}: ${sc.title}`, `distinguish ${pa} vs ${pb}: ${res.note}`]
  if (!res.schedule) return out.join('\n')
  out.push(
    `schedule (${count(res.schedule.length, 'entry', 'entries')}, then the reference schedule): ${res.schedule.join(' ')}`,
    `  replay it: mnlab replay ${file} --policy ${pa},${pb} --schedule ${scheduleArg(res.schedule)}`,
  )
  for (const r of res.replays) {
    out.push(`${r.policy}: ${outcomeLine(r)}`)
    out.push(...skippedLines(r))
    out.push(...whyLines(r))
  }
  const [a, b] = res.replays
  if (a && b) out.push(...firstDifferenceLines(a, b, res.firstDifference))
  if (res.hint) out.push(...wrap(`hint: ${res.hint}`, WHY_WIDTH, '      '))
  if (opts.traces)
    res.replays.forEach((r, i) => {
      out.push(
        '',
        `== ${r.policy}: ${outcomeLine(r)} ==`,
        formatExecution(sc, executions[i]!, r, { explanation: false }),
      )
    })
  return out.join('\n')
}

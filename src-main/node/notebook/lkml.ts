/**
 * "Copy as LKML timeline": a counterexample replayed and written in the style of
 * Documentation/vm/mmu_notifier.txt (Glisse, 2017): one `[Time N] ----` block per step, then one
 * line per thread, `CPU-thread-0 {...}` / `DEV-thread-0 {...}`, with what that thread did at that
 * step in kernel terms, or `{}`. Plain ASCII-friendly text, ready for a mail.
 */
import {
  runExecution,
  scheduleIndices,
  scriptedChooser,
  type Policy,
  type Scenario,
  type StepRecord,
} from '../../engine'

const WIDTH = 78

/** `C0` -> `CPU-thread-0`, `D0` -> `DEV-thread-0`, numbered by kind in declaration order. */
export function lkmlThreadNames(sc: Scenario): Map<string, string> {
  const m = new Map<string, string>()
  let cpu = 0
  let dev = 0
  for (const t of sc.threads) m.set(t.name, t.kind === 'cpu' ? `CPU-thread-${cpu++}` : `DEV-thread-${dev++}`)
  return m
}

function eventText(r: StepRecord, thread: string): string {
  const parts = r.events.map((e) => {
    // The op event reads "write_fault: C0: write_fault P"; the thread is already named on the line.
    const text = e.kind === 'op' ? e.text.replace(new RegExp(`^${thread}: `), '') : e.text
    if (e.kind === 'op') return text
    if (e.kind === 'violation') return `!! ${e.fn}: ${text}`
    return `${e.fn}: ${text}`
  })
  return parts.join('; ')
}

function header(label: string): string {
  const head = `[${label}] `
  return head + '-'.repeat(Math.max(4, WIDTH - head.length))
}

export interface LkmlInput {
  readonly sc: Scenario
  readonly policy: Policy
  readonly schedule: readonly string[]
  readonly cycle: readonly string[] | null
}

export function lkmlTimeline({ sc, policy, schedule, cycle }: LkmlInput): string {
  const names = lkmlThreadNames(sc)
  const steps = [...schedule, ...(cycle ?? [])]
  const idx = scheduleIndices(sc, steps)
  // A few steps past the end let the engine see the cycle come round (and report the livelock).
  const ex = runExecution(sc, policy, scriptedChooser(idx), {
    tracing: true,
    maxSteps: idx.length + (cycle ? cycle.length + 1 : 0),
  })
  const records = ex.records.slice(0, steps.length)
  const out: string[] = []
  out.push(`${sc.title}`)
  if (sc.source) out.push(`(${sc.source})`)
  out.push(`policy: ${policy.name}; arch: ${sc.arch}`)
  out.push(
    'threads: ' +
      sc.threads
        .map(
          (t) =>
            `${names.get(t.name)} = ${t.name} (${t.kind === 'cpu' ? t.opText.join(', ') : `via ${sc.secondaries[t.via]?.name ?? '?'}: ${t.opText.join(', ')}`})`,
        )
        .join('; '),
  )
  out.push('')
  records.forEach((r, i) => {
    const inCycle = cycle !== null && i >= schedule.length
    const label = inCycle ? `Time N+${i}, repeats forever` : i === 0 ? 'Time N' : `Time N+${i}`
    out.push(header(label))
    for (const t of sc.threads) {
      const text = t.name === r.thread ? eventText(r, t.name) : ''
      out.push(`${names.get(t.name)} {${text}}`)
    }
    out.push('')
  })
  const seen = new Set<string>()
  for (const v of ex.violations) {
    if (seen.has(v.invariant)) continue
    seen.add(v.invariant)
    out.push(`=> ${v.invariant}: ${v.message}`)
  }
  if (cycle)
    out.push(`=> from [Time N+${schedule.length}] on, the last ${cycle.length} steps repeat forever.`)
  out.push(`schedule: ${schedule.join(' ')}${cycle ? `  then forever: ${cycle.join(' ')}` : ''}`)
  return out.join('\n').trimEnd() + '\n'
}

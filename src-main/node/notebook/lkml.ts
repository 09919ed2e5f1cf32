/**
 * "Copy as LKML timeline": a counterexample replayed and written in the style of
 * Documentation/mm/mmu_notifier.rst (Glisse, 2017; Documentation/vm/mmu_notifier.txt before
 * v4.17): one `[Time N] ----` block per step, naming the thread that acts, `CPU-thread-0  {...}`
 * or `DEV-thread-0  {...}`, with what it did in kernel terms. Threads that do nothing at a step
 * are left out (the document lists them as `{}` because its threads move in lockstep; here one
 * thread moves per step). Every line fits in 72 columns, the width of a mail body; a long line
 * continues under its text. With `collapse`, a run of consecutive steps, of any threads, that
 * change no PTE, TLB entry, frame or register (StepRecord.changes empty) becomes a single line
 * counting each thread's steps and naming their kernel functions; a violating step and the first
 * step of a livelock's cycle always keep their block. Plain ASCII text, ready for a mail.
 */
import {
  runExecution,
  scheduleIndices,
  scriptedChooser,
  plural,
  type Policy,
  type Scenario,
  type StepRecord,
} from '../../engine'

/** Column limit of every line (a mail body). */
export const LKML_WIDTH = 72

/** `C0` -> `CPU-thread-0`, `D0` -> `DEV-thread-0`, numbered by kind in declaration order. */
export function lkmlThreadNames(sc: Scenario): Map<string, string> {
  const m = new Map<string, string>()
  let cpu = 0
  let dev = 0
  for (const t of sc.threads) m.set(t.name, t.kind === 'cpu' ? `CPU-thread-${cpu++}` : `DEV-thread-${dev++}`)
  return m
}

/**
 * `text` split at spaces into lines of at most `width` columns: the first starts with `first`,
 * the others with `rest` (usually spaces). A word longer than a line is cut.
 */
export function wrapLine(text: string, first: string, rest: string, width = LKML_WIDTH): string[] {
  const out: string[] = []
  let line = first
  let empty = true
  for (const word of text.split(' ')) {
    if (empty && word === '') continue
    const sep = empty ? '' : ' '
    if (line.length + sep.length + word.length <= width) {
      line += sep + word
      empty = false
      continue
    }
    if (!empty) {
      out.push(line.trimEnd())
      line = rest
      empty = true
    }
    let w = word
    while (line.length + w.length > width) {
      const room = Math.max(1, width - line.length)
      out.push(line + w.slice(0, room))
      w = w.slice(room)
      line = rest
    }
    if (w !== '') {
      line += w
      empty = false
    }
  }
  if (!empty || out.length === 0) out.push(line.trimEnd())
  return out
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
  return head + '-'.repeat(Math.max(4, LKML_WIDTH - head.length))
}

/** `CPU-thread-0  {text}`, wrapped, continuation lines under the text. */
function threadLines(name: string, text: string): string[] {
  const first = `${name}  {`
  return wrapLine(`${text}}`, first, ' '.repeat(first.length))
}

/** A step that may fold into a "no visible change" line: nothing changed and nothing broke. */
function quiet(r: StepRecord): boolean {
  return r.changes.length === 0 && !r.events.some((e) => e.kind === 'violation')
}

/** Lines a fold takes: one, so a run of quiet steps costs the reader a single glance. */
const FOLD_LINES = 1

/**
 * One entry for a run of quiet steps, whatever threads took them:
 * `[Time N+5..N+8] 4 steps with no visible change (C1 x2, D0 x2: fn, fn, ...)`, wrapped at
 * LKML_WIDTH onto at most FOLD_LINES lines: the kernel functions they went through, in order,
 * as many as fit (then `...`); when even that is too wide (a long span), `unchanged` says it
 * shorter.
 */
export function foldLines(run: readonly StepRecord[], span: string, repeats = false): string[] {
  const n = run.length
  const counts = new Map<string, number>()
  for (const r of run) counts.set(r.thread, (counts.get(r.thread) ?? 0) + 1)
  const who = [...counts].map(([t, k]) => (k === 1 ? t : `${t} x${k}`)).join(', ')
  const fns = [...new Set(run.flatMap((s) => s.events.map((e) => e.fn)))]
  const time = `[Time ${span}${repeats ? ', repeats forever' : ''}]`
  const wrap = (t: string): string[] => wrapLine(t, '', '    ')
  const fits = (lines: readonly string[]): boolean => lines.length <= FOLD_LINES
  for (const what of ['with no visible change', 'unchanged']) {
    const head = `${time} ${n} step${n === 1 ? '' : 's'} ${what} (${who}`
    let best: string[] | null = null
    for (const tail of fns.length > 0 ? [': ...)', ')'] : [')']) {
      const lines = wrap(`${head}${tail}`)
      if (fits(lines)) {
        best = lines
        break
      }
    }
    if (best === null) continue
    for (let k = 1; k <= fns.length; k++) {
      const lines = wrap(`${head}: ${fns.slice(0, k).join(', ')}${k < fns.length ? ', ...' : ''})`)
      if (!fits(lines)) break
      best = lines
    }
    return best
  }
  return wrap(`${time} ${n} ${plural(n, 'step')} unchanged (${who})`)
}

export interface LkmlInput {
  readonly sc: Scenario
  readonly policy: Policy
  readonly schedule: readonly string[]
  readonly cycle: readonly string[] | null
  /** Fold each run of consecutive steps that change nothing visible into one line. */
  readonly collapse?: boolean
}

export function lkmlTimeline({ sc, policy, schedule, cycle, collapse = false }: LkmlInput): string {
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
  out.push(...wrapLine(sc.title, '', ''))
  if (sc.source) out.push(...wrapLine(`(${sc.source})`, '', ' '))
  out.push(...wrapLine(`policy: ${policy.name}; arch: ${sc.arch}`, '', '  '))
  out.push('threads:')
  for (const t of sc.threads) {
    const ops =
      t.kind === 'cpu'
        ? t.opText.join(', ')
        : `via ${sc.secondaries[t.via]?.name ?? '?'}: ${t.opText.join(', ')}`
    out.push(...wrapLine(`${names.get(t.name)} = ${t.name}: ${ops}`, '  ', '    '))
  }
  out.push('')
  const inCycle = (i: number): boolean => cycle !== null && i >= schedule.length
  const time = (i: number): string => (i === 0 ? 'N' : `N+${i}`)
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    const name = names.get(r.thread) ?? r.thread
    // The first step of a livelock's cycle keeps its block: the reader needs to see where the
    // repetition starts.
    const cycleStart = (k: number): boolean => cycle !== null && k === schedule.length
    if (collapse && quiet(r) && !cycleStart(i)) {
      let j = i
      while (
        j + 1 < records.length &&
        quiet(records[j + 1]!) &&
        !cycleStart(j + 1) &&
        inCycle(j + 1) === inCycle(i)
      )
        j++
      out.push(...foldLines(records.slice(i, j + 1), `${time(i)}${j > i ? `..${time(j)}` : ''}`, inCycle(i)))
      out.push('')
      i = j
      continue
    }
    out.push(header(`Time ${time(i)}${inCycle(i) ? ', repeats forever' : ''}`))
    out.push(...threadLines(name, eventText(r, r.thread)))
    out.push('')
  }
  const seen = new Set<string>()
  for (const v of ex.violations) {
    if (seen.has(v.invariant)) continue
    seen.add(v.invariant)
    out.push(...wrapLine(`=> ${v.invariant}: ${v.message}`, '', '   '))
  }
  if (cycle)
    out.push(
      ...wrapLine(
        `=> from [Time N+${schedule.length}] on, the last ${cycle.length === 1 ? 'step repeats' : `${cycle.length} steps repeat`} forever.`,
        '',
        '   ',
      ),
    )
  out.push(
    ...wrapLine(
      `schedule: ${schedule.join(' ')}${cycle ? '  then forever: ' + cycle.join(' ') : ''}`,
      '',
      '  ',
    ),
  )
  return out.join('\n').trimEnd() + '\n'
}

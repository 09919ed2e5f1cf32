/**
 * Test helpers for the kernel-sequence tests (kernel/*.test.ts): run one traced execution
 * and project its events onto the kernel-relevant kinds, one line per event
 * (`kind fn: text`), so a test can state the exact order the reference describes.
 * Pure (no Node, no YAML): the tests load their scenarios themselves.
 */
import { runExecution, scriptedChooser, sequentialChooser, type Execution } from '../explore'
import { makePolicy, type Policy, type Preset, type Variant } from '../policy'
import type { EventKind, PolicyResult, TraceEvent } from '../results'
import { defaultRunOptions, runPolicy } from '../run'
import type { Scenario } from '../types'

/** The event kinds that make up a kernel sequence (reference §3 step vocabulary). */
export const KERNEL_KINDS: readonly EventKind[] = [
  'lock',
  'pte',
  'cpu-flush',
  'notifier',
  'sec-inval',
  'frame',
]

/** One traced execution: the reference schedule, or `schedule` (thread indices) then the reference one. */
export function traced(sc: Scenario, policy: Policy, schedule?: readonly number[]): Execution {
  const ex = runExecution(sc, policy, schedule ? scriptedChooser(schedule) : sequentialChooser, {
    tracing: true,
    maxSteps: 500,
  })
  return ex
}

/** One policy's whole run with the scenario's own options, as `mnlab run` runs it. */
export function runUnder(sc: Scenario, preset: Preset, variants: readonly Variant[] = []): PolicyResult {
  return runPolicy(sc, makePolicy(preset, variants), defaultRunOptions(sc))
}

export function allEvents(ex: Execution): TraceEvent[] {
  return ex.records.flatMap((r) => r.events)
}

export interface Filter {
  /** Only this thread's events. */
  readonly thread?: string
  /** Only these kinds (default: KERNEL_KINDS). */
  readonly kinds?: readonly EventKind[]
  /** Only events of the op that starts with this `op` event text (e.g. 'C0: munmap A B'). */
  readonly op?: string
}

/** Kernel events in order, filtered. */
export function kernelEvents(ex: Execution, f: Filter = {}): TraceEvent[] {
  const kinds = f.kinds ?? KERNEL_KINDS
  let evs = allEvents(ex)
  if (f.op !== undefined) {
    const start = evs.findIndex((e) => e.kind === 'op' && e.text === f.op)
    if (start < 0) throw new Error(`no op event '${f.op}'`)
    const thread = evs[start]!.thread
    const next = evs.findIndex(
      (e, i) => i > start && e.thread === thread && e.kind === 'op' && /^\S+: /.test(e.text),
    )
    evs = evs.slice(start, next < 0 ? undefined : next).filter((e) => e.thread === thread)
  }
  return evs.filter((e) => kinds.includes(e.kind) && (f.thread === undefined || e.thread === f.thread))
}

/** `kind fn: text`, the form the tests compare. */
export function line(e: TraceEvent): string {
  return `${e.kind} ${e.fn}: ${e.text}`
}

export function lines(ex: Execution, f: Filter = {}): string[] {
  return kernelEvents(ex, f).map(line)
}

/** The first event whose line starts with `prefix` (throws if none). */
export function first(ex: Execution, prefix: string, f: Filter = {}): TraceEvent {
  const e = kernelEvents(ex, f).find((x) => line(x).startsWith(prefix))
  if (!e) throw new Error(`no event starting with '${prefix}'`)
  return e
}

/** Every event whose line starts with `prefix`. */
export function every(ex: Execution, prefix: string, f: Filter = {}): TraceEvent[] {
  return kernelEvents(ex, f).filter((x) => line(x).startsWith(prefix))
}

/** Strips the common indentation of a template literal, so scenarios can be written inline as YAML. */
export function dedent(text: string): string {
  const ls = text.replace(/^\n/, '').replace(/\s+$/, '').split('\n')
  const indent = Math.min(...ls.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length))
  return ls.map((l) => l.slice(indent)).join('\n') + '\n'
}

/**
 * Exploration of interleavings: exhaustive (breadth-first over the state graph with
 * visited-state hashing, so equal states are explored once, and shortest counterexamples
 * come first), single executions (a reference schedule, a scripted one, or seeded PCT
 * random schedules), and replay with a full trace.
 *
 * Progress (livelock) is a fair cycle: a set of states the run can stay in forever in which
 * every thread that is enabled throughout also keeps stepping (weak fairness). A device
 * faulting while a CPU thread that would fix it is merely preempted is not a violation.
 */
import { evalExpr } from './expr'
import { diffStates } from './diff'
import type { Policy } from './policy'
import type { Prng } from './prng'
import type { Counterexample, Metrics, StepRecord, TraceEvent, Violation } from './results'
import { zeroMetrics } from './results'
import { hashState, initialState, ZERO_PFN, type LabState } from './state'
import { StateTable } from './stateTable'
import { allDone, blockedReason, enabledThreads, step } from './step'
import type { InvariantName, Scenario } from './types'

export interface Budget {
  /** Distinct states (exhaustive) before giving up with `unknown`. */
  readonly maxStates: number
  /** Steps in one execution before cutting it. */
  readonly maxSteps: number
  /** Polled now and then; return a reason to stop (time budget, cancellation). */
  readonly shouldStop?: () => string | null
}

export const DEFAULT_BUDGET: Budget = { maxStates: 2_000_000, maxSteps: 10_000 }

export interface Found {
  readonly invariant: InvariantName
  readonly schedule: number[]
  readonly cycle: number[] | null
  readonly violation: Violation
}

export interface ExploreOutcome {
  readonly found: Found[]
  readonly states: number
  readonly steps: number
  readonly executions: number
  readonly complete: boolean
  readonly cutReason: string | null
}

function finalMem(sc: Scenario, s: LabState, page: number): number | null {
  const pte = s.mms[0]!.ptes[page]
  if (!pte || !pte.present) return null
  return pte.pfn === ZERO_PFN ? 0 : s.frames[pte.pfn]!.v
}

/** Checks a state with no enabled thread: the forbid condition if all finished, else deadlock. */
export function terminalViolation(
  sc: Scenario,
  policy: Policy,
  s: LabState,
  stepIndex: number,
): Violation | null {
  if (allDone(s)) {
    if (
      sc.forbid &&
      evalExpr(
        sc.forbid,
        (r) => s.regs[r]!,
        (p) => finalMem(sc, s, p),
      )
    ) {
      const vals = sc.registers.map((r, i) => `${r} = ${s.regs[i] ?? 'none'}`).join(', ')
      return {
        invariant: 'forbid',
        step: stepIndex,
        thread: '-',
        message: `the final state satisfies forbid: ${sc.forbidText} (${vals})`,
      }
    }
    return null
  }
  const stuck = s.threads
    .map((_, t) => t)
    .filter((t) => !s.threads[t]!.done)
    .map((t) => `${sc.threads[t]!.name} (${blockedReason(sc, policy, s, t)})`)
  return {
    invariant: 'progress',
    step: stepIndex,
    thread: '-',
    message: `deadlock: no thread can run; blocked: ${stuck.join(', ')}`,
  }
}

function mask(ts: readonly number[]): number {
  let m = 0
  for (const t of ts) m |= 1 << t
  return m
}

/** Successor graph in compressed rows: the edges of state i are edges[start[i]..start[i+1]). */
interface Graph {
  readonly start: number[]
  readonly to: number[]
  readonly thread: number[]
  readonly enabled: number[]
}

/** Exhaustive breadth-first exploration of every interleaving. */
export function exploreExhaustive(
  sc: Scenario,
  policy: Policy,
  budget: Budget = DEFAULT_BUDGET,
): ExploreOutcome {
  const ids = new StateTable()
  const parent: number[] = []
  const parentThread: number[] = []
  const g: Graph = { start: [], to: [], thread: [], enabled: [] }
  const frontier: Array<LabState | null> = []
  const found = new Map<InvariantName, Found>()
  const metrics = zeroMetrics()
  let steps = 0
  let terminals = 0
  let cutReason: string | null = null

  const pathTo = (id: number): number[] => {
    const p: number[] = []
    for (let x = id; parent[x]! >= 0; x = parent[x]!) p.push(parentThread[x]!)
    return p.reverse()
  }
  const record = (v: Violation, schedule: number[], cycle: number[] | null): void => {
    if (!found.has(v.invariant))
      found.set(v.invariant, { invariant: v.invariant, schedule, cycle, violation: v })
  }

  const s0 = initialState(sc)
  ids.getOrInsert(hashState(s0), 0)
  parent.push(-1)
  parentThread.push(-1)
  frontier.push(s0)
  let id = 0
  for (; id < frontier.length; id++) {
    if (id % 2048 === 0 && budget.shouldStop) {
      const r = budget.shouldStop()
      if (r) {
        cutReason = r
        break
      }
    }
    const s = frontier[id]!
    frontier[id] = null
    const en = enabledThreads(sc, policy, s)
    g.enabled.push(mask(en))
    g.start.push(g.to.length)
    if (en.length === 0) {
      terminals++
      const v = terminalViolation(sc, policy, s, pathTo(id).length)
      if (v) record(v, pathTo(id), null)
      continue
    }
    for (const t of en) {
      const r = step(sc, policy, s, t, 0, false, metrics)
      steps++
      if (r.violations.length > 0) {
        const sched = [...pathTo(id), t]
        for (const v of r.violations) record({ ...v, step: sched.length - 1 }, sched, null)
      }
      if (ids.size >= budget.maxStates) {
        cutReason = `state budget reached (${budget.maxStates} states)`
        break
      }
      let nid = ids.getOrInsert(hashState(r.next), frontier.length)
      if (nid === -1) {
        nid = frontier.length
        parent.push(id)
        parentThread.push(t)
        frontier.push(r.next)
      }
      g.to.push(nid)
      g.thread.push(t)
    }
    if (cutReason) break
  }
  g.start.push(g.to.length)
  const complete = cutReason === null
  if (complete) {
    for (const f of fairCycles(g, pathTo)) {
      record(livelockViolation(sc, f.cycle), f.prefix, f.cycle)
      break
    }
  }
  return { found: [...found.values()], states: ids.size, steps, executions: terminals, complete, cutReason }
}

function livelockViolation(sc: Scenario, cycle: readonly number[]): Violation {
  const who = [...new Set(cycle)].map((t) => sc.threads[t]!.name)
  return {
    invariant: 'progress',
    step: -1,
    thread: who.join(','),
    message: `livelock: ${who.join(' and ')} can keep faulting forever while every other thread has finished or is blocked`,
  }
}

/**
 * Strongly connected components (iterative Tarjan) with a fair cycle: an SCC has one iff every
 * thread enabled in all of its states steps on some edge inside it (then the cycle through all
 * its edges is fair). Returns, per such SCC, a path to it and a shortest cycle inside it.
 */
function fairCycles(
  g: Graph,
  pathTo: (id: number) => number[],
): Array<{ prefix: number[]; cycle: number[] }> {
  const n = g.enabled.length
  const index = new Int32Array(n).fill(-1)
  const low = new Int32Array(n)
  const onStack = new Uint8Array(n)
  const comp = new Int32Array(n).fill(-1)
  const stack: number[] = []
  const out: Array<{ prefix: number[]; cycle: number[] }> = []
  let counter = 0
  let compCount = 0
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue
    const work: Array<[number, number]> = [[root, g.start[root]!]]
    index[root] = low[root] = counter++
    stack.push(root)
    onStack[root] = 1
    while (work.length) {
      const top = work[work.length - 1]!
      const v = top[0]
      if (top[1] < g.start[v + 1]!) {
        const w = g.to[top[1]++]!
        if (index[w] === -1) {
          index[w] = low[w] = counter++
          stack.push(w)
          onStack[w] = 1
          work.push([w, g.start[w]!])
        } else if (onStack[w]) low[v] = Math.min(low[v]!, index[w]!)
        continue
      }
      work.pop()
      if (work.length) {
        const u = work[work.length - 1]![0]
        low[u] = Math.min(low[u]!, low[v]!)
      }
      if (low[v] !== index[v]) continue
      const members: number[] = []
      let w: number
      do {
        w = stack.pop()!
        onStack[w] = 0
        comp[w] = compCount
        members.push(w)
      } while (w !== v)
      const c = compCount++
      let steppers = 0
      let internal = false
      let cont = ~0
      for (const m of members) {
        cont &= g.enabled[m]!
        for (let e = g.start[m]!; e < g.start[m + 1]!; e++) {
          if (comp[g.to[e]!] === c) {
            internal = true
            steppers |= 1 << g.thread[e]!
          }
        }
      }
      if (!internal || (cont & ~steppers) !== 0) continue
      const entry = Math.min(...members)
      out.push({ prefix: pathTo(entry), cycle: shortestCycle(entry, c, comp, g) })
    }
  }
  return out.sort((a, b) => a.prefix.length - b.prefix.length)
}

function shortestCycle(entry: number, c: number, comp: Int32Array, g: Graph): number[] {
  const prev = new Map<number, [number, number]>()
  const q = [entry]
  for (let h = 0; h < q.length; h++) {
    const v = q[h]!
    for (let e = g.start[v]!; e < g.start[v + 1]!; e++) {
      const w = g.to[e]!
      if (comp[w] !== c) continue
      if (w === entry) {
        const path = [g.thread[e]!]
        for (let x = v; x !== entry; x = prev.get(x)![0]) path.push(prev.get(x)![1])
        return path.reverse()
      }
      if (!prev.has(w)) {
        prev.set(w, [v, g.thread[e]!])
        q.push(w)
      }
    }
  }
  return []
}

export type Chooser = (s: LabState, enabled: readonly number[], stepIndex: number) => number

export class ScheduleError extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message)
    this.name = 'ScheduleError'
  }
}

export interface Execution {
  readonly schedule: number[]
  readonly violations: Violation[]
  /** For a livelock: the cycle's steps (the tail of `schedule`). */
  readonly cycle: number[] | null
  readonly metrics: Metrics
  readonly records: StepRecord[]
  readonly final: LabState
  readonly outcome: 'done' | 'deadlock' | 'livelock' | 'cut' | 'violation'
}

/**
 * Runs one execution. `choose` picks among enabled threads; when the run revisits a state,
 * the loop since the first visit is checked for fairness: a fair loop is a livelock, an
 * unfair one is broken by running a thread that was enabled throughout but never ran.
 */
export function runExecution(
  sc: Scenario,
  policy: Policy,
  choose: Chooser,
  opts: { tracing: boolean; maxSteps: number; stopAtViolation?: boolean },
): Execution {
  let s = initialState(sc)
  const schedule: number[] = []
  const masks: number[] = []
  const violations: Violation[] = []
  const metrics = zeroMetrics()
  const records: StepRecord[] = []
  const seen = new Map<string, number>()
  let cycle: number[] | null = null
  let outcome: Execution['outcome'] = 'done'
  for (;;) {
    const en = enabledThreads(sc, policy, s)
    if (en.length === 0) {
      const v = terminalViolation(sc, policy, s, schedule.length)
      if (v) {
        violations.push(v)
        outcome = v.invariant === 'progress' ? 'deadlock' : 'violation'
      }
      break
    }
    if (schedule.length >= opts.maxSteps) {
      outcome = 'cut'
      break
    }
    const [ha, hb] = hashState(s)
    const k = `${ha},${hb}`
    let forced: number | null = null
    const at = seen.get(k)
    if (at !== undefined) {
      let cont = ~0
      let steppers = 0
      for (let i = at; i < schedule.length; i++) {
        cont &= masks[i]!
        steppers |= 1 << schedule[i]!
      }
      const starved = cont & ~steppers
      if (starved === 0) {
        cycle = schedule.slice(at)
        violations.push({ ...livelockViolation(sc, cycle), step: schedule.length })
        outcome = 'livelock'
        break
      }
      forced = en.find((t) => (starved & (1 << t)) !== 0) ?? null
    }
    seen.set(k, schedule.length)
    const t = forced ?? choose(s, en, schedule.length)
    if (!en.includes(t))
      throw new ScheduleError(
        schedule.length,
        `${sc.threads[t]?.name ?? t} cannot run at step ${schedule.length}: ${blockedReason(sc, policy, s, t)}`,
      )
    masks.push(mask(en))
    const r = step(sc, policy, s, t, schedule.length, opts.tracing, metrics)
    if (opts.tracing)
      records.push({
        step: schedule.length,
        thread: sc.threads[t]!.name,
        events: r.events as TraceEvent[],
        changes: diffStates(sc, s, r.next),
      })
    schedule.push(t)
    s = r.next
    if (r.violations.length) {
      violations.push(...r.violations)
      if (opts.stopAtViolation) {
        outcome = 'violation'
        break
      }
    }
  }
  return { schedule, violations, cycle, metrics, records, final: s, outcome }
}

/** The reference schedule: the first enabled thread in declaration order (each runs to completion or blocks). */
export const sequentialChooser: Chooser = (_s, en) => en[0]!

/** A fixed schedule of thread indices, then the reference schedule. */
export function scriptedChooser(sched: readonly number[]): Chooser {
  return (_s, en, i) => (i < sched.length ? sched[i]! : en[0]!)
}

/**
 * PCT (Burckhardt et al., ASPLOS'10): random distinct thread priorities and `depth - 1`
 * random change points at which the running thread drops to the lowest priority.
 */
export function pctChooser(threads: number, prng: Prng, depth: number, length: number): Chooser {
  const prio = Array.from({ length: threads }, (_, i) => i + depth)
  for (let i = prio.length - 1; i > 0; i--) {
    const j = prng.int(i + 1)
    ;[prio[i], prio[j]] = [prio[j]!, prio[i]!]
  }
  const changes = Array.from({ length: depth - 1 }, () => prng.int(Math.max(1, length)))
  return (_s, en, i) => {
    let best = en[0]!
    for (const t of en) if (prio[t]! > prio[best]!) best = t
    const c = changes.indexOf(i)
    if (c >= 0) prio[best] = depth - 1 - c
    return best
  }
}

/** Renders a found violation as a replayable counterexample with a one-line explanation. */
export function toCounterexample(sc: Scenario, policy: Policy, f: Found): Counterexample {
  const names = (xs: readonly number[]): string[] => xs.map((t) => sc.threads[t]!.name)
  const sched = f.cycle ? [...f.schedule, ...f.cycle] : f.schedule
  const ex = runExecution(sc, policy, scriptedChooser(sched), {
    tracing: true,
    maxSteps: sched.length + 50_000,
    stopAtViolation: false,
  })
  return {
    invariant: f.invariant,
    schedule: names(f.schedule),
    cycle: f.cycle ? names(f.cycle) : null,
    violation: f.violation,
    why: explain(sc, f, ex),
  }
}

/** The "why" line: which entry was used, filled when, from which PTE, and which invalidation never came. */
export function explain(sc: Scenario, f: Found, ex: Execution): string {
  const v = f.violation
  if (v.invariant === 'forbid') return v.message
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
  const page = sc.pages.find((p) => v.message.includes(` ${p.name} `))
  if (!page) return v.message
  const fills = recs
    .flatMap((r) => r.events)
    .filter((e) => e.kind === 'fill' && e.text.includes(` ${page.name} `) && !e.text.startsWith('CPU'))
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
    .filter((e) => e.kind === 'pte' && e.step > sinceStep && e.text.includes(`PTE ${page.name} `))
  const changed = ptes.length
    ? `; since then ${ptes.map((e) => `${e.fn}@${e.step}`).join(', ')} changed the PTE`
    : ''
  return `${v.message}; ${filled}${changed}; ${invals.length ? `notifier activity since: ${invals.join(', ')} (none removed it in time)` : 'no invalidation reached it since'}`
}

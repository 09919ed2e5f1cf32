/**
 * One schedule under several policies, and the shortest schedule on which two policies'
 * outcomes differ (issue 12).
 *
 * A lenient replay follows a schedule of thread indices; an entry whose thread cannot run at its
 * turn (blocked under this policy, or finished) is skipped and recorded, and the next entry is
 * tried from the same state. After the schedule, the reference schedule runs to the end (as a
 * strict replay does). While it follows the schedule the run does exactly what it is told: no
 * fairness forcing, no livelock check (explore.ts runExecution `following`).
 *
 * `distinguish` searches breadth first over the product of the two policies' state graphs. A
 * product state is the pair (state under a, state under b) reached by the same schedule; from it,
 * each thread enabled in either component is a move, and a component where that thread is not
 * enabled stays where it is, which is the lenient replay's skip. A schedule's outcome under a
 * policy is the set of invariants its lenient replay violates: the steps of the schedule's moves,
 * then the reference schedule from where it leaves off to the end (its steps, and at the end
 * forbid, lost-dirty or deadlock). The first product state, in breadth-first order, whose two
 * outcomes differ gives the shortest distinguishing schedule: fewest schedule entries (the
 * reference tail after it is not counted). Every schedule returned has been replayed under both
 * policies and their outcomes checked to differ.
 *
 * Each policy's own states get ids (by hash, as the explorer's), with their successors, step
 * violations and reference-tail outcome computed once (Component), so a product state is four
 * integers and the search keeps no machine states for it. Product states are told apart exactly
 * by (id under a, violated so far under a, id under b, violated so far under b): the invariants
 * violated so far are part of the key because the same pair of states reached with different
 * violations behind it can still end differently. No reduction: plain breadth first.
 *
 * Livelocks are compared only where the reference tail runs into one: a schedule that leads into
 * a fair cycle is not searched for (a cycle needs the whole graph; see exploreExhaustive).
 */
import { enabledThreads, blockedReason, step } from './step'
import { hashState, initialState, liveness, type LabState, type Liveness } from './state'
import { StateTable } from './stateTable'
import { runExecution, terminalViolations, type Execution } from './explore'
import type { Policy } from './policy'
import { zeroMetrics, type Violation } from './results'
import { INVARIANTS, type InvariantName, type Scenario } from './types'
import { count } from './plural'

/** A schedule entry a lenient replay did not run (thread index). */
export interface LenientSkip {
  readonly index: number
  readonly thread: number
  /** `finished`, or what blocks it (`blockedReason`). */
  readonly reason: string
}

export interface LenientReplay {
  readonly ex: Execution
  /** For each step of `ex`, the index of the schedule entry it ran, or null past the schedule. */
  readonly positions: ReadonlyArray<number | null>
  readonly skipped: readonly LenientSkip[]
}

/** Why thread `t` cannot run in `s` (it is not enabled). */
function skipReason(sc: Scenario, policy: Policy, s: LabState, t: number): string {
  const r = blockedReason(sc, policy, s, t)
  if (r === 'done') return 'finished'
  return r ?? 'not enabled'
}

/**
 * Replays `schedule` (thread indices) under `policy`, skipping entries whose thread is blocked
 * or finished at their turn, then runs the reference schedule to the end.
 */
export function replayLenient(
  sc: Scenario,
  policy: Policy,
  schedule: readonly number[],
  opts: { tracing: boolean; maxSteps?: number; shouldStop?: () => string | null },
): LenientReplay {
  const skipped: LenientSkip[] = []
  const pos: Array<number | null> = []
  let next = 0
  // Skips the entries that cannot run in `s`; true while an entry remains to follow.
  const advance = (s: LabState, en: readonly number[]): boolean => {
    while (next < schedule.length && !en.includes(schedule[next]!)) {
      skipped.push({
        index: next,
        thread: schedule[next]!,
        reason: skipReason(sc, policy, s, schedule[next]!),
      })
      next++
    }
    return next < schedule.length
  }
  const ex = runExecution(
    sc,
    policy,
    (s, en, i) => {
      if (advance(s, en)) {
        pos[i] = next
        return schedule[next++]!
      }
      pos[i] = null
      return en[0]!
    },
    {
      tracing: opts.tracing,
      maxSteps: opts.maxSteps ?? schedule.length + 10_000,
      shouldStop: opts.shouldStop,
      following: advance,
    },
  )
  // Entries left when the run ended (every thread finished or stuck, or the run was cut).
  for (; next < schedule.length; next++) {
    const t = schedule[next]!
    const reason =
      ex.outcome === 'cut' ? 'not reached: the replay was cut' : skipReason(sc, policy, ex.final, t)
    skipped.push({ index: next, thread: t, reason })
  }
  const positions = Array.from(ex.schedule, (_, i) => pos[i] ?? null)
  return { ex, positions, skipped }
}

/** The invariants a replay violated (and whether it was cut), as a bit mask. */
export function outcomeMask(ex: Execution): number {
  let m = violationMask(ex.violations)
  if (ex.outcome === 'cut') m |= CUT
  return m
}

/** The outcome bit of a run that was cut before it ended. */
const CUT = 1 << INVARIANTS.length

function violationMask(vs: readonly Violation[]): number {
  let m = 0
  for (const v of vs) m |= 1 << INVARIANTS.indexOf(v.invariant)
  return m
}

/** The invariants in a mask, in INVARIANTS order (with 'cut' for a run cut short). */
export function maskNames(m: number): string[] {
  const out: string[] = INVARIANTS.filter((_, i) => (m & (1 << i)) !== 0)
  if (m & CUT) out.push('cut')
  return out
}

export interface DistinguishBudget {
  /** Product states before giving up (default 2,000,000). */
  readonly maxStates?: number
  /** Polled now and then; a reason stops the search (time budget). */
  readonly shouldStop?: () => string | null
  /** Steps of one reference tail before it counts as cut (default 10,000). */
  readonly maxTail?: number
}

export interface DistinguishOutcome {
  /** The shortest distinguishing schedule (thread indices), or null. */
  readonly schedule: number[] | null
  /** The two outcomes on it (invariant names; empty = holds). */
  readonly outcomes: readonly [readonly InvariantName[], readonly InvariantName[]] | null
  /** Product states stored. */
  readonly states: number
  /** True when every reachable product state was explored. */
  readonly complete: boolean
  /** Schedule entries of the deepest level explored to its end. */
  readonly depth: number
  readonly note: string
}

export const DEFAULT_DISTINGUISH_STATES = 2_000_000

/**
 * The outcome of the reference schedule (first enabled thread, with runExecution's fairness)
 * run from a state to its end, memoised by state hash: the invariants its steps and its end
 * violate.
 */
class Tails {
  private readonly ids = new StateTable()
  private readonly masks: number[] = []
  private readonly metrics = zeroMetrics()

  constructor(
    private readonly sc: Scenario,
    private readonly policy: Policy,
    private readonly live: Liveness,
    private readonly maxTail: number,
  ) {}

  of(s0: LabState, h0: readonly [number, number]): number {
    const known = this.ids.get(h0)
    if (known >= 0) return this.masks[known]!
    const { sc, policy } = this
    const hashes: Array<readonly [number, number]> = []
    const stepMasks: number[] = []
    const enMasks: number[] = []
    const steppers: number[] = []
    const seen = new Map<string, number>()
    let owed = 0
    // States from this index on have a run that depends on what came before them (a loop
    // closed back to an earlier state): only those before it are memoised.
    let firstLoop = Infinity
    let end = 0
    let s = s0
    let h = h0
    for (let i = 0; ; i++) {
      const en = enabledThreads(sc, policy, s)
      hashes.push(h)
      if (en.length === 0) {
        end = violationMask(terminalViolations(sc, policy, s, i))
        break
      }
      if (i > 0) {
        const memo = this.ids.get(h)
        if (memo >= 0 && owed === 0) {
          end = this.masks[memo]!
          hashes.pop()
          break
        }
      }
      if (i >= this.maxTail) {
        end = CUT
        break
      }
      const k = `${h[0]},${h[1]}`
      const at = seen.get(k)
      if (at !== undefined) {
        firstLoop = Math.min(firstLoop, at)
        let any = 0
        let ran = 0
        for (let j = at; j < i; j++) {
          any |= enMasks[j]!
          ran |= 1 << steppers[j]!
        }
        const starved = any & ~ran
        if (starved === 0) {
          end = 1 << INVARIANTS.indexOf('progress')
          break
        }
        owed |= starved
      }
      seen.set(k, i)
      const forced = en.find((t) => (owed & (1 << t)) !== 0)
      if (forced !== undefined) owed &= ~(1 << forced)
      const t = forced ?? en[0]!
      let em = 0
      for (const u of en) em |= 1 << u
      enMasks.push(em)
      steppers.push(t)
      const r = step(sc, policy, s, t, i, false, this.metrics)
      stepMasks.push(violationMask(r.violations))
      s = r.next
      h = hashState(s, this.live)
    }
    // Suffix masks: what the run from each state on violates.
    let acc = end
    const last = Math.min(hashes.length - 1, firstLoop === Infinity ? Infinity : firstLoop)
    const store = (i: number, m: number): void => {
      if (this.ids.getOrInsert(hashes[i]!, this.masks.length) === -1) this.masks.push(m)
    }
    for (let i = hashes.length - 1; i >= 0; i--) {
      if (i < stepMasks.length) acc |= stepMasks[i]!
      if (i <= last || i === 0) store(i, acc)
    }
    return acc
  }
}

/**
 * One policy's state graph as the product search meets it: ids for states (by hash), and per
 * state, once expanded, its enabled threads, each one's successor and the invariants that step
 * violates, and its reference tail's outcome. A state is kept only until it is expanded, so
 * the product search holds pairs of ids, not pairs of states.
 */
class Component {
  private readonly table = new StateTable()
  private readonly states: Array<LabState | null> = []
  private readonly hashes: Array<readonly [number, number]> = []
  private readonly enabled: Array<readonly number[] | null> = []
  /** Per state, per thread: successor id (or -1 when not enabled) and the step's violations. */
  private readonly next: Array<Int32Array | null> = []
  private readonly stepMask: Array<Uint8Array | null> = []
  private readonly tail: number[] = []
  private readonly metrics = zeroMetrics()

  constructor(
    private readonly sc: Scenario,
    private readonly policy: Policy,
    private readonly live: Liveness,
    private readonly tails: Tails,
  ) {}

  get size(): number {
    return this.states.length
  }

  /** The id of a state, registering it when new. */
  idOf(s: LabState): number {
    const h = hashState(s, this.live)
    const id = this.table.getOrInsert(h, this.states.length)
    if (id >= 0) return id
    this.states.push(s)
    this.hashes.push(h)
    this.enabled.push(null)
    this.next.push(null)
    this.stepMask.push(null)
    this.tail.push(-1)
    return this.states.length - 1
  }

  /** Computes a state's successors and its tail, then lets the state go. */
  private expand(id: number): void {
    const s = this.states[id]!
    const { sc, policy } = this
    const en = enabledThreads(sc, policy, s)
    const nx = new Int32Array(sc.threads.length).fill(-1)
    const ms = new Uint8Array(sc.threads.length)
    for (const t of en) {
      const r = step(sc, policy, s, t, 0, false, this.metrics)
      nx[t] = this.idOf(r.next)
      ms[t] = violationMask(r.violations)
    }
    this.enabled[id] = en
    this.next[id] = nx
    this.stepMask[id] = ms
    this.tail[id] = this.tails.of(s, this.hashes[id]!)
    this.states[id] = null
  }

  enabledIn(id: number): readonly number[] {
    if (this.enabled[id] === null) this.expand(id)
    return this.enabled[id]!
  }

  /** Thread t's step from state id: [successor id, violations mask]; t must be enabled there. */
  succ(id: number, t: number): number {
    if (this.next[id] === null) this.expand(id)
    return this.next[id]![t]!
  }

  maskOf(id: number, t: number): number {
    if (this.stepMask[id] === null) this.expand(id)
    return this.stepMask[id]![t]!
  }

  tailOf(id: number): number {
    if (this.tail[id] === -1) this.expand(id)
    return this.tail[id]!
  }
}

/**
 * The shortest schedule on which policies `a` and `b` have different outcomes (see the file
 * comment for what that means), by breadth-first search over their product state graph.
 */
export function distinguish(
  sc: Scenario,
  a: Policy,
  b: Policy,
  budget: DistinguishBudget = {},
): DistinguishOutcome {
  const maxStates = budget.maxStates ?? DEFAULT_DISTINGUISH_STATES
  const maxTail = budget.maxTail ?? 10_000
  const live = liveness(sc)
  const comp = [
    new Component(sc, a, live, new Tails(sc, a, live, maxTail)),
    new Component(sc, b, live, new Tails(sc, b, live, maxTail)),
  ] as const
  // Product states, by id: both component ids and what each has violated so far (exact keys:
  // component ids below 2^25, masks below 2^7).
  const table = new StateTable()
  const ida: number[] = []
  const idb: number[] = []
  const ma: number[] = []
  const mb: number[] = []
  const parent: number[] = []
  const move: number[] = []
  const MAX_ID = 1 << 25
  const add = (x: number, y: number, mx: number, my: number, from: number, t: number): number => {
    if (x >= MAX_ID || y >= MAX_ID) throw new Error(`distinguish: more than ${MAX_ID} states of one policy`)
    const id = ida.length
    if (table.getOrInsert([x + mx * MAX_ID, y + my * MAX_ID], id) !== -1) return -1
    ida.push(x)
    idb.push(y)
    ma.push(mx)
    mb.push(my)
    parent.push(from)
    move.push(t)
    return id
  }
  const pathTo = (id: number): number[] => {
    const p: number[] = []
    for (let x = id; parent[x]! >= 0; x = parent[x]!) p.push(move[x]!)
    return p.reverse()
  }
  let rejected = 0
  const names = (m: number): InvariantName[] => INVARIANTS.filter((_, i) => (m & (1 << i)) !== 0)
  /** The product state's schedule when its two replays' outcomes differ. */
  const check = (id: number): { schedule: number[]; outcomes: [InvariantName[], InvariantName[]] } | null => {
    const oa = ma[id]! | comp[0].tailOf(ida[id]!)
    const ob = mb[id]! | comp[1].tailOf(idb[id]!)
    if (oa === ob) return null
    // Confirm on the replays themselves (their tails keep the schedule's history for the
    // fairness check, which the memoised tails do not).
    const schedule = pathTo(id)
    const opts = { tracing: false, maxSteps: schedule.length + maxTail }
    const ra = outcomeMask(replayLenient(sc, a, schedule, opts).ex)
    const rb = outcomeMask(replayLenient(sc, b, schedule, opts).ex)
    if (ra === rb) {
      rejected++
      return null
    }
    return { schedule, outcomes: [names(ra), names(rb)] }
  }
  const rejectedNote = (): string =>
    rejected > 0
      ? `; ${count(rejected, 'candidate')} whose replays agreed after all ${rejected === 1 ? 'was' : 'were'} passed over`
      : ''
  const s0 = initialState(sc)
  add(comp[0].idOf(s0), comp[1].idOf(s0), 0, 0, -1, -1)
  const root = check(0)
  if (root)
    return {
      ...root,
      states: 1,
      complete: false,
      depth: 0,
      note: `the empty schedule distinguishes them: the reference schedule alone (the first runnable thread in declaration order) already gives different outcomes${rejectedNote()}`,
    }
  let depth = 0
  let levelEnd = 1
  let polls = 0
  const threads = sc.threads.length
  for (let head = 0; head < ida.length; head++) {
    if (head === levelEnd) {
      depth++
      levelEnd = ida.length
    }
    if ((++polls & 255) === 0) {
      const why = budget.shouldStop?.()
      if (why) return cut(`stopped at ${why}`, table.size, depth, rejectedNote())
    }
    const x = ida[head]!
    const y = idb[head]!
    const ena = comp[0].enabledIn(x)
    const enb = comp[1].enabledIn(y)
    for (let t = 0; t < threads; t++) {
      const ina = ena.includes(t)
      const inb = enb.includes(t)
      if (!ina && !inb) continue
      const nx = ina ? comp[0].succ(x, t) : x
      const ny = inb ? comp[1].succ(y, t) : y
      const mx = ina ? ma[head]! | comp[0].maskOf(x, t) : ma[head]!
      const my = inb ? mb[head]! | comp[1].maskOf(y, t) : mb[head]!
      const id = add(nx, ny, mx, my, head, t)
      if (id < 0) continue
      const f = check(id)
      if (f)
        return {
          ...f,
          states: table.size,
          complete: false,
          depth: depth + 1,
          note: `found a distinguishing schedule of ${count(depth + 1, 'entry', 'entries')} after ${count(table.size, 'state pair')}; every shorter schedule gives both policies the same outcome${rejectedNote()}`,
        }
      if (table.size >= maxStates)
        return cut('stopped at the state budget', table.size, depth, rejectedNote())
    }
  }
  return {
    schedule: null,
    outcomes: null,
    states: table.size,
    complete: true,
    depth,
    note: `no schedule distinguishes them: ${table.size === 1 ? 'the one reachable state pair gives' : `all ${count(table.size, 'reachable state pair')} give`} both policies the same outcome (livelocks compared only where the reference schedule runs into one)${rejectedNote()}`,
  }
}

function cut(why: string, states: number, depth: number, extra: string): DistinguishOutcome {
  return {
    schedule: null,
    outcomes: null,
    states,
    complete: false,
    depth,
    note: `${why} after ${count(states, 'state pair')}: ${depth === 0 ? 'the empty schedule does not distinguish them' : `no schedule of ${count(depth, 'entry', 'entries')} or fewer distinguishes them`}; longer ones were not all tried${extra}`,
  }
}

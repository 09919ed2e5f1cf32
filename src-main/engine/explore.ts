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
import { diffStates, staleFields, stateView } from './diff'
import type { Policy } from './policy'
import type { Prng } from './prng'
import type { Counterexample, Metrics, StepRecord, TraceEvent, Violation } from './results'
import { zeroMetrics } from './results'
import { hashState, initialState, liveness, pageMm, ZERO_PFN, type LabState } from './state'
import { StateTable } from './stateTable'
import type { InvalidationKinds } from './costs'
import { independent, newFootprint, type Footprint } from './footprint'
import { components, freedNamedFrame } from './components'
import {
  conflicts,
  FrameRefs,
  Futures,
  lockHolders,
  persistentSet,
  touchOf,
  type StepTouch,
} from './persistent'
import { explainFound } from './explain'
import { allDone, blockedReason, enabledThreads, guardReads, step, type StepResult } from './step'
import type { InvariantName, Scenario } from './types'
import { count, plural } from './plural'

export interface Budget {
  /** Distinct states (exhaustive) before giving up with `unknown`. */
  readonly maxStates: number
  /** Steps in one execution before cutting it. */
  readonly maxSteps: number
  /** Polled now and then; return a reason to stop (time budget, cancellation). */
  readonly shouldStop?: () => string | null
  /** Called now and then with the counts so far (progress bars). */
  readonly onProgress?: (p: ExploreProgress) => void
  /**
   * Partial-order reduction with sleep sets (default off). It preserves every state and prunes
   * about a third of the transitions on the COW scenarios, but its footprint bookkeeping costs
   * more than it saves there (measured: 6.1 s vs 5.7 s for 567k states).
   */
  readonly reduction?: boolean
  /**
   * Expansion order: 'dfs' (default) keeps memory small; 'bfs' finds shortest counterexamples
   * first but holds a whole level of states in memory.
   */
  readonly order?: 'bfs' | 'dfs'
  /**
   * Stop at the first violation this accepts (`--first`: any; `check` on an entry expecting a
   * named invariant: that one). The run is then incomplete: the violation is real (it is
   * replayed into a counterexample), but the invariants not found stay `unknown`.
   */
  readonly stopAt?: (inv: InvariantName) => boolean
  /**
   * Canonical frame numbering in the visited-state hash (default on; state.ts frameLabels has
   * the soundness argument). false is `--reduction none`: states that differ only in pfn
   * numbers are then explored separately, as the first engine did.
   */
  readonly canonicalFrames?: boolean
  /**
   * Persistent sets (persistent.ts; `--reduction persistent`, off by default and with sleep
   * sets). When the reduced graph turns out to have a cycle, the run is redone without them:
   * see exploreExhaustive for why that keeps the progress check sound.
   */
  readonly persistent?: boolean
  /**
   * Merge invisible steps (`--reduction merge`, with persistent sets): after a step of thread
   * t, t's next step runs in the same transition when no other thread's future can touch
   * what it touches, so the state between the two is never stored. See `invisibleNext`.
   */
  readonly merge?: boolean
  /**
   * Components (`--reduction components`, with persistent sets): when the threads split into
   * groups that share only page-table locks, mmap_lock for read and the allocator, one group
   * runs alone until it is done (components.ts has the argument). A reduced graph
   * with a cycle or a stuck terminal state is explored again without reduction.
   */
  readonly components?: boolean
  /**
   * Check every step against its thread's future (persistent.ts Futures) even when not
   * reducing: the tests run the unreduced explorer with this on.
   */
  readonly checkFutures?: boolean
}

export interface ExploreProgress {
  readonly states: number
  readonly steps: number
  readonly executions: number
  /**
   * The first violation found, reported at once (a progress call of its own) and in every
   * report after it, so that a user can open its counterexample while exploration goes on.
   */
  readonly first?: FirstViolation
}

/** The first violation an exploration found: its invariant, message and schedule. */
export interface FirstViolation {
  readonly invariant: InvariantName
  readonly message: string
  /** Thread indices, one per step (then the cycle's, for a livelock). */
  readonly schedule: readonly number[]
  readonly cycle: readonly number[] | null
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
  /** The deepest path explored, in steps. */
  readonly maxDepth: number
  /** States discovered but not yet expanded when the run stopped (0 when complete). */
  readonly frontierLeft: number
  /** What the reduction did (persistent sets: states reduced, or why it was set aside). */
  readonly reduction: string | null
}

/** Why a run stopped at its first violation (see Budget.stopAt). */
export function firstViolationReason(inv: InvariantName): string {
  return `stopped at the first violation found (${inv}); the other invariants were not explored to the end`
}

function finalMem(sc: Scenario, s: LabState, page: number): number | null {
  const pte = s.mms[pageMm(sc, page, 0)]!.ptes[page]
  if (pte?.swp !== undefined) return s.swap[pte.swp] ?? null
  if (!pte || !pte.present) return null
  return pte.pfn === ZERO_PFN ? 0 : s.frames[pte.pfn]!.v
}

/**
 * lost-dirty, checked when every thread has finished: a file page whose page-cache folio holds
 * contents that differ from what is on disk, while neither PG_dirty nor any PTE mapping the
 * folio is dirty. Nothing records that the page must be written: writeback skips clean
 * folios and reclaim drops them (try_to_unmap moves only PTE dirty bits to the folio), so the
 * data is lost for certain. This is exact, not a heuristic: with all threads done no write
 * can re-dirty the folio, and every kernel path that changes the contents legitimately
 * (a write through a PTE that is writable and dirty, a fault that marks the folio dirty)
 * leaves a dirty bit behind until writeback copies the contents to disk. Only a write through
 * a TLB entry that outlived folio_mkclean() (or that the rmap walk never found) changes the
 * contents without one.
 */
export function lostDirty(sc: Scenario, s: LabState, stepIndex: number): Violation | null {
  for (let p = 0; p < sc.pages.length; p++) {
    const f = s.files[p]
    // A truncated page's data is discarded by design (truncate_cleanup_folio cancels PG_dirty).
    if (!f || f.pfn < 0) continue
    const v = s.frames[f.pfn]!.v
    if (v === f.disk || f.dirty) continue
    const dirtyPte = s.mms.some((m) =>
      m.ptes.some((q) => q !== null && q.pfn === f.pfn && q.swp === undefined && q.dirty),
    )
    if (dirtyPte) continue
    const name = sc.pages[p]!.name
    return {
      invariant: 'lost-dirty',
      step: stepIndex,
      thread: '-',
      message: `the page-cache folio of ${name} (pfn ${f.pfn}) holds ${v} but disk(${name}) = ${f.disk}, and neither the folio (PG_dirty) nor any PTE is dirty: writeback will never write ${v}, and reclaim would drop the page as clean`,
    }
  }
  return null
}

/**
 * Checks a state with no enabled thread: if all finished, lost dirty data and the forbid
 * condition; else deadlock.
 */
export function terminalViolations(
  sc: Scenario,
  policy: Policy,
  s: LabState,
  stepIndex: number,
): Violation[] {
  if (allDone(s)) {
    const out: Violation[] = []
    const lost = lostDirty(sc, s, stepIndex)
    if (lost) out.push(lost)
    if (
      sc.forbid &&
      evalExpr(
        sc.forbid,
        (r) => s.regs[r]!,
        (p) => finalMem(sc, s, p),
        (p) => s.files[p]?.disk ?? null,
      )
    ) {
      const vals = sc.registers.map((r, i) => `${r} = ${s.regs[i] ?? 'none'}`).join(', ')
      out.push({
        invariant: 'forbid',
        step: stepIndex,
        thread: '-',
        message: `the final state satisfies forbid: ${sc.forbidText} (${vals})`,
      })
    }
    return out
  }
  const stuck = s.threads
    .map((_, t) => t)
    .filter((t) => !s.threads[t]!.done)
    .map((t) => `${sc.threads[t]!.name} (${blockedReason(sc, policy, s, t)})`)
  return [
    {
      invariant: 'progress',
      step: stepIndex,
      thread: '-',
      message: `deadlock: no thread can run; blocked: ${stuck.join(', ')}`,
    },
  ]
}

function mask(ts: readonly number[]): number {
  let m = 0
  for (const t of ts) m |= 1 << t
  return m
}

const NO_FOOTPRINT: Footprint = { r: [], w: [], inc: [] }
/** Thrown inside a components run when a step frees a frame that something still names. */
const NAMED_FREE = new Error('a frame was freed while still named')
/** The longest run of one thread's steps merged into one transition. */
const MAX_MERGED = 64

interface Sleeper {
  readonly t: number
  readonly fp: Footprint
}

function sleepMask(z: readonly Sleeper[]): number {
  let m = 0
  for (const x of z) m |= 1 << x.t
  return m
}

/**
 * Exhaustive exploration of every interleaving: breadth-first over the state graph with
 * visited-state hashing, and sleep sets (Godefroid 1996) so that two orders of independent
 * steps (disjoint footprints: different pages, locks not both taken, ...) are not both
 * executed. Sleep sets prune transitions, never states: every reachable state is visited,
 * with the re-expansion rule for a state reached again with a smaller sleep set.
 */
export function exploreExhaustive(
  sc: Scenario,
  policy: Policy,
  budget: Budget = DEFAULT_BUDGET,
): ExploreOutcome {
  const ids = new StateTable()
  const parent: number[] = []
  const parentThread: number[] = []
  const frontier: Array<LabState | null> = []
  const lifo: number[] = []
  const dfs = budget.order !== 'bfs'
  const por = budget.reduction === true
  const sleepOf: Array<Sleeper[] | null> = []
  const expandedMask: number[] = []
  const reQueue: Array<{ id: number; awake: number; z: Sleeper[] }> = []
  const devOnly = new Map<number, LabState>()
  const found = new Map<InvariantName, Found>()
  const metrics = zeroMetrics()
  // Sleep sets carry footprints in one representative's pfns; merged with canonical numbering
  // they would be compared against another's. Until that combination has its own soundness
  // argument, --por explores without canonical frames.
  const baseLive = liveness(sc, budget.canonicalFrames !== false && budget.reduction !== true)
  // Persistent sets: not with sleep sets (their re-expansion rule assumes full expansion).
  const pers = budget.persistent === true && !por
  const merge = budget.merge === true && !por
  const comps = budget.components === true && !por
  const fut = pers || merge || comps || budget.checkFutures === true ? new Futures(sc) : null
  // With components, entries of pages no thread will touch again are left out of the hash.
  const live = comps && fut ? { ...baseLive, futurePages: (s: LabState) => fut.livePages(s) } : baseLive
  let reduced = 0
  let merged = 0
  let split = 0
  let stuck = false
  // How many steps of its thread each state's incoming transition ran (1 unless merged).
  const parentRun: number[] = []
  // A merge looks at the next step of its thread and stops at a visible one: that step is
  // kept for the state it leaves from (only while the state waits in the frontier).
  const lookahead = new Map<number, { t: number; r: StepResult; x: StepTouch }>()
  // The reduced graph's edges, for the cycle check: two int32s each (JS arrays of numbers took
  // twice the memory of the visited-state table on the 2-pair race).
  const edges = new EdgeList()
  const isDevice = sc.threads.map((t) => t.kind === 'device')
  let steps = 0
  let terminals = 0
  let cutReason: string | null = null

  const pathTo = (id: number): number[] => {
    const p: number[] = []
    for (let x = id; parent[x]! >= 0; x = parent[x]!)
      for (let k = parentRun[x]!; k > 0; k--) p.push(parentThread[x]!)
    return p.reverse()
  }
  const depth: number[] = []
  let maxDepth = 0
  let exploring = true
  let first: FirstViolation | undefined
  const record = (v: Violation, schedule: number[], cycle: number[] | null): void => {
    if (!found.has(v.invariant)) {
      found.set(v.invariant, { invariant: v.invariant, schedule, cycle, violation: v })
      if (first === undefined) {
        first = { invariant: v.invariant, message: v.message, schedule, cycle }
        budget.onProgress?.({ states: ids.size, steps, executions: terminals, first })
      }
    }
    if (exploring && cutReason === null && budget.stopAt?.(v.invariant))
      cutReason = firstViolationReason(v.invariant)
  }
  const stateAt = (id: number): LabState => {
    let st = initialState(sc)
    for (const t of pathTo(id)) st = step(sc, policy, st, t, 0, false, metrics).next
    return st
  }

  /**
   * Records the violations of thread `t`'s step from state `id` (its `run`th step in a row
   * when merged); true when the run must stop.
   */
  const recordStep = (id: number, t: number, vs: readonly Violation[], run = 1): boolean => {
    if (vs.length === 0) return false
    const sched = [...pathTo(id)]
    for (let k = 0; k < run; k++) sched.push(t)
    for (const v of vs) record({ ...v, step: sched.length - 1 }, sched, null)
    return cutReason !== null
  }

  /** Thread `t`'s step from `s` with what it touched, checked against its foreseen future. */
  const touchedStep = (s: LabState, t: number): { t: number; r: StepResult; x: StepTouch } => {
    const fp = newFootprint()
    const r = step(sc, policy, s, t, 0, false, metrics, fp)
    if (comps && freedNamedFrame(s, r.next, t)) throw NAMED_FREE
    const x = touchOf(fp, s, t)
    const op = s.threads[t]!.op
    const out = fut!.outside(x, t, op, s)
    if (out !== null)
      throw new Error(
        `model bug: a step of ${sc.threads[t]!.name} (op ${op + 1}) touched ${out}, outside what persistent.ts Futures foresees for it`,
      )
    return { t, r, x }
  }

  /**
   * Thread `t`'s next step from `s`, and whether it is invisible: no other thread's future
   * (persistent.ts: its remaining ops' pages, the frames they reach, mmap_lock for write, any
   * global resource) touches what it touches. Null when `t` has finished or is blocked.
   *
   * Why merging an invisible step b into the transition before it (a, by the same thread) is
   * sound (Lipton 1975's movers, with "b commutes with every step another thread can take
   * before t steps again" checked on the state rather than the program text):
   *   - Safety: take any execution a c1..ck b ... where c1..ck are other threads' steps. None
   *     of them touches what b touches (their futures do not; a lock b releases is held by t,
   *     so no other step touches it until b), so a b c1..ck ... is an execution too, every
   *     step in it reads what it read before (same violations), and it ends in the same state.
   *     If t never steps again after a (the execution ends or runs on forever without it), b
   *     stays enabled (nothing else writes what its guard reads), so the execution did not end
   *     in a terminal state, and on an infinite one b can be put right after a the same way.
   *   - Terminal states, violations and infinite paths of the full graph therefore all have a
   *     counterpart among the merged transitions, and every merged transition is a sequence of
   *     real steps, so nothing is reported that the kernel model cannot do.
   *   - Livelocks: an infinite path of the full graph maps to one of the merged graph, so an
   *     acyclic merged graph means an acyclic full graph; a merged graph with a cycle is
   *     explored again without merging (as with persistent sets), so the progress check
   *     always runs on the full graph.
   * A chain stops after MAX_MERGED steps (storing a state is always allowed), so a thread
   * looping on its own steps cannot hang the explorer.
   */
  const invisibleNext = (
    s: LabState,
    t: number,
  ): { t: number; r: StepResult; x: StepTouch; invisible: boolean } | null => {
    if (s.threads[t]!.done || blockedReason(sc, policy, s, t) !== null) return null
    const nx = touchedStep(s, t)
    let refs: FrameRefs | null = null
    const getRefs = (): FrameRefs => (refs ??= new FrameRefs(s))
    let invisible = !nx.x.global
    for (let u = 0; invisible && u < s.threads.length; u++)
      if (u !== t && !s.threads[u]!.done && conflicts(fut!, getRefs, nx.x, u, s.threads[u]!.op))
        invisible = false
    return { ...nx, invisible }
  }

  /** Explores `threads` (a mask) from state `id`, with sleep set `z` and already-explored `done`. */
  const expand = (
    id: number,
    s: LabState,
    z: readonly Sleeper[],
    threads: number,
    en: readonly number[],
  ): void => {
    const done: Sleeper[] = []
    const zm = sleepMask(z)
    let order: readonly number[] = en
    let pre: Map<number, ReturnType<typeof step>> | null = null
    if (fut) {
      // Every enabled step runs (its footprint decides the set); only the set's successors
      // are kept. The others' violations are real (an enabled step of a reachable state).
      pre = new Map()
      const touch: StepTouch[] = []
      const ahead = lookahead.get(id)
      lookahead.delete(id)
      for (const t of en) {
        const known = ahead?.t === t ? ahead : null
        const { r, x } = known ?? touchedStep(s, t)
        touch.push(x)
        pre.set(t, r)
      }
      let cand: readonly number[] = en
      let candTouch: readonly StepTouch[] = touch
      let scope: Uint8Array | null = null
      const group = comps ? components(fut, s, en) : null
      if (group) {
        split++
        cand = group.set
        candTouch = cand.map((t) => touch[en.indexOf(t)]!)
        scope = group.scope
      }
      let set = pers
        ? persistentSet(fut, s, cand, candTouch, (u) => lockHolders(s, guardReads(sc, policy, s, u)), scope)
        : null
      if (set === null && group && cand.length < en.length) set = [...cand]
      if (set) {
        reduced++
        order = en.filter((t) => set.includes(t))
        for (const t of en) if (!set.includes(t) && recordStep(id, t, pre.get(t)!.violations)) return
      }
    }
    // Depth-first pops the last successor pushed: push in reverse so lower threads go first.
    for (const t of dfs ? [...order].reverse() : order) {
      if ((zm & (1 << t)) !== 0) continue
      const fp = por ? newFootprint() : NO_FOOTPRINT
      const r = pre?.get(t) ?? step(sc, policy, s, t, 0, false, metrics, por ? fp : null)
      if ((threads & (1 << t)) === 0) {
        // Explored in an earlier expansion of this state: only its footprint is needed.
        done.push({ t, fp })
        continue
      }
      steps++
      if (recordStep(id, t, r.violations)) return
      const succSleep = por ? [...z, ...done].filter((u) => independent(u.fp, fp)) : []
      done.push({ t, fp })
      if (ids.size >= budget.maxStates) {
        cutReason = `state budget reached (${budget.maxStates} ${plural(budget.maxStates, 'state')})`
        return
      }
      let last = r
      let run = 1
      let stop: { t: number; r: StepResult; x: StepTouch } | null = null
      if (merge) {
        for (;;) {
          const nx = run < MAX_MERGED ? invisibleNext(last.next, t) : null
          if (nx === null || !nx.invisible) {
            stop = nx
            break
          }
          run++
          merged++
          if (recordStep(id, t, nx.r.violations, run)) return
          last = nx.r
        }
      }
      let nid = ids.getOrInsert(hashState(last.next, live), frontier.length)
      if (pers || merge || comps) {
        edges.push(id, nid === -1 ? frontier.length : nid)
      }
      if (nid === -1) {
        nid = frontier.length
        if (stop) lookahead.set(nid, stop)
        parent.push(id)
        parentThread.push(t)
        parentRun.push(run)
        const d = depth[id]! + 1
        depth.push(d)
        if (d > maxDepth) maxDepth = d
        frontier.push(last.next)
        sleepOf.push(succSleep)
        if (dfs) lifo.push(nid)
        continue
      }
      const pending = sleepOf[nid]
      if (pending) {
        const keep = sleepMask(succSleep)
        sleepOf[nid] = pending.filter((u) => (keep & (1 << u.t)) !== 0)
      } else {
        const awake = expandedMask[nid]! & ~sleepMask(succSleep)
        if (awake !== 0) {
          expandedMask[nid] = expandedMask[nid]! & sleepMask(succSleep)
          reQueue.push({ id: nid, awake, z: succSleep })
        }
      }
    }
  }

  try {
    const s0 = initialState(sc)
    ids.getOrInsert(hashState(s0, live), 0)
    parent.push(-1)
    parentThread.push(-1)
    parentRun.push(0)
    depth.push(0)
    frontier.push(s0)
    sleepOf.push([])
    let next = 0
    let polls = 0
    if (dfs) lifo.push(0)
    const hasWork = (): boolean => (dfs ? lifo.length > 0 : next < frontier.length)
    while (hasWork() || reQueue.length > 0) {
      if ((++polls & 2047) === 0)
        budget.onProgress?.({ states: ids.size, steps, executions: terminals, first })
      // The time budget is polled every 256 expansions (a large state takes a while each).
      if ((polls & 255) === 0 && budget.shouldStop) {
        const r = budget.shouldStop()
        if (r) {
          cutReason = r
          break
        }
      }
      if (hasWork()) {
        const id = dfs ? lifo.pop()! : next++
        const s = frontier[id]!
        const z = sleepOf[id]!
        frontier[id] = null
        sleepOf[id] = null
        expandedMask[id] = sleepMask(z)
        const en = enabledThreads(sc, policy, s)
        if (en.length === 0) {
          terminals++
          if (!allDone(s)) stuck = true
          for (const v of terminalViolations(sc, policy, s, pathTo(id).length)) record(v, pathTo(id), null)
          if (cutReason) break
          continue
        }
        if (en.every((t) => isDevice[t])) devOnly.set(id, s)
        expand(id, s, z, ~0, en)
      } else {
        const job = reQueue.pop()!
        const s = devOnly.get(job.id) ?? stateAt(job.id)
        const en = enabledThreads(sc, policy, s)
        // Threads explored before (enabled minus the old sleep set) go first as `done`.
        const zNow = job.z.filter((u) => (job.awake & (1 << u.t)) === 0)
        expand(job.id, s, zNow, job.awake, en)
      }
      if (cutReason) break
    }
  } catch (e) {
    if (e !== NAMED_FREE) throw e
    // A frame was freed while still named: components do not apply (see persistent.ts).
    const full = exploreExhaustive(sc, policy, { ...budget, components: false })
    return {
      ...full,
      reduction: `components set aside: a step freed a frame something still names; ${full.reduction ?? 'no reduction'}`,
    }
  }
  const complete = cutReason === null
  exploring = false
  const cyclic = (): boolean => hasCycle(frontier.length, edges.from(), edges.to())
  if (complete && ((split > 0 && stuck) || ((reduced > 0 || merged > 0 || split > 0) && cyclic()))) {
    // The reduced graph has a cycle, so the full one may hold a livelock that the reduced one
    // hides (or a step the reduced one ignores along the cycle): explore again without
    // persistent sets. Without a cycle in the reduced graph there is none in the full graph
    // (an infinite path of the full graph maps to one of the reduced graph: at each state
    // either a step of the path is in the persistent set and commutes to the front, or the
    // set's steps are independent of the whole path and can be taken first), so no livelock;
    // and in an acyclic graph every violating step lies on a path to a terminal state, which
    // persistent sets preserve up to the order of independent steps (Godefroid 1996, thm 4.3).
    const full = exploreExhaustive(sc, policy, {
      ...budget,
      persistent: false,
      merge: false,
      components: false,
    })
    const what = split > 0 && stuck ? 'a stuck state' : 'a cycle'
    return {
      ...full,
      states: full.states,
      reduction: `${comps ? 'components' : pers ? 'persistent sets' : 'merging'} set aside: the reduced graph (${count(ids.size, 'state')}) has ${what}, and the progress check needs the full graph`,
    }
  }
  // (A reduced graph without a cycle has no livelock to look for, see above.)
  if (complete && reduced === 0 && merged === 0 && split === 0) {
    const lv = livelocks(sc, policy, devOnly, ids, live, pathTo)
    if (lv) record(livelockViolation(sc, lv.cycle), lv.prefix, lv.cycle)
  }
  let frontierLeft = reQueue.length
  if (!complete) for (const x of frontier) if (x !== null) frontierLeft++
  return {
    found: [...found.values()],
    states: ids.size,
    steps,
    executions: terminals,
    complete,
    cutReason,
    maxDepth,
    frontierLeft,
    reduction:
      [
        pers
          ? `persistent sets: ${reduced.toLocaleString('en-US')} of ${count(ids.size, 'state')} expanded in part`
          : '',
        merge ? `${count(merged, 'invisible step')} merged` : '',
        comps ? `components: ${count(split, 'state')} ran one group alone` : '',
      ]
        .filter((x) => x !== '')
        .join('; ') || null,
  }
}

/** Whether the graph on nodes 0..n-1 with edges from[i] -> to[i] has a cycle (Kahn). */
/** A growable list of directed edges, as two Int32Arrays. */
class EdgeList {
  private a = new Int32Array(1 << 16)
  private b = new Int32Array(1 << 16)
  private n = 0
  push(from: number, to: number): void {
    if (this.n === this.a.length) {
      const a = new Int32Array(this.n * 2)
      const b = new Int32Array(this.n * 2)
      a.set(this.a)
      b.set(this.b)
      this.a = a
      this.b = b
    }
    this.a[this.n] = from
    this.b[this.n++] = to
  }
  from(): Int32Array {
    return this.a.subarray(0, this.n)
  }
  to(): Int32Array {
    return this.b.subarray(0, this.n)
  }
}

export function hasCycle(n: number, from: ArrayLike<number>, to: ArrayLike<number>): boolean {
  const indeg = new Int32Array(n)
  const start = new Int32Array(n + 1)
  for (let i = 0; i < from.length; i++) {
    start[from[i]! + 1]!++
    indeg[to[i]!]!++
  }
  for (let v = 0; v < n; v++) start[v + 1]! += start[v]!
  const adj = new Int32Array(from.length)
  const fill = start.slice(0, n)
  for (let i = 0; i < from.length; i++) adj[fill[from[i]!]!++] = to[i]!
  const queue: number[] = []
  for (let v = 0; v < n; v++) if (indeg[v] === 0) queue.push(v)
  let seen = 0
  for (let h = 0; h < queue.length; h++) {
    const v = queue[h]!
    seen++
    for (let j = start[v]!; j < start[v + 1]!; j++) if (--indeg[adj[j]!]! === 0) queue.push(adj[j]!)
  }
  return seen < n
}

/**
 * Fair livelocks. A livelock is a cycle the run can stay in forever while every thread that
 * does not take part in it has finished or is blocked (strong fairness: a thread enabled
 * somewhere in the cycle must step in it). CPU threads always make progress in this model
 * (a faulting CPU access drops its TLB entry and handle_mm_fault resolves or kills), so such
 * cycles lie among the states where only device threads can run: those are re-expanded in
 * full here and searched for fair strongly connected components (Emerson-Lei refinement).
 */
function livelocks(
  sc: Scenario,
  policy: Policy,
  devOnly: Map<number, LabState>,
  ids: StateTable,
  live: ReturnType<typeof liveness>,
  pathTo: (id: number) => number[],
): { prefix: number[]; cycle: number[] } | null {
  const metrics = zeroMetrics()
  const edges = new Map<number, Array<[number, number]>>()
  const enabled = new Map<number, number>()
  for (const [id, s] of devOnly) {
    const en = enabledThreads(sc, policy, s)
    enabled.set(id, mask(en))
    const out: Array<[number, number]> = []
    for (const t of en) {
      const r = step(sc, policy, s, t, 0, false, metrics)
      const nid = ids.get(hashState(r.next, live))
      if (nid === -1) throw new Error('model bug: a successor of a visited state was never visited')
      if (devOnly.has(nid)) out.push([t, nid])
    }
    edges.set(id, out)
  }
  const best: Array<{ prefix: number[]; cycle: number[] }> = []
  const search = (nodes: Set<number>): void => {
    for (const comp of sccs(nodes, edges)) {
      let steppers = 0
      let internal = false
      let enabledAny = 0
      for (const m of comp) {
        enabledAny |= enabled.get(m)!
        for (const [t, w] of edges.get(m)!) {
          if (comp.has(w)) {
            internal = true
            steppers |= 1 << t
          }
        }
      }
      if (!internal) continue
      const bad = enabledAny & ~steppers
      if (bad === 0) {
        const entry = Math.min(...comp)
        best.push({ prefix: pathTo(entry), cycle: cycleIn(entry, comp, edges) })
        continue
      }
      const rest = new Set([...comp].filter((m) => (enabled.get(m)! & bad) === 0))
      if (rest.size > 0) search(rest)
    }
  }
  search(new Set(devOnly.keys()))
  best.sort((a, b) => a.prefix.length - b.prefix.length)
  return best[0] ?? null
}

/** Strongly connected components of the subgraph on `nodes` (iterative Tarjan). */
function sccs(nodes: Set<number>, edges: Map<number, Array<[number, number]>>): Array<Set<number>> {
  const index = new Map<number, number>()
  const low = new Map<number, number>()
  const onStack = new Set<number>()
  const stack: number[] = []
  const out: Array<Set<number>> = []
  let counter = 0
  for (const root of nodes) {
    if (index.has(root)) continue
    const work: Array<[number, number]> = [[root, 0]]
    index.set(root, counter)
    low.set(root, counter++)
    stack.push(root)
    onStack.add(root)
    while (work.length) {
      const top = work[work.length - 1]!
      const v = top[0]
      const es = (edges.get(v) ?? []).filter(([, w]) => nodes.has(w))
      if (top[1] < es.length) {
        const w = es[top[1]++]![1]
        if (!index.has(w)) {
          index.set(w, counter)
          low.set(w, counter++)
          stack.push(w)
          onStack.add(w)
          work.push([w, 0])
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
        continue
      }
      work.pop()
      if (work.length) {
        const u = work[work.length - 1]![0]
        low.set(u, Math.min(low.get(u)!, low.get(v)!))
      }
      if (low.get(v) !== index.get(v)) continue
      const comp = new Set<number>()
      let w: number
      do {
        w = stack.pop()!
        onStack.delete(w)
        comp.add(w)
      } while (w !== v)
      out.push(comp)
    }
  }
  return out
}

/** A shortest cycle through `entry` inside `comp`, as thread indices. */
function cycleIn(entry: number, comp: Set<number>, edges: Map<number, Array<[number, number]>>): number[] {
  const prev = new Map<number, [number, number]>()
  const q = [entry]
  for (let h = 0; h < q.length; h++) {
    const v = q[h]!
    for (const [t, w] of edges.get(v)!) {
      if (!comp.has(w)) continue
      if (w === entry) {
        const path = [t]
        for (let x = v; x !== entry; x = prev.get(x)![0]) path.push(prev.get(x)![1])
        return path.reverse()
      }
      if (!prev.has(w)) {
        prev.set(w, [v, t])
        q.push(w)
      }
    }
  }
  return []
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
  /** Secondary invalidations by shape (page, range, whole address space). */
  readonly invalidations: InvalidationKinds
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
  opts: {
    tracing: boolean
    maxSteps: number
    stopAtViolation?: boolean
    /** Polled every 64 steps (the run's time budget): a reason ends the execution as 'cut'. */
    shouldStop?: () => string | null
    /**
     * A scripted run that must follow `choose` exactly while this returns true (compare.ts
     * lenient replays): no fairness forcing and no livelock check there, so that the run is the
     * schedule it was given. States are still remembered for the checks after it.
     */
    following?: (s: LabState, enabled: readonly number[]) => boolean
  },
): Execution {
  let s = initialState(sc)
  const live = liveness(sc)
  const schedule: number[] = []
  const masks: number[] = []
  const violations: Violation[] = []
  const metrics = zeroMetrics()
  const kinds: InvalidationKinds = { page: 0, range: 0, full: 0, atc: 0 }
  const records: StepRecord[] = []
  const seen = new Map<string, number>()
  let cycle: number[] | null = null
  let owed = 0
  let outcome: Execution['outcome'] = 'done'
  for (;;) {
    const en = enabledThreads(sc, policy, s)
    if (en.length === 0) {
      for (const v of terminalViolations(sc, policy, s, schedule.length)) {
        violations.push(v)
        outcome = v.invariant === 'progress' ? 'deadlock' : 'violation'
      }
      break
    }
    if (schedule.length >= opts.maxSteps) {
      outcome = 'cut'
      break
    }
    if ((schedule.length & 63) === 63 && opts.shouldStop?.()) {
      outcome = 'cut'
      break
    }
    const [ha, hb] = hashState(s, live)
    const k = `${ha},${hb}`
    let forced: number | null = null
    const following = opts.following?.(s, en) === true
    const at = following ? undefined : seen.get(k)
    if (at !== undefined) {
      // Strong fairness: a thread enabled anywhere in the loop must have run in it.
      let any = 0
      let steppers = 0
      for (let i = at; i < schedule.length; i++) {
        any |= masks[i]!
        steppers |= 1 << schedule[i]!
      }
      const starved = any & ~steppers
      if (starved === 0) {
        cycle = schedule.slice(at)
        violations.push({ ...livelockViolation(sc, cycle), step: schedule.length })
        outcome = 'livelock'
        break
      }
      owed |= starved
    }
    seen.set(k, schedule.length)
    forced = en.find((t) => (owed & (1 << t)) !== 0) ?? null
    if (forced !== null) owed &= ~(1 << forced)
    const t = forced ?? choose(s, en, schedule.length)
    if (!en.includes(t))
      throw new ScheduleError(
        schedule.length,
        `${sc.threads[t]?.name ?? t} cannot run at step ${schedule.length}: ${blockedReason(sc, policy, s, t)}`,
      )
    masks.push(mask(en))
    const r = step(sc, policy, s, t, schedule.length, opts.tracing, metrics, null, kinds)
    if (opts.tracing)
      records.push({
        step: schedule.length,
        thread: sc.threads[t]!.name,
        events: r.events as TraceEvent[],
        changes: diffStates(sc, s, r.next),
        state: stateView(sc, r.next),
        ...staleFields(sc, r.next),
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
  return { schedule, violations, cycle, metrics, invalidations: kinds, records, final: s, outcome }
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
  // A violation on a step ends its trace there; forbid and progress need the run's end.
  const trace =
    f.invariant === 'forbid' || f.invariant === 'progress' || f.invariant === 'lost-dirty'
      ? ex.records
      : ex.records.slice(0, f.schedule.length)
  const { why, culprits } = explainFound(sc, policy, f, ex, trace.length)
  return {
    invariant: f.invariant,
    schedule: names(f.schedule),
    cycle: f.cycle ? names(f.cycle) : null,
    violation: f.violation,
    why,
    culprits,
    trace,
  }
}

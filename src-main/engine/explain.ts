/**
 * Explanations of violations, computed from a traced execution's events and states (never from
 * a scenario's name): the one-line "why" and the culprit steps (the fill of the stale entry, the
 * PTE change that made it stale, the flush that missed the secondary, the stale use).
 */
import { staleReason, tlbRows } from './diff'
import type { Execution, Found } from './explore'
import { parsePolicy, type Policy } from './policy'
import { zeroMetrics, type Culprit, type TraceEvent, type Violation } from './results'
import { initialState, mmuWritable, pageMm, tableOf, type LabState, type TlbEntry } from './state'
import { step } from './step'
import type { Expr, Scenario } from './types'

/**
 * The explanation of an execution's first violation (a replay of one schedule under one policy),
 * or, with none, what the run ended with. Culprit steps index `ex.records`.
 */
export function explainExecution(
  sc: Scenario,
  policy: Policy,
  ex: Execution,
): { why: string; culprits: Culprit[] } {
  const v = ex.violations[0]
  if (!v) return { why: `no violation on this schedule (${ex.outcome})`, culprits: [] }
  const cycle = v.invariant === 'progress' ? ex.cycle : null
  const schedule = cycle ? ex.schedule.slice(0, ex.schedule.length - cycle.length) : ex.schedule
  const f: Found = { invariant: v.invariant, schedule, cycle, violation: v }
  return explainFound(sc, policy, f, ex, ex.records.length)
}

/**
 * The why line and culprits of a found violation on its traced execution; culprits name only
 * steps below `limit` (the length of the trace shown with them).
 */
export function explainFound(
  sc: Scenario,
  policy: Policy,
  f: Found,
  ex: Execution,
  limit: number,
): { why: string; culprits: Culprit[] } {
  const run = makeRun(sc, policy, ex, limit)
  const v = f.violation
  let chains: Chain[] = []
  let extra: Culprit[] = []
  let why = explain(sc, f, ex)
  if (v.invariant === 'forbid') {
    const r = forbidChains(run)
    chains = r.chains
    extra = r.fresh
    why = forbidWhy(run, v, r.chains, r.fresh)
  } else if (v.invariant === 'progress') {
    chains = progressChains(run, f)
    if (chains[0]) why = `${why}. ${progressSentence(run, chains[0])}`
    else {
      // Retries that walk through a walk-cache entry for a table the PMD no longer links.
      const r = walkCacheLoop(run, f)
      if (r) {
        extra = r.culprits
        why = `${why}. ${r.sentence}`
      }
    }
  } else if (v.invariant === 'lost-dirty') {
    const r = lostDirtyChains(run, v)
    chains = r.chains
    extra = r.clean
    if (chains[0]) why = `${why}. The entry: ${chainSentence(run, chains[0])}`
  } else if (v.message.includes('walk-cache entry')) {
    extra = walkCacheCulprits(run, v)
    const t = tableStory(run, v.step, null)
    const none = t.missed.length === 0 ? ['no invalidation reached the walk cache in between'] : []
    why = `${v.message}: ${[...tableSentence(t), ...none, `${v.thread} walked through the entry at step ${v.step}`].join('; ')}`
  } else {
    chains = useChains(run, v)
    // No cached translation was used: a lockless walk of a page table freed under it.
    if (chains.length === 0 && v.invariant === 'use-after-free' && v.message.includes('page-table page')) {
      extra = walkCacheCulprits(run, v)
      why = pageTableWhy(v, extra)
    }
    // The engine's one-line message, then the entry's story in step order.
    if (chains.length > 0) why = `${v.message}: ${chains.map((c) => chainSentence(run, c)).join('. ')}`
  }
  const culprits = [...chains.flatMap((c) => chainCulprits(run, c)), ...extra]
  if (!culprits.some((c) => c.role === 'stale-use') && v.step < limit)
    culprits.push({ step: v.step, thread: v.thread, role: 'stale-use', text: v.message })
  return { why, culprits: tidy(culprits, limit) }
}

/**
 * One line: which notifier hook, under a policy that holds on the same schedule, removed the
 * stale entry between its fill and its use; null when nothing applies. Steps of the two runs
 * are matched by thread and occurrence (the n-th step of D0 in one is the n-th in the other),
 * which is the schedule position when neither run skipped a scheduled thread.
 */
export function hookHint(
  sc: Scenario,
  violating: { policy: string; ex: Execution; culprits: readonly Culprit[] },
  holding: { policy: string; ex: Execution },
): string | null {
  // The use of the entry itself; a walk through a stale walk-cache entry that filled it comes first.
  const uses = violating.culprits.filter((c) => c.role === 'stale-use')
  const use = uses.find((c) => !c.text.startsWith('IOMMU walk cache')) ?? uses[0]
  if (!use) return null
  const what = usedEntry(sc, violating, use)
  if (!what) return null
  const { page, rows, verb } = what
  const n = holding.ex.records.length
  const fill = violating.culprits.find((c) => c.role === 'fill' && c.step <= use.step)
  const change = violating.culprits.find((c) => c.role === 'pte-change')
  const from = fill ? matchStep(violating.ex, holding.ex, fill.step) : 0
  const to = matchStep(violating.ex, holding.ex, use.step) ?? n
  if (from === null) return null
  const drop = (k: number): string | null => {
    const rec = holding.ex.records[k]!
    // Dropped, or dropped and refilled within the step (`smmu TLB: P pfn 1 RO -> pfn 1 RW`).
    const dropped = rec.changes.find((c) =>
      rows.some(
        (r) => c.startsWith(`${r}: -${page} `) || c.startsWith(`${r}: ${page} `) || c === `${r}: -PTE table`,
      ),
    )
    if (!dropped) return null
    const hook = rec.events.find((e) => e.kind === 'notifier' && covers(e, page))
    const cb = rec.events.find((e) => e.kind === 'sec-inval' && covers(e, page))
    const by = hook ?? cb
    if (!by) return null
    const site = rec.events.find((e) => e.kind === 'cpu-flush' || e.kind === 'pte')
    // range_start/end name no callback: say which one the driver ran (->invalidate_range).
    const generic = hook !== undefined && /_range_(start|end|only_end)$/.test(hook.fn)
    const via = generic && cb && cb.fn.startsWith('->') ? `${cb.fn}, ` : ''
    const row = dropped.slice(0, dropped.indexOf(':'))
    const entry = row.endsWith(' walk cache')
      ? `the ${row} entry for ${page}'s PTE table`
      : `${page}'s ${row} entry`
    return `under ${holding.policy}, ${by.fn} (${via}${site ? `${site.fn}, ` : ''}step ${k}) invalidated ${entry}`
  }
  // A livelock's retries go on: the hook may come any time after the first fault.
  const end = verb === 'fault' ? n : Math.min(to + 1, n)
  for (let k = from + (fill ? 1 : 0); k < end; k++) {
    const d = drop(k)
    if (!d) continue
    if (verb === 'fault') return `${d} that the retries kept faulting on`
    return `${d} ${fill ? `between the fill (step ${from}) and the ${verb} (step ${to})` : `before the ${verb} (step ${to})`}`
  }
  // An entry filled from another stale cache (an ATC from its IOTLB): the hook may have removed
  // the source between the PTE change and the fill.
  const since = change ? matchStep(violating.ex, holding.ex, change.step) : null
  if (fill && since !== null)
    for (let k = since; k <= from && k < n; k++) {
      const d = drop(k)
      if (d) return `${d} after the PTE change (step ${since}), before the fill (step ${from}) could copy it`
    }
  return null
}

/**
 * The page and cache rows a stale use went through: its access event's, the walk cache's, or,
 * for a fault (a livelock's retry), the faulting thread's op page and its TLB.
 */
function usedEntry(
  sc: Scenario,
  violating: { policy: string; ex: Execution; culprits: readonly Culprit[] },
  use: Culprit,
): { page: string; rows: string[]; verb: string } | null {
  const rec = violating.ex.records[use.step]
  const access = rec?.events.find((e) => e.kind === 'access' && e.tlb)
  // A walk through a walk-cache entry: the entry is the PMD's pointer to the PTE table.
  const wc = violating.culprits
    .filter((c) => c.role === 'fill' && c.step <= use.step)
    .flatMap((c) => violating.ex.records[c.step]?.events ?? [])
    .find((e) => e.kind === 'fill' && e.tlb?.endsWith(' walk cache'))
  if (!access && wc && Array.isArray(wc.pages)) return { page: wc.pages[0]!, rows: [wc.tlb!], verb: 'walk' }
  if (access && Array.isArray(access.pages))
    return {
      page: access.pages[0]!,
      rows: tlbRowNames(sc, access.tlb!),
      verb: access.fn === 'store' ? 'write' : 'read',
    }
  const policy = parsePolicy(violating.policy, sc.policies)
  const t = sc.threads.findIndex((x) => x.name === use.thread)
  if (typeof policy === 'string' || t < 0 || !rec?.events.some((e) => e.kind === 'fault')) return null
  let s = initialState(sc)
  const m = zeroMetrics()
  for (let i = 0; i < use.step; i++) s = step(sc, policy, s, violating.ex.schedule[i]!, i, false, m).next
  const op = sc.threads[t]!.ops[s.threads[t]!.op]
  if (!op || !('page' in op) || typeof op.page !== 'number') return null
  return { page: sc.pages[op.page]!.name, rows: tlbRowNames(sc, threadRow(sc, t)), verb: 'fault' }
}

/** The cache a thread's accesses go through, named as its state row. */
function threadRow(sc: Scenario, t: number): string {
  const decl = sc.threads[t]!
  const sec = decl.via >= 0 ? sc.secondaries[decl.via]! : null
  if (sec === null) return `${decl.name} TLB`
  return sec.type === 'hw-walker' ? `${sec.name} ${sec.ats ? 'ATC' : 'TLB'}` : `${sec.name} shadow`
}

/** The n-th step of a thread in `a`, as a step of `b` (the n-th step of that thread there). */
function matchStep(a: Execution, b: Execution, at: number): number | null {
  const t = a.schedule[at]
  if (t === undefined) return null
  let n = 0
  for (let i = 0; i < at; i++) if (a.schedule[i] === t) n++
  for (let i = 0; i < b.schedule.length; i++) {
    if (b.schedule[i] !== t) continue
    if (n === 0) return i
    n--
  }
  return null
}

/** The rows an access through `tlb` may have used: an ATC is filled from its IOTLB. */
function tlbRowNames(_sc: Scenario, tlb: string): string[] {
  return tlb.endsWith(' ATC') ? [tlb, `${tlb.slice(0, -4)} IOTLB`] : [tlb]
}

// ---- the execution as data ----------------------------------------------------------------

interface Run {
  readonly sc: Scenario
  readonly policy: Policy
  readonly ex: Execution
  /** states[i]: the machine before step i; states[n]: after the last step. */
  readonly states: readonly LabState[]
  readonly limit: number
}

function makeRun(sc: Scenario, policy: Policy, ex: Execution, limit: number): Run {
  let s = initialState(sc)
  const states = [s]
  const m = zeroMetrics()
  ex.schedule.forEach((t, i) => {
    s = step(sc, policy, s, t, i, false, m).next
    states.push(s)
  })
  return { sc, policy, ex, states, limit }
}

function eventsAt(run: Run, k: number): readonly TraceEvent[] {
  return run.ex.records[k]?.events ?? []
}

function covers(e: TraceEvent, page: string): boolean {
  return e.pages === 'all' || (e.pages?.includes(page) ?? false)
}

function pageIndex(sc: Scenario, name: string): number {
  return sc.pages.findIndex((p) => p.name === name)
}

function entryIn(run: Run, k: number, row: string, page: number): { e: TlbEntry; mm: number } | null {
  const r = tlbRows(run.sc, run.states[k]!).find((x) => x.subject === row)
  const e = r?.entries.find((x) => x.page === page)
  return r && e ? { e, mm: r.mm } : null
}

function same(a: TlbEntry | undefined, b: TlbEntry): boolean {
  return a !== undefined && a.pfn === b.pfn && a.gen === b.gen && a.write === b.write
}

function pteKey(run: Run, k: number, mm: number, page: number): string {
  const m = run.states[k]!.mms[pageMm(run.sc, page, mm)]!
  return JSON.stringify(m.live ? m.ptes[page] : null)
}

function entryText(e: TlbEntry): string {
  return `pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}`
}

// ---- chains: fill -> PTE change -> missed flushes -> stale use -----------------------------

/** An access (or, for progress, a fault) through a cached translation. */
interface Use {
  readonly step: number
  readonly thread: string
  readonly row: string
  readonly page: number
  readonly pfn: number | null
  readonly write: boolean
  readonly reg: string | null
  readonly verb: string
}

/**
 * What made one use go wrong: the entry it used, when it was filled, the PTE change that made it
 * disagree, the flushes after that left it, and the invalidation that finally dropped it.
 */
interface Chain {
  readonly use: Use
  /** The row whose entry was used (the IOTLB behind an ATC filled from it in the same step). */
  readonly row: string
  readonly entry: TlbEntry
  readonly mm: number
  /** Why the entry disagreed with the PTE at the use; null: it agreed (a fresh translation). */
  readonly reason: string | null
  /** Step that filled it; -1: cached before the run. */
  readonly fill: number
  readonly madeStale: number | null
  readonly changes: readonly number[]
  readonly missed: ReadonlyArray<{ step: number; text: string }>
  readonly late: { step: number; fn: string } | null
  readonly droppedBefore: { step: number; fn: string; thread: string; caller: string | null } | null
  /**
   * At the fill: who held the PTL, and whose invalidate_range_start..end it fell inside (with
   * the kernel function that opened the range, and the step of its range_end, if it came).
   */
  readonly ptlHolder: string | null
  readonly inRange: { thread: string; step: number; caller: string | null; end: number | null } | null
  /** While the entry was cached: the syscall return that revoked it, the free of its frame. */
  readonly others: ReadonlyArray<{ step: number; text: string }>
  /**
   * The fill walked through a walk-cache entry for a PTE table no longer linked in the PMD: that
   * walk (`IOMMU walk cache`), and the walk-cache entry's own story (its fill, the unlink, the
   * invalidations that kept it).
   */
  readonly viaWalkCache: { walk: TraceEvent; story: TableStory } | null
  /** A fill from a stale source: the IOTLB entry an ATC copied, a mirror fault's stale snapshot. */
  readonly source: ReadonlyArray<{ step: number; role: 'fill' | 'context'; text: string; why: string }>
}

function useOf(run: Run, e: TraceEvent): Use | null {
  if (e.kind !== 'access' || !e.tlb || !Array.isArray(e.pages)) return null
  const page = pageIndex(run.sc, e.pages[0]!)
  if (page < 0) return null
  return {
    step: e.step,
    thread: e.thread,
    row: e.tlb,
    page,
    pfn: e.pfn ?? null,
    write: e.fn === 'store',
    reg: e.reg ?? null,
    verb: e.fn === 'store' ? 'wrote' : 'read',
  }
}

/**
 * `insufficient`: the use is a fault through an entry that allows less than its PTE (a
 * read-only entry kept over a writable PTE), as in an upgrade livelock.
 */
function chainOf(run: Run, use: Use, insufficient = false): Chain | null {
  const { sc } = run
  const u = use.step
  const name = sc.pages[use.page]!.name
  const filledNow = (row: string): boolean =>
    eventsAt(run, u).some((e) => e.kind === 'fill' && e.tlb === row && covers(e, name))
  let found: { row: string; e: TlbEntry; mm: number } | null = null
  for (const row of tlbRowNames(sc, use.row)) {
    if (filledNow(row)) continue
    const x = entryIn(run, u, row, use.page)
    if (x && (use.pfn === null || x.e.pfn === use.pfn)) {
      found = { row, ...x }
      break
    }
  }
  if (!found) return null
  const { row, e, mm } = found
  const staleAt = (k: number): string | null => {
    const st = run.states[k]!
    if (!insufficient) return staleReason(sc, st, mm, e, use.write)
    const m = st.mms[pageMm(sc, use.page, mm)]!
    const pte = m.ptes[use.page]
    if (pte && !e.write && pte.pfn === e.pfn && mmuWritable(sc.arch, pte))
      return `PTE ${name} is writable but the entry is read-only`
    return null
  }
  const reason = staleAt(u)
  let fill = -1
  for (let k = u - 1; k >= 0; k--) {
    const before = entryIn(run, k, row, use.page)?.e
    const after = entryIn(run, k + 1, row, use.page)?.e
    if (same(after, e) && !same(before, e)) {
      fill = k
      break
    }
  }
  let madeStale: number | null = null
  if (reason)
    for (let k = u - 1; k >= 0; k--)
      if (staleAt(k + 1) && !staleAt(k)) {
        madeStale = k
        break
      }
  const changes: number[] = []
  if (madeStale !== null)
    for (let k = madeStale; k < u && changes.length < 3; k++)
      if (pteKey(run, k, mm, use.page) !== pteKey(run, k + 1, mm, use.page)) changes.push(k)
  const missed: Array<{ step: number; text: string }> = []
  if (reason) {
    for (let k = Math.max(madeStale ?? 0, fill + 1); k < u; k++) {
      const evs = eventsAt(run, k).filter(
        (x) => (x.kind === 'cpu-flush' || x.kind === 'notifier' || x.kind === 'sec-inval') && covers(x, name),
      )
      if (evs.length === 0 || !same(entryIn(run, k + 1, row, use.page)?.e, e)) continue
      missed.push({ step: k, text: missedWhat(evs, row, name, e) })
    }
  }
  let late: Chain['late'] = null
  for (let k = u; k < run.ex.records.length; k++) {
    if (same(entryIn(run, k + 1, row, use.page)?.e, e)) continue
    // A CPU TLB goes with a CPU flush (a flush after the PTL was dropped, as before 60bae7370896).
    const by = eventsAt(run, k).find(
      (x) =>
        (x.kind === 'notifier' ||
          x.kind === 'sec-inval' ||
          (x.kind === 'cpu-flush' && row.endsWith(' TLB'))) &&
        covers(x, name),
    )
    if (by) late = { step: k, fn: by.fn }
    break
  }
  let droppedBefore: Chain['droppedBefore'] = null
  for (let k = fill - 1; k >= 0; k--) {
    if (!entryIn(run, k, row, use.page) || entryIn(run, k + 1, row, use.page)) continue
    const by = eventsAt(run, k).find(
      (x) => (x.kind === 'notifier' || x.kind === 'sec-inval') && covers(x, name),
    )
    if (by) droppedBefore = { step: k, fn: by.fn, thread: by.thread, caller: rangeCaller(run, k) }
    break
  }
  let ptlHolder: string | null = null
  let inRange: Chain['inRange'] = null
  if (fill >= 0) {
    const filler = run.ex.records[fill]?.thread
    const holder = run.states[fill]!.mms[pageMm(sc, use.page, mm)]!.ptl[tableOf(sc, use.page)]!
    const hn = holder >= 0 ? sc.threads[holder]!.name : null
    // Name the holder with the op it is in (`C0 (cow_fault A)`).
    if (hn && hn !== filler)
      ptlHolder = `${hn} (${sc.threads[holder]!.opText[run.states[fill]!.threads[holder]!.op] ?? 'done'})`
    const open = new Map<string, number>()
    for (let k = 0; k <= fill; k++)
      for (const x of eventsAt(run, k)) {
        if (x.kind !== 'notifier' || !covers(x, name)) continue
        if (x.fn === 'mmu_notifier_invalidate_range_start') open.set(x.thread, k)
        else if (x.fn.startsWith('mmu_notifier_invalidate_range_')) open.delete(x.thread)
      }
    for (const [t, k] of open)
      if (t !== filler) {
        let end: number | null = null
        for (let j = fill + 1; j < run.ex.records.length && end === null; j++)
          if (
            eventsAt(run, j).some(
              (x) =>
                x.kind === 'notifier' &&
                x.thread === t &&
                /^mmu_notifier_invalidate_range_(end|only_end)$/.test(x.fn),
            )
          )
            end = j
        inRange = { thread: t, step: k, caller: rangeCaller(run, k), end }
        break
      }
  }
  const others: Array<{ step: number; text: string }> = []
  if (reason) {
    // An entry filled from a translation already stale: the frame may have been freed before.
    const from = madeStale !== null && madeStale < fill ? madeStale : fill + 1
    for (let k = Math.max(from, 0); k < u; k++) {
      const x = entryIn(run, k, row, use.page)?.e
      const y = entryIn(run, k + 1, row, use.page)?.e
      const t = run.ex.schedule[k]!
      if (x && y && !x.revoked && y.revoked) {
        const op = sc.threads[t]!.opText[run.states[k]!.threads[t]!.op] ?? 'a syscall'
        others.push({ step: k, text: `${op} returned while ${row} still held ${name} -> ${entryText(e)}` })
      }
      const f0 = run.states[k]!.frames[e.pfn]
      const f1 = run.states[k + 1]!.frames[e.pfn]
      if (f0 && f1 && !f0.free && f0.gen === e.gen && (f1.free || f1.gen !== e.gen)) {
        const ev = eventsAt(run, k).find((x) => x.kind === 'frame' && x.text.includes(`pfn ${e.pfn} `))
        others.push({
          step: k,
          text: `${ev ? `${ev.fn}: ` : ''}pfn ${e.pfn} freed${k < fill ? `, before the ${row} fill at step ${fill}` : ` while ${row} still held ${name} -> it`}`,
        })
      }
    }
  }
  const walk =
    fill >= 0
      ? eventsAt(run, fill).find(
          (x) => x.fn === 'IOMMU walk cache' && x.thread === run.ex.records[fill]?.thread,
        )
      : undefined
  const viaWalkCache = walk ? { walk, story: tableStory(run, fill, null) } : null
  // Filled from a translation already stale: the IOTLB entry an ATC fill copied, or a mirror
  // fault's snapshot taken before the PTE change and installed without mmu_interval_read_retry
  // (or with it, when the change reached no notifier: the migrate_vma owner filter).
  const source: Array<{ step: number; role: 'fill' | 'context'; text: string; why: string }> = []
  if (fill >= 0 && madeStale !== null && madeStale < fill && !walk) {
    const filler = run.ex.records[fill]!.thread
    const iotlb = row.endsWith(' ATC') ? `${row.slice(0, -4)} IOTLB` : null
    const src = iotlb ? entryIn(run, fill, iotlb, use.page)?.e : undefined
    if (iotlb && src && src.pfn === e.pfn) {
      let k = fill - 1
      while (k >= 0 && same(entryIn(run, k, iotlb, use.page)?.e, src)) k--
      // The IOTLB fill (or, cached before the run, the PTE change that left it stale).
      const at = k >= 0 ? k : madeStale
      const how =
        k >= 0
          ? (eventsAt(run, k).find((x) => x.kind === 'fill' && x.tlb === iotlb)?.fn ?? 'fill')
          : 'cached before the run'
      source.push({
        step: at,
        role: k >= 0 ? 'fill' : 'context',
        text: `${how}: ${iotlb} ${name} -> ${entryText(src)} (the ${row} is refilled from it at step ${fill})`,
        why:
          k >= 0
            ? `${run.ex.records[k]!.thread} filled ${iotlb} ${name} -> ${entryText(src)} at step ${k}`
            : `${iotlb} held ${name} -> ${entryText(src)} from before the run and kept it`,
      })
    }
    const evs = run.ex.records.slice(0, fill).flatMap((r) => r.events)
    const begin = evs.filter((x) => x.fn === 'mmu_interval_read_begin' && x.thread === filler).at(-1)
    if (begin) {
      for (const x of evs)
        if (
          x.step > begin.step &&
          x.thread !== filler &&
          x.kind === 'sec-inval' &&
          x.text.includes('mmu_interval_set_seq')
        )
          source.push({
            step: x.step,
            role: 'context',
            text: `${x.fn}: ${x.text}: the sequence count ${filler} read at step ${begin.step} (mmu_interval_read_begin) is stale from here`,
            why: `${x.fn} (step ${x.step}) bumped the sequence count ${filler} had read at step ${begin.step}`,
          })
      const snap = evs
        .filter((x) => x.step > begin.step && x.thread === filler && x.fn === 'hmm_range_fault')
        .at(-1)
      if (snap)
        source.push({
          step: snap.step,
          role: 'context',
          text: `${snap.fn}: ${snap.text} (the snapshot the fill at step ${fill} installs)`,
          why: `${filler} read ${snap.text} at step ${snap.step} (hmm_range_fault)`,
        })
    }
  }
  return {
    source,
    viaWalkCache,
    use,
    row,
    entry: e,
    mm,
    reason,
    fill,
    madeStale,
    changes,
    missed,
    late,
    droppedBefore,
    ptlHolder,
    inRange,
    others,
  }
}

/** What a flush or notifier step that covered the page did instead of dropping the entry. */
function missedWhat(evs: readonly TraceEvent[], row: string, page: string, e: TlbEntry): string {
  const fns = [...new Set(evs.map((x) => x.fn))]
  const kept = `${row} kept ${page} -> ${entryText(e)}`
  if (evs.every((x) => x.kind === 'cpu-flush')) return `${fns.join(', ')} flushed only CPU TLBs; ${kept}`
  return `${fns.join(', ')} covered ${page}; ${kept}`
}

function pteChangeText(run: Run, k: number, c: Chain): string {
  const name = run.sc.pages[c.use.page]!.name
  const fn = eventsAt(run, k).find((x) => x.kind === 'pte')?.fn
  const ch = run.ex.records[k]?.changes.find(
    (x) =>
      x.startsWith(`PTE ${name}:`) ||
      x.startsWith(`child PTE ${name}:`) ||
      x.startsWith(`kernel PTE ${name}:`),
  )
  return `${fn ?? 'PTE change'}: ${ch ?? `PTE ${name} changed`}${k === c.madeStale ? ` (the ${c.row} entry is stale from here)` : ''}`
}

/**
 * Where a fill happened, the same words in the why line and the fill culprit: who held the
 * PTL, which invalidation (opened by which kernel function) had dropped the entry before, and
 * whose invalidate_range_start .. end the fill fell inside.
 */
function fillContext(c: Chain): string[] {
  const d = c.droppedBefore
  const r = c.inRange
  const dropped = d ? `after ${d.caller ? `${d.caller}'s ` : ''}${d.fn} (step ${d.step}) had dropped it` : ''
  // The same range that dropped it: one phrase says both.
  const sameRange = d && r && d.step === r.step
  const inside = r
    ? `inside ${r.caller ? `${r.caller}'s range (${r.thread}'s ` : `${r.thread}'s range (`}invalidate_range_start at step ${r.step} .. range_end ${r.end === null ? 'not reached' : `at step ${r.end}`})`
    : ''
  // An ATC filled from an IOTLB entry that was already stale, a mirror fault's stale snapshot.
  const src = c.source.find((x) => x.text.includes(' is refilled from it'))
  const from = src
    ? `from the stale ${src.text.slice(src.text.indexOf(': ') + 2, src.text.indexOf(' -> '))} entry`
    : c.source.length
      ? // The sequence moved and the driver programmed anyway (hmm_retry: false); or nothing
        // reached the notifier (the migrate_vma owner filter skipped it), so the retry passed.
        c.source.some((x) => x.text.includes('mmu_interval_set_seq'))
        ? 'from that snapshot, without mmu_interval_read_retry'
        : 'from that snapshot, which mmu_interval_read_retry let through: no invalidation reached the notifier since read_begin'
      : c.madeStale !== null && c.madeStale < c.fill
        ? 'from a translation already stale'
        : ''
  return [
    c.ptlHolder ? `while ${c.ptlHolder} held the PTL` : '',
    sameRange ? '' : dropped,
    sameRange ? `${inside}, which had dropped it` : inside,
    from,
  ].filter(Boolean)
}

/**
 * The kernel function that called the notifier at step k, from the thread's frame there; null
 * where the frame's procedure is the scenario op itself and names no single caller.
 */
function rangeCaller(run: Run, k: number): string | null {
  const t = run.ex.schedule[k]
  const fr = t === undefined ? undefined : run.states[k]!.threads[t]?.stack.at(-1)
  return fr ? (RANGE_CALLERS[`${fr.proc}.${fr.pc}`] ?? null) : null
}

/**
 * Steps (procedure.pc) that open a notifier range, by the kernel function that does it, where
 * one op opens more than one range (v6.6 mm/ksm.c, mm/mremap.c, mm/memory.c).
 */
const RANGE_CALLERS: Readonly<Record<string, string>> = {
  'ksm_merge.wp_rs': 'write_protect_page',
  'ksm_merge.rp_rs': 'replace_page',
  'mremap.rs': 'move_page_tables',
  'mremap.unmap_old': 'do_vmi_munmap',
  'handle_mm_fault.cow_rs': 'wp_page_copy',
}

function fillText(run: Run, c: Chain): string {
  const name = run.sc.pages[c.use.page]!.name
  // A 2 MiB fill names the subpage walked, not every subpage it covers.
  const fills = eventsAt(run, c.fill).filter((x) => x.kind === 'fill' && x.tlb === c.row)
  const ev = fills.find((x) => covers(x, name)) ?? fills[0]
  const ctx = fillContext(c)
  return `${ev?.fn ?? 'fill'}: ${c.row} ${name} -> ${entryText(c.entry)}${ctx.length ? `, ${ctx.join(', ')}` : ''}`
}

function useText(run: Run, c: Chain): string {
  const name = run.sc.pages[c.use.page]!.name
  const val = useValue(run, c.use)
  const what = c.use.reg ? `${c.use.verb} ${name} -> ${c.use.reg} = ${val}` : `${c.use.verb} ${name}`
  return c.reason
    ? `${what} through the stale ${c.row} entry (${entryText(c.entry)}; ${c.reason})`
    : `${what} through an up-to-date ${c.row} entry (${entryText(c.entry)})`
}

function useValue(run: Run, use: Use): string {
  const r = use.reg === null ? -1 : run.sc.registers.indexOf(use.reg)
  const v = r >= 0 ? run.states[use.step + 1]?.regs[r] : null
  return v === null || v === undefined ? '?' : String(v)
}

function chainCulprits(run: Run, c: Chain): Culprit[] {
  const th = (k: number): string => run.ex.records[k]?.thread ?? ''
  const out: Culprit[] = []
  const via = c.viaWalkCache
  if (via) {
    // The entry came from a walk through a stale walk-cache entry: that entry is the one filled
    // and left by the invalidations, and the walk through it is its stale use.
    out.push(...tableCulprits(via.story))
    out.push({
      step: c.fill,
      thread: th(c.fill),
      role: 'stale-use',
      text: `${via.walk.fn}: ${via.walk.text}; ${c.row} ${run.sc.pages[c.use.page]!.name} -> ${entryText(c.entry)} filled from it`,
    })
  } else if (c.fill >= 0) out.push({ step: c.fill, thread: th(c.fill), role: 'fill', text: fillText(run, c) })
  for (const x of c.source) out.push({ step: x.step, thread: th(x.step), role: x.role, text: x.text })
  for (const k of c.changes)
    if (!via || k !== via.story.unlink?.step)
      out.push({ step: k, thread: th(k), role: 'pte-change', text: pteChangeText(run, k, c) })
  for (const m of c.missed) out.push({ step: m.step, thread: th(m.step), role: 'missed-flush', text: m.text })
  for (const o of c.others) out.push({ step: o.step, thread: th(o.step), role: 'context', text: o.text })
  out.push({
    step: c.use.step,
    thread: c.use.thread,
    role: c.reason ? 'stale-use' : 'context',
    text: useText(run, c),
  })
  if (c.reason && c.late)
    out.push({
      step: c.late.step,
      thread: th(c.late.step),
      role: 'context',
      text: `${c.late.fn} dropped the ${c.row} entry for ${run.sc.pages[c.use.page]!.name} after the use: too late`,
    })
  return out
}

/** Culprits in step order (fill, PTE change, flush, use within a step), one per step and role. */
function tidy(cs: readonly Culprit[], limit: number): Culprit[] {
  const order = { fill: 0, 'pte-change': 1, 'missed-flush': 2, 'stale-use': 3, context: 4 }
  const seen = new Set<string>()
  return cs
    .filter((c) => c.step >= 0 && c.step < limit)
    .filter((c) => {
      const k = `${c.step}/${c.role}/${c.text}`
      if (seen.has(k)) return false
      seen.add(k)
      return true
    })
    .sort((a, b) => a.step - b.step || order[a.role] - order[b.role])
}

// ---- per invariant -----------------------------------------------------------------------

/** The access at the violation step (use-after-free, stale-after-return), or lost-write's stale writes. */
function useChains(run: Run, v: Violation): Chain[] {
  const evs = run.ex.records.slice(0, v.step + 1).flatMap((r) => r.events)
  if (v.invariant === 'lost-write') {
    const out: Chain[] = []
    for (const e of evs) {
      const u = useOf(run, e)
      if (!u || !u.write) continue
      const c = chainOf(run, u)
      if (c?.reason) out.push(c)
    }
    return out.slice(-2)
  }
  const at = evs.filter((e) => e.step === v.step && e.thread === v.thread && e.kind === 'access')
  const c = at.length
    ? (() => {
        const u = useOf(run, at[at.length - 1]!)
        return u ? chainOf(run, u) : null
      })()
    : null
  return c ? [c] : []
}

function regsOf(e: Expr | null, out: Set<number>): Set<number> {
  if (!e) return out
  if (e.k === 'reg') out.add(e.r)
  else if (e.k === 'not') regsOf(e.e, out)
  else if (e.k === 'bin' || e.k === 'cmp') {
    regsOf(e.a, out)
    regsOf(e.b, out)
  }
  return out
}

/**
 * forbid: the loads that produced the registers the condition reads (the last load into each),
 * each chained back when it went through a stale translation; up-to-date loads are named too.
 */
function forbidChains(run: Run): { chains: Chain[]; fresh: Culprit[] } {
  const regs = [...regsOf(run.sc.forbid, new Set())].map((r) => run.sc.registers[r]!)
  const evs = run.ex.records.flatMap((r) => r.events)
  const chains: Chain[] = []
  const fresh: Culprit[] = []
  for (const reg of regs) {
    const last = evs.filter((e) => e.kind === 'access' && e.reg === reg).at(-1)
    const u = last ? useOf(run, last) : null
    if (!u) continue
    const c = chainOf(run, u)
    if (c?.reason) chains.push(c)
    else
      fresh.push({
        step: u.step,
        thread: u.thread,
        role: 'context',
        text: c
          ? useText(run, c)
          : `${u.verb} ${run.sc.pages[u.page]!.name} -> ${reg} = ${useValue(run, u)} through a translation walked in that step (up to date)`,
      })
  }
  if (chains.length === 0) {
    // A condition on memory: the writes through stale translations.
    for (const e of evs) {
      const u = useOf(run, e)
      const c = u?.write ? chainOf(run, u) : null
      if (c?.reason) chains.push(c)
    }
  }
  chains.sort((a, b) => a.use.step - b.use.step)
  return { chains, fresh }
}

function forbidWhy(run: Run, v: Violation, chains: readonly Chain[], fresh: readonly Culprit[]): string {
  if (chains.length === 0) return v.message
  const vals = v.message.slice(v.message.lastIndexOf('('))
  const parts = chains.map((c) => chainSentence(run, c))
  const ok = fresh.map((f) => `${f.thread} ${f.text.replace(' through ', ` at step ${f.step} through `)}`)
  return `${run.sc.forbidText} at the end ${vals}: ${parts.join('; ')}${ok.length ? `. ${ok.join('; ')}` : ''}`
}

/** A missed flush in a why line: `flush_tlb_page (ptep_clear_flush) flushed only CPU TLBs (step 8)`. */
function missedPhrase(m: { step: number; text: string }): string {
  const [head] = m.text.split(';')
  const cpu = head!.endsWith(' flushed only CPU TLBs')
  return cpu ? `${head} (step ${m.step})` : `${head!.replace(/ covered \S+$/, '')} (step ${m.step}) left it`
}

/** One sentence, in time order: the fill, the PTE change, the flushes that missed, the use, the late drop. */
function chainSentence(run: Run, c: Chain): string {
  const name = run.sc.pages[c.use.page]!.name
  const th = (k: number): string => run.ex.records[k]?.thread ?? '?'
  const what = c.use.reg
    ? `${c.use.verb} ${name} -> ${c.use.reg} = ${useValue(run, c.use)}`
    : `${c.use.verb} ${name}`
  // Everything that happened to the entry, in step order (within a step: fill, change, flush).
  const at: Array<[number, string]> = []
  const via = c.viaWalkCache
  if (via) {
    const t = via.story
    if (t.fill?.row)
      at.push([
        t.fill.step,
        `${t.fill.thread} cached the PMD's pointer to ${t.fill.table} in the ${t.fill.row} at step ${t.fill.step}`,
      ])
    if (t.unlink)
      at.push([
        t.unlink.step,
        `${t.unlink.fn} (step ${t.unlink.step}) unlinked the table from the PMD: the walk-cache entry is stale from here`,
      ])
    for (const m of t.missed) at.push([m.step, tableMissedPhrase(m)])
    const found = /\((finds [^)]*)\)$/.exec(via.walk.text)?.[1] ?? ''
    at.push([
      c.fill,
      `${th(c.fill)} walked ${name} through that stale entry at step ${c.fill}${found ? ` (${found})` : ''} and filled ${c.row} ${name} -> ${entryText(c.entry)}`,
    ])
  } else if (c.fill >= 0) {
    const ctx = fillContext(c)
    for (const x of c.source) at.push([x.step, x.why])
    at.push([
      c.fill,
      `${th(c.fill)} ${c.droppedBefore ? 'refilled' : 'filled'} ${c.row} ${name} -> ${entryText(c.entry)} at step ${c.fill}${ctx.length ? ` ${ctx.join(', ')}` : ''}`,
    ])
  } else at.push([-1, `${c.row} held ${name} -> ${entryText(c.entry)} from before the run`])
  if (c.madeStale !== null && !(via && c.madeStale === via.story.unlink?.step)) {
    const fn = eventsAt(run, c.madeStale).find((x) => x.kind === 'pte')?.fn ?? 'a PTE change'
    at.push([c.madeStale, `${fn} (step ${c.madeStale}) made it stale`])
  }
  for (const m of c.missed) at.push([m.step, missedPhrase(m)])
  const from = Math.max(c.madeStale ?? 0, c.fill + 1)
  if (c.missed.length === 0 && from < c.use.step) {
    at.push([
      c.use.step,
      `no flush or notifier covering ${name} ran from step ${from} to the ${c.use.verb === 'wrote' ? 'write' : 'read'}`,
    ])
  }
  for (const o of c.others) at.push([o.step, `${o.text.split(' while ')[0]} (step ${o.step})`])
  at.push([c.use.step, `${c.use.thread} ${what} at step ${c.use.step} through the stale entry (${c.reason})`])
  if (c.late) at.push([c.late.step, `${c.late.fn} dropped it at step ${c.late.step}, too late`])
  return at
    .map((x, i) => [x[0], i, x[1]] as const)
    .sort((x, y) => x[0] - y[0] || x[1] - y[1])
    .map((x) => x[2])
    .join('; ')
}

/** lost-dirty: writeback's clean, then each write through an entry the clean did not reach. */
function lostDirtyChains(run: Run, v: Violation): { chains: Chain[]; clean: Culprit[] } {
  const evs = run.ex.records.flatMap((r) => r.events)
  const cleaned = evs.filter((e) => e.fn === 'folio_test_clear_dirty').at(-1)
  const since = cleaned ? cleaned.step : -1
  const chains: Chain[] = []
  for (const e of evs) {
    if (e.step <= since) continue
    const u = useOf(run, e)
    const c = u?.write ? chainOf(run, u) : null
    if (c?.reason) chains.push(c)
  }
  const clean: Culprit[] = cleaned
    ? [
        {
          step: cleaned.step,
          thread: cleaned.thread,
          role: 'context',
          text: `${cleaned.fn}: writeback cleaned the folio (${cleaned.text})`,
        },
      ]
    : []
  void v
  return { chains: chains.slice(-2), clean }
}

/**
 * progress: the faulting access that repeats (in the livelock's cycle, or the last fault before
 * a device gave up): the entry it keeps hitting allows less than the PTE.
 */
function progressChains(run: Run, f: Found): Chain[] {
  const { sc } = run
  const who = f.violation.thread.split(',')
  const from = f.cycle ? f.schedule.length : 0
  const to = f.cycle ? f.schedule.length + f.cycle.length : f.violation.step + 1
  for (let k = from; k < Math.min(to, run.ex.records.length); k++) {
    const rec = run.ex.records[k]!
    if (!who.includes(rec.thread) || !rec.events.some((e) => e.kind === 'fault')) continue
    const t = sc.threads.findIndex((x) => x.name === rec.thread)
    const decl = sc.threads[t]!
    const op = decl.ops[run.states[k]!.threads[t]!.op]
    if (!op || !('page' in op) || typeof op.page !== 'number') continue
    const rows = tlbRows(sc, run.states[k]!)
    const row = threadRow(sc, t)
    if (!rows.some((r) => r.subject === row || r.subject === tlbRowNames(sc, row)[1])) continue
    const use: Use = {
      step: k,
      thread: rec.thread,
      row,
      page: op.page,
      pfn: null,
      write: op.kind === 'write',
      reg: null,
      verb: op.kind === 'write' ? 'faulted writing' : 'faulted reading',
    }
    const c = chainOf(run, use, true) ?? chainOf(run, use)
    if (c?.reason) return [c]
  }
  return []
}

/**
 * progress: the first retry (in the livelock's cycle, or before the device gave up) that walks
 * through a stale walk-cache entry, and that entry's story.
 */
function walkCacheLoop(run: Run, f: Found): { culprits: Culprit[]; sentence: string } | null {
  const who = f.violation.thread.split(',')
  const from = f.cycle ? f.schedule.length : 0
  const to = f.cycle ? f.schedule.length + f.cycle.length : f.violation.step + 1
  for (let k = from; k < Math.min(to, run.ex.records.length); k++) {
    const walk = eventsAt(run, k).find((e) => e.fn === 'IOMMU walk cache' && who.includes(e.thread))
    if (!walk) continue
    const t = tableStory(run, k, null)
    const culprits = [
      ...tableCulprits(t),
      {
        step: k,
        thread: walk.thread,
        role: 'stale-use' as const,
        text: `${walk.fn}: ${walk.text}; the retries walk the same entry`,
      },
    ]
    const parts = tableSentence(t)
    if (t.missed.length === 0) parts.push('no invalidation reached the walk cache since')
    parts.push(`every retry from step ${k} walks through that entry (${walk.text.replace(/^[^:]*: /, '')})`)
    return { culprits, sentence: parts.join('; ') }
  }
  return null
}

/** Why the retries keep faulting: the entry that allows less than the PTE, and what left it. */
function progressSentence(run: Run, c: Chain): string {
  const name = run.sc.pages[c.use.page]!.name
  const th = (k: number): string => run.ex.records[k]?.thread ?? '?'
  const held =
    c.fill >= 0
      ? `${th(c.fill)} filled ${c.row} ${name} -> ${entryText(c.entry)} at step ${c.fill}`
      : `${c.row} held ${name} -> ${entryText(c.entry)} from before the run`
  const fn = c.madeStale !== null ? eventsAt(run, c.madeStale).find((x) => x.kind === 'pte')?.fn : undefined
  const changed =
    c.madeStale !== null ? `; ${fn ?? 'a PTE change'} (step ${c.madeStale}) made the PTE allow more` : ''
  const missed = c.missed.length
    ? `; ${c.missed.map(missedPhrase).join(', ')}`
    : '; no flush or notifier covering it ran since'
  return `${held}${changed}${missed}; every retry at step ${c.use.step} and after hits that entry (${c.reason})`
}

/** A lockless walk of a freed page table, told from its culprits. */
function pageTableWhy(v: Violation, cs: readonly Culprit[]): string {
  const at = (r: string): Culprit | undefined => cs.find((c) => c.role === r)
  const fill = at('fill')
  const unlink = at('pte-change')
  const free = cs.find((c) => c.role === 'context' && c.text.includes('freed'))
  const parts = [
    fill ? `${fill.thread} read the PMD's pointer to the PTE table at step ${fill.step}` : '',
    unlink ? `${unlink.text.split(':')[0]} unlinked the table at step ${unlink.step}` : '',
    free ? `it was freed at step ${free.step} while ${v.thread}'s walk still held the pointer` : '',
  ].filter(Boolean)
  return parts.length ? `${v.message}: ${parts.join('; ')}` : v.message
}

/**
 * What held a pointer to a page table that went away under it: a hw-walker's walk-cache entry
 * (or GUP-fast's read of the PMD), from its fill to `upTo`: the unlink (or detach) of the table,
 * its free, and each invalidation after the unlink that left the walk cache (a leaf-only one, or
 * one that never reached it).
 */
interface TableStory {
  readonly fill: { step: number; thread: string; text: string; row: string | null; table: string } | null
  readonly unlink: { step: number; thread: string; fn: string } | null
  readonly free: { step: number; thread: string } | null
  readonly missed: ReadonlyArray<{ step: number; thread: string; text: string; leaf: boolean }>
}

/**
 * The PTE table of the page the thread that runs step `step` accesses (its root frame's
 * `page`, before the step), or of `name`'s; 0 when it has none.
 */
function walkTable(run: Run, step: number, name: string | null): number {
  const who = name ?? run.ex.records[step]?.thread
  const t = run.sc.threads.findIndex((x) => x.name === who)
  const th = run.states[Math.min(step, run.states.length - 1)]?.threads[t]
  // The op's root frame, or (the op's first step, before it has one) the op itself.
  const op = th ? run.sc.threads[t]?.ops[th.op] : undefined
  const p = th?.stack[0]?.l.page ?? (op && 'page' in op ? op.page : undefined)
  return typeof p === 'number' ? tableOf(run.sc, p) : 0
}

function tableStory(run: Run, upTo: number, gupThread: string | null): TableStory {
  const evs = run.ex.records.slice(0, upTo + 1).flatMap((r) => r.events)
  // The walk-cache entry of the table the walk at `upTo` goes through (one per PMD).
  const tk = walkTable(run, upTo, gupThread)
  const index = new Map(run.sc.pages.map((p, i) => [p.name, i] as const))
  const ofTable = (e: TraceEvent): boolean =>
    !Array.isArray(e.pages) || e.pages.every((n) => tableOf(run.sc, index.get(n) ?? 0) === tk)
  const f = evs
    .filter(
      (e) =>
        e.step < upTo + (gupThread ? 1 : 0) &&
        ((e.kind === 'fill' && e.tlb?.endsWith(' walk cache') && ofTable(e)) ||
          (gupThread !== null && e.fn === 'gup_pmd_range' && e.thread === gupThread)),
    )
    .at(-1)
  const since = f ? f.step : -1
  const fill = f
    ? {
        step: f.step,
        thread: f.thread,
        text: `${f.fn}: ${f.text}`,
        row: f.tlb ?? null,
        table: /PMD -> (.*)$/.exec(f.text)?.[1] ?? 'the PTE table',
      }
    : null
  let unlink: TableStory['unlink'] = null
  let free: TableStory['free'] = null
  const missed: Array<{ step: number; thread: string; text: string; leaf: boolean }> = []
  // The walker's mm: a device's is the one its secondary is bound to (mm: child: the child's).
  const wmm = run.sc.threads.find((t) => t.name === run.ex.records[upTo]?.thread)?.mm ?? 0
  for (let k = Math.max(since, 0); k < upTo; k++) {
    const a = run.states[k]!.mms[wmm]!
    const b = run.states[k + 1]!.mms[wmm]!
    const thread = run.ex.records[k]!.thread
    if (a.pt[tk] && !b.pt[tk] && !unlink) {
      const ev = eventsAt(run, k).find((e) => e.kind === 'pte' || e.kind === 'info')
      unlink = { step: k, thread, fn: ev?.fn ?? 'unlink' }
    }
    // Freed after the unlink, or unlinked and freed in one step (exit_mmap's free_pgtables).
    if ((a.tbl[tk] !== null || a.pt[tk]) && b.tbl[tk] === null && !b.pt[tk] && !free)
      free = { step: k, thread }
    if (!unlink || gupThread !== null) continue
    const inv = eventsAt(run, k).filter(
      (e) => e.kind === 'sec-inval' || e.kind === 'notifier' || e.kind === 'cpu-flush',
    )
    if (inv.length === 0 || !run.states[k + 1]!.secs.some((x) => x.wc[tk] === true)) continue
    const leaf = inv.find((e) => e.text.includes('leaf-only'))
    const fns = [...new Set(inv.map((e) => e.fn))].join(', ')
    const cpu = inv.every((e) => e.kind === 'cpu-flush')
    missed.push({
      step: k,
      thread,
      leaf: leaf !== undefined,
      text: leaf
        ? `${leaf.fn}: ${leaf.text}`
        : cpu
          ? `${fns}: flushed only CPU TLBs; the walk cache kept the PTE table`
          : `${fns}: the invalidation did not reach the walk cache, which kept the PTE table`,
    })
  }
  return { fill, unlink, free, missed }
}

function tableCulprits(t: TableStory): Culprit[] {
  const out: Culprit[] = []
  if (t.fill) out.push({ step: t.fill.step, thread: t.fill.thread, role: 'fill', text: t.fill.text })
  if (t.unlink)
    out.push({
      step: t.unlink.step,
      thread: t.unlink.thread,
      role: 'pte-change',
      text: `${t.unlink.fn}: the PTE table is unlinked from the PMD${t.fill?.text.includes('walk cache') ? ' (the walk-cache entry is stale from here)' : ''}`,
    })
  for (const m of t.missed) out.push({ step: m.step, thread: m.thread, role: 'missed-flush', text: m.text })
  if (t.free)
    out.push({
      step: t.free.step,
      thread: t.free.thread,
      role: 'context',
      text: 'the unlinked page-table page is freed',
    })
  return out
}

/** The walk-cache part of a why line, in step order. */
function tableSentence(t: TableStory): string[] {
  const parts: string[] = []
  if (t.fill?.row)
    parts.push(
      `${t.fill.thread} cached the PMD's pointer to ${t.fill.table} in the ${t.fill.row} at step ${t.fill.step}`,
    )
  if (t.unlink)
    parts.push(
      `${t.unlink.fn} (step ${t.unlink.step}) unlinked the table from the PMD: the walk-cache entry is stale from here`,
    )
  for (const m of t.missed) parts.push(tableMissedPhrase(m))
  if (t.free) parts.push(`the page-table page was freed at step ${t.free.step}`)
  return parts
}

/** A flush or invalidation that left the walk cache, in a why line. */
function tableMissedPhrase(m: TableStory['missed'][number]): string {
  const fns = m.text.split(':')[0]
  if (m.leaf) return `${fns} (step ${m.step}) sent a leaf-only invalidation: the walk cache kept the table`
  if (m.text.includes('flushed only CPU TLBs'))
    return `${fns} (step ${m.step}) flushed only CPU TLBs, not the walk cache`
  return `${fns} (step ${m.step}) did not reach the walk cache`
}

/** A message without its leading `D0: ` (the culprit names the thread). */
function bare(v: Violation): string {
  return v.message.startsWith(`${v.thread}: `) ? v.message.slice(v.thread.length + 2) : v.message
}

/**
 * A walk through a walk-cache entry (or GUP-fast's pointer) to a freed page table: its fill (the
 * PMD read), the unlink, the free, and the invalidations that kept the walk cache.
 */
function walkCacheCulprits(run: Run, v: Violation): Culprit[] {
  const gup = v.message.includes('GUP-fast') ? v.thread : null
  const t = tableStory(run, v.step, gup)
  return [...tableCulprits(t), { step: v.step, thread: v.thread, role: 'stale-use', text: bare(v) }]
}

/** The "why" line: which entry was used, filled when, from which PTE, and which invalidation never came. */
export function explain(sc: Scenario, f: Found, ex: Execution): string {
  const v = f.violation
  if (v.invariant === 'forbid') return v.message
  if (v.invariant === 'lost-dirty') return explainLostDirty(sc, v, ex)
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
  // A walk through a walk-cache entry: explainFound tells it from the walk cache's story.
  if (v.message.includes('walk-cache entry')) return v.message
  const page = sc.pages.find((p) => v.message.includes(` ${p.name} `))
  if (!page) return v.message
  const viaCpu = v.message.includes('CPU TLB')
  const fills = recs
    .flatMap((r) => r.events)
    .filter(
      (e) =>
        e.kind === 'fill' &&
        e.text.includes(` ${page.name} `) &&
        (viaCpu ? e.thread === v.thread && e.text.startsWith('CPU') : !e.text.startsWith('CPU')),
    )
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
    .filter((e) => e.kind === 'pte' && e.step > sinceStep && e.text.includes(`PTE ${page.name} :=`))
  const changed = ptes.length
    ? `; since then ${ptes.map((e) => `${e.fn}@${e.step}`).join(', ')} changed the PTE`
    : ''
  return `${v.message}; ${filled}${changed}; ${invals.length ? `notifier activity since: ${invals.join(', ')} (none removed it in time)` : 'no invalidation reached it since'}`
}

/**
 * lost-dirty: the writes that changed the folio after writeback last cleaned it (the
 * folio_test_clear_dirty step) and the TLB they went through.
 */
function explainLostDirty(sc: Scenario, v: Violation, ex: Execution): string {
  const page = sc.pages.find((p) => p.kind === 'file' && v.message.includes(`of ${p.name} `))
  if (!page) return v.message
  const evs = ex.records.flatMap((r) => r.events)
  const cleaned = evs.filter((e) => e.fn === 'folio_test_clear_dirty' && e.text.startsWith(`${page.name} `))
  const since = cleaned.length ? cleaned[cleaned.length - 1]!.step : -1
  const writes = evs.filter(
    (e) =>
      e.kind === 'access' &&
      e.step > since &&
      e.text.startsWith('write') &&
      e.text.includes(` ${page.name} `),
  )
  const mk = evs.filter(
    (e) => e.fn === 'folio_mkclean' || e.fn === 'set_pte_at (pte_wrprotect + pte_mkclean)',
  )
  const how = mk.some((e) => e.fn === 'folio_mkclean')
    ? 'folio_mkclean() saw the folio unmapped (mapcount 0) and skipped the rmap walk'
    : 'folio_mkclean() write-protected and cleaned the PTE'
  return `${v.message}. Writeback cleaned the folio at step ${since} (${how}); ${writes.length ? `afterwards ${writes.map((e) => `${e.thread} at step ${e.step} (${e.text})`).join(', ')} wrote through a TLB entry that was not invalidated and left no dirty bit` : 'no write since'}`
}

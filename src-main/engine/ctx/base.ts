/**
 * The bottom layer of the step context (Ctx, ../ctx.ts): what every primitive builds on. The
 * step's identity (scenario, policy, state, thread, step number), copy-on-write of the state
 * (a step shares every part it does not change), the footprint of shared resources it reads and
 * writes (for partial-order reduction), control flow (goto/call/ret), the trace, costs and
 * violations, and `at`: the one place kernel code asks the policy about a call site. Nothing
 * here models kernel state; the layers above (memory, locks, tables, tlbs, secondary, Ctx) do.
 */
import { COSTS, type CostKey, type InvalidationKinds } from '../costs'
import { Res, type Footprint } from '../footprint'
import { hasSite, siteBit, type Policy, type Site } from '../policy'
import type { EventDetail, EventKind, Metrics, TraceEvent, Violation } from '../results'
import {
  type CallFrame,
  type LabState,
  type LocalValue,
  type MmState,
  type SecState,
  type Pte,
  type TlbEntry,
  hugeOf,
  tableOf,
  tableTag,
  ZERO_PFN,
} from '../state'
import type { InvariantName, Scenario, ThpDecl } from '../types'

export type Control =
  | { readonly k: 'goto'; readonly pc: string }
  | {
      readonly k: 'call'
      readonly proc: string
      readonly l: Record<string, LocalValue>
      readonly ret: string
    }
  | { readonly k: 'ret'; readonly value: LocalValue }

/**
 * The sites a run asked about (Ctx.at), as a mask over SITE_NAMES: runPolicy with
 * `tallySites` runs a policy carrying one (PolicyResult.sitesReached).
 */
export interface SiteTally {
  reached: number
}

/** A policy that notes every site its run asks about. */
export interface TallyingPolicy extends Policy {
  readonly tally?: SiteTally
}

export class CtxBase {
  /** Filled only when tracing. */
  readonly events: TraceEvent[] = []
  violations: Violation[] = NO_VIOLATIONS
  control: Control | null = null
  /**
   * Driver commands this step started but that finish in later steps of the same thread, in
   * order (an atc-first driver's IOTLB invalidation): step() runs them before the thread goes on.
   */
  owed: Array<{ readonly sec: number; readonly pages: number[] | null; readonly why: string }> | null = null
  constructor(
    readonly sc: Scenario,
    readonly policy: Policy,
    readonly s: LabState,
    readonly t: number,
    readonly step: number,
    readonly tracing: boolean,
    readonly metrics: Metrics,
    /** When set, every shared resource the step reads or writes is recorded here. */
    readonly fp: Footprint | null = null,
    /** Secondary invalidations by shape, counted when given. */
    readonly kinds: InvalidationKinds | null = null,
  ) {}
  // ---- copy-on-write: a step shares every part of the state it does not change -------
  // Which parts this step already copied (bit masks; frames as a lazily made set).
  private ownMms = false
  private ownMm = 0
  private ownTlbs = false
  private ownSecs = false
  private ownSec = 0
  private ownPtes = 0
  private ownVmas = 0
  /** The mm's own fields (locks, flags), copied once per step; its arrays stay shared. */
  protected mmW(mm: number): MmState {
    if (!this.ownMms) {
      this.s.mms = this.s.mms.slice()
      this.ownMms = true
    }
    if ((this.ownMm & (1 << mm)) === 0) {
      this.s.mms[mm] = { ...this.s.mms[mm]! }
      this.ownMm |= 1 << mm
    }
    return this.s.mms[mm]!
  }
  protected ptesW(mm: number): Array<Pte | null> {
    const m = this.mmW(mm)
    if ((this.ownPtes & (1 << mm)) === 0) {
      m.ptes = m.ptes.slice()
      this.ownPtes |= 1 << mm
    }
    return m.ptes
  }
  protected vmasW(mm: number): MmState['vmas'] {
    const m = this.mmW(mm)
    if ((this.ownVmas & (1 << mm)) === 0) {
      m.vmas = m.vmas.slice()
      this.ownVmas |= 1 << mm
    }
    return m.vmas
  }
  protected secW(i: number): SecState {
    if (!this.ownSecs) {
      this.s.secs = this.s.secs.slice()
      this.ownSecs = true
    }
    if ((this.ownSec & (1 << i)) === 0) {
      const x = this.s.secs[i]!
      this.s.secs[i] = { entries: x.entries, atc: x.atc, seq: x.seq, inProg: x.inProg.slice(), wc: x.wc }
      this.ownSec |= 1 << i
    }
    return this.s.secs[i]!
  }
  protected tlbsW(): TlbEntry[][] {
    if (!this.ownTlbs) {
      this.s.tlbs = this.s.tlbs.slice()
      this.ownTlbs = true
    }
    return this.s.tlbs
  }
  // ---- footprint: the shared resources a step reads and writes -----------------------
  protected rd(x: number): void {
    if (this.fp) this.fp.r.push(x)
  }
  protected wr(x: number): void {
    if (this.fp) this.fp.w.push(x)
    if (this.owed !== null) this.noteAfterOwed(x)
  }
  protected inc(x: number): void {
    if (this.fp) this.fp.inc.push(x)
    if (this.owed !== null) this.noteAfterOwed(x)
  }
  /**
   * The first resource (other than a secondary's TLB: the rest of the notifier's fan-out)
   * this step changed after an atc-first driver's first command: such kernel work would show
   * before the driver's second command, so step() refuses it (the step must end there).
   */
  afterOwed: number | null = null
  private noteAfterOwed(x: number): void {
    if (this.afterOwed === null && !Res.isSec(x)) this.afterOwed = x
  }
  // ---- the running thread and names --------------------------------------------------
  get thread() {
    return this.s.threads[this.t]!
  }
  get name(): string {
    return this.sc.threads[this.t]!.name
  }
  /**
   * The mm the running kernel code works on: vma->vm_mm of the VMA an rmap or i_mmap walk is
   * at (the `mm` local of the innermost frame that has one: rmap.ts walkVmas), else the
   * thread's own (current->mm).
   */
  get mmIndex(): number {
    const st = this.thread.stack
    for (let i = st.length - 1; i >= 0; i--) {
      const m = st[i]!.l.mm
      if (typeof m === 'number') return m
    }
    return this.sc.threads[this.t]!.mm
  }
  get frame(): CallFrame {
    const st = this.thread.stack
    return st[st.length - 1]!
  }
  pageName(p: number): string {
    return this.sc.pages[p]!.name
  }
  pagesText(ps: readonly number[]): string {
    return ps.map((p) => this.pageName(p)).join(',')
  }
  // ---- control flow ------------------------------------------------------------------
  goto(pc: string): void {
    this.control = { k: 'goto', pc }
  }
  call(proc: string, l: Record<string, LocalValue>, ret: string): void {
    this.control = { k: 'call', proc, l, ret }
  }
  ret(value: LocalValue = null): void {
    this.control = { k: 'ret', value }
  }
  // ---- the policy's decision point ---------------------------------------------------
  /**
   * Whether the policy notifies at this call site (policy.ts SITES). The one place kernel code
   * asks about a site: a tallying policy (SiteTally) notes the site as reached, whether the
   * policy has it or not. So a run that never asks about a site behaves the same with or
   * without it (synthesize.ts relies on that); callers test cheap conditions that make the site
   * irrelevant (no hw-walker, a driver flushing elsewhere) before asking.
   */
  at(site: Site): boolean {
    const tally = (this.policy as TallyingPolicy).tally
    if (tally !== undefined) tally.reached |= siteBit(site)
    return hasSite(this.policy, site)
  }
  /**
   * Whether the policy has the site, for trace text only (which function name an event shows):
   * it changes no behaviour, so it does not count as reaching the site.
   */
  names(site: Site): boolean {
    return hasSite(this.policy, site)
  }
  // ---- trace and metrics -------------------------------------------------------------
  emit(kind: EventKind, fn: string, text: string, detail?: EventDetail): void {
    if (!this.tracing) return
    this.events.push({
      step: this.step,
      thread: this.name,
      fn,
      kind,
      text,
      locks: this.thread.locks.slice(),
      ...detail,
    })
  }
  /** The `pages` detail of an event about `pages` (null: the whole address space). */
  pagesDetail(pages: readonly number[] | null): EventDetail {
    return { pages: pages === null ? 'all' : pages.map((p) => this.pageName(p)) }
  }
  /** Simulated time from the cost table, with the scenario's overrides. */
  cost(key: CostKey, times = 1): void {
    this.metrics.sim_ns += (this.sc.costs[key] ?? COSTS[key].ns) * times
  }
  violate(invariant: InvariantName, message: string): void {
    if (this.violations === NO_VIOLATIONS) this.violations = []
    this.violations.push({ invariant, step: this.step, thread: this.name, message })
    this.emit('violation', invariant, message)
  }
  // ---- scenario geometry: PTE tables, the huge page ----------------------------------
  /** The PTE table (PMD range) a page lives in: its `table:`. */
  tableOf(page: number): number {
    return tableOf(this.sc, page)
  }
  /** Whether two pages live in the same PTE table (hence share a split PTL). */
  sameTable(a: number, b: number): boolean {
    return this.tableOf(a) === this.tableOf(b)
  }
  /**
   * A PTE table as traces name it: `base` ('the PTE page') with one table, `the PTE page#1`
   * with several.
   */
  tableName(k: number, base = 'the PTE page'): string {
    return `${base}${tableTag(this.sc, k)}`
  }
  /** The huge page (`thp:`) whose subpage `page` is, or null (a small page). */
  hugeOf(page: number): ThpDecl | null {
    return hugeOf(this.sc, page)
  }
  isThp(page: number): boolean {
    return hugeOf(this.sc, page) !== null
  }
  /** The table of huge page `hp`'s PMD (its own PMD range). */
  protected hugeTable(hp: ThpDecl): number {
    return this.tableOf(hp.pages[0]!)
  }
}

const NO_VIOLATIONS: Violation[] = []

export function pteText(p: Pte | null): string {
  if (!p) return 'none'
  if (p.mig)
    return `${p.huge ? 'PMD ' : ''}migration entry (pfn ${p.pfn}, ${p.write ? 'writable' : 'read-only'})`
  if (p.swp !== undefined) return `swap entry (slot ${p.swp}${p.excl ? ', exclusive' : ''})`
  if (!p.present) return `pfn ${p.pfn} PROT_NONE`
  if (p.huge && !p.present) return `pfn ${p.pfn} (huge PMD, invalid: pmdp_invalidate)`
  return `pfn ${p.pfn} ${p.write ? 'RW' : 'RO'}${p.dirty ? ' dirty' : ' clean'}${p.pfn === ZERO_PFN ? ' (zero page)' : ''}${p.huge ? ' (huge PMD)' : ''}`
}

export function insertEntry(list: readonly TlbEntry[], e: TlbEntry): TlbEntry[] {
  const out = list.filter((x) => x.page !== e.page)
  out.push(e)
  out.sort((a, b) => a.page - b.page)
  return out
}

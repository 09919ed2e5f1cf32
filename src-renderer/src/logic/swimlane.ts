/**
 * Swimlane rows from a replayed trace, in the style of Documentation/mm/mmu_notifier.rst:
 * one lane per thread (CPUs, then devices), one row per step in time order, the acting
 * thread's events in its lane, and what every thread holds at that moment.
 */
import type {
  Culprit,
  CulpritRole,
  EventKind,
  StepRecord,
  TraceEvent,
} from '../../../src-main/engine/results'

export interface LaneCell {
  /** Locks this thread holds after the row's step (its last event's locks). */
  readonly locks: readonly string[]
  readonly holdsPtl: boolean
  readonly holdsMmap: boolean
}

export interface SwimlaneRow {
  readonly index: number
  readonly step: number
  readonly thread: string
  readonly lane: number
  readonly events: readonly TraceEvent[]
  readonly changes: readonly string[]
  /** One lock summary per lane. */
  readonly lanes: readonly LaneCell[]
  readonly notifier: boolean
  readonly secInval: boolean
  readonly violation: boolean
  /** Part of a livelock cycle that repeats forever. */
  readonly cycle: boolean
  /** The culprit steps this row is (a fill, the PTE change, a missed flush, the stale use). */
  readonly culprits: readonly Culprit[]
}

export interface Swimlane {
  readonly lanes: readonly string[]
  readonly rows: readonly SwimlaneRow[]
  /** Row index of the violating step, or null. */
  readonly violationRow: number | null
}

const EMPTY: LaneCell = { locks: [], holdsPtl: false, holdsMmap: false }

function laneCell(locks: readonly string[]): LaneCell {
  if (locks.length === 0) return EMPTY
  return {
    locks,
    holdsPtl: locks.some((l) => /ptl|page-table/i.test(l)),
    holdsMmap: locks.some((l) => l.startsWith('mmap_lock')),
  }
}

/** Natural order, CPU-ish names before device-ish ones: C0 C1 C10 D0 ... */
export function compareThreads(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true })
}

/**
 * Builds the rows. `violationStep` is the step the violation was detected at; a final-state
 * violation (forbid, or detected after the last step) highlights the last row. A livelock
 * (step -1) highlights the first row of its cycle, `cycleFrom` (the schedule's length), or the
 * last row when the cycle is unknown.
 */
export function buildSwimlane(
  records: readonly StepRecord[],
  violationStep: number | null,
  extraLanes: readonly string[] = [],
  cycleFrom: number | null = null,
  culprits: readonly Culprit[] = [],
): Swimlane {
  const byStep = new Map<number, Culprit[]>()
  for (const c of culprits) byStep.set(c.step, [...(byStep.get(c.step) ?? []), c])
  const names = new Set<string>(extraLanes)
  for (const r of records) names.add(r.thread)
  const lanes = [...names].sort(compareThreads)
  const laneOf = new Map(lanes.map((l, i) => [l, i]))
  const held: LaneCell[] = lanes.map(() => EMPTY)
  let violationRow: number | null = null
  if (violationStep !== null && records.length > 0) {
    const exact = records.findIndex((r) => r.step === violationStep)
    const last = records.length - 1
    if (violationStep < 0) violationRow = cycleFrom !== null && cycleFrom <= last ? cycleFrom : last
    else violationRow = exact >= 0 ? exact : violationStep > records[last].step ? last : null
  }
  const rows = records.map((r, index): SwimlaneRow => {
    const lane = laneOf.get(r.thread) ?? 0
    const last = r.events[r.events.length - 1]
    // A step's own lane shows every lock it held at some point in the step (a PTL taken and
    // dropped inside one step is still a hold worth seeing); other lanes carry their last state.
    const during = new Set<string>()
    for (const e of r.events) for (const l of e.locks) during.add(l)
    const cells = held.slice()
    cells[lane] = laneCell([...during])
    held[lane] = last ? laneCell(last.locks) : held[lane]
    const kinds = new Set<EventKind>(r.events.map((e) => e.kind))
    return {
      index,
      step: r.step,
      thread: r.thread,
      lane,
      events: r.events,
      changes: r.changes,
      lanes: cells,
      notifier: kinds.has('notifier'),
      secInval: kinds.has('sec-inval'),
      violation: index === violationRow || kinds.has('violation'),
      cycle: cycleFrom !== null && index >= cycleFrom,
      culprits: (byStep.get(r.step) ?? []).filter((c) => c.thread === r.thread),
    }
  })
  return { lanes, rows, violationRow }
}

/**
 * How a culprit's role reads in the swimlane's mark and the explanation. A further step the
 * explanation names (a free, a writeback's clean, an up-to-date read) is context, not the cause.
 */
export const ROLE_LABEL: Readonly<Record<CulpritRole, string>> = {
  fill: 'fill',
  'pte-change': 'PTE change',
  'missed-flush': 'missed flush',
  'stale-use': 'stale use',
  context: 'context',
}

/** The one-letter mark of a role in a swimlane cell (its label is the mark's tooltip). */
export const ROLE_MARK: Readonly<Record<CulpritRole, string>> = {
  fill: 'F',
  'pte-change': 'P',
  'missed-flush': 'M',
  'stale-use': 'U',
  context: 'C',
}

/**
 * Rows whose step matches `query` (case-insensitive): the thread, an event's function or text, or
 * a change. The browser's find cannot see rows the virtual list has not rendered.
 */
export function searchRows(rows: readonly SwimlaneRow[], query: string): number[] {
  const q = query.trim().toLowerCase()
  if (q === '') return []
  const out: number[] = []
  for (const r of rows) {
    const hit =
      r.thread.toLowerCase() === q ||
      r.events.some((e) => e.fn.toLowerCase().includes(q) || e.text.toLowerCase().includes(q)) ||
      r.changes.some((c) => c.toLowerCase().includes(q))
    if (hit) out.push(r.index)
  }
  return out
}

/** Short label of an event for the dense lane view (full names: the wrap mode). */
export function eventLabel(e: TraceEvent): string {
  if (e.kind === 'op') return e.text.replace(/^[^:]*:\s*/, '')
  if (e.kind === 'notifier' || e.kind === 'sec-inval') return `${e.fn}(${e.text})`
  return e.fn
}

/** Longest function name a compact cell shows whole. */
const COMPACT_FN = 16

/**
 * A function name for a narrow cell, keeping the part that tells it apart from its siblings:
 * the hooks share their prefix (`mmu_notifier_invalidate_range_start`, `..._range_end`,
 * `mmu_notifier_arch_invalidate_secondary_tlbs`), so a long name keeps its last two words
 * (`…range_start`, `…range_end`, `…secondary_tlbs`); a short one stays whole.
 */
export function compactFn(fn: string): string {
  if (fn.length <= COMPACT_FN) return fn
  const words = fn.split('_').filter((w) => w !== '')
  if (words.length < 3) return fn
  return `…${words.slice(-2).join('_')}`
}

/** What a compact cell drops last: the calls that make a policy differ, then what changed state. */
const KEEP: ReadonlySet<EventKind> = new Set<EventKind>([
  'op',
  'notifier',
  'sec-inval',
  'violation',
  'pte',
  'fault',
])

/**
 * The labels of a step's events for a cell `capacity` characters wide (joined by ` · `): the
 * full names when they fit, else the compact ones (`…range_start(CLEAR A)`), else without
 * arguments, without the lock and CPU-flush steps, then each name's last word (`…start`,
 * `…end`, `…tlbs`, still telling the hooks apart); at the narrowest, the notifier calls and
 * invalidations come first (they are what tell policies apart). Past that the cell cuts its
 * tail; the tooltip and the wrap mode have everything.
 */
export interface CellLabel {
  readonly text: string
  readonly kind: EventKind
}

export function fitLabels(events: readonly TraceEvent[], capacity: number): CellLabel[] {
  const width = (ls: readonly string[]): number =>
    ls.reduce((n, l) => n + l.length, 0) + 3 * Math.max(0, ls.length - 1)
  const as = (es: readonly TraceEvent[], ls: readonly string[]): CellLabel[] =>
    es.map((e, i) => ({ text: ls[i]!, kind: e.kind }))
  const lastWord = (fn: string): string => {
    if (fn.length <= 8) return fn
    const w = fn.split('_').filter((x) => x !== '')
    return w.length < 2 ? fn : `…${w[w.length - 1]}`
  }
  const bare = (e: TraceEvent): string => (e.kind === 'op' ? eventLabel(e) : compactFn(e.fn))
  const short = (e: TraceEvent): string => (e.kind === 'op' ? eventLabel(e) : lastWord(e.fn))
  const kept = events.filter((e) => KEEP.has(e.kind))
  const levels: Array<[readonly TraceEvent[], (e: TraceEvent) => string]> = [
    [events, eventLabel],
    [events, compactLabel],
    [events, bare],
    [kept, bare],
    [events, short],
    [kept, short],
  ]
  for (const [es, label] of levels) {
    const ls = es.map(label)
    if (es.length > 0 && width(ls) <= capacity) return as(es, ls)
  }
  // Nothing fits: the calls that tell policies apart (a hook, an invalidation) first, then the
  // rest in step order; the cell cuts the tail.
  const hooks = (e: TraceEvent): boolean => e.kind === 'notifier' || e.kind === 'sec-inval'
  const es = kept.length > 0 ? [...kept.filter(hooks), ...kept.filter((e) => !hooks(e))] : events
  return as(es, es.map(short))
}

/**
 * How many lanes, from its own, a row's acting cell may take: it runs on over the lanes to its
 * right whose threads hold nothing at that step (their cells would be empty), so its text gets
 * the room; a lane that holds a lock keeps its cell and its lock mark.
 */
export function actSpan(row: SwimlaneRow): number {
  let k = 1
  while (row.lane + k < row.lanes.length && row.lanes[row.lane + k]!.locks.length === 0) k++
  return k
}

/** `eventLabel` for a compact cell: long function names by their suffix, `MMU_NOTIFY_` dropped. */
export function compactLabel(e: TraceEvent): string {
  if (e.kind === 'op') return eventLabel(e)
  if (e.kind === 'notifier' || e.kind === 'sec-inval')
    return `${compactFn(e.fn)}(${e.text.replace(/\bMMU_NOTIFY_/g, '')})`
  return compactFn(e.fn)
}

export interface KnownState {
  /** Subject (`PTE A`, `iommu TLB`, `pfn 3`, `r1`) → current description. */
  readonly entries: ReadonlyArray<{ subject: string; value: string; changedHere: boolean }>
}

function parseChange(c: string): { subject: string; detail: string } {
  const assign = /^(\S+) := (.*)$/.exec(c)
  if (assign) return { subject: assign[1], detail: assign[2] }
  const i = c.indexOf(': ')
  if (i < 0) return { subject: c, detail: '' }
  return { subject: c.slice(0, i), detail: c.slice(i + 2) }
}

/**
 * What the trace says about the state up to and including row `upto`: the latest change per
 * subject; TLB-like subjects (`+X -> ...`, `-X (...)`) keep their entry sets.
 * The initial state is not in the trace, so subjects appear once something changes them.
 */
export function knownStateAt(records: readonly StepRecord[], upto: number): KnownState {
  const values = new Map<string, string>()
  const sets = new Map<string, Map<string, string>>()
  const here = new Set<string>()
  for (let i = 0; i <= upto && i < records.length; i++) {
    for (const c of records[i].changes) {
      const { subject, detail } = parseChange(c)
      if (i === upto) here.add(subject)
      const entry = /^([+-])(\S+)\s*(.*)$/.exec(detail)
      if (entry) {
        const set = sets.get(subject) ?? new Map<string, string>()
        sets.set(subject, set)
        if (entry[1] === '+') set.set(entry[2], `${entry[2]} ${entry[3]}`.trim())
        else set.delete(entry[2])
        values.set(subject, '')
      } else {
        const arrow = detail.lastIndexOf(' -> ')
        values.set(subject, arrow >= 0 ? detail.slice(arrow + 4) : detail)
      }
    }
  }
  const entries = [...values.keys()].sort(compareThreads).map((subject) => {
    const set = sets.get(subject)
    const value = set
      ? set.size === 0
        ? '(empty)'
        : [...set.values()].join(', ')
      : (values.get(subject) ?? '')
    return { subject, value, changedHere: here.has(subject) }
  })
  return { entries }
}

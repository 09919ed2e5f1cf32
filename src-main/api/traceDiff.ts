/**
 * Two traces of the same schedule, aligned step by step (issue 12): shared by the workbench's
 * side-by-side traces and the CLI's `distinguish`. Pure: no DOM, no Node.
 *
 * Alignment: when both traces say which schedule entry each record ran (`positions`, from a
 * compare or distinguish replay), records pair by that entry, so a policy that skipped an entry
 * the other ran (a thread blocked under one policy only) leaves a row with one side empty.
 * Records past the schedule (a thread run to completion after it) and traces without positions
 * pair in order.
 */
import type { StepRecord, TraceEvent } from '../engine'

/**
 * Why two aligned records differ: another thread ran, the events differ (an extra notifier call,
 * an invalidation, a walk that missed instead of hit, a different value read), the changes
 * differ, the machine states diverge differently after the step than before it (the [subject,
 * value] rows that differ are not the same ones, or not with the same values), or one side has
 * no record.
 */
export type DiffKind = 'thread' | 'events' | 'changes' | 'state' | 'missing'

export interface AlignedRow {
  /** Record index in trace a, or null when a has no record for this row. */
  readonly a: number | null
  readonly b: number | null
  readonly differs: boolean
  readonly kinds: readonly DiffKind[]
}

export interface TraceDiff {
  readonly rows: readonly AlignedRow[]
  /** Indices into `rows` of the rows that differ, in order. */
  readonly differing: readonly number[]
}

export interface DiffSide {
  readonly records: readonly StepRecord[]
  /** For each record, the schedule entry it ran, or null past the schedule. */
  readonly positions?: ReadonlyArray<number | null>
}

/** Pairs of record indices, before comparison. */
type Pair = readonly [number | null, number | null]

export function diffTraces(a: DiffSide, b: DiffSide): TraceDiff {
  const pairs = align(a, b)
  const rows: AlignedRow[] = []
  const differing: number[] = []
  let divergence = ''
  for (const [ia, ib] of pairs) {
    const ra = ia === null ? null : a.records[ia]!
    const rb = ib === null ? null : b.records[ib]!
    const kinds = compareRecords(ra, rb)
    if (ra && rb) {
      // Once the machines diverge, every later state differs: a row differs in state only where
      // the divergence itself changes (a TLB entry one side filled or dropped here, a value read).
      const now = stateDivergence(ra, rb)
      if (now !== divergence) kinds.push('state')
      divergence = now
    }
    if (kinds.length > 0) differing.push(rows.length)
    rows.push({ a: ia, b: ib, differs: kinds.length > 0, kinds })
  }
  return { rows, differing }
}

/** State subjects (`PTE A`, `iommu TLB`, `r0`) whose values differ between two records. */
export function stateDifferences(a: StepRecord | null, b: StepRecord | null): Set<string> {
  const out = new Set<string>()
  if (!a?.state || !b?.state) return out
  const left = new Map(a.state)
  const right = new Map(b.state)
  for (const [subject, value] of left) if (right.get(subject) !== value) out.add(subject)
  for (const subject of right.keys()) if (!left.has(subject)) out.add(subject)
  return out
}

function usable(side: DiffSide): boolean {
  return side.positions !== undefined && side.positions.length === side.records.length
}

function align(a: DiffSide, b: DiffSide): Pair[] {
  if (!usable(a) || !usable(b)) return inOrder(0, a.records.length, 0, b.records.length)
  const pa = a.positions!
  const pb = b.positions!
  // The scheduled part of each trace: records up to the last one with a position.
  const endA = scheduledEnd(pa)
  const endB = scheduledEnd(pb)
  const pairs: Pair[] = []
  let i = 0
  let j = 0
  while (i < endA || j < endB) {
    const x = i < endA ? pa[i] : undefined
    const y = j < endB ? pb[j] : undefined
    // A record without a position inside the scheduled part (the replays do not produce one,
    // a hand-made trace might) pairs only with another such record, else stands alone.
    if (x === null || y === null || x === undefined || y === undefined) {
      if (x === undefined || (x !== null && y === null)) pairs.push([null, j++])
      else if (y === undefined || (y !== null && x === null)) pairs.push([i++, null])
      else pairs.push([i++, j++])
      continue
    }
    if (x === y) pairs.push([i++, j++])
    else if (x < y) pairs.push([i++, null])
    else pairs.push([null, j++])
  }
  return pairs.concat(inOrder(endA, a.records.length, endB, b.records.length))
}

function scheduledEnd(positions: ReadonlyArray<number | null>): number {
  for (let k = positions.length - 1; k >= 0; k--) if (positions[k] !== null) return k + 1
  return 0
}

function inOrder(fromA: number, toA: number, fromB: number, toB: number): Pair[] {
  const pairs: Pair[] = []
  for (let k = 0; k < Math.max(toA - fromA, toB - fromB); k++) {
    pairs.push([fromA + k < toA ? fromA + k : null, fromB + k < toB ? fromB + k : null])
  }
  return pairs
}

function compareRecords(a: StepRecord | null, b: StepRecord | null): DiffKind[] {
  if (!a || !b) return ['missing']
  const kinds: DiffKind[] = []
  if (a.thread !== b.thread) kinds.push('thread')
  if (!sameList(a.events.map(eventKey), b.events.map(eventKey))) kinds.push('events')
  if (!sameList(a.changes, b.changes)) kinds.push('changes')
  return kinds
}

/** The subjects whose values differ after both steps, with both values, as one string. */
function stateDivergence(a: StepRecord, b: StepRecord): string {
  if (!a.state || !b.state) return ''
  const left = new Map(a.state)
  const right = new Map(b.state)
  return [...stateDifferences(a, b)]
    .sort()
    .map((s) => `${s}\u0000${left.get(s) ?? ''}\u0000${right.get(s) ?? ''}`)
    .join('\u0001')
}

// The step number and the locks held are left out: a skipped entry shifts every later step
// number, and the locks are part of the state rows.
function eventKey(e: TraceEvent): string {
  return `${e.kind}\u0000${e.fn}\u0000${e.text}`
}

function sameList(x: readonly string[], y: readonly string[]): boolean {
  return x.length === y.length && x.every((v, k) => v === y[k])
}

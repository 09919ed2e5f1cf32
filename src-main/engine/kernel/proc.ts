/**
 * A kernel function lowered to a small state machine: each `pc` is one atomic step (a
 * scheduling point), optionally guarded by a lock or wait condition. Progress lives in the
 * thread's call stack, so it is part of the hashed state.
 */
import type { Ctx } from '../ctx'
import type { CallFrame, LocalValue, Pte } from '../state'

export interface PcHandler {
  /** Why the step cannot run now (lock held, waiting), or null when it can. */
  readonly guard?: (c: Ctx, f: CallFrame) => string | null
  readonly run: (c: Ctx, f: CallFrame) => void
}

export type Proc = Readonly<Record<string, PcHandler>>

export function num(f: CallFrame, k: string): number {
  return f.l[k] as number
}
export function flag(f: CallFrame, k: string): boolean {
  return f.l[k] === true
}
export function list(f: CallFrame, k: string): readonly number[] {
  return (f.l[k] as readonly number[] | null) ?? []
}

/** PTEs travel through locals as [pfn, present, write, dirty] (or null for pte_none). */
export function encodePte(p: Pte | null): LocalValue {
  if (!p) return null
  const a = [p.pfn, p.present ? 1 : 0, p.write ? 1 : 0, p.dirty ? 1 : 0, p.mig ? 1 : 0, p.swp ?? -1]
  return p.huge ? [...a, 1] : p.excl ? [...a, 0, 1] : a
}
export function decodePte(v: LocalValue): Pte | null {
  if (v === null || !Array.isArray(v)) return null
  const a = v as readonly number[]
  const p = { pfn: a[0]!, present: a[1] === 1, write: a[2] === 1, dirty: a[3] === 1 }
  // A PMD migration entry is both: the fault that found it waits on it as on any migration entry.
  const base = a[6] === 1 ? { ...p, huge: true as const } : p
  if (a[4] === 1) return { ...base, mig: true }
  if (a[6] === 1) return base
  if (a[5] === undefined || a[5] < 0) return p
  return a[7] === 1 ? { ...p, swp: a[5], excl: true } : { ...p, swp: a[5] }
}
export function pteSame(a: Pte | null, b: Pte | null): boolean {
  if (!a || !b) return a === b
  return (
    a.pfn === b.pfn &&
    a.present === b.present &&
    a.write === b.write &&
    a.dirty === b.dirty &&
    !a.mig === !b.mig &&
    !a.huge === !b.huge &&
    a.swp === b.swp &&
    !a.excl === !b.excl
  )
}

/** Splits sorted page indices into VMAs: maximal runs of adjacent pages with equal protection. */
export function vmaRuns(pages: readonly number[], prot: (p: number) => string | null): number[][] {
  const runs: number[][] = []
  for (const p of pages) {
    const last = runs[runs.length - 1]
    const prev = last?.[last.length - 1]
    if (last && prev === p - 1 && prot(prev) === prot(p)) last.push(p)
    else runs.push([p])
  }
  return runs
}

/** The index of the next page at or after `from` whose PTE is not pte_none, or -1. */
export function nextPte(c: Ctx, pages: readonly number[], from: number): number {
  for (let i = from; i < pages.length; i++) if (c.pte(c.mmIndex, pages[i]!) !== null) return i
  return -1
}

/**
 * The rest of a step after a notifier call. It runs now, unless the call left a driver command
 * owed (an atc-first driver's IOTLB command): then the step ends here, the thread runs the
 * command next, and `rest` runs as the step after it, registered at `pc` (see Ctx.owed).
 */
export function afterNotifier(c: Ctx, f: CallFrame, pc: string, rest: (c: Ctx, f: CallFrame) => void): void {
  if (c.owed) c.goto(pc)
  else rest(c, f)
}

/**
 * `step(state, thread) -> state + events`: the one transition function. Pure: it clones the
 * state, runs one atomic step of one thread, and returns what happened as data.
 */
import { Ctx } from './ctx'
import type { Footprint } from './footprint'
import type { InvalidationKinds } from './costs'
import { cpuAccess, devAccess, devTranslateProc, mirrorAccess } from './kernel/access'
import { handleMmFault } from './kernel/fault'
import { hmmAccess } from './kernel/hmm'
import type { Proc } from './kernel/proc'
import { fork, mprotect, protCode } from './kernel/protect'
import { madviseDontneed, munmap, unmapMappingRange, zapVma } from './kernel/unmap'
import { ksmMerge } from './kernel/ksm'
import { migrate, migrateVma } from './kernel/migrate'
import { reclaim } from './kernel/reclaim'
import { iotlbCommand } from './kernel/iommu'
import { writeback } from './kernel/writeback'
import { sync, vfree, vmalloc } from './kernel/vmalloc'
import { thpCollapse, thpSplit } from './kernel/thp'
import { migrateThp, reclaimThp, splitHugePage } from './kernel/thpRmap'
import { exitMmap, oomReap } from './kernel/exit'
import { truncate } from './kernel/truncate'
import { mremap } from './kernel/mremap'
import { fileReclaim } from './kernel/fileReclaim'
import { fileMigrate } from './kernel/fileMigrate'
import type { Policy } from './policy'
import type { Metrics, TraceEvent, Violation } from './results'
import { zeroMetrics } from './results'
import { hugeOf, shallowNext, type CallFrame, type LabState } from './state'
import type { Op, Scenario, SwMirrorDecl } from './types'
import { MIGRATE_MODES } from './types'

/** Kernel function name → its step program (the lowering table). */
export const PROCS: Readonly<Record<string, Proc>> = {
  cpu_access: cpuAccess,
  dev_access: devAccess,
  dev_translate: devTranslateProc,
  mirror_access: mirrorAccess,
  hmm_access: hmmAccess,
  handle_mm_fault: handleMmFault,
  zap_vma: zapVma,
  munmap,
  madvise_dontneed: madviseDontneed,
  mprotect,
  fork,
  ksm_merge: ksmMerge,
  migrate,
  migrate_vma: migrateVma,
  reclaim,
  unmap_mapping_range: unmapMappingRange,
  iotlb_command: iotlbCommand,
  writeback,
  vmalloc,
  vfree,
  sync,
  thp_split: thpSplit,
  thp_collapse: thpCollapse,
  exit_mmap: exitMmap,
  oom_reap: oomReap,
  truncate,
  mremap,
  reclaim_file: fileReclaim,
  migrate_file: fileMigrate,
  reclaim_thp: reclaimThp,
  migrate_thp: migrateThp,
  split_huge_page: splitHugePage,
}

/** A subpage of an anon huge page: reclaim and migration start on the huge folio. */
function thpAnon(sc: Scenario, page: number): boolean {
  return hugeOf(sc, page)?.kind === 'anon'
}

function rootFrame(sc: Scenario, t: number, op: Op): CallFrame {
  const th = sc.threads[t]!
  switch (op.kind) {
    case 'read':
    case 'write': {
      const proc =
        th.kind === 'cpu'
          ? 'cpu_access'
          : sc.secondaries[th.via]!.type === 'hw-walker'
            ? 'dev_access'
            : (sc.secondaries[th.via] as SwMirrorDecl).protocol === 'hmm'
              ? 'hmm_access'
              : 'mirror_access'
      return {
        proc,
        pc: 'start',
        l: {
          page: op.page,
          write: op.kind === 'write',
          val: op.kind === 'write' ? op.value : 0,
          reg: op.kind === 'read' ? op.reg : null,
        },
      }
    }
    case 'write_fault':
    case 'cow_fault':
      return { proc: 'handle_mm_fault', pc: 'start', l: { page: op.page, write: true, remote: false } }
    case 'munmap':
      return { proc: 'munmap', pc: 'start', l: { req: op.pages } }
    case 'madvise_dontneed':
      return { proc: 'madvise_dontneed', pc: 'start', l: { req: op.pages } }
    case 'mprotect':
      return { proc: 'mprotect', pc: 'start', l: { req: op.pages, prot: protCode(op.prot) } }
    case 'fork':
      return { proc: 'fork', pc: 'start', l: {} }
    case 'ksm_merge':
      return { proc: 'ksm_merge', pc: 'start', l: { page: op.page } }
    case 'migrate':
      if (sc.pages[op.page]!.kind === 'file')
        return { proc: 'migrate_file', pc: 'start', l: { page: op.page } }
      return {
        proc: thpAnon(sc, op.page) ? 'migrate_thp' : 'migrate',
        pc: 'start',
        l: { page: op.page, mode: MIGRATE_MODES.indexOf(op.mode) },
      }
    case 'migrate_vma':
      return {
        proc: 'migrate_vma',
        pc: 'start',
        l: op.owner === undefined ? { page: op.page } : { page: op.page, owner: op.owner },
      }
    case 'reclaim':
      return {
        proc:
          sc.pages[op.page]!.kind === 'file'
            ? 'reclaim_file'
            : thpAnon(sc, op.page)
              ? 'reclaim_thp'
              : 'reclaim',
        pc: 'start',
        l: { page: op.page },
      }
    case 'unmap_mapping_range':
      return { proc: 'unmap_mapping_range', pc: 'start', l: { page: op.page } }
    case 'vmalloc':
      return { proc: 'vmalloc', pc: 'start', l: { page: op.page, value: op.value } }
    case 'vfree':
      return { proc: 'vfree', pc: 'start', l: { page: op.page } }
    case 'translate':
      return { proc: 'dev_translate', pc: 'start', l: { page: op.page } }
    case 'signal':
    case 'wait':
      return { proc: 'sync', pc: 'start', l: { flag: op.flag, wait: op.kind === 'wait' } }
    case 'writeback':
      return { proc: 'writeback', pc: 'start', l: { page: op.page } }
    case 'thp_split':
    case 'thp_collapse':
      // Local hp names the huge page (kernel/thp.ts frameHuge); absent for the first.
      return { proc: op.kind, pc: 'start', l: op.hp > 0 ? { hp: op.hp } : {} }
    case 'exit':
      return { proc: 'exit_mmap', pc: 'start', l: {} }
    case 'oom_reap':
      return { proc: 'oom_reap', pc: 'start', l: {} }
    case 'truncate':
      return { proc: 'truncate', pc: 'start', l: { page: op.page } }
    case 'mremap':
      return { proc: 'mremap', pc: 'start', l: { page: op.page, to: op.to } }
  }
}

/** The frame whose current pc runs next (the op's root frame if the op has not started). */
function nextFrame(sc: Scenario, s: LabState, t: number): CallFrame | null {
  const th = s.threads[t]!
  if (th.done) return null
  const top = th.stack[th.stack.length - 1]
  return top ?? rootFrame(sc, t, sc.threads[t]!.ops[th.op]!)
}

/** Why thread `t` cannot step now ('done' when finished), or null when it can. */
export function blockedReason(sc: Scenario, policy: Policy, s: LabState, t: number): string | null {
  const th = s.threads[t]!
  if (th.done) return 'done'
  if (sc.threads[t]!.mm === 1 && !s.mms[1]!.live) return 'waiting for fork to return'
  const top = th.stack[th.stack.length - 1]
  // An op that has not started yet: its entry guard only depends on the op kind.
  const f = top ?? rootFrame(sc, t, sc.threads[t]!.ops[th.op]!)
  const h = PROCS[f.proc]![f.pc]
  if (!h) throw new Error(`model bug: no pc ${f.pc} in ${f.proc}`)
  if (!h.guard) return null
  return h.guard(new Ctx(sc, policy, s, t, -1, false, GUARD_METRICS), f)
}

const GUARD_METRICS = zeroMetrics()

/**
 * What the guard of thread `t`'s next step reads (the resources its enabledness depends on),
 * or null when it waits for something no guard reads (the fork child's mm going live).
 */
export function guardReads(sc: Scenario, policy: Policy, s: LabState, t: number): readonly number[] | null {
  const th = s.threads[t]!
  if (th.done || (sc.threads[t]!.mm === 1 && !s.mms[1]!.live)) return null
  const f = nextFrame(sc, s, t)!
  const h = PROCS[f.proc]![f.pc]!
  if (!h.guard) return []
  const fp: Footprint = { r: [], w: [], inc: [] }
  h.guard(new Ctx(sc, policy, s, t, -1, false, GUARD_METRICS, fp), f)
  return fp.r
}

export function enabledThreads(sc: Scenario, policy: Policy, s: LabState): number[] {
  const out: number[] = []
  for (let t = 0; t < s.threads.length; t++) {
    const th = s.threads[t]!
    if (th.done) continue
    // Most steps have no guard: skip building a context for them.
    const top = th.stack[th.stack.length - 1]
    if (top && !PROCS[top.proc]![top.pc]!.guard && (sc.threads[t]!.mm === 0 || s.mms[1]!.live)) {
      out.push(t)
      continue
    }
    if (blockedReason(sc, policy, s, t) === null) out.push(t)
  }
  return out
}

export function allDone(s: LabState): boolean {
  return s.threads.every((t) => t.done)
}

export interface StepResult {
  readonly next: LabState
  readonly events: readonly TraceEvent[]
  readonly violations: readonly Violation[]
}

/**
 * Runs one step of thread `t` (which must be enabled). `metrics` is updated in place;
 * events are recorded only when `tracing`.
 */
export function step(
  sc: Scenario,
  policy: Policy,
  s: LabState,
  t: number,
  index: number,
  tracing: boolean,
  metrics: Metrics,
  fp: Footprint | null = null,
  kinds: InvalidationKinds | null = null,
): StepResult {
  const next = shallowNext(s, t)
  const c = new Ctx(sc, policy, next, t, index, tracing, metrics, fp, kinds)
  const th = next.threads[t]!
  if (fp) {
    // What made the step enabled is part of what it read.
    if (sc.threads[t]!.mm === 1) c.mmLive(1)
    const g = nextFrame(sc, next, t)!
    PROCS[g.proc]![g.pc]!.guard?.(c, g)
  }
  if (th.stack.length === 0) {
    const decl = sc.threads[t]!
    th.stack.push(rootFrame(sc, t, decl.ops[th.op]!))
    th.faults = 0
    c.emit('op', decl.opText[th.op]!.split(' ')[0]!, `${decl.name}: ${decl.opText[th.op]}`)
  }
  const f = th.stack[th.stack.length - 1]!
  const pc = f.pc
  PROCS[f.proc]![pc]!.run(c, f)
  if (c.owed && c.afterOwed !== null)
    throw new Error(
      `model bug: ${f.proc}.${pc} changes the machine after an atc-first driver's first command; the step must end at the notifier call`,
    )
  // A callee's return value is read by the step right after the call: dead afterwards.
  delete f.l.ret
  const ctl = c.control
  if (!ctl) throw new Error(`model bug: ${f.proc}.${f.pc} ended without goto/call/ret`)
  if (ctl.k === 'goto') f.pc = ctl.pc
  else if (ctl.k === 'call') {
    f.pc = ctl.ret
    th.stack.push({ proc: ctl.proc, pc: 'start', l: ctl.l })
  } else {
    // The vCPU's fault (or a dmirror_fault that gives up) returns: it drops the mm_users
    // reference mirrorTry / hmm.ts hmmStart took.
    if (th.stack.length === 1 && f.l.mmget === true)
      c.mmUsers(sc.threads[t]!.mm, -1, f.proc === 'hmm_access' ? 'dmirror_fault' : 'vCPU fault')
    th.stack.pop()
    const caller = th.stack[th.stack.length - 1]
    if (caller) {
      // A driver command returns nothing to the kernel code: the caller's ret stays as it was.
      if (f.proc !== 'iotlb_command') caller.l.ret = ctl.value
    } else if (!c.owed) {
      // (With driver commands owed, the op ends when the last of them does.)
      if (th.locks.length > 0)
        throw new Error(`model bug: ${sc.threads[t]!.name} finished an op holding ${th.locks.join(', ')}`)
      th.op++
      th.faults = 0
      if (th.op >= sc.threads[t]!.ops.length) th.done = true
    }
  }
  // Driver commands still owed run next on this thread, first owed first.
  if (c.owed)
    for (const o of [...c.owed].reverse())
      th.stack.push({ proc: 'iotlb_command', pc: 'start', l: { sec: o.sec, pages: o.pages, why: o.why } })
  return { next, events: c.events, violations: c.violations }
}

/**
 * HMM mirrors (`secondary: { type: sw-mirror, protocol: hmm }`): a driver that mirrors the
 * process's page table in its device through an mmu_interval_notifier (v6.6 mm/mmu_notifier.c,
 * mm/hmm.c; the driver is lib/test_hmm.c's dmirror, the pattern of Documentation/mm/hmm.rst
 * "Address space mirroring implementation and API").
 *
 * The notifier is inserted when the mirror is set up (dmirror_fops_open:
 * mmu_interval_notifier_insert(&dmirror->notifier, mm, 0, ULONG_MAX & PAGE_MASK)), so every
 * invalidation of the address space reaches its ->invalidate (ctx.ts intervalStart: driver
 * lock, mmu_interval_set_seq, zap) and ends in mn_itree_inv_end (ctx.ts intervalEnd).
 *
 * A device access that misses the mirror runs dmirror_range_fault():
 *
 *   again:
 *     range.notifier_seq = mmu_interval_read_begin(&interval_sub);   // waits while invalidating
 *     mmap_read_lock(mm); ret = hmm_range_fault(&range); mmap_read_unlock(mm);
 *     if (ret) { if (ret == -EBUSY) goto again; return ret; }
 *     take_lock(driver->update);
 *     if (mmu_interval_read_retry(&ni, range.notifier_seq)) { release_lock(driver->update); goto again; }
 *     // program the device page table from range.hmm_pfns
 *     release_lock(driver->update);
 *
 * The driver lock (dmirror->mutex) is held across one atomic step on each side: the check and
 * the programming are one step, and ->invalidate's set_seq and zap are one step, so they never
 * interleave, which is what the lock gives. `hmm_retry: false` models a driver that programs
 * without mmu_interval_read_retry(): the pfn hmm_range_fault returned may have been unmapped
 * and freed after the walk, and the device keeps it.
 */
import type { Ctx } from '../ctx'
import type { CallFrame, TlbEntry } from '../state'
import type { SwMirrorDecl } from '../types'
import { devMm, faultInReturn, mirrorLookup, resolvedEntry, resolveOrFaultIn } from './access'
import { num, type Proc } from './proc'

function decl(c: Ctx): SwMirrorDecl {
  return c.sc.secondaries[c.sc.threads[c.t]!.via] as SwMirrorDecl
}

/** dmirror_fault(): a hit in the mirror (dmirror->pt), or the fault path. */
function hmmStart(c: Ctx, f: CallFrame): void {
  const name = decl(c).name
  const page = num(f, 'page')
  const e = mirrorLookup(c, f, `${name} mirror`)
  if (e === 'hit') return
  if (c.mmReleased(devMm(c))) {
    // The process exited: dmirror_fault's mmget_not_zero() fails. (test_hmm.c then returns 0 and
    // its read loop would look again; the model ends the access: nothing can be mirrored.)
    c.emit('fault', 'dmirror_fault', `${name}: mmget_not_zero() fails: the process exited; the access fails`)
    c.ret()
    return
  }
  // dmirror_fault(): mmget_not_zero(mm) before dmirror_range_fault, mmput() after it: while the
  // fault is in flight the process's last mmput, and so exit_mmap(), cannot come (dropped at
  // 'install' once the device is programmed, or by step.ts when the op gives up).
  if (f.l.mmget !== true) {
    f.l.mmget = true
    c.mmUsers(devMm(c), 1, 'dmirror_fault')
  }
  c.metrics.device_faults++
  c.cost('mirror_fault')
  c.emit(
    'fault',
    'dmirror_range_fault',
    `${name}: ${e ? 'write to read-only' : 'no'} mirror entry for ${c.pageName(page)}`,
  )
  c.goto('begin')
}

/**
 * hmm_range_fault() (v6.6 mm/hmm.c): `do { if (mmu_interval_check_retry(range->notifier,
 * range->notifier_seq)) return -EBUSY; ret = walk_page_range(...); } while (ret == -EBUSY)`:
 * before each walk (the first, and again after hmm_vma_fault faulted a page in) it returns
 * -EBUSY if an invalidation reached the notifier since mmu_interval_read_begin, and
 * dmirror_range_fault goes back to read_begin, whether or not the driver checks
 * mmu_interval_read_retry afterwards.
 */
function hmmWalk(c: Ctx, f: CallFrame): void {
  const via = c.sc.threads[c.t]!.via
  const seq = c.seq(via)
  if (seq !== num(f, 'seq')) {
    c.emit(
      'fault',
      'hmm_range_fault',
      `${decl(c).name}: mmu_interval_check_retry: an invalidation reached the notifier since read_begin (seq ${num(f, 'seq')} -> ${seq}): -EBUSY, goto again`,
    )
    c.goto('begin')
    return
  }
  resolveOrFaultIn(c, f, 'hmm_range_fault')
}

export const hmmAccess: Proc = {
  start: { run: hmmStart },
  /**
   * mmu_interval_read_begin(): sleeps (wait_event on subscriptions->wq) while the notifier's
   * invalidate_seq equals the subscriptions' odd one, i.e. while an invalidation that called
   * its ->invalidate is still running; then returns the sequence.
   */
  begin: {
    guard: (c) =>
      c.seq(c.sc.threads[c.t]!.via) % 2 === 1
        ? 'mmu_interval_read_begin: an invalidation is running (wait_event until mn_itree_inv_end)'
        : null,
    run: (c, f) => {
      f.l.seq = c.seq(c.sc.threads[c.t]!.via)
      c.emit('info', 'mmu_interval_read_begin', `${decl(c).name}: notifier_seq = ${num(f, 'seq')}`)
      c.goto('gup')
    },
  },
  /**
   * hmm_range_fault() (v6.6 mm/hmm.c) under mmap_read_lock: hmm_vma_walk_pmd ->
   * hmm_vma_handle_pte reads the PTE; a missing or read-only one (for a write) goes through
   * hmm_vma_fault -> handle_mm_fault(FAULT_FLAG_REMOTE), then -EBUSY makes it walk again.
   */
  gup: { run: hmmWalk },
  gup_ret: faultInReturn('hmm_range_fault', 'the device access fails', hmmWalk),
  /** take_lock(driver->update); mmu_interval_read_retry(); program the device page table; release_lock. */
  install: {
    run: (c, f) => {
      const via = c.sc.threads[c.t]!.via
      const d = decl(c)
      const page = num(f, 'page')
      if (d.hmmRetry !== false) {
        const seq = c.seq(via)
        if (seq !== num(f, 'seq')) {
          c.emit(
            'fault',
            'mmu_interval_read_retry',
            `${d.name}: mutex_lock; an invalidation reached the notifier since read_begin (seq ${num(f, 'seq')} -> ${seq}): mutex_unlock, goto again`,
          )
          c.goto('begin')
          return
        }
      }
      const e = resolvedEntry(f)
      c.secPut(via, e)
      c.emit(
        'fill',
        'dmirror_do_fault',
        `${d.name}: mutex_lock, ${d.hmmRetry === false ? 'no mmu_interval_read_retry, ' : 'mmu_interval_read_retry ok, '}mirror ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}, mutex_unlock`,
        { pages: [c.pageName(page)], tlb: `${d.name} shadow`, pfn: e.pfn },
      )
      // dmirror_range_fault returned: dmirror_fault's mmput(); the read looks in the mirror again.
      c.mmUsers(devMm(c), -1, 'dmirror_fault')
      delete f.l.mmget
      c.goto('start')
    },
  },
}

/**
 * dmirror_migrate_finalize_and_map() (lib/test_hmm.c v6.6), called between migrate_vma_pages()
 * and migrate_vma_finalize() by the driver that owns the migration: under dmirror->mutex it
 * stores the destination page in its mirror for each migrated page (writable if the source
 * was), replacing the entry its ->invalidate skipped for its own MMU_NOTIFY_MIGRATE.
 */
export function finalizeAndMap(c: Ctx, f: CallFrame): void {
  const owner = num(f, 'owner')
  const d = c.sc.secondaries[owner]!
  const page = num(f, 'page')
  const dst = num(f, 'new')
  const pte = c.pte(c.mmIndex, page)
  if (pte?.mig !== true || pte.pfn !== num(f, 'pfn')) {
    // (dmirror would store the entry anyway; the model leaves a page zapped meanwhile unmapped.)
    c.emit(
      'info',
      'dmirror_migrate_finalize_and_map',
      `${d.name}: the migration entry is gone: nothing to map`,
    )
    c.goto('remove')
    return
  }
  const write = pte.write
  const e: TlbEntry = { page, pfn: dst, gen: c.folio(dst).gen, write, dirty: true, revoked: false }
  c.secPut(owner, e)
  c.emit(
    'fill',
    'dmirror_migrate_finalize_and_map',
    `${d.name}: mutex_lock, mirror ${c.pageName(page)} -> pfn ${dst} ${write ? 'RW' : 'RO'} (the destination), mutex_unlock`,
    { pages: [c.pageName(page)], tlb: `${d.name} shadow`, pfn: dst },
  )
  c.goto('remove')
}

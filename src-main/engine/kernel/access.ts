/**
 * Memory accesses: a CPU load/store through its TLB, a device DMA through a hw-walker
 * (SVA IOMMU: SMMUv3, VT-d, AMD) and through a sw-mirror (KVM, HMM). A TLB lookup, a
 * hardware walk and the fill are one atomic step (the walker takes no lock).
 */
import type { Ctx } from '../ctx'
import { KERNEL_MM, type CallFrame, type TlbEntry } from '../state'
import type { HwWalkerDecl } from '../types'
import { flag, num, type Proc } from './proc'

function complete(c: Ctx, f: CallFrame, e: TlbEntry, who: string, mm: number): void {
  const write = flag(f, 'write')
  c.checkAccess(who, mm, e, write)
  const v = c.access(e.pfn, write, num(f, 'val'))
  const reg = f.l.reg
  if (!write && typeof reg === 'number') c.setReg(reg, v)
  c.emit(
    'access',
    write ? 'store' : 'load',
    `${write ? `write ${v} to` : `read ${v} from`} ${c.pageName(e.page)} (pfn ${e.pfn}) via ${who}${typeof reg === 'number' && !write ? ` -> ${c.sc.registers[reg]}` : ''}`,
  )
  c.ret()
}

/**
 * x86 sets the PTE dirty bit in hardware on the first write through a clean entry (a locked
 * re-walk); if the PTE no longer maps the same page writable, the access faults instead.
 */
function x86SetDirty(c: Ctx, mm: number, e: TlbEntry): TlbEntry | null {
  const pte = c.pte(mm, e.page)
  if (!pte || !pte.present || !pte.write || pte.pfn !== e.pfn) return null
  if (!pte.dirty) c.setPte(mm, e.page, { ...pte, dirty: true }, 'hardware dirty-bit update')
  return { ...e, dirty: true }
}

/**
 * A hardware page walk (no lock taken): the translation an MMU would cache for this access,
 * after setting the dirty bit for a write (x86, and IOMMUs walking the CPU table), or null when
 * the access must fault.
 */
function hardwareWalk(c: Ctx, mm: number, page: number, write: boolean, dirtyFn: string): TlbEntry | null {
  const pte = c.pte(mm, page)
  if (!pte || !pte.present || (write && !c.mmuWritable(pte))) return null
  let p = pte
  if (write && !p.dirty) {
    p = { ...p, dirty: true }
    c.setPte(mm, page, p, dirtyFn)
  }
  return {
    page,
    pfn: p.pfn,
    gen: c.folio(p.pfn).gen,
    write: c.mmuWritable(p),
    dirty: p.dirty,
    revoked: false,
  }
}

/** A CPU load/store: TLB hit, or hardware walk + fill, or #PF -> handle_mm_fault -> retry. */
function cpuTry(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  const mm = c.mmOfPage(page)
  const write = flag(f, 'write')
  let e = c.tlbFind(c.t, page)
  if (e && write && !(e.write && e.dirty)) {
    const d = e.write && c.sc.arch === 'x86_64' ? x86SetDirty(c, mm, e) : null
    // A permission fault drops the faulting entry (x86 SDM 4.10.4.1; arm64 upgrades flush in
    // ptep_set_access_flags), so the retry re-walks.
    if (d) c.tlbPut(c.t, d)
    else c.tlbDrop(c.t, page)
    e = d
    if (!d) {
      if (c.isKernelPage(page)) {
        kernelOops(c, page, write)
        return
      }
      c.call('handle_mm_fault', { page, write, remote: false }, 'after_fault')
      return
    }
  }
  if (!e) {
    e = hardwareWalk(c, mm, page, write, 'hardware dirty-bit update')
    if (!e && c.isKernelPage(page)) {
      kernelOops(c, page, write)
      return
    }
    if (!e) {
      const pte = c.pte(mm, page)
      c.emit(
        'fault',
        'exc_page_fault',
        `${write ? 'write' : 'read'} ${c.pageName(page)}: ${pte ? 'permission' : 'not-present'} fault`,
      )
      c.call('handle_mm_fault', { page, write, remote: false }, 'after_fault')
      return
    }
    c.tlbPut(c.t, e)
    c.emit('fill', 'page walk', `CPU TLB ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}`)
  }
  complete(c, f, e, 'CPU TLB', mm)
}

/**
 * A kernel access to a vmalloc address with no PTE: no handle_mm_fault for kernel addresses;
 * page_fault_oops() (v6.6 arch/x86/mm/fault.c). The access does not complete.
 */
function kernelOops(c: Ctx, page: number, write: boolean): void {
  c.emit(
    'fault',
    'page_fault_oops',
    `${write ? 'write' : 'read'} of kernel ${c.pageName(page)}: no PTE in init_mm (a use of a vfree'd or never vmalloc'ed address); oops, the access does not complete`,
  )
  c.ret()
}

export const cpuAccess: Proc = {
  start: { run: cpuTry },
  after_fault: {
    run: (c, f) => {
      if (f.l.ret === 'segv') {
        c.emit(
          'fault',
          'force_sig_fault',
          `SIGSEGV on ${c.pageName(num(f, 'page'))}: the access does not complete`,
        )
        c.ret()
        return
      }
      cpuTry(c, f)
    },
  },
}

function hwDecl(c: Ctx): HwWalkerDecl {
  return c.sc.secondaries[c.sc.threads[c.t]!.via] as HwWalkerDecl
}

/**
 * Device DMA through a hw-walker TLB. A miss walks the CPU page table (no lock) and fills; a
 * missing or insufficient translation raises a page request (PRI / SMMU stall), served by
 * iommu_sva_handle_iopf() -> handle_mm_fault(FAULT_FLAG_REMOTE), after which the device
 * retries. A read-only entry that faulted on a write stays cached where the IOMMU caches
 * permissions negatively (SMMU: Popple/Murphy 2023).
 */
function devTry(c: Ctx, f: CallFrame): void {
  const via = c.sc.threads[c.t]!.via
  const d = hwDecl(c)
  const page = num(f, 'page')
  const write = flag(f, 'write')
  // A supervisor PASID translates kernel addresses through init_mm's page table (the kernel half
  // shared by every x86 page table).
  const mm = c.mmOfPage(page)
  if (d.ats) {
    // PCIe ATS: the device looks in its ATC first. An entry that does not allow the access is
    // replaced by the answer to a new translation request (with write intent for a write).
    const a = c.atcFind(via, page)
    if (a && (!write || (a.write && a.dirty))) {
      complete(c, f, a, `${d.name} ATC`, mm)
      return
    }
    c.cost('ats_translation')
    c.emit(
      'info',
      'ATS translation request',
      `${d.name}: ${a ? 'ATC entry is read-only' : 'ATC miss'} for ${c.pageName(page)}; ask the IOMMU`,
    )
  }
  let e = c.secFind(via, page)
  if (e && write && !(e.write && e.dirty)) {
    const dd = e.write && c.sc.arch === 'x86_64' ? x86SetDirty(c, mm, e) : null
    if (dd) {
      c.secPut(via, dd)
      e = dd
    } else {
      if (!d.negativeCaching) c.secDrop(via, page)
      pageRequest(
        c,
        f,
        `write ${c.pageName(page)}: ${d.name} entry is read-only${d.negativeCaching ? ' (kept: negative permission caching)' : ''}`,
      )
      return
    }
  }
  if (!e) {
    e = hardwareWalk(c, mm, page, write, 'IOMMU dirty-bit update')
    if (!e && mm === KERNEL_MM) {
      // intel_svm_prq_report/prq_event_thread: a page request with the privilege bit is not
      // served (no handle_mm_fault for kernel addresses): the response is INVALID.
      c.metrics.device_faults++
      c.cost('iopf')
      c.emit(
        'fault',
        'iopf (page request)',
        `${write ? 'write' : 'read'} kernel ${c.pageName(page)}: walk finds no PTE in init_mm; supervisor page requests are not served: IOMMU_PAGE_RESP_INVALID, the DMA is aborted`,
      )
      c.ret()
      return
    }
    if (!e) {
      const pte = c.pte(0, page)
      pageRequest(
        c,
        f,
        `${write ? 'write' : 'read'} ${c.pageName(page)}: walk finds ${pte ? (pte.present ? 'a read-only PTE' : 'a PROT_NONE PTE') : 'no PTE'}`,
      )
      return
    }
    c.secPut(via, e)
    c.cost('iotlb_walk')
    c.emit(
      'fill',
      'IOMMU page walk',
      `${d.name} ${d.ats ? 'IOTLB' : 'TLB'} ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}`,
    )
  }
  if (d.ats) {
    // The translation completion fills the ATC; the access goes through it.
    c.atcPut(via, e)
    c.emit(
      'fill',
      'ATS translation completion',
      `${d.name} ATC ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}`,
    )
    complete(c, f, e, `${d.name} ATC`, mm)
    return
  }
  complete(c, f, e, `${d.name} TLB`, mm)
}

function pageRequest(c: Ctx, f: CallFrame, why: string): void {
  const d = hwDecl(c)
  c.metrics.device_faults++
  c.cost('iopf')
  c.emit('fault', 'iopf (page request)', why)
  if (d.retryLimit !== null) {
    c.thread.faults++
    if (c.thread.faults > d.retryLimit) {
      c.violate(
        'progress',
        `${c.name} faulted ${c.thread.faults} times on one access to ${c.pageName(num(f, 'page'))}; the device resets after ${d.retryLimit} (retry_limit)`,
      )
      c.ret()
      return
    }
  }
  c.call('handle_mm_fault', { page: num(f, 'page'), write: flag(f, 'write'), remote: true }, 'response')
}

export const devAccess: Proc = {
  start: { run: devTry },
  /** iopf_group response: INVALID aborts the DMA; SUCCESS lets the device retry. */
  response: {
    run: (c, f) => {
      const d = hwDecl(c)
      if (f.l.ret === 'segv') {
        c.emit('fault', 'iommu_page_response', 'IOMMU_PAGE_RESP_INVALID: the DMA is aborted')
        c.ret()
        return
      }
      if (c.policy.variants.includes('pri-flush')) {
        c.secInvalidate(
          c.sc.threads[c.t]!.via,
          [num(f, 'page')],
          'pri-flush: invalidate the faulting address before the response',
        )
      }
      c.emit('fault', 'iommu_page_response', `IOMMU_PAGE_RESP_SUCCESS: ${d.name} retries`)
      devTry(c, f)
    },
  },
}

/**
 * Device access through a sw-mirror (KVM TDP MMU / HMM dmirror): hit in the shadow table,
 * or the fault path of reference §1.4-1.5: snapshot mmu_invalidate_seq, resolve the pfn
 * (GUP / hmm_range_fault, faulting the CPU page in if needed), then under mmu_lock install
 * only if no invalidation is in progress for the page and the sequence did not move.
 */
function mirrorTry(c: Ctx, f: CallFrame): void {
  const via = c.sc.threads[c.t]!.via
  const name = c.sc.secondaries[via]!.name
  const page = num(f, 'page')
  const write = flag(f, 'write')
  const e = c.secFind(via, page)
  if (e && (!write || e.write)) {
    complete(c, f, e, `${name} shadow table`, 0)
    return
  }
  c.metrics.device_faults++
  c.cost('mirror_fault')
  f.l.seq = c.seq(via)
  c.emit(
    'fault',
    'kvm_faultin_pfn',
    `${name}: ${e ? 'write to read-only' : 'no'} shadow entry for ${c.pageName(page)}; mmu_seq = ${num(f, 'seq')}`,
  )
  c.goto('gup')
}

function mirrorGup(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  const write = flag(f, 'write')
  const pte = c.pte(0, page)
  if (pte && pte.present && (!write || pte.write)) {
    f.l.pfn = pte.pfn
    f.l.gen = c.folio(pte.pfn).gen
    f.l.wr = pte.write
    c.emit('info', 'hva_to_pfn', `${c.pageName(page)} -> pfn ${pte.pfn} ${pte.write ? 'RW' : 'RO'}`)
    c.goto('install')
    return
  }
  c.call('handle_mm_fault', { page, write, remote: true }, 'gup_ret')
}

export const mirrorAccess: Proc = {
  start: { run: mirrorTry },
  gup: { run: mirrorGup },
  gup_ret: {
    run: (c, f) => {
      if (f.l.ret === 'segv') {
        c.emit('fault', 'hva_to_pfn', '-EFAULT: no VMA or no permission; the access fails')
        c.ret()
        return
      }
      mirrorGup(c, f)
    },
  },
  /** Under mmu_lock: mmu_invalidate_retry_hva() / mmu_interval_read_retry(). */
  install: {
    guard: (c, f) =>
      c.inProg(c.sc.threads[c.t]!.via, num(f, 'page')) === 0
        ? null
        : 'invalidation in progress (mmu_invalidate_in_progress)',
    run: (c, f) => {
      const via = c.sc.threads[c.t]!.via
      const name = c.sc.secondaries[via]!.name
      const seq = c.seq(via)
      if (seq !== num(f, 'seq')) {
        f.l.seq = seq
        c.emit('fault', 'is_page_fault_stale', `${name}: mmu_invalidate_seq moved, retry the fault`)
        c.goto('gup')
        return
      }
      const page = num(f, 'page')
      const e: TlbEntry = {
        page,
        pfn: num(f, 'pfn'),
        gen: num(f, 'gen'),
        write: flag(f, 'wr'),
        dirty: true,
        revoked: false,
      }
      c.secPut(via, e)
      c.emit(
        'fill',
        'kvm_tdp_mmu_map',
        `${name} shadow ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}`,
      )
      c.goto('start')
    },
  },
}

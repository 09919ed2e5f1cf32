/**
 * Memory accesses: a CPU load/store through its TLB, a device DMA through a hw-walker
 * (SVA IOMMU: SMMUv3, VT-d, AMD) and through a sw-mirror (KVM, HMM). A TLB lookup, a
 * hardware walk and the fill are one atomic step (the walker takes no lock).
 */
import type { Ctx } from '../ctx'
import { KERNEL_MM, type CallFrame, type Pte, type TlbEntry } from '../state'
import type { HwWalkerDecl } from '../types'
import { count } from '../plural'
import { afterNotifier, flag, num, type PcHandler, type Proc } from './proc'

/** `tlb`: the cache used, named as its state row (`C0 TLB`, `iommu ATC`, `kvm shadow`). */
export function complete(c: Ctx, f: CallFrame, e: TlbEntry, who: string, mm: number, tlb: string): void {
  const write = flag(f, 'write')
  c.checkAccess(who, mm, e, write)
  const v = c.access(e.pfn, write, num(f, 'val'))
  const reg = f.l.reg
  const load = !write && typeof reg === 'number'
  if (load) c.setReg(reg, v)
  c.emit(
    'access',
    write ? 'store' : 'load',
    `${write ? `write ${v} to` : `read ${v} from`} ${c.pageName(e.page)} (pfn ${e.pfn}) via ${who}${load ? ` -> ${c.sc.registers[reg]}` : ''}`,
    {
      pages: [c.pageName(e.page)],
      tlb,
      pfn: e.pfn,
      ...(load ? { reg: c.sc.registers[reg] } : {}),
    },
  )
  c.ret()
}

/** The state-row name of a hw-walker's TLB (`iommu TLB`, or `iommu IOTLB` in front of an ATC). */
function iotlbRow(d: HwWalkerDecl): string {
  return `${d.name} ${d.ats ? 'IOTLB' : 'TLB'}`
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
function hardwareWalk(
  c: Ctx,
  mm: number,
  page: number,
  write: boolean,
  dirtyFn: string,
  via = -1,
): TlbEntry | null | 'aborted' {
  const pte = via >= 0 ? iommuWalk(c, mm, page, via) : c.pte(mm, page)
  if (pte === 'aborted') return pte
  if (!pte || !pte.present || (write && !c.mmuWritable(pte))) return null
  let p = pte
  if (write && !p.dirty) {
    p = { ...p, dirty: true }
    c.setPte(mm, page, p, dirtyFn)
  }
  const e: TlbEntry = {
    page,
    pfn: p.pfn,
    gen: c.folio(p.pfn).gen,
    write: c.mmuWritable(p),
    dirty: p.dirty,
    revoked: false,
  }
  return p.huge ? { ...e, huge: true } : e
}

/**
 * The IOMMU's walk of the CPU page table for a hw-walker with a walk cache. A walk that reads
 * a PMD linking a PTE table caches the pointer, one entry per PMD (walk caches hold valid
 * table descriptors, whatever the leaf says); a walk with the pointer cached reads that table
 * without reading the PMD, wherever the table now is:
 * - THP (`thp:`): linked, detached by pmdp_collapse_flush, or deposited under the huge PMD;
 * - otherwise the PTE page of the page's table (`table:`): linked, unlinked by free_pgtables()
 *   (v6.6 mm/mmap.c; munmap's unmap_region, mremap's unmap of the old range, exit_mmap; its
 *   PTEs are all none, the access faults), or freed by tlb_finish_mmu().
 * A walk through a freed table reads freed memory: a use-after-free of the page-table page, and
 * the access is abandoned. Only the user mm the device is bound to (the process's, or the fork
 * child's with `mm: child`) is walked through the cache (a supervisor PASID's kernel walks are
 * not cached here), and a PMD whose table was freed never links another one
 * (no op makes a VMA there again; ctx.ts checks it).
 */
/**
 * Whose free_pgtables() freed a user PTE page: exit_mmap's once the mm is released (it calls
 * mmu_notifier_release() before it unmaps anything), else munmap's (with several tables,
 * mremap's unmap of the old range may free one too).
 */
function freedBy(c: Ctx, mm: number, multi: boolean): string {
  return c.mmReleased(mm) ? "exit_mmap's free_pgtables" : multi ? 'free_pgtables' : "munmap's free_pgtables"
}

function iommuWalk(c: Ctx, mm: number, page: number, via: number): Pte | null | 'aborted' {
  const d = c.sc.secondaries[via]!
  if (d.type !== 'hw-walker' || !d.walkCache || mm === KERNEL_MM) return c.pte(mm, page)
  // A subpage of a huge page: its table is deposited or detached under the huge PMD; a small
  // page (beside huge pages, or with none): a table free_pgtables unlinked.
  const hp = c.hugeOf(page)
  const thp = hp !== null
  const k = c.tableOf(page)
  const multi = c.tables.length > 1
  const table = hp ? `the PTE table of ${hp.name}` : c.tableName(k)
  if (c.walkCached(via, page)) {
    if (c.pmdPopulated(mm, page)) return c.pte(mm, page)
    const t = hp ? c.table(mm, hp) : c.unlinkedTable(mm, k)
    if (t === null) {
      c.violate(
        'use-after-free',
        thp
          ? `${c.name}: ${d.name} walks ${c.pageName(page)} through its walk-cache entry for the PTE table, but that page-table page was freed (pte_free): the walk reads freed memory`
          : `${c.name}: ${d.name} walks ${c.pageName(page)} through its walk-cache entry for ${table}, but ${freedBy(c, mm, multi)} unlinked that page-table page and tlb_finish_mmu freed it (pte_free_tlb, freed_tables): the walk reads freed memory`,
      )
      c.ret()
      return 'aborted'
    }
    const old = t[page] ?? null
    c.emit(
      'info',
      'IOMMU walk cache',
      thp
        ? `${d.name}: walk ${c.pageName(page)} through the cached PTE table, no longer linked in the PMD (${old ? `finds pfn ${old.pfn}` : 'finds no PTE'})`
        : `${d.name}: walk ${c.pageName(page)} through the cached ${table.replace(/^the /, '')}, unlinked by free_pgtables and not yet freed (${old ? `finds pfn ${old.pfn}` : 'finds no PTE'})`,
    )
    return old && !old.huge ? old : null
  }
  const pte = c.pte(mm, page)
  // A huge PMD maps the page itself: no PTE table to cache.
  if (!(pte && pte.huge) && (thp ? pte !== null : true) && c.pmdPopulated(mm, page)) {
    c.setWalkCache(via, page, true)
    c.emit('fill', 'IOMMU page walk', `${d.name} walk cache: PMD -> ${table}`, {
      pages: [c.pageName(page)],
      tlb: `${d.name} walk cache`,
    })
  }
  return pte
}

/**
 * A 2 MiB translation: the fill for one subpage of a PMD-mapped huge page is one entry that
 * covers every subpage (kept as one entry per subpage, all marked huge and dropped together).
 */
function hugeSiblings(c: Ctx, mm: number, e: TlbEntry, from?: (q: number) => TlbEntry | null): TlbEntry[] {
  if (!e.huge) return [e]
  const out: TlbEntry[] = []
  // Only the subpages of the entry's own huge page: another huge PMD is another entry.
  for (const q of c.hugeOf(e.page)!.pages) {
    if (q === e.page) {
      out.push(e)
      continue
    }
    if (from) {
      const x = from(q)
      if (x?.huge) out.push(x)
      continue
    }
    const pte = c.pte(mm, q)
    if (pte?.huge && pte.present) out.push({ ...e, page: q, pfn: pte.pfn, gen: c.folio(pte.pfn).gen })
  }
  return out
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
      c.call('handle_mm_fault', { page, write, remote: false }, 'after_fault')
      return
    }
  }
  if (!e) {
    const w = hardwareWalk(c, mm, page, write, 'hardware dirty-bit update')
    if (w === null && c.isKernelPage(page)) {
      kernelOops(c, page, write)
      return
    }
    if (w === null || w === 'aborted') {
      const pte = c.pte(mm, page)
      c.emit(
        'fault',
        'exc_page_fault',
        `${write ? 'write' : 'read'} ${c.pageName(page)}: ${pte ? 'permission' : 'not-present'} fault`,
      )
      c.call('handle_mm_fault', { page, write, remote: false }, 'after_fault')
      return
    }
    e = w
    for (const x of hugeSiblings(c, mm, e)) c.tlbPut(c.t, x)
    c.emit(
      'fill',
      'page walk',
      `CPU TLB ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${e.huge ? ' (2 MiB entry)' : ''}`,
      { pages: [c.pageName(page)], tlb: `${c.name} TLB`, pfn: e.pfn },
    )
  }
  complete(c, f, e, 'CPU TLB', mm, `${c.name} TLB`)
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

/**
 * The mm a device thread works in: the one its secondary is bound to (the process's, or the
 * fork child's with `mm: child`; scenario/threads.ts gives the thread that mm).
 */
export function devMm(c: Ctx): number {
  return c.sc.threads[c.t]!.mm
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
  if (d.release !== 'none' && c.mmReleased(devMm(c))) {
    // exit_mmap's mmu_notifier_release ran the driver's ->release (arm_smmu_mm_release's
    // quiet_cd, intel_mm_release's intel_pasid_tear_down_entry): translation is disabled for
    // the PASID until unbind, so the DMA aborts without a page request (faults not reported).
    c.emit(
      'fault',
      d.iommu === 'smmu-v3'
        ? 'SMMU: CD with translation disabled (quiet_cd)'
        : 'DMA remapping fault (PASID entry not present, FPD)',
      `${d.name}: ${write ? 'write' : 'read'} ${c.pageName(page)} after ->release: the DMA is aborted`,
    )
    c.ret()
    return
  }
  // A supervisor PASID translates kernel addresses through init_mm's page table (the kernel half
  // shared by every x86 page table).
  const mm = c.mmOfPage(page)
  if (d.ats) {
    // PCIe ATS: the device looks in its ATC first. An entry that does not allow the access is
    // replaced by the answer to a new translation request (with write intent for a write).
    const a = c.atcFind(via, page)
    if (a && (!write || (a.write && a.dirty))) {
      complete(c, f, a, `${d.name} ATC`, mm, `${d.name} ATC`)
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
    const w = hardwareWalk(c, mm, page, write, 'IOMMU dirty-bit update', via)
    if (w === 'aborted') return
    if (!w && mm === KERNEL_MM) {
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
    if (!w) {
      const pte = c.pte(devMm(c), page)
      pageRequest(
        c,
        f,
        `${write ? 'write' : 'read'} ${c.pageName(page)}: walk finds ${pte ? (pte.present ? 'a read-only PTE' : pte.mig ? `a ${pte.huge ? 'PMD ' : ''}migration entry` : pte.swp !== undefined ? 'a swap entry' : pte.huge ? 'an invalid huge PMD' : 'a PROT_NONE PTE') : 'no PTE'}`,
      )
      return
    }
    e = w
    iotlbFill(c, mm, e)
  }
  if (d.ats) {
    // The translation completion fills the ATC; the access goes through it.
    atcFill(c, mm, e, '')
    complete(c, f, e, `${d.name} ATC`, mm, `${d.name} ATC`)
    return
  }
  complete(c, f, e, `${d.name} TLB`, mm, iotlbRow(d))
}

/** The IOMMU's walk fills its IOTLB (every subpage of a huge translation). */
function iotlbFill(c: Ctx, mm: number, e: TlbEntry): void {
  const via = c.sc.threads[c.t]!.via
  const d = hwDecl(c)
  for (const x of hugeSiblings(c, mm, e)) c.secPut(via, x)
  c.cost('iotlb_walk')
  c.emit(
    'fill',
    'IOMMU page walk',
    `${d.name} ${d.ats ? 'IOTLB' : 'TLB'} ${c.pageName(e.page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${e.huge ? ' (2 MiB entry)' : ''}`,
    { pages: [c.pageName(e.page)], tlb: iotlbRow(d), pfn: e.pfn },
  )
}

/** The ATS translation completion fills the device's ATC (`note` follows the entry's text). */
function atcFill(c: Ctx, mm: number, e: TlbEntry, note: string): void {
  const via = c.sc.threads[c.t]!.via
  const d = hwDecl(c)
  for (const x of hugeSiblings(c, mm, e, (q) => c.secFind(via, q))) c.atcPut(via, x)
  c.emit(
    'fill',
    'ATS translation completion',
    `${d.name} ATC ${c.pageName(e.page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${note}`,
    { pages: [c.pageName(e.page)], tlb: `${d.name} ATC`, pfn: e.pfn },
  )
}

/** iommu_page_response(SUCCESS): the device retries its access. */
function respond(c: Ctx, f: CallFrame): void {
  c.emit('fault', 'iommu_page_response', `IOMMU_PAGE_RESP_SUCCESS: ${hwDecl(c).name} retries`)
  devTry(c, f)
}

function pageRequest(c: Ctx, f: CallFrame, why: string): void {
  const d = hwDecl(c)
  c.metrics.device_faults++
  c.cost('iopf')
  c.emit('fault', 'iopf (page request)', why)
  if (c.mmReleased(devMm(c))) {
    // iommu_sva_handle_iopf (v6.6 drivers/iommu/iommu-sva.c): mmget_not_zero() fails once the
    // mm's last user is gone (exit_mmap runs at mm_users == 0): IOMMU_PAGE_RESP_INVALID.
    mmGone(c, 'iommu_sva_handle_iopf', 'IOMMU_PAGE_RESP_INVALID, the DMA is aborted')
    return
  }
  if (d.retryLimit !== null) {
    c.thread.faults++
    if (c.thread.faults > d.retryLimit) {
      c.violate(
        'progress',
        `${c.name} faulted ${count(c.thread.faults, 'time')} on one access to ${c.pageName(num(f, 'page'))}; the device resets after ${d.retryLimit} (retry_limit)`,
      )
      c.ret()
      return
    }
  }
  c.call('handle_mm_fault', { page: num(f, 'page'), write: flag(f, 'write'), remote: true }, 'response')
}

/** A fault for an mm whose last user is gone (mmget_not_zero fails): the access does not complete. */
function mmGone(c: Ctx, fn: string, outcome: string): void {
  c.emit('fault', fn, `mmget_not_zero() fails: the process exited (exit_mmap); ${outcome}`)
  c.ret()
}

/**
 * `translate P`: a PCIe ATS Translation Request with no access behind it (a prefetch; PCIe Base
 * spec, Address Translation Services): the device asks the IOMMU for P's translation (read
 * intent, no write intent) and caches the completion in its ATC. The IOMMU answers from its
 * IOTLB or walks the page table (SMMUv3 and VT-d translate ATS requests like DMA, filling the
 * IOTLB). A walk that finds no present PTE completes with R=W=0 ("no access"): the model caches
 * nothing and raises no page request (the device asks for one, PRI, only when an access needs
 * the page). An ATC hit sends no request.
 */
function devTranslate(c: Ctx, f: CallFrame): void {
  const via = c.sc.threads[c.t]!.via
  const d = hwDecl(c)
  const page = num(f, 'page')
  if (d.release !== 'none' && c.mmReleased(devMm(c))) {
    c.emit(
      'fault',
      'ATS translation request',
      `${d.name}: ${c.pageName(page)} after ->release: completion with R=W=0, nothing cached`,
    )
    c.ret()
    return
  }
  const mm = c.mmOfPage(page)
  if (c.atcFind(via, page)) {
    c.emit('info', 'ATS translation request', `${d.name}: ${c.pageName(page)} already in the ATC; no request`)
    c.ret()
    return
  }
  c.cost('ats_translation')
  c.emit(
    'info',
    'ATS translation request',
    `${d.name}: prefetch ${c.pageName(page)} (no access); ask the IOMMU`,
  )
  let e = c.secFind(via, page)
  if (!e) {
    const w = hardwareWalk(c, mm, page, false, 'IOMMU dirty-bit update', via)
    if (w === 'aborted') return
    if (!w) {
      c.emit(
        'info',
        'ATS translation completion',
        `${d.name}: walk finds no present PTE for ${c.pageName(page)}: R=W=0, nothing cached, no page request`,
      )
      c.ret()
      return
    }
    e = w
    iotlbFill(c, mm, e)
  }
  atcFill(c, mm, e, ' (prefetch)')
  c.ret()
}

export const devTranslateProc: Proc = { start: { run: devTranslate } }

export const devAccess: Proc = {
  start: { run: devTry },
  /** iopf_group response: INVALID aborts the DMA; SUCCESS lets the device retry. */
  response: {
    run: (c, f) => {
      if (f.l.ret === 'segv') {
        c.emit('fault', 'iommu_page_response', 'IOMMU_PAGE_RESP_INVALID: the DMA is aborted')
        c.ret()
        return
      }
      // The `iommu_page_response` site (Gunthorpe's suggestion): invalidate, then respond.
      if (c.at('iommu_page_response')) {
        c.secInvalidate(
          c.sc.threads[c.t]!.via,
          [num(f, 'page')],
          'pri-flush: invalidate the faulting address before the response',
        )
      }
      afterNotifier(c, f, 'respond', respond)
    },
  },
  respond: { run: (c, f) => respond(c, f) },
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
  const e = mirrorLookup(c, f, `${name} shadow table`)
  if (e === 'hit') return
  if (c.mmReleased(devMm(c))) {
    // The process exited: hmm_range_fault's caller (or KVM's vCPU) cannot mmget_not_zero() it.
    mmGone(c, 'kvm_faultin_pfn', 'the access fails')
    return
  }
  // The vCPU is a thread of the process (kvm_vcpu_ioctl: kvm->mm == current->mm): while it
  // faults, mm_users > 0 and exit_mmap()'s mmu_notifier_release() cannot run (released in
  // step.ts when this op returns). So KVM's invalidate_range_start/end pairs it waits on in
  // kvm_faultin_pfn / is_page_fault_stale are all still delivered.
  if (f.l.mmget !== true) {
    f.l.mmget = true
    c.mmUsers(devMm(c), 1)
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
  if (c.mmReleased(devMm(c))) {
    mmGone(c, 'hva_to_pfn', 'the access fails')
    return
  }
  if (c.isThp(num(f, 'page'))) {
    gupFastPmd(c, f)
    return
  }
  resolveOrFaultIn(c, f, 'hva_to_pfn')
}

/**
 * A sw-mirror access looks in its shadow table first (KVM's SPTEs, dmirror's pt): an entry that
 * allows it completes the access through `who` ('hit'); otherwise returns the entry found
 * (read-only, for a write) or null.
 */
export function mirrorLookup(c: Ctx, f: CallFrame, who: string): TlbEntry | null | 'hit' {
  const via = c.sc.threads[c.t]!.via
  const e = c.secFind(via, num(f, 'page'))
  if (e && (!flag(f, 'write') || e.write)) {
    complete(c, f, e, who, devMm(c), `${c.sc.secondaries[via]!.name} shadow`)
    return 'hit'
  }
  return e
}

/** The pfn GUP or hmm_range_fault resolved, its folio's generation and its write bit, for 'install'. */
function noteResolved(c: Ctx, f: CallFrame, pte: Pte): void {
  f.l.pfn = pte.pfn
  f.l.gen = c.folio(pte.pfn).gen
  f.l.wr = pte.write
}

/** The mirror entry 'install' maps: the pfn noteResolved() kept. */
export function resolvedEntry(f: CallFrame): TlbEntry {
  return {
    page: num(f, 'page'),
    pfn: num(f, 'pfn'),
    gen: num(f, 'gen'),
    write: flag(f, 'wr'),
    dirty: true,
    revoked: false,
  }
}

/**
 * The PTE walk of hva_to_pfn / hmm_range_fault (`fn`): a present PTE that allows the access is
 * resolved (then 'install'); otherwise handle_mm_fault(FAULT_FLAG_REMOTE) faults the page in
 * and the walk runs again ('gup_ret': faultInReturn).
 */
export function resolveOrFaultIn(c: Ctx, f: CallFrame, fn: string): void {
  const page = num(f, 'page')
  const write = flag(f, 'write')
  const pte = c.pte(devMm(c), page)
  if (pte && pte.present && (!write || pte.write)) {
    noteResolved(c, f, pte)
    c.emit('info', fn, `${c.pageName(page)} -> pfn ${pte.pfn} ${pte.write ? 'RW' : 'RO'}`)
    c.goto('install')
    return
  }
  c.call('handle_mm_fault', { page, write, remote: true }, 'gup_ret')
}

/** handle_mm_fault returned: -EFAULT (no VMA or no permission) ends the access, else `walk` again. */
export function faultInReturn(fn: string, fails: string, walk: (c: Ctx, f: CallFrame) => void): PcHandler {
  return {
    run: (c, f) => {
      if (f.l.ret === 'segv') {
        c.emit('fault', fn, `-EFAULT: no VMA or no permission; ${fails}`)
        c.ret()
        return
      }
      walk(c, f)
    },
  }
}

/** The pfns of a huge translation found by GUP: KVM maps the whole 2 MiB (host_pfn_mapping_level). */
function snapshot(c: Ctx, f: CallFrame, pte: Pte): void {
  const page = num(f, 'page')
  noteResolved(c, f, pte)
  if (pte.huge) {
    const ps = c.hugeOf(page)!.pages.map((q) => c.pte(devMm(c), q)!.pfn)
    f.l.hpfn = ps
    f.l.hgen = ps.map((p) => c.folio(p).gen)
  } else {
    delete f.l.hpfn
    delete f.l.hgen
  }
  c.emit(
    'info',
    'hva_to_pfn_fast',
    `${c.pageName(page)} -> pfn ${pte.pfn} ${pte.write ? 'RW' : 'RO'}${pte.huge ? ' (huge PMD)' : ''}`,
  )
  c.goto('install')
}

/**
 * THP pages: KVM's hva_to_pfn_fast() -> get_user_page_fast_only() -> lockless_pages_from_mm()
 * (v6.6 mm/gup.c): local_irq_save(), then a lockless walk. A huge PMD is the answer at once
 * (gup_huge_pmd); a PMD pointing to a PTE table is followed in a second step (gup_pte_range),
 * still with IRQs off, which is what tlb_remove_table_sync_one()'s IPI waits for.
 */
function gupFastPmd(c: Ctx, f: CallFrame): void {
  const page = num(f, 'page')
  const write = flag(f, 'write')
  c.gupFast(devMm(c), 1)
  const pte = c.pte(devMm(c), page)
  if (pte?.huge && pte.present && (!write || pte.write)) {
    c.gupFast(devMm(c), -1)
    snapshot(c, f, pte)
    return
  }
  if (pte && !pte.huge && c.pmdPopulated(devMm(c), page)) {
    c.emit('info', 'gup_pmd_range', `${c.pageName(page)}: PMD -> PTE table (IRQs off)`)
    c.goto('gupf_pte')
    return
  }
  c.gupFast(devMm(c), -1)
  gupSlow(c, f, 'the PMD maps no PTE table or huge page')
}

/** The fast path failed: get_user_pages_unlocked() -> handle_mm_fault(), then hva_to_pfn again. */
function gupSlow(c: Ctx, f: CallFrame, why: string): void {
  c.emit('info', 'hva_to_pfn_slow', `${c.pageName(num(f, 'page'))}: GUP-fast fails (${why}); slow GUP`)
  c.call('handle_mm_fault', { page: num(f, 'page'), write: flag(f, 'write'), remote: true }, 'gup_ret')
}

export const mirrorAccess: Proc = {
  start: { run: mirrorTry },
  gup: { run: mirrorGup },
  /**
   * gup_pte_range() (v6.6): read the PTE from the table the PMD pointed to, grab the folio,
   * then re-check the PMD and the PTE (70cbc3cc78a9) and back off if either changed. The read
   * comes first: if the table was freed meanwhile, it reads freed memory.
   */
  gupf_pte: {
    run: (c, f) => {
      const page = num(f, 'page')
      const write = flag(f, 'write')
      const linked = c.pmdPopulated(devMm(c), page)
      let pte: Pte | null
      if (linked) pte = c.pte(devMm(c), page)
      else {
        const t = c.table(devMm(c), c.hugeOf(page)!)
        if (t === null) {
          c.violate(
            'use-after-free',
            `${c.name}: GUP-fast (IRQs off) reads the PTE of ${c.pageName(page)} from a page-table page that was freed (pte_free) after it read the PMD`,
          )
          c.gupFast(devMm(c), -1)
          c.ret()
          return
        }
        pte = t[page] ?? null
      }
      if (!linked) {
        c.gupFast(devMm(c), -1)
        gupSlow(
          c,
          f,
          `the PMD changed under it (found ${pte ? `pfn ${pte.pfn}` : 'no PTE'} in the old table): back off`,
        )
        return
      }
      c.gupFast(devMm(c), -1)
      if (pte && pte.present && (!write || pte.write)) snapshot(c, f, pte)
      else gupSlow(c, f, 'no usable PTE')
    },
  },
  gup_ret: faultInReturn('hva_to_pfn', 'the access fails', mirrorGup),
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
      const e = resolvedEntry(f)
      const hpfn = f.l.hpfn as readonly number[] | undefined
      if (hpfn) {
        const hgen = f.l.hgen as readonly number[]
        c.hugeOf(page)!.pages.forEach((q, j) =>
          c.secPut(via, { ...e, page: q, pfn: hpfn[j]!, gen: hgen[j]!, huge: true }),
        )
      } else c.secPut(via, e)
      c.emit(
        'fill',
        'kvm_tdp_mmu_map',
        `${name} shadow ${c.pageName(page)} -> pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${hpfn ? ' (2 MiB SPTE)' : ''}`,
        { pages: [c.pageName(page)], tlb: `${name} shadow`, pfn: e.pfn },
      )
      c.goto('start')
    },
  },
}

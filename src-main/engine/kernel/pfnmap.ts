/**
 * A VM_PFNMAP mapping whose driver has a ->fault handler (`pages: { BAR: { kind: pfnmap, fault:
 * insert_pfn } }`), as vfio-pci's BAR mmaps: after the driver revoked the mapping
 * (unmap_mapping_range, e.g. while the device's memory is disabled for a reset), the next
 * access faults and the handler maps the same device pfn again, so the fault succeeds.
 *
 * v6.6 drivers/vfio/pci/vfio_pci_core.c vfio_pci_mmap_fault(): mutex_lock(vma_lock),
 * down_read(memory_lock), SIGBUS while the memory is disabled, else io_remap_pfn_range() of
 * the whole VMA (once per VMA, tracked in vma_list); since v6.10 ("vfio/pci: Use
 * unmap_mapping_range()") it inserts the faulting page with vmf_insert_pfn() (mm/memory.c
 * insert_pfn(): get_locked_pte, back off if the PTE is no longer none, set_pte_at of
 * pte_mkspecial(pfn_pte(pfn, vma->vm_page_prot)), pte_unmap_unlock) and returns
 * VM_FAULT_NOPAGE. Either way the page's PTE gets the BAR's pfn again, with the VMA's
 * protection (a VM_PFNMAP VMA has no write notify: a shared writable VMA maps it writable).
 * The model runs it as one step under the PTL that handle_pte_fault's step already holds (its
 * pte_same() re-check is insert_pfn's pte_none() check); memory is always enabled.
 */
import type { Ctx } from '../ctx'
import { initialState } from '../state'
import type { Scenario } from '../types'

const BAR_PFNS = new WeakMap<Scenario, readonly number[]>()

/** The device pfn of each pfnmap page: the one remap_pfn_range mapped at mmap time. */
function barPfn(sc: Scenario, page: number): number {
  let pfns = BAR_PFNS.get(sc)
  if (!pfns) {
    const s = initialState(sc)
    pfns = sc.pages.map((_, i) => s.mms[0]!.ptes[i]?.pfn ?? -1)
    BAR_PFNS.set(sc, pfns)
  }
  return pfns[page]!
}

/**
 * The pfnmap branch of handle_pte_fault for a none PTE (the PTL held): without a ->fault,
 * VM_FAULT_SIGBUS (returns false); with one, the pfn goes back into the PTE (returns true).
 */
export function pfnmapFault(c: Ctx, mm: number, page: number): boolean {
  if (c.sc.pages[page]!.fault !== 'insert_pfn') {
    c.emit('fault', 'handle_mm_fault', `${c.pageName(page)}: VM_PFNMAP with no PTE: VM_FAULT_SIGBUS`)
    return false
  }
  const pfn = barPfn(c.sc, page)
  const write = c.vma(mm, page) === 'rw'
  c.emit(
    'info',
    'vfio_pci_mmap_fault',
    `${c.pageName(page)}: down_read(memory_lock), vmf_insert_pfn(pfn ${pfn}): VM_FAULT_NOPAGE`,
  )
  c.setPte(mm, page, { pfn, present: true, write, dirty: write }, 'vfio_pci_mmap_fault -> vmf_insert_pfn')
  return true
}

/**
 * Kernel mappings: vmalloc() and vfree() of one page at a vmalloc address, v6.6 mm/vmalloc.c,
 * on x86 (the architecture whose SVA shares the kernel half of every page table, reference
 * 5.12).
 *
 * - vfree() -> remove_vm_area() -> free_unmap_vmap_area(): vunmap_range_noflush() clears the
 *   PTEs with no TLB flush, and free_vmap_area_noflush() puts the area on the lazy purge list.
 *   vfree() then frees the pages (__free_page) at once. The CPUs' stale TLB entries are
 *   harmless to the kernel: no kernel code uses the address, and the area is not handed out
 *   again until __purge_vmap_area_lazy() has flushed (flush_tlb_kernel_range).
 * - vmalloc() -> __vmalloc_node_range() -> __get_vm_area_node() -> alloc_vmap_area(). An area
 *   still on the lazy list is not free: the allocator purges (purge_vmap_area_lazy() ->
 *   __purge_vmap_area_lazy() -> flush_tlb_kernel_range()) and retries, and only then can the
 *   same address come back. Then __vmalloc_area_node() allocates the page and
 *   vmap_pages_range() maps it (a none -> present change: no flush on x86).
 *
 * No mmu_notifier is called anywhere on these paths: init_mm has no notifier subscriptions,
 * and v6.6's flush_tlb_kernel_range() does not call the arch hook. Only the kernel-notifier
 * variant (2017, not merged) reaches a supervisor-PASID secondary, from the flush.
 */
import type { Ctx } from '../ctx'
import { KERNEL_MM, type CallFrame } from '../state'
import { afterNotifier, list, num, type Proc } from './proc'

/** __purge_vmap_area_lazy() after its flush: the areas are free; the old translations are stale. */
function purged(c: Ctx, f: CallFrame): void {
  const lazy = list(f, 'lazy')
  delete f.l.lazy
  for (const p of lazy) c.setVmapLazy(p, false)
  c.markRevoked(KERNEL_MM, lazy)
  c.goto('map')
}

export const vfree: Proc = {
  /** remove_vm_area(): vunmap_range_noflush() + free_vmap_area_noflush(). */
  start: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pte = c.pte(KERNEL_MM, page)
      if (!pte) throw new Error(`model bug: vfree of unmapped kernel ${c.pageName(page)}`)
      f.l.pfn = pte.pfn
      c.setPte(KERNEL_MM, page, null, 'vunmap_range_noflush')
      c.setVmapLazy(page, true)
      c.emit(
        'info',
        'free_vmap_area_noflush',
        `the area of ${c.pageName(page)} waits on the lazy purge list; its TLB flush is deferred`,
      )
      c.goto('free_pages')
    },
  },
  /** vfree(): __free_page() for each page of the area. */
  free_pages: {
    run: (c, f) => {
      c.putFrame(num(f, 'pfn'), '__free_page (vfree)')
      c.emit('op', 'vfree', 'returns')
      c.ret()
    },
  },
}

export const vmalloc: Proc = {
  /**
   * alloc_vmap_area(): the address is only free once purged. purge_vmap_area_lazy() ->
   * __purge_vmap_area_lazy() -> flush_tlb_kernel_range() over the lazily freed area.
   */
  start: {
    run: (c, f) => {
      const page = num(f, 'page')
      if (c.vmapLazy(page)) {
        // __purge_vmap_area_lazy() takes every lazily freed area and flushes once, over
        // [lowest start, highest end): gaps included, so a wide span becomes flush_tlb_all().
        const lazy = c.sc.pages.map((_, p) => p).filter((p) => c.vmapLazy(p))
        const lo = Math.min(...lazy)
        const hi = Math.max(...lazy)
        const span = c.sc.pages.map((_, p) => p).filter((p) => p >= lo && p <= hi)
        c.flushTlbKernelRange(span, 'flush_tlb_kernel_range (__purge_vmap_area_lazy)')
        f.l.lazy = lazy
        afterNotifier(c, f, 'purged', purged)
        return
      }
      c.goto('map')
    },
  },
  purged: { run: (c, f) => purged(c, f) },
  /** __vmalloc_area_node(): alloc_pages, then vmap_pages_range() sets the PTE. */
  map: {
    run: (c, f) => {
      const page = num(f, 'page')
      const pfn = c.allocFrame(num(f, 'value'), 'alloc_pages (__vmalloc_area_node)')
      c.setPte(KERNEL_MM, page, { pfn, present: true, write: true, dirty: true }, 'vmap_pages_range')
      c.emit('op', 'vmalloc', 'returns')
      c.ret()
    },
  },
}

/** `signal F` / `wait F`: a driver and its device ordering their work (a doorbell, a completion). */
export const sync: Proc = {
  start: {
    guard: (c, f) => (f.l.wait !== true || c.flagSet(num(f, 'flag')) ? null : 'waiting for the flag'),
    run: (c, f) => {
      const i = num(f, 'flag')
      if (f.l.wait === true) c.emit('info', 'wait', `${c.sc.flags[i]} is set`)
      else {
        c.setFlag(i)
        c.emit('info', 'signal', `set ${c.sc.flags[i]}`)
      }
      c.ret()
    },
  },
}

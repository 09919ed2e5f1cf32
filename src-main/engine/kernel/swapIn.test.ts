/**
 * do_swap_page() as v6.6 mm/memory.c writes it: the folio found in or read into the swap cache
 * (or read past it: SWP_SYNCHRONOUS_IO, __swap_count 1) before the PTL; under the PTL the
 * pte_same() recheck, `exclusive` from the swap entry's SWP_EXCLUSIVE bit (d7c0e68dab98, v5.19)
 * or a folio that skipped the swap cache, swap_free(), should_try_to_free_swap() ->
 * folio_free_swap() (a write fault with folio_ref_count 2 only), the PTE made writable only if
 * exclusive or the refcount is 1, and a write fault still flagged calling do_wp_page() under the
 * same PTL. Also do_wp_page()'s folio_free_swap of a folio a read fault left in the swap cache,
 * and free_swap_cache() at unmap (mm/swap_state.c). Expectations come from the kernel source.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { SWAP_CACHE_REF } from '../state'
import { first, lines, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'swap-in.test.yaml')
const archHook = makePolicy('arch-hook')
const SWAP_KINDS = ['lock', 'pte', 'fault', 'info', 'frame'] as const

describe('do_swap_page alone on its slot: the folio skips the swap cache, the lookup runs before the PTL', () => {
  const sc = load(`
    title: swap-in alone
    arch: x86_64
    pages:
      A: { value: 5, prot: rw }
    cpus:
      kswapd: [reclaim A]
      C0: [write A 6]
  `)

  it('reclaim marks the swap PTE exclusive (no fork child); the write fault reads a new folio without the PTL, then maps it writable under it and frees the slot', () => {
    const ex = traced(sc, archHook)
    expect(first(ex, 'pte set_pte_at (swap entry)').text).toBe('PTE A := swap entry (slot 0, exclusive)')
    expect(lines(ex, { thread: 'C0', kinds: SWAP_KINDS })).toEqual([
      'fault exc_page_fault: write A: permission fault',
      'lock mmap_read_lock: take mmap_lock for read',
      'fault handle_mm_fault: write fault on A',
      'frame vma_alloc_folio + swap_readpage (skip the swap cache): allocate pfn 1 (gen 2)',
      'lock do_swap_page: pte_offset_map_lock: take the page-table lock',
      'info swap_free: slot 0: swap_map count 1 -> 0',
      'pte do_swap_page: PTE A := pfn 1 RW dirty',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    const read = first(ex, 'frame vma_alloc_folio + swap_readpage')
    expect(read.locks).toEqual(['mmap_lock(r)'])
    const map = first(ex, 'pte do_swap_page: PTE A := pfn 1 RW dirty')
    expect(map.locks).toEqual(['mmap_lock(r)', 'ptl'])
    expect(map.step).toBeGreaterThan(read.step)
    expect(ex.final.swap[0]).toBe(null)
    expect(ex.final.swapCache[0]).toBe(-1)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 1, v: 6 })
  })

  it('two faults on one swap PTE both read a folio past the swap cache; the second backs off at pte_same() and frees its folio', () => {
    const two = load(`
      title: two swap-ins of one PTE
      arch: x86_64
      pages:
        A: { value: 5, prot: rw }
      cpus:
        kswapd: [reclaim A]
        C0: [read A -> r0]
        C1: [read A -> r1]
    `)
    // kswapd runs to its end (6 steps); C0 and C1 fault and read (3 steps each, C1's read
    // between C0's and C0's map); then the rest.
    const ex = traced(two, archHook, [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 1])
    const c1 = lines(ex, { thread: 'C1', kinds: SWAP_KINDS })
    expect(c1).toContain(
      'frame vma_alloc_folio + swap_readpage (skip the swap cache): allocate pfn 2 (gen 1)',
    )
    expect(c1).toContain('fault do_swap_page: !pte_same(): the PTE changed since the swap-in began, back off')
    expect(c1).toContain('frame folio_put (out_release): free pfn 2 (gen 1)')
    expect(first(ex, 'fault do_swap_page: !pte_same()', { kinds: ['fault'] }).locks).toEqual([
      'mmap_lock(r)',
      'ptl',
    ])
    expect(ex.final.regs).toEqual([5, 5])
    expect(ex.final.frames[2]!.free).toBe(true)
  })
})

describe('do_swap_page through the swap cache, with a fork child sharing the slot', () => {
  it('a write fault on a non-exclusive swap-cache folio calls do_wp_page under the PTL (v6.6), which copies while the other side maps the folio', () => {
    const sc = load(`
      title: parent reads, child writes
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      cpus:
        kswapd: [reclaim A]
        C0: [read A -> r0]
        K: { mm: child, ops: [write A 7, read A -> k0] }
    `)
    const ex = traced(sc, archHook)
    // The child's swap-in: the parent's read put the folio in the swap cache (count 2 -> 1).
    expect(lines(ex, { thread: 'K', kinds: SWAP_KINDS }).slice(0, 12)).toEqual([
      'fault exc_page_fault: write A: permission fault',
      'lock mmap_read_lock: take mmap_lock for read',
      'fault handle_mm_fault: write fault on A',
      'fault do_swap_page: A: folio pfn 1 still in the swap cache',
      'lock do_swap_page: pte_offset_map_lock: take the page-table lock',
      'info swap_free: slot 0: swap_map count 1 -> 0',
      // refcount 3 (the parent's PTE, the swap cache, this fault): no folio_free_swap try.
      'pte do_swap_page: PTE A (child) := pfn 1 RO clean',
      'fault do_swap_page: A: pfn 1 is not exclusive (no SWP_EXCLUSIVE, refcount 3): mapped read-only, FAULT_FLAG_WRITE: do_wp_page under the PTL',
      'fault do_wp_page: page shared (mapcount 2): wp_page_copy',
      'lock pte_unmap_unlock: release the page-table lock',
      'frame wp_page_copy (alloc + __wp_page_copy_user): allocate pfn 2 (gen 1)',
      'lock pte_offset_map_lock: take the page-table lock',
    ])
    expect(lines(ex, { kinds: ['info'] }).some((l) => l.startsWith('info should_try_to_free_swap'))).toBe(
      false,
    )
    // The parent's folio stays in the swap cache (count 0, SWAP_HAS_CACHE), mapped by the parent.
    expect(ex.final.swapCache[0]).toBe(1)
    expect(ex.final.swapMap[0]).toBe(SWAP_CACHE_REF)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 2, v: 5 })
    expect(ex.final.mms[1]!.ptes[0]).toMatchObject({ pfn: 2, write: true })
    expect(ex.final.regs).toEqual([5, 7])
  })

  it('should_try_to_free_swap(): a write fault whose folio_ref_count is 2 frees the swap cache (the last swap PTE is gone) and maps the folio writable: refcount 1', () => {
    const sc = load(`
      title: parent reads and unmaps, child writes
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      cpus:
        kswapd: [reclaim A]
        C0: [read A -> r0, munmap A]
        K: { mm: child, ops: [write A 7, read A -> k0] }
    `)
    const ex = traced(sc, archHook)
    // The parent's munmap: free_swap_cache() cannot free the folio (the child's swap PTE
    // still shares the slot), so the child's fault finds it there, with only the cache's
    // reference and its own.
    expect(lines(ex, { thread: 'K', kinds: SWAP_KINDS }).slice(3, 8)).toEqual([
      'fault do_swap_page: A: folio pfn 1 still in the swap cache',
      'lock do_swap_page: pte_offset_map_lock: take the page-table lock',
      'info swap_free: slot 0: swap_map count 1 -> 0',
      'info should_try_to_free_swap: write fault, refcount 2: folio_free_swap: pfn 1 leaves the swap cache, slot 0 is freed',
      'pte do_swap_page: PTE A (child) := pfn 1 RW dirty',
    ])
    expect(ex.final.swapCache[0]).toBe(-1)
    expect(ex.final.swap[0]).toBe(null)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 1, v: 7 })
    expect(ex.final.regs).toEqual([5, 7])
  })

  it("a read fault leaves the folio in the swap cache; the later write's do_wp_page frees it there (folio_free_swap) and reuses the page", () => {
    const sc = load(`
      title: child reads and unmaps, parent reads then writes
      arch: x86_64
      pages:
        A: { value: 5, prot: rw, cow: true }
      cpus:
        kswapd: [reclaim A]
        K: { mm: child, ops: [read A -> k0, munmap A] }
        C0: [read A -> r0, write A 6]
    `)
    const ex = traced(sc, archHook)
    const c0 = lines(ex, { thread: 'C0', kinds: SWAP_KINDS })
    expect(c0).toContain('info swap_free: slot 0: swap_map count 1 -> 0')
    expect(c0).toContain('pte do_swap_page: PTE A := pfn 1 RO clean')
    // do_wp_page(): refcount 2 <= 1 + folio_test_swapcache; folio_trylock; folio_free_swap
    // (no swap PTE left); refcount 1: reuse.
    const wp = c0.filter((l) => l.includes('do_wp_page'))
    expect(wp).toEqual([
      'info do_wp_page: folio_free_swap: pfn 1 leaves the swap cache, slot 0 is freed (no swap PTE shares it)',
      'fault do_wp_page: page is exclusive: wp_page_reuse',
    ])
    expect(first(ex, 'info do_wp_page: folio_free_swap', { kinds: ['info'] }).locks).toEqual([
      'mmap_lock(r)',
      'ptl',
    ])
    expect(ex.final.swapCache[0]).toBe(-1)
    expect(ex.final.swap[0]).toBe(null)
    expect(ex.final.frames[1]).toMatchObject({ map: 1, ref: 1, v: 6 })
  })
})

describe("fork of an exclusive swap PTE: copy_nonpresent_pte clears SWP_EXCLUSIVE in the parent's PTE", () => {
  it("the parent's PTE is rewritten without the bit (set_pte_at on src_mm) before the child's copy, under the PTL; the parent's write then maps read-only and copies", () => {
    const sc = load(`
      title: fork after swap-out
      arch: x86_64
      pages:
        A: { value: 5, prot: rw }
      cpus:
        kswapd: [reclaim A]
        C0: [fork, write A 6]
        K: { mm: child, ops: [read A -> k0] }
    `)
    // kswapd runs to its end, then the fork, then the parent's write.
    const ex = traced(sc, archHook, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    const c0 = lines(ex, { thread: 'C0', kinds: ['pte'] })
    expect(c0.slice(0, 2)).toEqual([
      'pte set_pte_at (pte_swp_clear_exclusive): PTE A := swap entry (slot 0)',
      'pte copy_nonpresent_pte (child: swap_duplicate): PTE A (child) := swap entry (slot 0)',
    ])
    expect(first(ex, 'pte set_pte_at (pte_swp_clear_exclusive)').locks).toEqual(['mmap_lock(w)', 'ptl'])
    // Two swap PTEs: read_swap_cache_async; not exclusive, refcount 2: read-only, do_wp_page copies.
    expect(lines(ex, { thread: 'C0', kinds: ['fault'] })).toContain(
      'fault do_swap_page: A: pfn 1 is not exclusive (no SWP_EXCLUSIVE, refcount 2): mapped read-only, FAULT_FLAG_WRITE: do_wp_page under the PTL',
    )
    expect(ex.final.regs).toEqual([5])
  })
})

/**
 * KSM merge (mm/ksm.c v6.6; v4.15 placement of ->invalidate_range per Glisse 2017): the
 * secondary hears the two clears under the arch hook, only the two range_ends under
 * invalidate-range, and the old page is freed after replace_page's range_end.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, type Preset } from '../policy'
import { first, lines, traced } from './traceTestkit'

const sc = (arch: string, extra = '') =>
  scenarioOf(
    `
      title: ksm
      arch: ${arch}
      pages:
        P: { value: 5, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker, cached: [P] }
      cpus:
        ksmd: [ksm_merge P]
      ${extra}
    `,
    'ksm.test.yaml',
  )
const secondaryLines = (preset: Preset, arch = 'x86_64') =>
  lines(traced(sc(arch), makePolicy(preset)), {
    kinds: ['notifier', 'sec-inval', 'cpu-flush', 'pte', 'frame'],
  })

describe('ksm_merge: write_protect_page, pages_identical, replace_page', () => {
  it('arch-hook: the secondary is invalidated inside both ptep_clear_flush calls, under the PTL', () => {
    const ex = traced(sc('x86_64'), makePolicy('arch-hook'))
    expect(ex.violations).toEqual([])
    const hooks = lines(ex, { kinds: ['notifier'] }).filter((l) =>
      l.includes('arch_invalidate_secondary_tlbs'),
    )
    expect(hooks).toEqual([
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
      'notifier mmu_notifier_arch_invalidate_secondary_tlbs: P',
    ])
    expect(first(ex, 'notifier mmu_notifier_arch_invalidate_secondary_tlbs').locks).toEqual([
      'mmap_lock(r)',
      'folio_lock(P)',
      'ptl',
    ])
  })

  it('invalidate-range (v4.15): plain ptep_clear_flush, ->invalidate_range only at the two range_ends', () => {
    const l = secondaryLines('invalidate-range')
    expect(l.filter((x) => x.startsWith('sec-inval'))).toEqual([
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (1 entry dropped)',
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (0 entries dropped)',
    ])
    // The first one comes after write_protect_page's PTE change and before the compare.
    const wp = l.indexOf('pte set_pte_at_notify (write-protect): PTE P := pfn 1 RO clean')
    const inval = l.indexOf(
      'sec-inval ->invalidate_range (from range_end): iommu: invalidate P (1 entry dropped)',
    )
    expect(wp).toBeGreaterThanOrEqual(0)
    expect(inval).toBeGreaterThan(wp)
  })

  it('the PTE ends on the stable page read-only, and the old page is freed after the last range_end', () => {
    const l = secondaryLines('start-end')
    expect(l).toContain('pte set_pte_at_notify (stable page): PTE P := pfn 2 RO clean')
    const lastEnd = l.lastIndexOf('notifier mmu_notifier_invalidate_range_end: P')
    const freed = l.indexOf('frame put_page (ksmd): free pfn 1 (gen 1)')
    expect(freed).toBeGreaterThan(lastEnd)
  })

  it('a page shared with a fork child merges too: mapcount + 1 == page_count counts the child in both', () => {
    const ex = traced(
      scenarioOf(
        `
          title: ksm shared
          arch: arm64
          pages:
            P: { value: 5, prot: rw, cow: true }
          cpus:
            ksmd: [ksm_merge P]
        `,
        'ksm.test.yaml',
      ),
      makePolicy('arch-hook'),
    )
    // The dirty read-only PTE is cleared and checked: mapcount 2 (+1 for ksmd) == refcount 3,
    // so the stable page replaces the parent's PTE.
    expect(lines(ex, { kinds: ['pte'] }).at(-1)).toBe(
      'pte set_pte_at_notify (stable page): PTE P := pfn 2 RO clean',
    )
  })
})

describe('write_protect_page: which PTEs are cleared and flushed (v6.6 mm/ksm.c)', () => {
  const load = (pages: string, cpus: string) =>
    scenarioOf(
      `
        title: ksm wp
        arch: x86_64
        pages:
          ${pages}
        cpus:
          ${cpus}
      `,
      'ksm-wp.test.yaml',
    )

  it('a clean read-only PTE of an anon-exclusive page is still cleared and flushed under the PTL', () => {
    // mprotect(PROT_READ) of a writable clean PTE leaves it read-only and clean, mapcount 1.
    const sc = load('P: { value: 5, prot: rw, mapped: clean }', 'ksmd: [mprotect P ro, ksm_merge P]')
    const ex = traced(sc, makePolicy('arch-hook'))
    const l = lines(ex, { op: 'ksmd: ksm_merge P', kinds: ['lock', 'pte', 'cpu-flush', 'info'] })
    const i = l.indexOf(
      'info write_protect_page: P: read-only and clean, but anon_exclusive: clear and flush',
    )
    expect(i).toBeGreaterThan(0)
    expect(l[i + 1]).toBe('pte ptep_clear_flush: PTE P := none')
    expect(l[i + 2]).toBe('cpu-flush flush_tlb_page (ptep_clear_flush): flush CPU TLBs: P')
    expect(first(ex, 'cpu-flush flush_tlb_page (ptep_clear_flush)', { thread: 'ksmd' }).locks).toContain(
      'ptl',
    )
  })

  it('a clean read-only PTE of a page shared with a fork child is cleared only while a flush is pending (mm_tlb_flush_pending)', () => {
    // fork write-protects the clean writable PTE (ptep_set_wrprotect): read-only, clean, mapcount 2.
    const sc = load(
      'P: { value: 5, prot: rw, mapped: clean }\n          Q: { value: 1, prot: rw }',
      'F: [fork]\n          C1: [munmap Q]\n          ksmd: [ksm_merge P]',
    )
    const alone = traced(sc, makePolicy('arch-hook'))
    const forkSteps = alone.records.filter((r) => r.thread === 'F').length
    const ksm = (ex: ReturnType<typeof traced>) =>
      lines(ex, { op: 'ksmd: ksm_merge P', kinds: ['pte', 'info'] })
    // After munmap returned: not exclusive, not writable, not dirty, no gather: write_protect_page
    // keeps the PTE; the one ptep_clear_flush is replace_page's.
    const clears = (ex: ReturnType<typeof traced>) =>
      ksm(ex).filter((x) => x.startsWith('pte ptep_clear_flush')).length
    expect(clears(alone)).toBe(1)
    // C1's munmap has its mmu_gather in flight (tlb_gather_mmu: inc_tlb_flush_pending).
    // ksmd: get_page, trylock_page, range_start, then write_protect_page under the PTL.
    const racing = traced(sc, makePolicy('arch-hook'), [
      ...new Array<number>(forkSteps).fill(0),
      1,
      2,
      2,
      2,
      2,
    ])
    expect(ksm(racing)).toContain(
      'info write_protect_page: P: read-only and clean, but mm_tlb_flush_pending(): clear and flush',
    )
    expect(clears(racing)).toBe(2)
  })
})

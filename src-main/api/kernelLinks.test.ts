import { describe, expect, it } from 'vitest'
import { elixirUrl, isKernelSourceUrl, kernelIdentifier, kernelLink, sourceVersions } from './kernelLinks'

describe('kernelIdentifier', () => {
  it('takes the C identifier an event names, dropping what the model adds around it', () => {
    const id = (fn: string, kind = 'pte') => kernelIdentifier({ kind, fn })
    expect(id('ptep_clear_flush')).toBe('ptep_clear_flush')
    expect(id('set_pte_at (pte_wrprotect + pte_mkclean)')).toBe('set_pte_at')
    expect(id('->invalidate_range (from range_end)', 'sec-inval')).toBe('invalidate_range')
    expect(id('zap_pte_range: pte_offset_map_lock', 'lock')).toBe('zap_pte_range')
    expect(id('tlb_flush (tlb_finish_mmu, fullmm)', 'cpu-flush')).toBe('tlb_flush')
    expect(id('__tlb_remove_page (delay_rmap)', 'frame')).toBe('__tlb_remove_page')
    expect(id('kvm_tdp_mmu_map', 'fill')).toBe('kvm_tdp_mmu_map')
  })

  it('gives hardware actions, scenario ops, invariants and never-merged proposals no identifier', () => {
    const id = (fn: string, kind: string) => kernelIdentifier({ kind, fn })
    expect(id('IOMMU page walk', 'fill')).toBeNull()
    expect(id('page walk', 'fill')).toBeNull()
    expect(id('ATS translation request', 'info')).toBeNull()
    expect(id('BTM: snooped broadcast TLBI', 'sec-inval')).toBeNull()
    expect(id('iopf (page request)', 'fault')).toBeNull()
    expect(id('load', 'access')).toBeNull()
    expect(id('cow_fault', 'op')).toBeNull()
    expect(id('use-after-free', 'violation')).toBeNull()
    expect(id('signal', 'info')).toBeNull()
    expect(id('ptep_set_access_flags_notify', 'pte')).toBeNull()
    expect(id('stable_tree: drop the candidate stable page', 'frame')).toBeNull()
    expect(id('', 'pte')).toBeNull()
  })
})

describe('kernelLink', () => {
  it('links v6.6 by default and the removed ->invalidate_range API to v4.15', () => {
    expect(kernelLink({ kind: 'pte', fn: 'ptep_clear_flush' })).toEqual({
      ident: 'ptep_clear_flush',
      version: 'v6.6',
      url: 'https://elixir.bootlin.com/linux/v6.6/A/ident/ptep_clear_flush',
    })
    expect(kernelLink({ kind: 'notifier', fn: 'mmu_notifier_invalidate_range_only_end' })?.version).toBe(
      'v4.15',
    )
    expect(kernelLink({ kind: 'notifier', fn: 'mmu_notifier_arch_invalidate_secondary_tlbs' })?.version).toBe(
      'v6.6',
    )
    expect(kernelLink({ kind: 'frame', fn: 'IOMMU page walk' })).toBeNull()
  })

  it("uses the version a scenario's source names for the functions it lists", () => {
    const v = sourceVersions(
      'reference 3.10, 5.14 row 13; f268f6cf875f (Jann Horn, 2022); v6.1 mm/khugepaged.c collapse_and_free_pmd',
    )
    expect(v.get('collapse_and_free_pmd')).toBe('v6.1')
    expect(kernelLink({ kind: 'info', fn: 'collapse_and_free_pmd' }, v)?.url).toBe(
      'https://elixir.bootlin.com/linux/v6.1/A/ident/collapse_and_free_pmd',
    )
    expect(kernelLink({ kind: 'pte', fn: 'pmdp_collapse_flush' }, v)?.version).toBe('v6.6')
    expect(sourceVersions(null).size).toBe(0)
    expect(sourceVersions('reference 3.4: without a forced flush').size).toBe(0)
  })

  it('makes only elixir URLs, and recognises only those', () => {
    expect(elixirUrl('a b', 'latest')).toBe('https://elixir.bootlin.com/linux/latest/A/ident/a%20b')
    expect(isKernelSourceUrl('https://elixir.bootlin.com/linux/v6.6/A/ident/x')).toBe(true)
    expect(isKernelSourceUrl('https://elixir.bootlin.com.evil.example/linux/')).toBe(false)
    expect(isKernelSourceUrl('file:///etc/passwd')).toBe(false)
  })
})

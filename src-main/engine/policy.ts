/**
 * Notifier patch policies: where secondary TLBs hear about page-table changes.
 *
 * The CPU side (what each architecture flushes, and where) follows v6.6 under every policy;
 * a policy only decides which notifier calls reach which secondary, so a comparison varies
 * one thing (reference §2).
 */

export type Preset = 'start-end' | 'invalidate-range' | 'arch-hook'
export type Variant = 'upgrade-notify' | 'access-flags-notify' | 'pri-flush' | 'kernel-notifier'

export const PRESETS: readonly Preset[] = ['start-end', 'invalidate-range', 'arch-hook']
export const VARIANTS: readonly Variant[] = [
  'upgrade-notify',
  'access-flags-notify',
  'pri-flush',
  'kernel-notifier',
]

export const PRESET_DOCS: Record<Preset, string> = {
  'start-end':
    'Secondaries hear only mmu_notifier_invalidate_range_start/end (a hw-walker driver flushes at start, end or both).',
  'invalidate-range':
    'v4.15: ->invalidate_range under the PTL from *_clear_flush_notify, from tlb_flush_mmu_tlbonly, and from range_end unless _only_end (Glisse 2017).',
  'arch-hook':
    'v6.6: arch_invalidate_secondary_tlbs from the architecture TLB-flush functions only (Popple 2023).',
}

export const VARIANT_DOCS: Record<Variant, string> = {
  'upgrade-notify':
    "Popple v1 (2023-05-22, as posted): start/end(MMU_NOTIFY_PROTECTION_UPGRADE) after the PTL is dropped in handle_pte_fault's dirty/young update (and __wp_page_copy_user, insert_pfn, hugetlb_fault); do_wp_page -> wp_page_reuse is not covered.",
  'access-flags-notify':
    "Catalin Marinas's ptep_set_access_flags_notify(): mmu_notifier_invalidate_range() under the PTL whenever ptep_set_access_flags changed the PTE.",
  'pri-flush':
    "The IOMMU driver invalidates the faulting address in its TLB before answering the page request (Gunthorpe's suggestion, 2023-05-30).",
  'kernel-notifier':
    'Huang Ying / Lu Baolu 2017 (not merged): a kernel MMU notifier chain called from flush_tlb_kernel_range() and flush_tlb_all(), so a device with a supervisor PASID is invalidated when kernel mappings are (reference 5.12).',
}

export interface Policy {
  readonly preset: Preset
  readonly variants: readonly Variant[]
  /** Canonical name: preset, then variants in VARIANTS order, joined by '+'. */
  readonly name: string
}

export function makePolicy(preset: Preset, variants: readonly Variant[] = []): Policy {
  const vs = VARIANTS.filter((v) => variants.includes(v))
  return { preset, variants: vs, name: [preset, ...vs].join('+') }
}

export function hasVariant(p: Policy, v: Variant): boolean {
  return p.variants.includes(v)
}

/** Parses `preset+variant[+variant]`; returns an error message on bad input. */
export function parsePolicy(text: string): Policy | string {
  const parts = text
    .trim()
    .split('+')
    .map((s) => s.trim())
  const preset = parts[0] ?? ''
  if (!(PRESETS as readonly string[]).includes(preset)) {
    return `unknown policy preset '${preset}'; expected one of ${PRESETS.join(', ')}`
  }
  const variants: Variant[] = []
  for (const v of parts.slice(1)) {
    if (!(VARIANTS as readonly string[]).includes(v)) {
      return `unknown policy variant '${v}'; expected one of ${VARIANTS.join(', ')}`
    }
    if (variants.includes(v as Variant)) return `variant '${v}' given twice`
    variants.push(v as Variant)
  }
  return makePolicy(preset as Preset, variants)
}

/** `all` means the three presets. */
export function parsePolicyList(text: string): Policy[] | string {
  if (text.trim() === 'all') return PRESETS.map((p) => makePolicy(p))
  const out: Policy[] = []
  for (const t of text.split(',')) {
    const p = parsePolicy(t)
    if (typeof p === 'string') return p
    out.push(p)
  }
  return out
}

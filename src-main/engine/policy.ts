/**
 * Notifier policies as sets of call sites (issue 14): where secondary TLBs hear about
 * page-table changes.
 *
 * A site is one kernel call position, named after the kernel function it sits in, at which a
 * notification reaches the secondaries. A policy is a set of sites; the three presets and
 * their variants are named sets (PRESET_SITES, VARIANT_SITES), and a custom set is written
 * `sites:a,b` or defined by name in a scenario's `policies:` section. The CPU side (what each
 * architecture flushes, and where) follows v6.6 under every policy, so a comparison varies one
 * thing (reference §2). Sw-mirrors (KVM, HMM) hear every mmu_notifier_invalidate_range_start/end
 * whatever the policy: the sites place the hw-walker's invalidations and the notifier calls that
 * proposals add.
 *
 * Monotone by construction: every site only adds a notifier call or an invalidation (ctx.ts
 * asks `site in policy` at each position and never takes anything away), so a larger set can
 * only invalidate more, and a set that holds stays free of use-after-free, stale-after-return,
 * lost-write, lost-dirty and livelock when sites are added (sitesMonotone.test.ts). Not
 * monotone: a litmus outcome (`forbid`), since a secondary that is never invalidated reads a
 * consistent stale snapshot (the empty set holds Glisse's COW ordering race), and one invariant
 * taken alone while another is violated. Where the construction needs care:
 * - `invalidate_range_start` / `invalidate_range_end` are the sites; `flush_at` is the driver's
 *   own choice of which of its two callbacks flushes. Monotonicity holds in the set for one
 *   driver; changing flush_at (start vs end) is not a larger set and may lose either way.
 * - `range_end` (v4.15 ->invalidate_range from range_end) is skipped by _only_end calls
 *   (wp_page_copy, the THP split): it is not the same site as `invalidate_range_end`, which
 *   every range_end and _only_end reaches.
 * - The upgrade sites (`handle_pte_fault`, `wp_page_reuse`) add a range_start/end pair: a
 *   hw-walker flushes in it only through the start/end sites (Popple v1 sent the upgrade
 *   through the start/end API), while every sw-mirror zaps (the cost Sean Christopherson
 *   objected to). They add invalidations, never remove one.
 * - `start-end+access-flags-notify` is the start-end set: a start/end-only driver implements
 *   no ->invalidate_range, so ptep_set_access_flags_notify() reaches nobody there.
 */
import { didYouMean } from './scenario/common'

export type Preset = 'start-end' | 'invalidate-range' | 'arch-hook'
export type Variant = 'upgrade-notify' | 'access-flags-notify' | 'pri-flush' | 'kernel-notifier'

export const PRESETS: readonly Preset[] = ['start-end', 'invalidate-range', 'arch-hook']
export const VARIANTS: readonly Variant[] = [
  'upgrade-notify',
  'access-flags-notify',
  'pri-flush',
  'kernel-notifier',
]

/** Every notification site the engine has, in canonical order (a set prints in this order). */
export const SITE_NAMES = [
  'invalidate_range_start',
  'invalidate_range_end',
  'range_end',
  'ptep_clear_flush_notify',
  'tlb_flush_mmu_tlbonly',
  'try_to_unmap_one',
  'flush_tlb_page',
  'flush_tlb_range',
  'flush_tlb_mm',
  'arch_tlbbatch_add_pending',
  'ptep_set_access_flags',
  'handle_pte_fault',
  'wp_page_reuse',
  'iommu_page_response',
  'flush_tlb_kernel_range',
  'flush_tlb_all',
] as const
export type Site = (typeof SITE_NAMES)[number]

/** The sites the arch TLB-flush functions host (v6.6 arch_invalidate_secondary_tlbs). */
export type ArchSite = 'flush_tlb_page' | 'flush_tlb_range' | 'flush_tlb_mm' | 'arch_tlbbatch_add_pending'

export interface SiteDoc {
  readonly name: Site
  /** Which family it belongs to: the preset that has it, or the proposal that adds it. */
  readonly group: string
  /** The kernel function (file, version) the call sits in. */
  readonly kernel: string
  /** What a secondary does there. */
  readonly doc: string
}

export const SITES: readonly SiteDoc[] = [
  {
    name: 'invalidate_range_start',
    group: 'start-end',
    kernel:
      'v6.6 mm/mmu_notifier.c mn_hlist_invalidate_range_start(): ops->invalidate_range_start, from mmu_notifier_invalidate_range_start() before the PTEs change',
    doc: 'a hw-walker driver flushes its IOTLB (and ATC) for the range, unless flush_at: end; the device may walk the unchanged PTE again right after',
  },
  {
    name: 'invalidate_range_end',
    group: 'start-end',
    kernel:
      'v6.6 mm/mmu_notifier.c mn_hlist_invalidate_range_end(): ops->invalidate_range_end, from mmu_notifier_invalidate_range_end() and _only_end(), after the PTL is dropped',
    doc: 'a hw-walker driver flushes the range, unless flush_at: start; pages freed or PTEs repointed before range_end are seen stale until then',
  },
  {
    name: 'range_end',
    group: 'invalidate-range',
    kernel:
      'v4.15 mm/mmu_notifier.c __mmu_notifier_invalidate_range_end(): ops->invalidate_range before ->invalidate_range_end, skipped by mmu_notifier_invalidate_range_only_end()',
    doc: 'a hw-walker is invalidated for the range after the PTEs changed; callers that already invalidated under the PTL (wp_page_copy, the THP split) use _only_end',
  },
  {
    name: 'ptep_clear_flush_notify',
    group: 'invalidate-range',
    kernel:
      'v4.15 include/linux/mmu_notifier.h ptep_clear_flush_notify(), called by mm/memory.c wp_page_copy(); its PMD sibling pmdp_huge_clear_flush_notify(), called by mm/huge_memory.c __split_huge_pmd_locked() for a file/shmem PMD',
    doc: "->invalidate_range under the PTL between the clear and set_pte_at_notify of the new page (Glisse's case B): no device sees the new page before the old one is gone; for a file PMD's split, under pmd_lock right after the PMD is cleared (the _only_end that follows skips range_end)",
  },
  {
    name: 'tlb_flush_mmu_tlbonly',
    group: 'invalidate-range',
    kernel:
      'v4.15 mm/memory.c tlb_flush_mmu_tlbonly(): mmu_notifier_invalidate_range(tlb->mm, tlb->start, tlb->end) after tlb_flush()',
    doc: '->invalidate_range for the gathered range after the CPU flush and before the gathered pages are freed (a forced flush in zap_pte_range, tlb_finish_mmu, mprotect)',
  },
  {
    name: 'try_to_unmap_one',
    group: 'invalidate-range',
    kernel:
      'v4.15 mm/rmap.c try_to_unmap_one(): mmu_notifier_invalidate_range() under the PTL after set_pte_at of the swap entry ("Invalidate as we cleared the pte")',
    doc: '->invalidate_range under the PTL for the page reclaim unmaps to swap (the engine sends it right after the clear, before the swap entry: both are non-present to a walker)',
  },
  {
    name: 'flush_tlb_page',
    group: 'arch-hook',
    kernel:
      'v6.6 arch/arm64/include/asm/tlbflush.h __flush_tlb_page_nosync(); arch/x86/mm/tlb.c flush_tlb_mm_range() of one page (flush_tlb_page from ptep_clear_flush, ptep_set_access_flags)',
    doc: 'arch_invalidate_secondary_tlbs for the page beside the CPU TLBI/INVLPG, under the PTL where the caller holds it',
  },
  {
    name: 'flush_tlb_range',
    group: 'arch-hook',
    kernel:
      'v6.6 arch/arm64/include/asm/tlbflush.h __flush_tlb_range(); arch/x86/mm/tlb.c flush_tlb_mm_range(start, end) (flush_tlb_range, flush_pmd_tlb_range, the mmu_gather tlb_flush of a range)',
    doc: 'arch_invalidate_secondary_tlbs for the range (x86: whole mm above tlb_single_page_flush_ceiling); arm64 v6.6-v6.13 passed an empty range, which the SMMU treats as invalidate-all; a BTM SMMU skips its IOTLB command (the TLBI is snooped) but still invalidates the ATC',
  },
  {
    name: 'flush_tlb_mm',
    group: 'arch-hook',
    kernel:
      'v6.6 arch/arm64/include/asm/tlbflush.h flush_tlb_mm(); arch/x86/mm/tlb.c flush_tlb_mm_range(0, TLB_FLUSH_ALL) (dup_mmap, flush_tlb_batched_pending, a full-mm tlb_flush)',
    doc: 'arch_invalidate_secondary_tlbs(mm, 0, -1): the whole address space (v6.6.0 VT-d overflows on it: no command before e7ad6c2a4b1a)',
  },
  {
    name: 'arch_tlbbatch_add_pending',
    group: 'arch-hook',
    kernel:
      'v6.6 arch/x86/include/asm/tlbflush.h arch_tlbbatch_add_pending(): (0, -1) for every page; arm64: __flush_tlb_page_nosync() for the page (try_to_unmap_one, try_to_migrate_one with TTU_BATCH_FLUSH)',
    doc: 'the batched unmap invalidates at add time: x86 the whole address space per page while the CPU flush waits for arch_tlbbatch_flush (which has no mm and no hook); arm64 the page',
  },
  {
    name: 'ptep_set_access_flags',
    group: 'access-flags-notify',
    kernel:
      "Catalin Marinas's ptep_set_access_flags_notify() (2023, not merged), in v6.6 mm/memory.c handle_pte_fault(), wp_page_reuse()",
    doc: 'the invalidate_range-class callback for the page under the PTL whenever ptep_set_access_flags changed the PTE (a permission upgrade or dirty update)',
  },
  {
    name: 'handle_pte_fault',
    group: 'upgrade-notify',
    kernel:
      'Popple v1 (2023-05-22, not merged) mm/memory.c handle_pte_fault(): range_start/end(MMU_NOTIFY_PROTECTION_UPGRADE) after pte_unmap_unlock when the dirty/young update changed the PTE',
    doc: 'every subscriber hears a start/end pair for the page: a hw-walker flushes in it only under the start/end sites; KVM zaps its shadow entries',
  },
  {
    name: 'wp_page_reuse',
    group: 'upgrade-notify',
    kernel:
      'v6.6 mm/memory.c wp_page_reuse() (do_wp_page of an exclusive anon page; wp_page_shared of a file page): the same PROTECTION_UPGRADE pair after its pte_unmap_unlock, a position Popple v1 did not cover',
    doc: 'as handle_pte_fault, for the in-place RO->RW upgrade of a write fault',
  },
  {
    name: 'iommu_page_response',
    group: 'pri-flush',
    kernel:
      "Gunthorpe's suggestion (2023-05-30): the IOMMU driver, before v6.6 drivers/iommu/io-pgfault.c iopf_handler() sends iommu_page_response()",
    doc: 'the faulting address is invalidated in the IOTLB (and ATC) before the device is told to retry',
  },
  {
    name: 'flush_tlb_kernel_range',
    group: 'kernel-notifier',
    kernel:
      'Huang Ying / Lu Baolu 2017 (not merged): a kernel MMU notifier chain called from arch/x86/mm/tlb.c flush_tlb_kernel_range()',
    doc: 'hw-walkers bound with a supervisor PASID invalidate the kernel range (a range above tlb_single_page_flush_ceiling is run as flush_tlb_all, that site)',
  },
  {
    name: 'flush_tlb_all',
    group: 'kernel-notifier',
    kernel:
      'the same 2017 chain from arch/x86/mm/tlb.c flush_tlb_all() (the engine runs a wide flush_tlb_kernel_range, do_flush_tlb_all on every CPU, as flush_tlb_all)',
    doc: 'hw-walkers bound with a supervisor PASID invalidate everything',
  },
]

/** Which preset has each site set: the v6.6 model with one notifier family each (reference §1). */
export const PRESET_SITES: Readonly<Record<Preset, readonly Site[]>> = {
  'start-end': ['invalidate_range_start', 'invalidate_range_end'],
  'invalidate-range': ['range_end', 'ptep_clear_flush_notify', 'tlb_flush_mmu_tlbonly', 'try_to_unmap_one'],
  'arch-hook': ['flush_tlb_page', 'flush_tlb_range', 'flush_tlb_mm', 'arch_tlbbatch_add_pending'],
}

/** The sites a variant adds to a preset's set. */
export function variantSites(preset: Preset, v: Variant): readonly Site[] {
  switch (v) {
    case 'upgrade-notify':
      return ['handle_pte_fault']
    case 'access-flags-notify':
      // A start/end-only driver implements no ->invalidate_range: nobody hears the call.
      return preset === 'start-end' ? [] : ['ptep_set_access_flags']
    case 'pri-flush':
      return ['iommu_page_response']
    case 'kernel-notifier':
      return ['flush_tlb_kernel_range', 'flush_tlb_all']
  }
}

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
    "Catalin Marinas's ptep_set_access_flags_notify(): mmu_notifier_invalidate_range() under the PTL whenever ptep_set_access_flags changed the PTE (nobody hears it under start-end).",
  'pri-flush':
    "The IOMMU driver invalidates the faulting address in its TLB before answering the page request (Gunthorpe's suggestion, 2023-05-30).",
  'kernel-notifier':
    'Huang Ying / Lu Baolu 2017 (not merged): a kernel MMU notifier chain called from flush_tlb_kernel_range() and flush_tlb_all(), so a device with a supervisor PASID is invalidated when kernel mappings are (reference 5.12).',
}

export interface Policy {
  /**
   * What results, expectations and the command line call it: `preset[+variant...]`, a name a
   * scenario defines in `policies:`, or the canonical name of its site set (siteSetName).
   */
  readonly name: string
  /** Its sites, in SITE_NAMES order. */
  readonly sites: readonly Site[]
  /** The same as a bit mask over SITE_NAMES (what ctx.ts tests at each position). */
  readonly mask: number
}

const SITE_BIT = new Map<string, number>(SITE_NAMES.map((s, i) => [s, 1 << i]))

export function isSite(s: string): s is Site {
  return SITE_BIT.has(s)
}

/** The bit of a site in Policy.mask. */
export function siteBit(s: Site): number {
  return SITE_BIT.get(s)!
}

export function hasSite(p: Policy, s: Site): boolean {
  return (p.mask & SITE_BIT.get(s)!) !== 0
}

function maskOf(sites: Iterable<Site>): number {
  let m = 0
  for (const s of sites) m |= SITE_BIT.get(s)!
  return m
}

function sitesOf(mask: number): Site[] {
  return SITE_NAMES.filter((_, i) => (mask & (1 << i)) !== 0)
}

/** The preset's set with the variants' sites added. */
export function namedSites(preset: Preset, variants: readonly Variant[] = []): Site[] {
  return sitesOf(maskOf([...PRESET_SITES[preset], ...variants.flatMap((v) => variantSites(preset, v))]))
}

/**
 * The canonical name of a site set: the preset (with its variants, in VARIANTS order) whose
 * named set it is exactly, else `sites:` and the sites in SITE_NAMES order joined by '+'
 * (`sites:` alone for the empty set). parsePolicy reads every form back.
 */
export function siteSetName(sites: Iterable<Site>): string {
  const m = maskOf(sites)
  for (const p of PRESETS) {
    const pm = maskOf(PRESET_SITES[p])
    if ((m & pm) !== pm) continue
    let rest = m & ~pm
    const vs: Variant[] = []
    for (const v of VARIANTS) {
      const vm = maskOf(variantSites(p, v))
      if (vm !== 0 && (rest & vm) === vm) {
        vs.push(v)
        rest &= ~vm
      }
    }
    if (rest === 0) return [p, ...vs].join('+')
  }
  return `sites:${sitesOf(m).join('+')}`
}

/** A policy of a site set; its name is the set's canonical name unless given. */
export function sitePolicy(sites: Iterable<Site>, name?: string): Policy {
  const mask = maskOf(sites)
  return { name: name ?? siteSetName(sitesOf(mask)), sites: sitesOf(mask), mask }
}

/** A preset with variants: its named site set, called `preset+variant...`. */
export function makePolicy(preset: Preset, variants: readonly Variant[] = []): Policy {
  const vs = VARIANTS.filter((v) => variants.includes(v))
  return sitePolicy(namedSites(preset, vs), [preset, ...vs].join('+'))
}

/** Policies a scenario (or notebook) defines by name (`policies: { mine: [...] }`). */
export type PolicyDefs = readonly Policy[]

/**
 * The definitions of `base` with those of `extra` added: a name both define must mean the same
 * set. Returns an error message on a conflict.
 */
export function mergePolicyDefs(base: PolicyDefs, extra: PolicyDefs): PolicyDefs | string {
  const out = [...base]
  for (const p of extra) {
    const q = out.find((x) => x.name === p.name)
    if (!q) out.push(p)
    else if (q.mask !== p.mask)
      return `policy ${p.name} is defined twice with different sites: the scenario's [${q.sites.join(', ')}], and [${p.sites.join(', ')}]`
  }
  return out
}

const SITES_PREFIX = 'sites:'

/** Reads `a,b` or `a+b` after `sites:`; an error message on an unknown or repeated site. */
function parseSiteList(text: string): Site[] | string {
  const out: Site[] = []
  for (const raw of text.split(/[,+]/)) {
    const s = raw.trim()
    if (s === '') continue
    if (!isSite(s)) return `unknown site '${s}'${didYouMean(s, SITE_NAMES)}; sites: ${SITE_NAMES.join(', ')}`
    if (out.includes(s)) return `site '${s}' given twice`
    out.push(s)
  }
  return out
}

/**
 * Parses a policy: `preset[+variant...]`, `sites:a,b` (or `sites:a+b`), or a name `defs`
 * defines. Returns an error message on bad input.
 */
export function parsePolicy(text: string, defs: PolicyDefs = []): Policy | string {
  const t = text.trim()
  if (t.startsWith(SITES_PREFIX)) {
    const list = parseSiteList(t.slice(SITES_PREFIX.length))
    return typeof list === 'string' ? list : sitePolicy(list)
  }
  const def = defs.find((d) => d.name === t)
  if (def) return def
  const parts = t.split('+').map((s) => s.trim())
  const preset = parts[0] ?? ''
  if (!(PRESETS as readonly string[]).includes(preset)) {
    const names = [...PRESETS, ...defs.map((d) => d.name), ...SITE_NAMES]
    const hint = isSite(preset)
      ? ` ('${preset}' is a site: write sites:${t.replace(/^\s+/, '')})`
      : didYouMean(preset, names)
    return `unknown policy '${preset}'${hint}; expected ${PRESETS.join(', ')}${defs.length ? `, a policy the file defines (${defs.map((d) => d.name).join(', ')})` : ''} or sites:a,b`
  }
  const variants: Variant[] = []
  for (const v of parts.slice(1)) {
    if (!(VARIANTS as readonly string[]).includes(v)) {
      return `unknown policy variant '${v}'${didYouMean(v, VARIANTS)}; expected one of ${VARIANTS.join(', ')}`
    }
    if (variants.includes(v as Variant)) return `variant '${v}' given twice`
    variants.push(v as Variant)
  }
  return makePolicy(preset as Preset, variants)
}

/**
 * A comma-separated list of policies; `all` means the three presets. A `sites:` entry takes
 * the site names after it (`sites:a,b,arch-hook` is two policies: the set {a, b} and arch-hook).
 */
export function parsePolicyList(text: string, defs: PolicyDefs = []): Policy[] | string {
  if (text.trim() === 'all') return PRESETS.map((p) => makePolicy(p))
  const out: Policy[] = []
  const parts = text.split(',')
  for (let i = 0; i < parts.length; i++) {
    let t = parts[i]!
    if (t.trim().startsWith(SITES_PREFIX))
      while (i + 1 < parts.length && isSite(parts[i + 1]!.trim())) t += `,${parts[++i]!}`
    const p = parsePolicy(t, defs)
    if (typeof p === 'string') return p
    out.push(p)
  }
  return out
}

/**
 * Links from a trace event to the kernel source of the function it models (issue 12), as an
 * Elixir identifier search for one kernel version. Pure: shared by the workbench's step
 * inspector and anything else that prints a step.
 *
 * Which version: the CPU side of every policy follows v6.6 (README, "Policies"), and so do the
 * arch-hook and start-end notifier calls. The `invalidate-range` policy models the v4.15
 * `->invalidate_range` API, which v6.6 removed (Popple's series renamed it to
 * arch_invalidate_secondary_tlbs and dropped `_only_end` and `*_clear_flush_notify`), so those
 * names link to v4.15. A scenario's `source:` may name the version a function is taken from
 * ("v6.1 mm/khugepaged.c collapse_and_free_pmd"): that version wins for the names it lists.
 */

/** The kernel the engine's CPU side follows. */
export const MODELLED_KERNEL = 'v6.6'
/** The kernel whose `->invalidate_range` API the `invalidate-range` policy models. */
export const INVALIDATE_RANGE_KERNEL = 'v4.15'

const ELIXIR = 'https://elixir.bootlin.com/linux/'

/** Names of the v4.15 secondary-TLB API that v6.6 no longer has. */
const V415_ONLY = new Set([
  'invalidate_range',
  'mmu_notifier_invalidate_range',
  'mmu_notifier_invalidate_range_only_end',
  'ptep_clear_flush_notify',
  'pmdp_huge_clear_flush_notify',
  'pudp_huge_clear_flush_notify',
])

/**
 * Event functions that are the model's own names, not kernel identifiers: scenario ops, and
 * proposals that were never merged (Catalin's ptep_set_access_flags_notify, the 2017 kernel
 * notifier chain).
 */
const NOT_KERNEL = new Set([
  'cow_fault',
  'write_fault',
  'ksm_merge',
  'thp_collapse',
  'thp_split',
  'madvise_dontneed',
  'migrate_vma',
  'stable_tree',
  'kernel_mmu_notifier',
  'ptep_set_access_flags_notify',
])

/**
 * Kernel identifiers without an underscore that events name. Other one-word names (`load`,
 * `store`, `signal`, `wait`, `munmap` as an op) are hardware actions or scenario ops.
 */
const ONE_WORD = new Set(['vmalloc', 'vfree'])

/** Kinds whose `fn` is never a kernel function: scenario ops, CPU/device accesses, invariants. */
const NO_LINK_KINDS = new Set(['op', 'access', 'violation'])

export interface KernelLink {
  readonly ident: string
  readonly version: string
  readonly url: string
}

/**
 * The C identifier an event's `fn` names, or null for hardware actions and model labels:
 * `ptep_clear_flush` → itself, `set_pte_at (pte_wrprotect + pte_mkclean)` → `set_pte_at`,
 * `->invalidate_range (from range_end)` → `invalidate_range`, `zap_pte_range: pte_offset_map_lock`
 * → `zap_pte_range`, `IOMMU page walk` → null.
 */
export function kernelIdentifier(e: { readonly kind: string; readonly fn: string }): string | null {
  if (NO_LINK_KINDS.has(e.kind)) return null
  const m = /^(?:->)?([A-Za-z_][A-Za-z0-9_]*)(?=$|[\s:(])/.exec(e.fn.trim())
  if (!m) return null
  const ident = m[1]!
  if (NOT_KERNEL.has(ident)) return null
  if (!ident.includes('_') && !ONE_WORD.has(ident)) return null
  return ident
}

/** The Elixir identifier search for `ident` in `version` (`v6.6`, `latest`). */
export function elixirUrl(ident: string, version: string): string {
  return `${ELIXIR}${encodeURIComponent(version)}/A/ident/${encodeURIComponent(ident)}`
}

/**
 * Versions a scenario's `source:` names for particular functions: in each `;`-separated part
 * that names a version (`v6.1`), every identifier-like word of that part gets it.
 */
export function sourceVersions(source: string | null | undefined): ReadonlyMap<string, string> {
  const out = new Map<string, string>()
  for (const part of (source ?? '').split(';')) {
    const v = /\bv(\d+\.\d+(?:\.\d+)?)\b/.exec(part)
    if (!v) continue
    for (const w of part.matchAll(/\b[a-z_][a-z0-9_]*_[a-z0-9_]+\b/g)) out.set(w[0], `v${v[1]}`)
  }
  return out
}

/** The source link for an event, or null when it names no kernel function. */
export function kernelLink(
  e: { readonly kind: string; readonly fn: string },
  versions: ReadonlyMap<string, string> = new Map(),
): KernelLink | null {
  const ident = kernelIdentifier(e)
  if (!ident) return null
  const version = versions.get(ident) ?? (V415_ONLY.has(ident) ? INVALIDATE_RANGE_KERNEL : MODELLED_KERNEL)
  return { ident, version, url: elixirUrl(ident, version) }
}

/** True for the URLs this module makes: the desktop app opens only these in the system browser. */
export function isKernelSourceUrl(url: string): boolean {
  return url.startsWith(ELIXIR)
}

/**
 * The site grid's plain logic (issue 14): notification sites grouped by kernel path, custom
 * placements (named site sets) and the one-click fills from presets and variants. The engine
 * owns the sites, their docs and the named sets (EngineInfo.sites / namedSites); this file only
 * arranges them, and checks a placement's name the way the scenario loader checks a
 * `policies:` name (engine/scenario/policies.ts POLICY_NAME).
 */

/** A notification site as EngineInfo.sites lists it. */
export interface SiteInfo {
  readonly name: string
  /** The preset that has it, or the proposal (variant) that adds it. */
  readonly group: string
  /** The kernel function (file, version) the call sits in. */
  readonly kernel: string
  /** What a secondary does there. */
  readonly doc: string
}

/** The site set of each preset and preset+variant, by name (EngineInfo.namedSites). */
export type NamedSites = Readonly<Record<string, readonly string[]>>

/** A custom placement: a named set of sites, run side by side with the presets. */
export interface Placement {
  readonly name: string
  /** Site names, in the engine's canonical order. */
  readonly sites: readonly string[]
}

/** One row of the grid: a heading, or a site. */
export type GridRow =
  | {
      readonly kind: 'group'
      /** The preset or proposal the following sites belong to. */
      readonly group: string
      /** The kernel path it stands for, in a few words. */
      readonly label: string
      /** A proposal (a variant's sites), not one of the v6.6 presets. */
      readonly proposal: boolean
    }
  | { readonly kind: 'site'; readonly site: SiteInfo }
  | { readonly kind: 'proposals' }

/**
 * The kernel path each group stands for: the three presets' notifier families, then the
 * proposals that add sites (reference §1, policy.ts VARIANT_DOCS).
 */
const GROUP_LABELS: Readonly<Record<string, string>> = {
  'start-end': 'mmu_notifier_invalidate_range_start/end',
  'invalidate-range': '->invalidate_range (v4.15)',
  'arch-hook': 'arch_invalidate_secondary_tlbs (v6.6)',
  'upgrade-notify': 'Popple v1 upgrade notify',
  'access-flags-notify': 'ptep_set_access_flags_notify',
  'pri-flush': 'page-request flush',
  'kernel-notifier': 'kernel MMU notifier',
}

/**
 * The grid's rows: the presets' groups in preset order, then a `proposals` heading and each
 * variant's group; sites keep the engine's order inside their group. A group the engine has but
 * neither list names goes with the proposals, so no site is ever left out.
 */
export function gridRows(
  sites: readonly SiteInfo[],
  presets: readonly string[],
  variants: readonly string[],
): GridRow[] {
  const groups = [...new Set(sites.map((s) => s.group))]
  const base = presets.filter((p) => groups.includes(p))
  const rest = [
    ...variants.filter((v) => groups.includes(v)),
    ...groups.filter((g) => !presets.includes(g) && !variants.includes(g)),
  ]
  const out: GridRow[] = []
  const add = (g: string, proposal: boolean): void => {
    out.push({ kind: 'group', group: g, label: GROUP_LABELS[g] ?? g, proposal })
    for (const s of sites) if (s.group === g) out.push({ kind: 'site', site: s })
  }
  for (const g of base) add(g, false)
  if (rest.length > 0) out.push({ kind: 'proposals' })
  for (const g of rest) add(g, true)
  return out
}

/** A site's tooltip: what the call is in the kernel, and what a secondary does there. */
export function siteTitle(s: SiteInfo): string {
  return `${s.name} (${s.group})\n\nKernel: ${s.kernel}\n\nSecondary: ${s.doc}`
}

/** `sites` in the engine's order (`order`), without duplicates or names the engine does not have. */
export function orderSites(sites: Iterable<string>, order: readonly string[]): string[] {
  const set = new Set(sites)
  return order.filter((s) => set.has(s))
}

/**
 * The sites of a definition list as a scenario's or notebook's `policies:` writes it: site
 * names, and presets (with variants) that stand for their sites; in the engine's order.
 */
export function expandSites(
  list: readonly string[],
  namedSites: NamedSites,
  order: readonly string[],
): string[] {
  const one = (s: string): readonly string[] => {
    if (namedSites[s]) return namedSites[s]
    // `preset+v1+v2`: the preset's set with each variant's.
    const [base, ...vs] = s.split('+')
    if (vs.length > 1 && namedSites[base!]) return vs.flatMap((v) => namedSites[`${base}+${v}`] ?? [v])
    return [s]
  }
  return orderSites(list.flatMap(one), order)
}

/** A placement with one site switched on or off. */
export function withSite(p: Placement, site: string, on: boolean, order: readonly string[]): Placement {
  const rest = p.sites.filter((s) => s !== site)
  return { ...p, sites: orderSites(on ? [...rest, site] : rest, order) }
}

/** The named set (preset, or preset+variant) whose sites are exactly these, or null. */
export function sameAs(sites: readonly string[], namedSites: NamedSites): string | null {
  const key = [...sites].sort().join(',')
  for (const [name, set] of Object.entries(namedSites)) if ([...set].sort().join(',') === key) return name
  return null
}

/**
 * The sites a variant adds to a placement: what it adds to the first preset the placement
 * contains whole (so `access-flags-notify` adds nothing to a start/end-only set, as the engine
 * says: nobody implements ->invalidate_range there), else what it adds to any preset.
 */
export function variantAdds(
  current: readonly string[],
  variant: string,
  presets: readonly string[],
  namedSites: NamedSites,
): string[] {
  const adds = (p: string): string[] => {
    const base = namedSites[p] ?? []
    return (namedSites[`${p}+${variant}`] ?? []).filter((s) => !base.includes(s))
  }
  const whole = presets.find((p) => (namedSites[p] ?? []).every((s) => current.includes(s)))
  if (whole !== undefined) return adds(whole)
  return [...new Set(presets.flatMap(adds))]
}

/** What a scenario file or a run may call a placement (engine/scenario/policies.ts POLICY_NAME). */
export const PLACEMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

/**
 * Why `name` cannot name a placement, or null: the loader's rules (letters, digits, `_ . -`; not
 * `all`, a preset, a preset with variants, or a site), and not a name another placement has.
 */
export function placementNameProblem(
  name: string,
  taken: readonly string[],
  presets: readonly string[],
  siteNames: readonly string[],
): string | null {
  if (name === '') return 'Give the placement a name.'
  if (!PLACEMENT_NAME.test(name))
    return `'${name}': a placement name is letters, digits, _ . - (up to 64, no + , : or spaces).`
  if (name === 'all') return "'all' means the three presets; choose another name."
  if (siteNames.includes(name)) return `'${name}' is a site; choose a name that is not one.`
  if (presets.includes(name.split('+')[0] ?? ''))
    return `'${name}' is a built-in policy; choose another name.`
  if (taken.includes(name)) return `There is a placement called '${name}' already.`
  return null
}

/** A name not taken yet: `base`, else `base-2`, `base-3`... */
export function freshName(base: string, taken: readonly string[]): string {
  if (!taken.includes(base)) return base
  for (let i = 2; ; i++) if (!taken.includes(`${base}-${i}`)) return `${base}-${i}`
}

/** The short column head for a named set (`SE`, `IR`, `AH`), or the name itself. */
export function shortHead(name: string): string {
  const short: Record<string, string> = { 'start-end': 'SE', 'invalidate-range': 'IR', 'arch-hook': 'AH' }
  return short[name] ?? name
}

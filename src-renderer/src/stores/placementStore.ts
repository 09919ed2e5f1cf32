/**
 * Custom placements (issue 14): named sets of notification sites the user builds in the site
 * grid and runs side by side with the presets. Kept in this browser's storage, so they survive a
 * reload; a notebook keeps the ones its experiments use in its own `policies:` (notebookStore).
 */
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import {
  expandSites,
  freshName,
  gridRows,
  orderSites,
  placementNameProblem,
  sameAs,
  variantAdds,
  withSite,
  type NamedSites,
  type Placement,
  type SiteInfo,
} from '../logic/sites'
import { useEngineStore } from './engineStore'
import { usePolicyStore } from './policyStore'

export const PLACEMENTS_KEY = 'mnlab.placements.v1'

/** The placements kept in storage; anything malformed is dropped, never thrown. */
function loadStored(): Placement[] {
  try {
    const raw = JSON.parse(localStorage.getItem(PLACEMENTS_KEY) ?? '[]') as unknown
    if (!Array.isArray(raw)) return []
    const out: Placement[] = []
    for (const p of raw as unknown[]) {
      const o = p as { name?: unknown; sites?: unknown }
      if (typeof o?.name !== 'string' || !Array.isArray(o.sites)) continue
      if (out.some((q) => q.name === o.name)) continue
      out.push({ name: o.name, sites: o.sites.filter((s): s is string => typeof s === 'string') })
    }
    return out
  } catch {
    return []
  }
}

export const usePlacementStore = defineStore('placement', () => {
  const engine = useEngineStore()
  const placements = ref<Placement[]>(loadStored())
  /** The placement the fills and the name field act on. */
  const active = ref<string | null>(placements.value[0]?.name ?? null)
  /** The last thing that could not be done (a bad name), shown under the grid. */
  const error = ref<string | null>(null)
  /** Bumped when another view opens a placement here: the grid unfolds and scrolls to it. */
  const revealed = ref(0)

  const sites = computed<readonly SiteInfo[]>(() => engine.info?.sites ?? [])
  const siteNames = computed(() => sites.value.map((s) => s.name))
  const presets = computed(() => engine.info?.presets.map((p) => p.name) ?? [])
  const variants = computed(() => engine.info?.variants.map((v) => v.name) ?? [])
  const namedSites = computed<NamedSites>(() => engine.info?.namedSites ?? {})
  const rows = computed(() => gridRows(sites.value, presets.value, variants.value))
  const names = computed(() => placements.value.map((p) => p.name))
  const current = computed(() => placements.value.find((p) => p.name === active.value) ?? null)

  watch(
    placements,
    (list) => {
      try {
        localStorage.setItem(PLACEMENTS_KEY, JSON.stringify(list))
      } catch {
        // storage full or disabled: the placements still work for this session
      }
    },
    { deep: true },
  )

  function byName(name: string): Placement | null {
    return placements.value.find((p) => p.name === name) ?? null
  }

  function replace(name: string, next: Placement): void {
    placements.value = placements.value.map((p) => (p.name === name ? next : p))
  }

  /**
   * A new placement with the sites of a named set (a preset, `preset+variant`, or another
   * placement), or none; it becomes the active one and is selected for the next run.
   */
  function create(from: string | null = null, name?: string): string {
    const base = from ? (byName(from)?.sites ?? namedSites.value[from] ?? []) : []
    const n = name ?? freshName(from ? `my-${from.replace(/\+/g, '-')}` : 'mine', names.value)
    placements.value = [...placements.value, { name: n, sites: orderSites(base, siteNames.value) }]
    active.value = n
    error.value = null
    usePolicyStore().set(n, true)
    return n
  }

  function remove(name: string): void {
    placements.value = placements.value.filter((p) => p.name !== name)
    if (active.value === name) active.value = placements.value[0]?.name ?? null
    usePolicyStore().set(name, false)
  }

  /** Renames a placement (and its entry in the run's selection); false with `error` set if the name is not allowed. */
  function rename(name: string, next: string): boolean {
    const p = byName(name)
    const t = next.trim()
    if (!p) return false
    if (t === name) {
      error.value = null
      return true
    }
    const bad = placementNameProblem(
      t,
      names.value.filter((n) => n !== name),
      presets.value,
      siteNames.value,
    )
    if (bad) {
      error.value = bad
      return false
    }
    replace(name, { ...p, name: t })
    if (active.value === name) active.value = t
    usePolicyStore().rename(name, t)
    error.value = null
    return true
  }

  function setSite(name: string, site: string, on: boolean): void {
    const p = byName(name)
    if (p) replace(name, withSite(p, site, on, siteNames.value))
  }

  /** Replaces the placement's sites with a named set's (a preset or `preset+variant`). */
  function fill(name: string, set: string): void {
    const p = byName(name)
    const s = namedSites.value[set]
    if (p && s) replace(name, { ...p, sites: orderSites(s, siteNames.value) })
  }

  /** Adds the sites a variant adds (to the preset the placement holds whole). */
  function addVariant(name: string, variant: string): void {
    const p = byName(name)
    if (!p) return
    const adds = variantAdds(p.sites, variant, presets.value, namedSites.value)
    replace(name, { ...p, sites: orderSites([...p.sites, ...adds], siteNames.value) })
  }

  function clearSites(name: string): void {
    const p = byName(name)
    if (p) replace(name, { ...p, sites: [] })
  }

  /** The named set a placement equals (`= arch-hook`), or null. */
  function equals(name: string): string | null {
    const p = byName(name)
    return p ? sameAs(p.sites, namedSites.value) : null
  }

  /**
   * Adds placements defined elsewhere (a notebook's `policies:`). A name already here with the
   * same sites is left alone; with other sites it is kept as it is and reported, so nothing the
   * user built is overwritten. Returns the names it could not take.
   */
  function adopt(defs: Readonly<Record<string, readonly string[]>>): string[] {
    const clashes: string[] = []
    const next = [...placements.value]
    for (const [name, list] of Object.entries(defs)) {
      const sitesOf = expandSites(list, namedSites.value, siteNames.value)
      const have = next.find((p) => p.name === name)
      if (!have) next.push({ name, sites: sitesOf })
      else if (have.sites.join(',') !== sitesOf.join(',')) clashes.push(name)
    }
    placements.value = next
    active.value ??= next[0]?.name ?? null
    return clashes
  }

  /**
   * Opens a set of sites in the grid (a synthesis result's point or row): the placement that has
   * exactly these sites if there is one, else a new one called `base` (made unique). It becomes
   * the active placement and the grid shows it.
   */
  function reveal(siteList: readonly string[], base: string): string {
    const want = orderSites(siteList, siteNames.value).join(',')
    const have = placements.value.find((p) => p.sites.join(',') === want)
    const name = have?.name ?? freshName(base, names.value)
    if (!have)
      placements.value = [...placements.value, { name, sites: orderSites(siteList, siteNames.value) }]
    active.value = name
    error.value = null
    revealed.value++
    return name
  }

  /** Makes a placement the active one and shows it in the grid; false if there is none of that name. */
  function focus(name: string): boolean {
    if (!byName(name)) return false
    active.value = name
    revealed.value++
    return true
  }

  /** The placements among `policies`, as a request's `policyDefs` (name -> sites). */
  function defsFor(policies: readonly string[]): Record<string, string[]> {
    const out: Record<string, string[]> = {}
    for (const n of policies) {
      const p = byName(n)
      if (p) out[n] = [...p.sites]
    }
    return out
  }

  return {
    placements,
    active,
    error,
    revealed,
    sites,
    siteNames,
    presets,
    variants,
    namedSites,
    rows,
    names,
    current,
    byName,
    create,
    remove,
    rename,
    setSite,
    fill,
    addVariant,
    clearSites,
    equals,
    adopt,
    reveal,
    focus,
    defsFor,
  }
})

/**
 * Policy names as the engine spells them: `preset[+variant...]`, variants in the engine's
 * declared order (so `start-end+pri-flush+upgrade-notify` and the reverse are one policy);
 * `sites:a+b`, a set of call sites in the engine's site order; or a name a scenario defines in
 * its `policies:` (passed in `known`: the service resolves it).
 */

/** What the renderer knows of sites and of names beyond the presets (all optional). */
export interface PolicyNames {
  /** The engine's sites, in its canonical order (EngineInfo.sites). */
  readonly sites?: readonly string[]
  /** The site set of each named policy (EngineInfo.namedSites): an exact set prints as its name. */
  readonly namedSites?: Readonly<Record<string, readonly string[]>>
  /** Names the current scenario uses (its expect block), accepted as they are. */
  readonly known?: readonly string[]
}

const SITES_PREFIX = 'sites:'
/** A site name when the engine's list is not known: lower case words joined by '_'. */
const SITE_LIKE = /^[a-z0-9]+(_[a-z0-9]+)+$/

function isSiteName(s: string, names: PolicyNames): boolean {
  return names.sites ? names.sites.includes(s) : SITE_LIKE.test(s)
}

/** `sites:a,b` (or `a+b`) in the engine's site order, or the preset whose set it is. */
function canonicalSites(text: string, names: PolicyNames): string | { error: string } {
  const parts = text
    .slice(SITES_PREFIX.length)
    .split(/[,+]/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
  for (const s of parts) if (!isSiteName(s, names)) return { error: `unknown site '${s}'` }
  if (new Set(parts).size !== parts.length) return { error: `a site is given twice in '${text.trim()}'` }
  const order = names.sites ?? []
  const sorted = order.length ? order.filter((s) => parts.includes(s)) : parts
  for (const [name, set] of Object.entries(names.namedSites ?? {}))
    if (set.length === sorted.length && set.every((s) => sorted.includes(s))) return name
  return `${SITES_PREFIX}${sorted.join('+')}`
}

/** The canonical spelling of a policy, or an error message. */
export function canonicalPolicy(
  text: string,
  presets: readonly string[],
  variants: readonly string[],
  names: PolicyNames = {},
): string | { error: string } {
  const t = text.trim()
  if (names.known?.includes(t)) return t
  if (t.startsWith(SITES_PREFIX)) return canonicalSites(t, names)
  const parts = t.split('+').map((s) => s.trim())
  const preset = parts[0] ?? ''
  if (!presets.includes(preset)) return { error: `unknown preset '${preset}'` }
  const vs = parts.slice(1)
  for (const v of vs) {
    if (!variants.includes(v)) return { error: `unknown variant '${v}'` }
  }
  if (new Set(vs).size !== vs.length) return { error: `a variant is given twice in '${text.trim()}'` }
  return [preset, ...variants.filter((v) => vs.includes(v))].join('+')
}

/**
 * Every policy for the checked presets × checked variant combinations. `combos` lists variant
 * sets; the empty set means the bare preset. Result in preset order, then combo order, no duplicates.
 */
export function expandPolicies(
  presets: readonly string[],
  combos: readonly (readonly string[])[],
  variantOrder: readonly string[],
): string[] {
  const out: string[] = []
  for (const p of presets) {
    for (const c of combos) {
      const name = [p, ...variantOrder.filter((v) => c.includes(v))].join('+')
      if (!out.includes(name)) out.push(name)
    }
  }
  return out
}

/**
 * Parses a comma-separated policy list (`all` = the presets). A `sites:` entry takes the site
 * names after it, as the engine reads it (`sites:a,b,arch-hook` is two policies).
 */
export function parsePolicyList(
  text: string,
  presets: readonly string[],
  variants: readonly string[],
  names: PolicyNames = {},
): { policies: string[]; error: string | null } {
  const t = text.trim()
  if (t === '') return { policies: [], error: null }
  if (t === 'all') return { policies: [...presets], error: null }
  const policies: string[] = []
  const raw = t.split(',')
  for (let i = 0; i < raw.length; i++) {
    let part = raw[i]!
    if (part.trim().startsWith(SITES_PREFIX))
      while (i + 1 < raw.length && isSiteName(raw[i + 1]!.trim(), names)) part += `,${raw[++i]!}`
    if (part.trim() === '') continue
    const c = canonicalPolicy(part, presets, variants, names)
    if (typeof c !== 'string') return { policies, error: c.error }
    if (!policies.includes(c)) policies.push(c)
  }
  return { policies, error: null }
}

/** Adds or removes one policy, keeping a stable order: presets first, then by variant count. */
export function togglePolicy(list: readonly string[], name: string, on: boolean): string[] {
  const has = list.includes(name)
  if (on && !has) return [...list, name]
  if (!on && has) return list.filter((p) => p !== name)
  return [...list]
}

/** Sorts policies by preset order, then variant count, then name. */
export function sortPolicies(list: readonly string[], presets: readonly string[]): string[] {
  const rank = (p: string) => {
    const parts = p.split('+')
    const i = presets.indexOf(parts[0] ?? '')
    return [i < 0 ? presets.length : i, parts.length] as const
  }
  return [...list].sort((a, b) => {
    const [ra, la] = rank(a)
    const [rb, lb] = rank(b)
    return ra - rb || la - lb || a.localeCompare(b)
  })
}

/** Splits a schedule typed as text: thread names separated by spaces or commas, brackets allowed. */
export function parseSchedule(text: string): string[] {
  return text
    .replace(/[[\]"']/g, ' ')
    .split(/[\s,]+/)
    .filter((s) => s.length > 0)
}

/** A schedule as text to paste into `--schedule` or `explore: { schedule: [...] }`. */
export function formatSchedule(schedule: readonly string[], cycle: readonly string[] | null = null): string {
  const s = schedule.join(' ')
  return cycle && cycle.length > 0 ? `${s} | cycle: ${cycle.join(' ')}` : s
}

/**
 * Policy names as the engine spells them: `preset[+variant...]`, variants in the engine's
 * declared order (so `start-end+pri-flush+upgrade-notify` and the reverse are one policy).
 */

/** The canonical spelling of a policy, or an error message. */
export function canonicalPolicy(
  text: string,
  presets: readonly string[],
  variants: readonly string[],
): string | { error: string } {
  const parts = text
    .trim()
    .split('+')
    .map((s) => s.trim())
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

/** Parses a comma-separated policy list (`all` = the presets). */
export function parsePolicyList(
  text: string,
  presets: readonly string[],
  variants: readonly string[],
): { policies: string[]; error: string | null } {
  const t = text.trim()
  if (t === '') return { policies: [], error: null }
  if (t === 'all') return { policies: [...presets], error: null }
  const policies: string[] = []
  for (const part of t.split(',')) {
    if (part.trim() === '') continue
    const c = canonicalPolicy(part, presets, variants)
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

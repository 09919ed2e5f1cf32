/**
 * `policies`: notifier policies the file defines by name, each a list of call sites (policy.ts
 * SITES) and built-in policies whose sites it takes, as in
 * `policies: { popple-v1: [start-end, handle_pte_fault] }`. `expect`, `expect_metrics` and the
 * command line's `--policy` then use the name.
 */
import { didYouMean, isObj, Issues, typeName, type Obj } from './common'
import {
  isSite,
  parsePolicy,
  PRESETS,
  SITE_NAMES,
  sitePolicy,
  VARIANTS,
  type Policy,
  type Site,
} from '../policy'

/** A defined name: letters, digits, `_ . -`, starting with a letter or digit (no `+ , :`). */
export const POLICY_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

export function parsePolicies(raw: Obj, issues: Issues): Policy[] {
  const out: Policy[] = []
  if (raw.policies === undefined) return out
  if (!isObj(raw.policies)) {
    issues.add(
      ['policies'],
      `policies maps names to lists of sites, as in { mine: [ptep_clear_flush_notify, flush_tlb_range] }; found ${typeName(raw.policies)}`,
    )
    return out
  }
  for (const [name, v] of Object.entries(raw.policies)) {
    const path = ['policies', name]
    const bad = nameProblem(name)
    if (bad) {
      issues.key(path, bad)
      continue
    }
    if (!Array.isArray(v)) {
      issues.add(
        path,
        `the policy ${name} is a list of sites (and presets whose sites it takes), as in [start-end, handle_pte_fault]; found ${typeName(v)}`,
      )
      continue
    }
    const sites = new Set<Site>()
    const seen: string[] = []
    let ok = true
    v.forEach((item, i) => {
      const at = [...path, i]
      if (typeof item !== 'string') {
        issues.add(at, `a site or preset name; found ${typeName(item)}`)
        ok = false
        return
      }
      const t = item.trim()
      if (seen.includes(t)) {
        issues.add(at, `${t} is listed twice`)
        ok = false
        return
      }
      seen.push(t)
      if (isSite(t)) {
        sites.add(t)
        return
      }
      // A preset with variants contributes its named set.
      const preset = PRESETS.some((x) => t === x || t.startsWith(`${x}+`))
      const p = preset ? parsePolicy(t) : null
      if (p === null || typeof p === 'string') {
        issues.add(
          at,
          typeof p === 'string'
            ? p
            : `unknown site '${t}'${didYouMean(t, [...SITE_NAMES, ...PRESETS])}; a policy lists sites (${SITE_NAMES.join(', ')}) and presets with variants (${PRESETS.join(', ')}; +${VARIANTS.join(', +')})`,
        )
        ok = false
        return
      }
      for (const s of p.sites) sites.add(s)
    })
    if (ok) out.push(sitePolicy(sites, name))
  }
  return out
}

/** Why a name cannot name a policy the file defines, or null. */
function nameProblem(name: string): string | null {
  if (!POLICY_NAME.test(name))
    return `a policy name is letters, digits, _ . - (up to 64, no + , or :); found '${name}'`
  if (name === 'all') return "'all' means the three presets on the command line; choose another name"
  if (isSite(name)) return `'${name}' is a site; choose a name that is not one`
  if (typeof parsePolicy(name) !== 'string') return `'${name}' is a built-in policy; choose another name`
  return null
}

/**
 * Policies defined outside a scenario file (a notebook's `policies:`, an API request's
 * `policyDefs`), checked as the file's section is: the policies, and each problem with its path
 * (`['policies', NAME, i]`) and its text as `policies.NAME.i: message`.
 */
export function definePolicies(map: unknown): {
  policies: Policy[]
  problems: string[]
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<string | number>; readonly message: string }>
} {
  const issues = new Issues()
  const policies = parsePolicies({ policies: map }, issues)
  return {
    policies,
    problems: issues.list.map((i) => `${i.path.map(String).join('.')}: ${i.message}`),
    issues: issues.list.map((i) => ({ path: i.path, message: i.message })),
  }
}

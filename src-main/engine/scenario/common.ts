/**
 * What every section of the scenario validator shares: the problem list (paths, offsets), the
 * checks of keys and scalar types, and typo hints.
 */
import type { ScenarioIssue } from '../types'

export type Path = ReadonlyArray<string | number>
export type Obj = Record<string, unknown>

export const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Levenshtein-based hint for a misspelt key or word. */
export function didYouMean(word: string, options: readonly string[]): string {
  // A long token is no typo of a short name (and its edit distance would cost time).
  if (word.length > 64) return ''
  let best = ''
  let bestD = Infinity
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o.toLowerCase())
    if (d < bestD) {
      bestD = d
      best = o
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean '${best}'?)` : ''
}

export function editDistance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!
    d[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return d[b.length]!
}

export class Issues {
  readonly list: ScenarioIssue[] = []
  add(path: Path, message: string, offset: number | null = null, length: number | null = null): void {
    this.list.push({ path: [...path], message, offset, length, at: 'value' })
  }
  key(path: Path, message: string): void {
    this.list.push({ path: [...path], message, offset: null, length: null, at: 'key' })
  }
}

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function checkKeys(
  o: Obj,
  allowed: readonly string[],
  path: Path,
  issues: Issues,
  what: string,
): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      issues.key(
        [...path, k],
        `unknown key '${k}' in ${what}${didYouMean(k, allowed)}; allowed: ${allowed.join(', ')}`,
      )
    }
  }
}

export function typeName(v: unknown): string {
  if (v === null || v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`
}

export function oneOf<T extends string>(
  v: unknown,
  options: readonly T[],
  path: Path,
  issues: Issues,
  what: string,
): T | null {
  if (typeof v === 'string' && (options as readonly string[]).includes(v)) return v as T
  const hint = typeof v === 'string' ? didYouMean(v, options) : ''
  issues.add(path, `${what} must be one of ${options.join(', ')}; found ${typeName(v)}${hint}`)
  return null
}

export function int(
  v: unknown,
  path: Path,
  issues: Issues,
  what: string,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max) return v
  const range =
    max < Number.MAX_SAFE_INTEGER
      ? ` from ${min} to ${max}`
      : min > Number.MIN_SAFE_INTEGER
        ? ` >= ${min}`
        : ''
  issues.add(path, `${what} must be an integer${range}; found ${typeName(v)}`)
  return null
}

/** Memory values are 32-bit signed integers (what a litmus register holds here). */
export const INT32_MIN = -2147483648
export const INT32_MAX = 2147483647

export function bool(v: unknown, path: Path, issues: Issues, what: string): boolean | null {
  if (typeof v === 'boolean') return v
  issues.add(path, `${what} must be true or false; found ${typeName(v)}`)
  return null
}

export interface Word {
  readonly s: string
  readonly at: number
}
export function words(s: string): Word[] {
  const out: Word[] = []
  const re = /\S+/g
  let m: RegExpExecArray | null
  while ((m = re.exec(s))) out.push({ s: m[0], at: m.index })
  return out
}

/**
 * Sizes the engine supports: threads and secondaries are sets of bits in 31-bit integers
 * (explore.ts masks, ctx.ts copy-on-write flags), so a larger scenario is refused with a
 * located error rather than explored with masks that wrap.
 */
export const SCENARIO_LIMITS = { threads: 31, secondaries: 31 } as const

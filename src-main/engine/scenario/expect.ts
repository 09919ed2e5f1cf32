/** `forbid`, `expect` and `expect_metrics`: what the scenario claims of each policy. */
import { checkKeys, didYouMean, isObj, Issues, oneOf, typeName, type Obj, type Path } from './common'
import type {
  Arch,
  ExactViolations,
  Expectation,
  Expr,
  InvariantName,
  MetricExpectation,
  MetricName,
  PageDecl,
} from '../types'
import { parseExpr } from '../expr'
import { parsePolicy, type PolicyDefs } from '../policy'
import { INVARIANTS, METRIC_NAMES } from '../types'

/** The keys of an exact expectation, `{ violated: [...] }`. */
export const EXACT_EXPECT_KEYS = ['violated'] as const

export interface ExpectSection {
  readonly forbid: Expr | null
  readonly forbidText: string | null
  readonly expect: Array<[string, Expectation]>
  readonly expectMetrics: Array<[string, MetricExpectation[]]>
}

export function parseExpectations(
  raw: Obj,
  issues: Issues,
  arch: Arch | null,
  pages: readonly PageDecl[],
  pageRef: (n: string) => number | null,
  registers: readonly string[],
  /** The policies the file defines (`policies:`), which expect keys may name. */
  defs: PolicyDefs,
): ExpectSection {
  // forbid
  let forbid: Expr | null = null
  let forbidText: string | null = null
  if (raw.forbid !== undefined) {
    if (typeof raw.forbid !== 'string')
      issues.add(
        ['forbid'],
        `forbid must be a condition such as 'r1 == 1 && r0 == 0'; found ${typeName(raw.forbid)}`,
      )
    else {
      forbidText = raw.forbid
      const r = parseExpr(raw.forbid, {
        register: (n) => {
          const i = registers.indexOf(n)
          return i < 0 ? null : i
        },
        page: pageRef,
        file: (i) => pages[i]?.kind === 'file',
      })
      if ('message' in r) issues.add(['forbid'], r.message, r.offset, r.length)
      else forbid = r
    }
  }

  // expect
  const expect: Array<[string, Expectation]> = []
  if (raw.expect !== undefined) {
    if (!isObj(raw.expect))
      issues.add(
        ['expect'],
        `expect must map policies to verdicts, as in { start-end: violated }; found ${typeName(raw.expect)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.expect)) {
        const pol = parsePolicy(k, defs)
        if (typeof pol === 'string') {
          issues.key(['expect', k], pol)
          continue
        }
        const options = ['holds', 'violated', ...INVARIANTS] as const
        const e: Expectation | null =
          isObj(v) || Array.isArray(v)
            ? exactSet(v, ['expect', k], issues)
            : oneOf(v, options, ['expect', k], issues, 'an expectation')
        if ((e === 'forbid' || (typeof e === 'object' && e?.violated.includes('forbid'))) && forbid === null)
          issues.add(['expect', k], "expecting 'forbid' needs a forbid condition")
        if (expect.some(([n]) => n === pol.name))
          issues.key(['expect', k], `policy ${pol.name} is listed twice`)
        if (e) expect.push([pol.name, e])
      }
  }

  // expect_metrics: what a policy's metrics must show (a correct policy's cost, a saving)
  const expectMetrics: Array<[string, MetricExpectation[]]> = []
  if (raw.expect_metrics !== undefined) {
    if (!isObj(raw.expect_metrics))
      issues.add(
        ['expect_metrics'],
        `expect_metrics maps policies to metric bounds, as in { arch-hook: { full_invalidations: '>= 1' } }; found ${typeName(raw.expect_metrics)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.expect_metrics)) {
        const pol = parsePolicy(k, defs)
        if (typeof pol === 'string') {
          issues.key(['expect_metrics', k], pol)
          continue
        }
        if (!isObj(v)) {
          issues.add(
            ['expect_metrics', k],
            `the metrics of ${pol.name} are a mapping such as { mirror_zaps: 0, full_invalidations: '>= 1' }; found ${typeName(v)}`,
          )
          continue
        }
        checkKeys(v, METRIC_NAMES, ['expect_metrics', k], issues, `expect_metrics.${k}`)
        const list: MetricExpectation[] = []
        for (const [m, want] of Object.entries(v)) {
          if (!(METRIC_NAMES as readonly string[]).includes(m)) continue
          const path = ['expect_metrics', k, m]
          if (typeof want === 'number' && Number.isInteger(want) && want >= 0) {
            list.push({ metric: m as MetricName, op: '==', value: want })
            continue
          }
          const mt = typeof want === 'string' ? /^\s*(==|>=|<=|>|<)\s*(\d+)\s*$/.exec(want) : null
          if (!mt) {
            issues.add(
              path,
              `${m} must be a count (0, 3) or a bound such as '>= 1', '< 5'; found ${typeName(want)}`,
            )
            continue
          }
          list.push({ metric: m as MetricName, op: mt[1] as MetricExpectation['op'], value: Number(mt[2]) })
        }
        if (expectMetrics.some(([n]) => n === pol.name))
          issues.key(['expect_metrics', k], `policy ${pol.name} is listed twice`)
        else if (!expect.some(([n]) => n === pol.name))
          issues.key(
            ['expect_metrics', k],
            `${pol.name} has metrics to check but no verdict: add it to expect too (the check runs the policies of expect)`,
          )
        else expectMetrics.push([pol.name, list])
      }
  }

  return { forbid, forbidText, expect, expectMetrics }
}

/**
 * `{ violated: [use-after-free, lost-write] }`: the exact set of invariants the policy violates.
 * A bare list gets the form to write instead.
 */
function exactSet(v: unknown, path: Path, issues: Issues): ExactViolations | null {
  if (Array.isArray(v)) {
    issues.add(
      path,
      `an exact set of violated invariants is written { violated: [${v.map(String).join(', ')}] }; found a list`,
    )
    return null
  }
  const o = v as Obj
  checkKeys(o, EXACT_EXPECT_KEYS, path, issues, 'an exact expectation')
  const list = o.violated
  // A misspelt key was reported by checkKeys; do not report its absence too.
  if (list === undefined && Object.keys(o).length > 0) return null
  if (!Array.isArray(list) || list.length === 0) {
    issues.add(
      [...path, 'violated'],
      `violated must list the invariants that break, as in [use-after-free, lost-write] (${INVARIANTS.join(', ')}); found ${Array.isArray(list) ? 'an empty list' : typeName(list)}`,
    )
    return null
  }
  const out: InvariantName[] = []
  list.forEach((x, i) => {
    if (typeof x !== 'string' || !(INVARIANTS as readonly string[]).includes(x)) {
      const hint = typeof x === 'string' ? didYouMean(x, INVARIANTS) : ''
      issues.add(
        [...path, 'violated', i],
        `an invariant must be one of ${INVARIANTS.join(', ')}; found ${typeName(x)}${hint}`,
      )
    } else if (out.includes(x as InvariantName)) {
      issues.add([...path, 'violated', i], `${x} is listed twice`)
    } else out.push(x as InvariantName)
  })
  return out.length === list.length ? { violated: out } : null
}

/** An expectation as written in the file: `holds`, `lost-write`, `violated: [a, b]`. */
export function expectationText(e: Expectation): string {
  return typeof e === 'string' ? e : `violated: [${e.violated.join(', ')}]`
}

/**
 * Whether per-invariant verdicts meet an expectation. For an exact set, also what differs:
 * the listed invariants not found violated (`missing`) and the others found violated (`extra`).
 */
export function matchExpectation(
  e: Expectation,
  verdict: string,
  invariants: Readonly<Record<string, string>>,
): { ok: boolean; note: string | null } {
  if (e === 'holds' || e === 'violated') return { ok: verdict === e, note: null }
  if (typeof e === 'string') return { ok: invariants[e] === 'violated', note: null }
  const missing = e.violated.filter((k) => invariants[k] !== 'violated')
  const extra = Object.keys(invariants).filter(
    (k) => invariants[k] === 'violated' && !(e.violated as readonly string[]).includes(k),
  )
  const unknown = Object.keys(invariants).filter(
    (k) => invariants[k] === 'unknown' && !(e.violated as readonly string[]).includes(k),
  )
  const parts: string[] = []
  if (missing.length) parts.push(`missing ${missing.join(', ')}`)
  if (extra.length) parts.push(`extra ${extra.join(', ')}`)
  if (!parts.length && unknown.length) parts.push(`not explored to the end: ${unknown.join(', ')} unknown`)
  return { ok: parts.length === 0, note: parts.length ? parts.join('; ') : null }
}

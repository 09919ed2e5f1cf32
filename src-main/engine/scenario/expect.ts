/** `forbid`, `expect` and `expect_metrics`: what the scenario claims of each policy. */
import { checkKeys, isObj, Issues, oneOf, typeName, type Obj } from './common'
import type { Arch, Expectation, Expr, MetricExpectation, MetricName, PageDecl } from '../types'
import { parseExpr } from '../expr'
import { parsePolicy } from '../policy'
import { INVARIANTS, METRIC_NAMES } from '../types'

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
        const pol = parsePolicy(k)
        if (typeof pol === 'string') {
          issues.key(['expect', k], pol)
          continue
        }
        const options = ['holds', 'violated', ...INVARIANTS]
        const e = oneOf<Expectation>(v, options as Expectation[], ['expect', k], issues, 'an expectation')
        if (e === 'forbid' && forbid === null)
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
        const pol = parsePolicy(k)
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

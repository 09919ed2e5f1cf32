/**
 * The synthesis view's plain logic (issue 14): a SynthesisResult (engine/synthesisResult.ts) as
 * the rows of a placements x scenarios table and the points of a cost chart with its Pareto
 * front. Placements are matched by their sites, so one the user named in the site grid shows
 * under that name even though the search names it canonically (`sites:a+b`).
 */
import type {
  SynthCell,
  SynthesisResult,
  SynthFrontPoint,
  SynthMinimal,
  SynthPlacement,
} from '../../../src-main/engine/synthesisResult'

/** A set of sites as one string, independent of order. */
export function sitesKey(sites: readonly string[]): string {
  return [...sites].sort().join(',')
}

/** What the view calls a placement: the grid's name for its sites, else the result's (`sites:` alone is no site at all). */
export function labelOf(
  p: { name: string; sites: readonly string[] },
  yours: ReadonlyMap<string, string>,
): string {
  return yours.get(sitesKey(p.sites)) ?? (p.name === 'sites:' ? 'sites: (none)' : p.name)
}

/** Why a placement is in the table, in the order rows are shown. */
export type RowKind = 'minimal' | 'front' | 'preset' | 'yours'

export interface SynthRow {
  /** What the table calls it: the user's placement name when the sites match one, else the result's. */
  readonly label: string
  /** The result's name (canonical, or a preset's): what requests and `mnlab replay` take. */
  readonly name: string
  readonly sites: readonly string[]
  readonly kinds: readonly RowKind[]
  readonly held: number
  readonly cost: number
  readonly cells: readonly SynthCell[]
}

/**
 * The table's rows: the minimal placements (cheapest first), then the front's other placements,
 * then the presets and the placements the request named; a placement listed twice is one row
 * with every reason it is there.
 */
export function synthRows(
  result: SynthesisResult,
  presets: readonly string[],
  yours: ReadonlyMap<string, string>,
): SynthRow[] {
  const rows = new Map<string, { p: SynthPlacement; kinds: RowKind[] }>()
  const add = (p: SynthPlacement, kind: RowKind): void => {
    const key = sitesKey(p.sites)
    const row = rows.get(key)
    if (!row) rows.set(key, { p, kinds: [kind] })
    else if (!row.kinds.includes(kind)) row.kinds.push(kind)
  }
  for (const m of result.minimal) add(m.placement, 'minimal')
  for (const f of result.front) for (const p of f.placements) add(p, 'front')
  for (const p of result.placements) add(p, presets.includes(p.name) ? 'preset' : 'yours')
  return [...rows.values()].map(({ p, kinds }) => ({
    label: labelOf(p, yours),
    name: p.name,
    sites: p.sites,
    kinds,
    held: p.held,
    cost: p.cost,
    cells: p.cells,
  }))
}

/** A point of the cost chart. */
export interface ChartPoint {
  readonly x: number
  readonly y: number
  /** Its row's label and the placement a click opens. */
  readonly label: string
  readonly sites: readonly string[]
}

/**
 * The chart's data: every row as a point (cost, held), and the Pareto front's points (a click
 * opens the front point's first placement), most held first as the result orders them.
 */
export function chartData(
  rows: readonly SynthRow[],
  front: readonly SynthFrontPoint[],
  yours: ReadonlyMap<string, string>,
): { points: ChartPoint[]; front: ChartPoint[] } {
  return {
    points: rows.map((r) => ({ x: r.cost, y: r.held, label: r.label, sites: r.sites })),
    front: front
      .filter((f) => f.placements.length > 0)
      .map((f) => {
        const p = f.placements[0]!
        const more = f.placements.length - 1 + f.more
        const label = labelOf(p, yours)
        return { x: f.cost, y: f.held, label: more > 0 ? `${label} (+${more} more)` : label, sites: p.sites }
      }),
  }
}

/** A scenario id as a column head: the file name without `.yaml`. */
export function shortScenario(id: string): string {
  return (id.split('/').pop() ?? id).replace(/\.ya?ml$/, '')
}

/** A cell's tooltip: its verdict, how it was decided and its cost. */
export function cellTitle(c: SynthCell, placement: string, scenario: string, objective: string): string {
  const how =
    c.how === 'explored'
      ? 'explored'
      : c.how === 'inferred'
        ? `inferred by monotonicity from ${c.from && c.from.length > 0 ? `{${c.from.join(', ')}}` : 'the empty set'} (${c.verdict === 'holds' ? 'a subset holds' : 'a superset is violated'})`
        : 'not decided'
  const inv = c.invariant ? ` (${c.invariant})` : ''
  return `${placement} on ${scenario}: ${c.verdict}${inv}, ${how}; ${objective} ${c.cost.toLocaleString('en-US')}`
}

/** One line per site of a minimal placement: why it is in (needed) or out (left out). */
export interface CertificateLine {
  readonly site: string
  readonly kind: 'needed' | 'not-needed' | 'never-reached' | 'not-candidate'
  readonly text: string
  /** For a needed site: the scenario and the placement without it, whose counterexample opens. */
  readonly scenario: string | null
  readonly without: string | null
  readonly index: number | null
}

export function certificateLines(m: SynthMinimal): CertificateLine[] {
  const needed = m.needed.map((n, index): CertificateLine => ({
    site: n.site,
    kind: 'needed',
    text: `without it, ${shortScenario(n.scenario)} breaks: ${n.counterexample.invariant} (${n.counterexample.why})`,
    scenario: n.scenario,
    without: n.without,
    index,
  }))
  const out = m.leftOut.map((l): CertificateLine => ({
    site: l.site,
    kind: l.evidence,
    text:
      l.evidence === 'not-needed'
        ? `not needed: every scenario holds without it${l.scenarios.length ? ` (reached by ${l.scenarios.map(shortScenario).join(', ')})` : ''}`
        : l.evidence === 'never-reached'
          ? 'never reached: no scenario asked about it'
          : 'not a candidate',
    scenario: null,
    without: null,
    index: null,
  }))
  return [...needed, ...out]
}

/**
 * `file` (absolute) as a path relative to the folder `fromDir` (absolute), with forward slashes,
 * as a notebook names its scenarios; null when there is none (another Windows drive).
 */
export function relativePath(fromDir: string, file: string): string | null {
  const split = (p: string): string[] =>
    p
      .replace(/\\/g, '/')
      .split('/')
      .filter((s) => s !== '' && s !== '.')
  const root = (p: string): string => /^[A-Za-z]:/.exec(p.replace(/\\/g, '/'))?.[0]?.toLowerCase() ?? '/'
  if (root(fromDir) !== root(file)) return null
  const a = split(fromDir)
  const b = split(file)
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  const rel = [...a.slice(i).map(() => '..'), ...b.slice(i)].join('/')
  return rel === '' ? null : rel
}

/** The folder of a file path (forward or back slashes). */
export function dirOf(file: string): string {
  const i = Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'))
  return i <= 0 ? file.slice(0, i + 1) : file.slice(0, i)
}

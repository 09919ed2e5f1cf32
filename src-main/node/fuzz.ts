/**
 * The scenario fuzzer: seeded mutations of the catalogue's files (fast-check arbitraries), each
 * run through the loader and a bounded run of every preset, the way `mnlab run` does. Every
 * outcome must be one of: the file loads and runs, or clean located errors
 * (`file:line:column: message`, one line each, a bounded amount of text). Anything else (an
 * exception, a message without a position or broken across lines, megabytes of errors, a case
 * that takes seconds) is a finding, printed with the input that caused it.
 *
 * `fuzz.test.ts` runs a few hundred cases in `npm test`; `npm run fuzz -- --cases N [--seed S]`
 * runs more (nightly).
 */
import fc from 'fast-check'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { count, makePolicy, mulberry32, PRESETS, type Prng, type Scenario } from '../engine'
import { defaultRunOptions, runPolicy, scheduleIndices, type RunOptions } from '../engine/run'
import {
  formatIssue,
  loadScenarioText,
  ScenarioLoadError,
  scheduleStepIssue,
  unfollowableStep,
} from './scenarioFiles'
import { cellScenarioText, recipePolicies, recipeRunOptions, withNotebookPolicies } from './notebook/cells'
import { formatNotebookIssue, parseNotebook } from './notebook/format'

export type FindingKind = 'crash' | 'slow' | 'unlocated' | 'broken-line' | 'oversize'

export interface CaseOutcome {
  readonly kind: 'ran' | 'refused' | FindingKind
  readonly ms: number
  /** The error text (refused) or what went wrong (findings). */
  readonly detail: string
}

/** Limits a case must stay within. */
export const FUZZ_LIMITS = {
  /** Wall time of one case (load + a bounded run of every preset). */
  caseMs: 5_000,
  /** Bytes of error output for one file. */
  errorBytes: 64 * 1024,
} as const

const FILE = 'fuzz.yaml'
const POSITION = /^fuzz\.yaml:\d+:\d+: \S/
const NOTEBOOK_POSITION = /^fuzz\.mnlab\.yaml(#[\w-]+)?:\d+:\d+: \S/

/**
 * The outcome of a case whose input was refused with `lines` (formatted problems): clean, or a
 * finding (too much text, a problem broken across lines, one without a position, too slow).
 */
function refusal(lines: readonly string[], position: RegExp, ms: number): CaseOutcome {
  const out = lines.join('\n')
  if (out.length > FUZZ_LIMITS.errorBytes)
    return { kind: 'oversize', ms, detail: `${out.length} bytes of errors (${count(lines.length, 'line')})` }
  const broken = lines.find((l) => /[\n\r\u2028\u2029]/.test(l))
  if (broken) return { kind: 'broken-line', ms, detail: JSON.stringify(broken) }
  const unlocated = lines.find((l) => !position.test(l))
  if (unlocated) return { kind: 'unlocated', ms, detail: unlocated }
  if (ms > FUZZ_LIMITS.caseMs) return { kind: 'slow', ms, detail: `refused after ${ms} ms` }
  return { kind: 'refused', ms, detail: lines[0] ?? '' }
}

/** Loads and runs one text as `mnlab run` would, within small budgets. */
export function runCase(text: string): CaseOutcome {
  const t0 = Date.now()
  const ms = (): number => Date.now() - t0
  let sc: Scenario
  try {
    sc = loadScenarioText(text, FILE)
  } catch (e) {
    if (!(e instanceof ScenarioLoadError)) return { kind: 'crash', ms: ms(), detail: describe(e) }
    return refusal(e.issues.map(formatIssue), POSITION, ms())
  }
  try {
    const base = defaultRunOptions(sc)
    if (base.mode === 'scripted') {
      // As `mnlab run` does: a step of the file's schedule that cannot be followed is refused
      // with its position in the file.
      const u = unfollowableStep(
        sc,
        PRESETS.map((p) => makePolicy(p)),
        scheduleIndices(sc, base.schedule),
        base.budget.maxSteps,
      )
      if (u !== null) return refusal([formatIssue(scheduleStepIssue(text, FILE, u))], POSITION, ms())
    }
    const deadline = t0 + FUZZ_LIMITS.caseMs
    const opts: RunOptions = {
      ...base,
      executions: Math.min(base.executions, 20),
      budget: {
        ...base.budget,
        maxStates: 5_000,
        maxSteps: Math.min(base.budget.maxSteps, 5_000),
        shouldStop: () => (Date.now() > deadline ? 'fuzz case budget' : null),
      },
    }
    for (const p of PRESETS) runPolicy(sc, makePolicy(p), opts)
  } catch (e) {
    return { kind: 'crash', ms: ms(), detail: describe(e) }
  }
  if (ms() > FUZZ_LIMITS.caseMs) return { kind: 'slow', ms: ms(), detail: `ran for ${ms()} ms` }
  return { kind: 'ran', ms: ms(), detail: '' }
}

function describe(e: unknown): string {
  if (e instanceof Error)
    return `${e.name}: ${e.message.slice(0, 300)}\n${(e.stack ?? '').split('\n').slice(1, 4).join('\n')}`
  return String(e).slice(0, 300)
}

/** The catalogue's scenario texts (the fuzzer's seeds). */
export function catalogueTexts(root: string): string[] {
  const dir = path.join(root, 'scenarios')
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => readFileSync(path.join(dir, f), 'utf8'))
}

type Mutation = (lines: string[], r: Rng) => string[]

interface Rng {
  nextInt(lo: number, hi: number): number
}

function rng(p: Prng): Rng {
  return { nextInt: (lo, hi) => lo + p.int(hi - lo + 1) }
}

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[r.nextInt(0, xs.length - 1)]!
const line = (lines: string[], r: Rng): number => r.nextInt(0, Math.max(0, lines.length - 1))
const TOKENS = /[A-Za-z_][\w-]*|-?\d+|[{}[\],:]/g
const ODD = [
  '\u2028',
  '\r',
  '\t',
  '\u0000',
  'é',
  '🦀',
  '\u202e',
  '\ufeff',
  '\\',
  '"',
  "'",
  '#',
  '&a',
  '*a',
  '!!str',
  '%YAML',
]
const NUMBERS = [
  '-1',
  '0',
  '99999999999999999999',
  '1e308',
  '-0',
  '0.5',
  'NaN',
  '0x10',
  '4294967296',
  '2147483648',
]

/** One named mutation: what the fuzzer of the reliability issue tried, and a few more. */
export const MUTATIONS: Readonly<Record<string, Mutation>> = {
  'delete line': (ls, r) => {
    const i = line(ls, r)
    return [...ls.slice(0, i), ...ls.slice(i + 1)]
  },
  'duplicate line': (ls, r) => {
    const i = line(ls, r)
    return [...ls.slice(0, i + 1), ...ls.slice(i)]
  },
  'swap tokens': (ls, r) => {
    const i = line(ls, r)
    const toks = [...(ls[i] ?? '').matchAll(TOKENS)]
    if (toks.length < 2) return ls
    const a = pick(r, toks)
    const b = pick(r, toks)
    const s = ls[i]!
    const [x, y] = a.index! < b.index! ? [a, b] : [b, a]
    const out =
      s.slice(0, x.index!) +
      y[0] +
      s.slice(x.index! + x[0].length, y.index!) +
      x[0] +
      s.slice(y.index! + y[0].length)
    return ls.map((l, j) => (j === i ? out : l))
  },
  'insert odd characters': (ls, r) => {
    const i = line(ls, r)
    const s = ls[i] ?? ''
    const at = r.nextInt(0, s.length)
    return ls.map((l, j) => (j === i ? s.slice(0, at) + pick(r, ODD) + s.slice(at) : l))
  },
  'odd number': (ls, r) => {
    const i = line(ls, r)
    return ls.map((l, j) => (j === i ? l.replace(/-?\d+/, pick(r, NUMBERS)) : l))
  },
  'deep nesting': (ls, r) => {
    const i = line(ls, r)
    const n = pick(r, [50, 500, 5000])
    return ls.map((l, j) => (j === i ? l.replace(/: .*/, `: ${'['.repeat(n)}1${']'.repeat(n)}`) : l))
  },
  'deep forbid': (ls, r) => {
    const n = pick(r, [100, 2000, 20000])
    const e = pick(r, ['!', '('])
    const expr = e === '!' ? `${'!'.repeat(n)}(r0 == 1)` : `${'('.repeat(n)}r0 == 1${')'.repeat(n)}`
    return [...ls.filter((l) => !l.startsWith('forbid:')), `forbid: '${expr}'`]
  },
  'anchor and alias': (ls, r) => {
    const i = line(ls, r)
    return ls
      .map((l, j) => (j === i ? l.replace(/: (.+)$/, ': &x $1') : l))
      .concat(pick(r, ['extra: *x', 'more: *nope', '*x']))
  },
  'long line': (ls, r) => {
    const i = line(ls, r)
    const n = pick(r, [1_000, 100_000])
    return ls.map((l, j) => (j === i ? l + pick(r, ['x', ' #', 'A']).repeat(n) : l))
  },
  'tab indentation': (ls, r) => {
    const i = line(ls, r)
    return ls.map((l, j) => (j === i ? l.replace(/^ +/, '\t') : l))
  },
  'duplicate key': (ls, r) => {
    const keys = ls.filter((l) => /^[a-z_]+:/.test(l))
    return keys.length ? [...ls, pick(r, keys)] : ls
  },
  'wrong type': (ls, r) => {
    const i = line(ls, r)
    return ls.map((l, j) =>
      j === i ? l.replace(/: (.+)$/, `: ${pick(r, ['[1, 2]', '{a: 1}', 'null', 'true', '"s"', '7'])}`) : l,
    )
  },
  'unknown op': (ls, r) => {
    const i = line(ls, r)
    return ls.map((l, j) =>
      j === i
        ? l.replace(/\[(\w+)/, `[${pick(r, ['frobnicate', 'cow_faul', 'WRITE', 'x'.repeat(5000)])}`)
        : l,
    )
  },
  'many threads': (ls, r) => {
    const n = pick(r, [31, 32, 33, 40, 200])
    const at = ls.findIndex((l) => l.startsWith('cpus:'))
    if (at < 0) return ls
    const page = /^\s+(\w+):/.exec(ls[ls.findIndex((l) => l.startsWith('pages:')) + 1] ?? '')?.[1] ?? 'A'
    const extra = Array.from({ length: n }, (_, k) => `  X${k}: [write ${page} 1]`)
    return [...ls.slice(0, at + 1), ...extra, ...ls.slice(at + 1)]
  },
  'many ops': (ls, r) => {
    const n = pick(r, [100, 2000])
    const at = ls.findIndex((l) => /^\s+C0: \[/.test(l))
    if (at < 0) return ls
    const page = /\[\w+ (\w+)/.exec(ls[at]!)?.[1] ?? 'A'
    return ls.map((l, j) =>
      j === at ? `  C0: [${Array.from({ length: n }, () => `write ${page} 1`).join(', ')}]` : l,
    )
  },
  'many unknown keys': (ls, r) => {
    const n = pick(r, [100, 5_000, 20_000])
    return [...ls, ...Array.from({ length: n }, (_, k) => `unknown_${k}: 1`)]
  },
  'scripted schedule': (ls, r) => {
    const names = [...ls.join('\n').matchAll(/^\s+([A-Z]\w*): /gm)].map((m) => m[1]!)
    const sched = Array.from({ length: pick(r, [0, 3, 40]) }, () => pick(r, [...names, 'Z9']))
    return [
      ...ls.filter((l) => !l.startsWith('explore:')),
      `explore: { mode: scripted, schedule: [${sched.join(', ')}] }`,
    ]
  },
}

export interface FuzzInput {
  readonly seedIndex: number
  readonly mutations: readonly string[]
  readonly text: string
}

/** A catalogue file with 1-3 mutations applied (the mutations draw from a seeded PRNG). */
export function fuzzInputArb(texts: readonly string[]): fc.Arbitrary<FuzzInput> {
  const names = Object.keys(MUTATIONS)
  return fc
    .record({
      seedIndex: fc.nat({ max: texts.length - 1 }),
      mutations: fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 3 }),
      rnd: fc.nat(),
    })
    .map(({ seedIndex, mutations, rnd }) => {
      const r = rng(mulberry32(rnd))
      let ls = texts[seedIndex]!.split('\n')
      for (const m of mutations) ls = MUTATIONS[m]!(ls, r)
      return { seedIndex, mutations, text: ls.join('\n') }
    })
}

export interface FuzzReport {
  readonly cases: number
  readonly counts: Readonly<Record<CaseOutcome['kind'], number>>
  readonly findings: ReadonlyArray<{ input: FuzzInput; outcome: CaseOutcome }>
  readonly slowestMs: number
}

/** Runs `cases` seeded cases; every finding is kept with its input. */
export function fuzz(texts: readonly string[], cases: number, seed: number): FuzzReport {
  return fuzzWith(texts, cases, seed, runCase)
}

function fuzzWith(
  texts: readonly string[],
  cases: number,
  seed: number,
  run: (text: string) => CaseOutcome,
): FuzzReport {
  const counts: Record<CaseOutcome['kind'], number> = {
    ran: 0,
    refused: 0,
    crash: 0,
    slow: 0,
    unlocated: 0,
    'broken-line': 0,
    oversize: 0,
  }
  const findings: Array<{ input: FuzzInput; outcome: CaseOutcome }> = []
  let slowestMs = 0
  for (const input of fc.sample(fuzzInputArb(texts), { seed, numRuns: cases })) {
    const outcome = run(input.text)
    counts[outcome.kind]++
    slowestMs = Math.max(slowestMs, outcome.ms)
    if (outcome.kind !== 'ran' && outcome.kind !== 'refused') findings.push({ input, outcome })
  }
  return { cases, counts, findings, slowestMs }
}

// ---- notebooks ---------------------------------------------------------------------------

/**
 * A notebook text as `mnlab notebook check` reads it, up to the runs: the notebook parsed,
 * every experiment's scenario loaded and its recipe's policies resolved and run options made
 * (the runs themselves are what the scenario cases exercise). Same outcomes as `runCase`.
 */
export function runNotebookCase(text: string): CaseOutcome {
  const t0 = Date.now()
  const ms = (): number => Date.now() - t0
  const refused = (lines: string[]): CaseOutcome => refusal(lines, NOTEBOOK_POSITION, ms())
  try {
    const r = parseNotebook(text, 'fuzz.mnlab.yaml')
    if (!r.ok) return refused(r.issues.map(formatNotebookIssue))
    for (const cell of r.notebook.cells) {
      if (cell.kind !== 'experiment' || !('inline' in cell.scenario)) continue
      const src = cellScenarioText(cell, 'fuzz.mnlab.yaml')
      let sc: Scenario
      try {
        sc = loadScenarioText(src.text, src.file)
      } catch (e) {
        if (e instanceof ScenarioLoadError) return refused(e.issues.map(formatIssue))
        throw e
      }
      recipeRunOptions(sc, cell.recipe)
      recipePolicies(cell.recipe, withNotebookPolicies(sc, r.notebook.policies))
    }
  } catch (e) {
    return { kind: 'crash', ms: ms(), detail: describe(e) }
  }
  if (ms() > FUZZ_LIMITS.caseMs) return { kind: 'slow', ms: ms(), detail: `took ${ms()} ms` }
  return { kind: 'ran', ms: ms(), detail: '' }
}

/** Like `fuzz`, over notebook texts (the shipped notebooks) and `runNotebookCase`. */
export function fuzzNotebooks(texts: readonly string[], cases: number, seed: number): FuzzReport {
  return fuzzWith(texts, cases, seed, runNotebookCase)
}

export function notebookTexts(root: string): string[] {
  const dir = path.join(root, 'notebooks')
  return readdirSync(dir)
    .filter((f) => f.endsWith('.mnlab.yaml'))
    .sort()
    .map((f) => readFileSync(path.join(dir, f), 'utf8'))
}

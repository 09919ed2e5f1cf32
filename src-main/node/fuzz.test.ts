/**
 * Bad scenario input (the reliability issue): the fuzzer over mutated catalogue files, and one
 * regression test per root cause it found. Every outcome is a run or clean located errors.
 */
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { SCENARIO_LIMITS } from '../engine/scenario'
import { FORBID_LIMITS } from '../engine/expr'
import { catalogueTexts, fuzz, fuzzNotebooks, MUTATIONS, notebookTexts, runCase } from './fuzz'
import { cleanMessage, INPUT_LIMITS, loadScenarioText, ScenarioLoadError } from './scenarioFiles'

const ROOT = path.resolve(__dirname, '..', '..')

const BASE = `title: t
arch: x86_64
pages:
  A: { value: 0, prot: rw }
secondary:
  - { name: iommu, type: hw-walker }
cpus:
  C0: [write A 1]
devices:
  D0: { via: iommu, ops: [read A -> r0] }
`

function issues(text: string) {
  try {
    loadScenarioText(text, 'x.yaml')
  } catch (e) {
    if (e instanceof ScenarioLoadError) return e.issues
    throw e
  }
  return []
}

describe('the scenario fuzzer', () => {
  it('300 mutated catalogue files: every one runs or is refused with located one-line errors (seed 2026)', () => {
    const r = fuzz(catalogueTexts(ROOT), 300, 2026)
    const shown = r.findings
      .slice(0, 3)
      .map(
        (f) =>
          `${f.outcome.kind} [${f.input.mutations.join(', ')}]: ${f.outcome.detail}\n${f.input.text.slice(0, 600)}`,
      )
    expect(shown).toEqual([])
    // Not vacuous: both outcomes occur, and every mutation is in play.
    expect(r.counts.ran).toBeGreaterThan(20)
    expect(r.counts.refused).toBeGreaterThan(100)
    expect(Object.keys(MUTATIONS).length).toBeGreaterThan(15)
  }, 120_000)
})

describe('the notebook fuzzer', () => {
  it('200 mutated shipped notebooks: parsed, or refused with located one-line errors, never an exception (seed 5)', () => {
    const r = fuzzNotebooks(notebookTexts(ROOT), 200, 5)
    const shown = r.findings
      .slice(0, 3)
      .map((f) => `${f.outcome.kind} [${f.input.mutations.join(', ')}]: ${f.outcome.detail}`)
    expect(shown).toEqual([])
    expect(r.counts.ran).toBeGreaterThan(10)
    expect(r.counts.refused).toBeGreaterThan(100)
  }, 120_000)
})

describe('root causes, one by one', () => {
  it('a deep forbid (20,000 ! or parentheses) is a located error, not a stack overflow', () => {
    const deep = (n: number) => [`${'!'.repeat(n)}(r0 == 1)`, `${'('.repeat(n)}r0 == 1${')'.repeat(n)}`]
    for (const [n, why] of [
      [20_000, /longer than 4000 tokens|deeper than 100 levels/],
      [1_000, /deeper than 100 levels/],
    ] as const) {
      for (const expr of deep(n)) {
        const list = issues(`${BASE}forbid: '${expr}'\n`)
        expect(list).toHaveLength(1)
        expect(list[0]!.line).toBe(11)
        expect(list[0]!.message).toMatch(why)
      }
    }
    // At the limit it loads.
    const ok = `${'!'.repeat(FORBID_LIMITS.nesting)}(r0 == 1)`
    expect(issues(`${BASE}forbid: '${ok.slice(1)}'\n`)).toEqual([])
    expect(issues(`${BASE}forbid: '${'r0 == 1 || '.repeat(2_000)}r0 == 2'\n`)[0]!.message).toContain(
      `longer than ${FORBID_LIMITS.tokens} tokens`,
    )
  })

  it(`at most ${SCENARIO_LIMITS.threads} threads and ${SCENARIO_LIMITS.secondaries} secondaries: the one over is named where it is declared`, () => {
    const cpus = (n: number) => Array.from({ length: n }, (_, i) => `  X${i}: [write A 1]`).join('\n')
    const atLimit = BASE.replace('cpus:\n', `cpus:\n${cpus(SCENARIO_LIMITS.threads - 2)}\n`)
    expect(issues(atLimit)).toEqual([])
    const over = BASE.replace('cpus:\n', `cpus:\n${cpus(SCENARIO_LIMITS.threads - 1)}\n`)
    const list = issues(over)
    expect(list.map((i) => i.message)).toEqual([
      `too many threads: at most ${SCENARIO_LIMITS.threads} CPU and device threads together (this is thread ${SCENARIO_LIMITS.threads + 1}); the explorer keeps one bit per thread`,
    ])
    expect(list[0]!.line).toBe(9 + SCENARIO_LIMITS.threads - 1 + 1)
    const secs = (n: number) =>
      Array.from({ length: n }, (_, i) => `  - { name: s${i}, type: sw-mirror }`).join('\n')
    expect(
      issues(BASE.replace('secondary:\n', `secondary:\n${secs(SCENARIO_LIMITS.secondaries - 1)}\n`)),
    ).toEqual([])
    const tooMany = issues(BASE.replace('secondary:\n', `secondary:\n${secs(SCENARIO_LIMITS.secondaries)}\n`))
    // (iommu, now the 32nd, is refused, so D0's via names no secondary either.)
    expect(tooMany.map((i) => [i.line, i.message.split(':')[0]])).toContainEqual([
      6 + SCENARIO_LIMITS.secondaries,
      'too many secondaries',
    ])
  })

  it('20,000 unknown keys: the first 50 problems and a count of the rest, located', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `unknown_${i}: 1`).join('\n')
    const list = issues(`${BASE}${keys}\n`)
    expect(list).toHaveLength(INPUT_LIMITS.issues + 1)
    expect(list[0]!.line).toBe(11)
    expect(list.at(-1)!.message).toBe(
      `... and ${20_000 - INPUT_LIMITS.issues} more problems (fix the ones above first)`,
    )
  })

  it('nesting deeper than the YAML parser follows is said plainly, at its place', () => {
    const list = issues(`${BASE}x: ${'['.repeat(50_000)}1${']'.repeat(50_000)}\n`)
    // (How many times the parser reports it depends on the stack it had: one or two.)
    expect(list.length).toBeGreaterThan(0)
    for (const i of list)
      expect([i.line, i.message]).toEqual([
        11,
        'YAML: nested too deeply for the parser (a scenario needs only a few levels)',
      ])
  })

  it('duplicate keys are found in one pass and located at the second one', () => {
    const list = issues(`${BASE}arch: arm64\n`)
    expect(list.map((i) => [i.line, i.column, i.message])).toEqual([
      [11, 1, "YAML: key 'arch' is given twice in this mapping (first on line 2)"],
    ])
  })

  it('echoed input is one printable line, long tokens cut', () => {
    expect(cleanMessage("unknown key 'a\u2028b\rc\nd'")).toBe("unknown key 'a\\u2028b\\rc\\nd'")
    const long = cleanMessage(`unknown op '${'x'.repeat(10_000)}'`)
    expect(long.length).toBeLessThan(100)
    expect(long).toBe(`unknown op '${'x'.repeat(60)}…'`)
    const list = issues(BASE.replace('C0: [write A 1]', `C0: [${'y'.repeat(100_000)} A]`))
    expect(list).toHaveLength(1)
    expect(list[0]!.message.length).toBeLessThan(400)
  })

  it(`input over ${INPUT_LIMITS.chars.toLocaleString('en-US')} characters is refused at 1:1`, () => {
    const list = issues(`${BASE}# ${'z'.repeat(INPUT_LIMITS.chars)}\n`)
    expect(list.map((i) => [i.line, i.column])).toEqual([[1, 1]])
    expect(list[0]!.message).toMatch(/a scenario may have at most 1,000,000/)
  })

  it('mode: scripted without a schedule is located at the mode', () => {
    const list = issues(`${BASE}explore: { mode: scripted }\n`)
    expect(list.map((i) => [i.line, i.message])).toEqual([
      [11, 'mode: scripted needs a schedule: explore: { mode: scripted, schedule: [C0, D0, ...] }'],
    ])
  })

  it("a file's schedule step that cannot be followed is a located error, not an exception", () => {
    const out = runCase(
      `${BASE}explore: { mode: scripted, schedule: [C0, C0, C0, C0, C0, C0, C0, C0, C0, C0] }\n`,
    )
    expect(out.kind).toBe('refused')
    expect(out.detail).toMatch(
      /^fuzz\.yaml:11:\d+: explore\.schedule step \d+ cannot be followed under start-end: C0 cannot run/,
    )
  })
})

import { readFileSync } from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { NOTEBOOK_FORMAT, type ExperimentCell, type Notebook, type Recipe } from '../../api/notebook'
import { ENGINE_VERSION, SITE_NAMES } from '../../engine'
import {
  canonicalJson,
  emptyNotebook,
  migrate,
  parseNotebook,
  recipeHash,
  referenceResult,
  resultStatus,
  resultStatuses,
  serializeNotebook,
} from './format'

const NOTEBOOKS = path.join(__dirname, '../../../notebooks')

// ---- arbitraries ----

const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.array(fc.string({ unit: 'grapheme', maxLength: 30 }), { maxLength: 6 }).map((ls) => ls.join('\n')),
  fc.constantFrom(
    '',
    '\n',
    'trailing newline\n',
    '  leading spaces\nand more\n',
    '# heading\n\n- a\n- b\n\n```\ncode: [1, 2]\n```\n',
    'key: value\n  nested: "quoted"\n',
    'true',
    '0x10',
    'null',
    '- dash',
    'tabs\tand "quotes" and \'single\'',
    'line\n\n\nwith blank lines\n\n',
    '|\n>',
    'no newline at end\nsecond',
    'a: b # comment\n',
  ),
)
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,12}$/)
const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,10}$/)
const count = fc.integer({ min: 0, max: 1_000_000 })

const recipe: fc.Arbitrary<Recipe> = fc.record({
  policies: fc.array(name, { minLength: 1, maxLength: 4 }),
  mode: fc.constantFrom('exhaustive', 'random', 'scripted'),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  executions: fc.integer({ min: 1, max: 1_000_000 }),
  schedule: fc.array(name, { maxLength: 8 }),
  max_states: fc.integer({ min: 1, max: 50_000_000 }),
  timeout_ms: fc.option(fc.integer({ min: 1, max: 86_400_000 }), { nil: null }),
})

const result = fc.record({
  recipe_hash: fc.stringMatching(/^[0-9a-f]{64}$/),
  engine: fc.stringMatching(/^[0-9][0-9.]{0,8}$/),
  at: fc
    .date({
      min: new Date('2000-01-01T00:00:00Z'),
      max: new Date('2100-01-01T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString()),
  pinned: fc.boolean(),
  policies: fc.array(
    fc.record(
      {
        policy: name,
        verdict: fc.constantFrom('holds', 'violated', 'unknown'),
        violated: fc.array(name, { maxLength: 3 }),
        invariants: fc.dictionary(
          name,
          fc.constantFrom('holds' as const, 'violated' as const, 'unknown' as const),
          {
            maxKeys: 6,
          },
        ),
        expected: fc.option(name, { nil: null }),
        matches: fc.option(fc.boolean(), { nil: null }),
        cut_reason: fc.option(text, { nil: null }),
        metrics: fc.record({
          notifier_calls: count,
          secondary_invalidations: count,
          device_faults: count,
          mirror_zaps: count,
          cpu_tlb_flushes: count,
          sim_ns: count.map((n) => n / 4),
        }),
        counterexamples: fc.array(
          fc.record({
            invariant: name,
            schedule: fc.array(name, { maxLength: 10 }),
            cycle: fc.option(fc.array(name, { minLength: 1, maxLength: 4 }), { nil: null }),
            why: text,
          }),
          { maxLength: 2 },
        ),
      },
      // `invariants` is optional: results recorded before it existed have none.
      {
        requiredKeys: [
          'policy',
          'verdict',
          'violated',
          'expected',
          'matches',
          'cut_reason',
          'metrics',
          'counterexamples',
        ],
      },
    ),
    { maxLength: 3 },
  ),
})

const cell = fc.oneof(
  fc.record({ kind: fc.constant('note' as const), id, markdown: text }),
  fc.record({
    kind: fc.constant('experiment' as const),
    id,
    title: fc.string({ unit: 'grapheme', maxLength: 30 }),
    scenario: fc.oneof(
      fc.record({ path: fc.stringMatching(/^[a-z./_-]{1,30}$/) }),
      fc.record({ inline: text }),
    ),
    recipe,
    results: fc.array(result, { maxLength: 2 }),
  }),
)

/** A notebook's own policies: names that are no preset or site, each a set of distinct sites. */
const policyDefs = fc.dictionary(
  fc.stringMatching(/^my[a-z0-9_.-]{0,8}$/),
  fc.uniqueArray(fc.constantFrom(...SITE_NAMES), { maxLength: 5 }),
  { minKeys: 1, maxKeys: 3 },
)

const notebook: fc.Arbitrary<Notebook> = fc.record(
  {
    format: fc.constant(NOTEBOOK_FORMAT as 1),
    title: fc.string({ unit: 'grapheme', maxLength: 40 }),
    policies: policyDefs,
    cells: fc.uniqueArray(cell, { selector: (c) => c.id, maxLength: 6 }),
  },
  // `policies` is optional: a notebook that defines none has no key.
  { requiredKeys: ['format', 'title', 'cells'] },
)

// ---- tests ----

describe('notebook format: round trip', () => {
  it('parse(serialize(nb)) is nb, and serializing again gives the same bytes', () => {
    fc.assert(
      fc.property(notebook, (nb) => {
        const text = serializeNotebook(nb)
        const r = parseNotebook(text, 'nb.mnlab.yaml')
        if (!r.ok) throw new Error(`${JSON.stringify(r.issues)}\n${text}`)
        expect(r.notebook).toEqual(nb)
        expect(r.migratedFrom).toBeNull()
        expect(serializeNotebook(r.notebook)).toBe(text)
      }),
      { numRuns: 300 },
    )
  })

  it('writes format first, a stable key order, and block scalars for multi-line text', () => {
    const nb: Notebook = {
      format: 1,
      title: 'T',
      cells: [
        { kind: 'note', id: 'n1', markdown: '# Title\n\nA paragraph.\n' },
        {
          kind: 'experiment',
          id: 'e1',
          title: 'E',
          scenario: { inline: 'title: x\narch: arm64\n' },
          recipe: {
            timeout_ms: null,
            max_states: 10,
            schedule: ['C0', 'D0'],
            executions: 1,
            seed: 1,
            mode: 'scripted',
            policies: ['start-end'],
          },
          results: [],
        },
      ],
    }
    const text = serializeNotebook(nb)
    expect(text.split('\n')[0]).toBe('format: 1')
    expect(text).toContain('    markdown: |\n      # Title\n\n      A paragraph.\n')
    expect(text).toContain('      inline: |\n        title: x\n        arch: arm64\n')
    expect(text).toContain(
      '    recipe:\n      policies: [start-end]\n      mode: scripted\n      seed: 1\n      executions: 1\n      schedule: [C0, D0]\n      max_states: 10\n      timeout_ms: null\n',
    )
  })

  it('the shipped example notebooks parse and are in canonical form', () => {
    for (const f of ['cow-ordering-2017.mnlab.yaml', 'permission-upgrade-2023.mnlab.yaml']) {
      const text = readFileSync(path.join(NOTEBOOKS, f), 'utf8')
      const r = parseNotebook(text, f)
      expect(r.ok).toBe(true)
      if (r.ok) expect(serializeNotebook(r.notebook)).toBe(text)
    }
  })
})

describe('notebook format: bad files give located errors, never exceptions', () => {
  const good = serializeNotebook({
    format: 1,
    title: 'T',
    cells: [
      { kind: 'note', id: 'n1', markdown: 'hello\nworld\n' },
      {
        kind: 'experiment',
        id: 'e1',
        title: 'E',
        scenario: { path: 'x.yaml' },
        recipe: {
          policies: ['start-end'],
          mode: 'exhaustive',
          seed: 1,
          executions: 1,
          schedule: [],
          max_states: 10,
          timeout_ms: null,
        },
        results: [],
      },
    ],
  })

  it('invalid YAML: file:line:col of the YAML error', () => {
    const r = parseNotebook('format: 1\ntitle: [unclosed\ncells: []\n', 'bad.mnlab.yaml')
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.issues[0]!.file).toBe('bad.mnlab.yaml')
    expect(r.issues[0]!.message).toMatch(/^YAML: /)
    expect(r.issues[0]!.line).toBeGreaterThanOrEqual(2)
  })

  it('missing and unknown format versions', () => {
    const missing = parseNotebook('title: T\ncells: []\n', 'f')
    expect(missing).toEqual({
      ok: false,
      issues: [
        { file: 'f', line: 1, column: 1, message: 'missing `format:` (this is not a notebook file?)' },
      ],
    })
    const future = parseNotebook('title: T\nformat: 7\ncells: []\n', 'f')
    expect(future.ok).toBe(false)
    if (!future.ok) {
      expect(future.issues[0]).toMatchObject({ line: 2, column: 9 })
      expect(future.issues[0]!.message).toMatch(/format 7 is newer than this build reads \(1\)/)
    }
    const text = parseNotebook('format: one\ncells: []\n', 'f')
    expect(text.ok).toBe(false)
    if (!text.ok)
      expect(text.issues[0]).toMatchObject({ line: 1, column: 9, message: '`format` must be an integer' })
  })

  it('a cell that does not validate is named with its line', () => {
    const bad = good.replace('mode: exhaustive', 'mode: sideways')
    const line = bad.split('\n').findIndex((l) => l.includes('mode: sideways')) + 1
    const r = parseNotebook(bad, 'f')
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.issues).toHaveLength(1)
    expect(r.issues[0]!.line).toBe(line)
    expect(r.issues[0]!.column).toBe(13)
    expect(r.issues[0]!.message).toMatch(/^cells\.1\.recipe\.mode: /)
  })

  it('an unknown key and a duplicate id are reported, not dropped', () => {
    const r = parseNotebook(good.replace('id: e1', 'id: n1\n    colour: red'), 'f')
    expect(r.ok).toBe(false)
    if (r.ok) return
    const msgs = r.issues.map((i) => i.message).join('\n')
    expect(msgs).toMatch(/colour/)
    expect(msgs).toMatch(/duplicate cell id 'n1'/)
  })

  it('every truncation of a valid file parses or gives located errors', () => {
    for (let n = 0; n < good.length; n++) {
      const r = parseNotebook(good.slice(0, n), 'trunc')
      if (r.ok) continue
      expect(r.issues.length).toBeGreaterThan(0)
      for (const i of r.issues) {
        expect(i.file).toBe('trunc')
        expect(i.line).toBeGreaterThanOrEqual(1)
        expect(i.column).toBeGreaterThanOrEqual(1)
      }
    }
  })

  it('random bytes and random corruptions never throw', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc
            .tuple(fc.nat(good.length), fc.nat(40), fc.string({ maxLength: 10 }))
            .map(([at, del, ins]) => good.slice(0, at) + ins + good.slice(at + del)),
        ),
        (s) => {
          const r = parseNotebook(s, 'x')
          if (!r.ok) expect(r.issues.length).toBeGreaterThan(0)
        },
      ),
      { numRuns: 400 },
    )
  })
})

describe('notebook format: migration', () => {
  const v0 = [
    'version: 0',
    'title: Old notebook',
    'cells:',
    '  - kind: note',
    '    id: n',
    '    markdown: |',
    '      hello',
    '  - kind: experiment',
    '    id: e',
    '    title: E',
    '    scenario_path: ../scenarios/x.yaml',
    '    recipe: { policies: [start-end], mode: exhaustive, seed: 1, executions: 5, schedule: [], maxStates: 100 }',
    '    results:',
    `      - { recipe_hash: '${'a'.repeat(64)}', engine: 0.0.9, at: '2023-05-22T06:37:25Z', policies: [{ policy: start-end, verdict: holds, violated: [], expected: null, matches: null, metrics: { notifier_calls: 1, secondary_invalidations: 0, device_faults: 0, mirror_zaps: 0, cpu_tlb_flushes: 1, sim_ns: 10 }, counterexamples: [] }] }`,
    '  - kind: experiment',
    '    id: i',
    '    title: I',
    '    scenario_inline: "title: t\\n"',
    '    recipe: { policies: [arch-hook], mode: random, seed: 3, executions: 5, schedule: [], maxStates: 100, timeoutMs: 500 }',
    '    results: []',
    '',
  ].join('\n')

  it('format 0 (version:, scenario_path/scenario_inline, camelCase budgets) migrates to format 1', () => {
    const r = parseNotebook(v0, 'old.mnlab.yaml')
    if (!r.ok) throw new Error(JSON.stringify(r.issues))
    expect(r.migratedFrom).toBe(0)
    const [note, e, i] = r.notebook.cells as [Notebook['cells'][number], ExperimentCell, ExperimentCell]
    expect(note).toEqual({ kind: 'note', id: 'n', markdown: 'hello\n' })
    expect(e.scenario).toEqual({ path: '../scenarios/x.yaml' })
    expect(e.recipe.max_states).toBe(100)
    expect(e.recipe.timeout_ms).toBeNull()
    expect(e.results[0]!.pinned).toBe(false)
    expect(e.results[0]!.policies[0]!.cut_reason).toBeNull()
    expect(i.scenario).toEqual({ inline: 'title: t\n' })
    expect(i.recipe.timeout_ms).toBe(500)
    // Saving writes the current format; reading that back is not a migration.
    const again = parseNotebook(serializeNotebook(r.notebook), 'old.mnlab.yaml')
    expect(again.ok && again.migratedFrom).toBeNull()
    expect(again.ok && again.notebook).toEqual(r.notebook)
  })

  it('migrate() refuses unknown formats with a message', () => {
    expect(() => migrate({ version: 3 })).toThrow(/missing `format:`/)
    expect(() => migrate({ format: 2 })).toThrow(/newer than this build/)
    expect(() => migrate({ format: -1 })).toThrow(/unknown format -1/)
    expect(migrate({ format: 1, title: 'x', cells: [] })).toEqual({
      raw: { format: 1, title: 'x', cells: [] },
      from: 1,
    })
  })
})

describe('recipe hash and staleness', () => {
  const rc: Recipe = {
    policies: ['start-end'],
    mode: 'exhaustive',
    seed: 1,
    executions: 1,
    schedule: [],
    max_states: 10,
    timeout_ms: null,
  }
  const scen = 'title: x\n'
  const cellWith = (hash: string, engine: string, pinned = false): ExperimentCell => ({
    kind: 'experiment',
    id: 'e',
    title: 'E',
    scenario: { inline: scen },
    recipe: rc,
    results: [{ recipe_hash: hash, engine, at: '2026-01-01T00:00:00.000Z', pinned, policies: [] }],
  })

  it('the hash covers the recipe and the scenario text, not key order', () => {
    const h = recipeHash(rc, scen)
    expect(h).toMatch(/^[0-9a-f]{64}$/)
    expect(recipeHash({ ...rc }, scen)).toBe(h)
    const reordered = Object.fromEntries(Object.entries(rc).reverse()) as Recipe
    expect(recipeHash(reordered, scen)).toBe(h)
    expect(recipeHash({ ...rc, seed: 2 }, scen)).not.toBe(h)
    expect(recipeHash(rc, scen + ' ')).not.toBe(h)
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}')
  })

  it('current only when both the recipe hash and the engine match', () => {
    const h = recipeHash(rc, scen)
    expect(resultStatus(cellWith(h, ENGINE_VERSION), scen, ENGINE_VERSION)).toBe('current')
    expect(resultStatus(cellWith(h, '0.0.1'), scen, ENGINE_VERSION)).toBe('stale-engine')
    expect(resultStatus(cellWith(h, ENGINE_VERSION), scen + '# edited\n', ENGINE_VERSION)).toBe(
      'stale-recipe',
    )
    const c = cellWith(h, ENGINE_VERSION)
    expect(resultStatus({ ...c, recipe: { ...rc, max_states: 11 } }, scen, ENGINE_VERSION)).toBe(
      'stale-recipe',
    )
    // Both changed: the recipe wins (the result is not about this experiment any more).
    expect(resultStatus(cellWith(h, '0.0.1'), 'other', ENGINE_VERSION)).toBe('stale-recipe')
    expect(resultStatus({ ...c, results: [] }, scen, ENGINE_VERSION)).toBeNull()
  })

  it("every result's status at once agrees with each result's own", () => {
    const h = recipeHash(rc, scen)
    const c = cellWith(h, ENGINE_VERSION)
    const results = [
      c.results[0]!,
      { ...c.results[0]!, engine: '0.0.1' },
      { ...c.results[0]!, recipe_hash: 'f'.repeat(64) },
    ]
    const cell = { ...c, results }
    expect(resultStatuses(cell, scen, ENGINE_VERSION)).toEqual(['current', 'stale-engine', 'stale-recipe'])
    expect(resultStatuses(cell, scen, ENGINE_VERSION)).toEqual(
      results.map((r) => resultStatus(cell, scen, ENGINE_VERSION, r)),
    )
    expect(resultStatuses({ ...c, results: [] }, scen, ENGINE_VERSION)).toEqual([])
  })

  it('the reference result is the latest pinned one, else the latest', () => {
    const base = cellWith('a'.repeat(64), '1')
    const r = (at: string, pinned: boolean) => ({ ...base.results[0]!, at, pinned })
    expect(referenceResult({ ...base, results: [r('1', true), r('2', false)] })!.at).toBe('1')
    expect(referenceResult({ ...base, results: [r('1', false), r('2', false)] })!.at).toBe('2')
    expect(referenceResult({ ...base, results: [r('1', true), r('2', true), r('3', false)] })!.at).toBe('2')
  })

  it('a new notebook serializes to a valid file', () => {
    const r = parseNotebook(serializeNotebook(emptyNotebook('N')), 'n')
    expect(r.ok && r.notebook).toEqual({ format: 1, title: 'N', cells: [] })
  })
})

describe("a notebook's own policies (issue 14)", () => {
  const rc: Recipe = {
    policies: ['start-end', 'popple-v1'],
    mode: 'exhaustive',
    seed: 1,
    executions: 1,
    schedule: [],
    max_states: 10,
    timeout_ms: null,
  }
  const nb: Notebook = {
    format: NOTEBOOK_FORMAT,
    title: 'custom',
    policies: { 'popple-v1': ['start-end', 'handle_pte_fault'], 'reuse-fix': ['wp_page_reuse'] },
    cells: [
      {
        kind: 'experiment',
        id: 'e',
        title: 'E',
        scenario: { inline: 'title: x\n' },
        recipe: rc,
        results: [],
      },
    ],
  }

  it('survive save and load: written after the title, one flow list per name', () => {
    const text = serializeNotebook(nb)
    expect(text).toContain(
      'title: custom\npolicies:\n  popple-v1: [start-end, handle_pte_fault]\n  reuse-fix: [wp_page_reuse]\ncells:\n',
    )
    const r = parseNotebook(text, 'nb.mnlab.yaml')
    if (!r.ok) throw new Error(JSON.stringify(r.issues))
    expect(r.notebook.policies).toEqual(nb.policies)
    expect(serializeNotebook(r.notebook)).toBe(text)
    // A notebook without policies writes no key.
    expect(serializeNotebook({ ...nb, policies: undefined })).not.toContain('policies:\n')
  })

  it('a bad site or name is a located error, as in a scenario', () => {
    const text = serializeNotebook(nb).replace('handle_pte_fault', 'handle_pte_fautl')
    const r = parseNotebook(text, 'nb.mnlab.yaml')
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.issues).toEqual([
      expect.objectContaining({
        line: 4,
        column: 26,
        message: expect.stringMatching(
          /^policies\.popple-v1\.1: unknown site 'handle_pte_fautl' \(did you mean 'handle_pte_fault'\?\)/,
        ),
      }),
    ])
    const named = parseNotebook(serializeNotebook(nb).replace('reuse-fix:', 'arch-hook:'), 'nb.mnlab.yaml')
    expect(named.ok).toBe(false)
    if (!named.ok)
      expect(named.issues[0]!.message).toMatch(/^policies\.arch-hook: 'arch-hook' is a built-in policy/)
  })

  it("the recipe hash covers the sites of the notebook's policies the recipe names, and only those", () => {
    const scen = 'title: x\n'
    const h = recipeHash(rc, scen, nb.policies)
    // A recipe naming none of them hashes as before policies existed.
    const plain = { ...rc, policies: ['start-end'] }
    expect(recipeHash(plain, scen, nb.policies)).toBe(recipeHash(plain, scen))
    // Another definition of a name it runs makes its results stale; one it does not run does not.
    expect(recipeHash(rc, scen, { ...nb.policies, 'popple-v1': ['start-end'] })).not.toBe(h)
    expect(recipeHash(rc, scen, { ...nb.policies, 'reuse-fix': ['flush_tlb_page'] })).toBe(h)
    const cell = { ...(nb.cells[0] as ExperimentCell), results: [] }
    const rec = {
      recipe_hash: h,
      engine: ENGINE_VERSION,
      at: '2026-01-01T00:00:00.000Z',
      pinned: false,
      policies: [],
    }
    expect(resultStatus({ ...cell, results: [rec] }, scen, ENGINE_VERSION, rec, nb.policies)).toBe('current')
    expect(resultStatus({ ...cell, results: [rec] }, scen, ENGINE_VERSION, rec)).toBe('stale-recipe')
  })
})

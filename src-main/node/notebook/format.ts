/**
 * Notebook files: text <-> Notebook. Parsing never throws on bad input: it returns every problem
 * located at file:line:column (invalid YAML, missing or unknown `format`, cells that do not
 * validate). Serializing writes a stable key order and block scalars (`|`) for Markdown and inline
 * scenarios, so a git diff of a notebook is line-based.
 */
import { capped, duplicateKeys, yamlMessage } from '../scenarioFiles'
import { createHash } from 'node:crypto'
import { Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml'
import {
  NOTEBOOK_FORMAT,
  NotebookSchema,
  type Cell,
  type ExperimentCell,
  type Notebook,
  type NotebookIssue,
  type PolicyDefs,
  type Recipe,
  type RecordedPolicy,
  type RecordedResult,
  type RecordedSynthesis,
  type ResultStatus,
} from '../../api/notebook'
import { definePolicies, INVARIANTS, type RunResult } from '../../engine'
import { recordedResult, referenceIndex, type RecordedVerdict } from '../../api/record'

export type ParseResult =
  | {
      readonly ok: true
      readonly notebook: Notebook
      readonly migratedFrom: number | null
      /** 1-based line of each cell, and of its inline scenario's first line (null if none). */
      readonly cellLines: ReadonlyArray<{ readonly line: number; readonly inlineLine: number | null }>
    }
  | { readonly ok: false; readonly issues: readonly NotebookIssue[] }

export function formatNotebookIssue(i: NotebookIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.message}`
}

// ---- migrations ----

type Raw = Record<string, unknown>

/**
 * MIGRATIONS[n] turns a format-n document into format n+1. Format 0 is the pre-release shape:
 * `version: 0` instead of `format`, experiments with `scenario_path` / `scenario_inline`,
 * camelCase `maxStates` / `timeoutMs` in the recipe, and results without `pinned` or `cut_reason`.
 */
export const MIGRATIONS: Readonly<Record<number, (raw: Raw) => Raw>> = {
  0: (raw) => {
    const { version: _v, ...rest } = raw
    const cells = raw.cells
    return {
      format: 1,
      ...Object.fromEntries(Object.entries(rest).filter(([k]) => k !== 'cells')),
      cells: Array.isArray(cells)
        ? cells.map((c: unknown) => {
            if (!c || typeof c !== 'object' || (c as Raw).kind !== 'experiment') return c
            const { scenario_path, scenario_inline, recipe, results, ...cell } = c as Raw
            const r = (recipe ?? {}) as Raw
            const { maxStates, timeoutMs, ...recipeRest } = r
            return {
              ...cell,
              scenario: scenario_inline !== undefined ? { inline: scenario_inline } : { path: scenario_path },
              recipe: { ...recipeRest, max_states: maxStates, timeout_ms: timeoutMs ?? null },
              results: Array.isArray(results)
                ? results.map((res: unknown) => {
                    if (!res || typeof res !== 'object') return res
                    const rr = res as Raw
                    return {
                      ...rr,
                      pinned: rr.pinned ?? false,
                      policies: Array.isArray(rr.policies)
                        ? rr.policies.map((p: unknown) =>
                            p && typeof p === 'object' ? { cut_reason: null, ...(p as Raw) } : p,
                          )
                        : rr.policies,
                    }
                  })
                : results,
            }
          })
        : cells,
    }
  },
}

/** The format of a raw document: `format: N`, or `version: 0` for the pre-release shape. */
function formatOf(raw: Raw): number | null {
  if ('format' in raw) return typeof raw.format === 'number' ? raw.format : NaN
  if (raw.version === 0) return 0
  return null
}

/** Brings a raw document up to NOTEBOOK_FORMAT. Throws on a format it does not know. */
export function migrate(raw: Raw): { raw: Raw; from: number } {
  const from = formatOf(raw)
  if (from === null) throw new Error('missing `format:` (this is not a notebook file?)')
  if (!Number.isInteger(from)) throw new Error('`format` must be an integer')
  if (from > NOTEBOOK_FORMAT)
    throw new Error(
      `format ${from} is newer than this build reads (${NOTEBOOK_FORMAT}); update MMU Notifier Lab`,
    )
  let cur = raw
  for (let v = from; v < NOTEBOOK_FORMAT; v++) {
    const m = MIGRATIONS[v]
    if (!m) throw new Error(`unknown format ${from}; this build reads formats 0 to ${NOTEBOOK_FORMAT}`)
    cur = m(cur)
  }
  return { raw: cur, from }
}

// ---- parsing ----

function nodeAt(
  doc: Document,
  p: readonly PropertyKey[],
): { range?: [number, number, number] | null } | null {
  let node: unknown = doc.contents
  let last: unknown = node
  for (const seg of p) {
    if (isMap(node)) {
      const pair = node.items.find(
        (it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg),
      )
      if (!pair) break
      last = pair.value ?? pair.key
      node = pair.value
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg] !== undefined) {
      node = node.items[seg]
      last = node
    } else break
    if (node === null || node === undefined) break
  }
  return (last as { range?: [number, number, number] | null }) ?? null
}

export function parseNotebook(text: string, file: string): ParseResult {
  const r = parseNotebookRaw(text, file)
  // At most 50 problems, each one printable line, as for scenarios.
  return r.ok ? r : { ok: false, issues: capped(r.issues) }
}

function parseNotebookRaw(text: string, file: string): ParseResult {
  const lc = new LineCounter()
  const at = (offset: number, message: string): NotebookIssue => {
    const pos = lc.linePos(offset)
    return { file, line: pos.line, column: pos.col, message }
  }
  let doc: Document
  try {
    // Duplicate keys are found below in one pass (the yaml package's check is quadratic).
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false })
  } catch (e) {
    return { ok: false, issues: [{ file, line: 1, column: 1, message: `YAML: ${(e as Error).message}` }] }
  }
  if (doc.errors.length > 0)
    return { ok: false, issues: doc.errors.map((e) => at(e.pos[0], yamlMessage(e.message))) }
  const dups = duplicateKeys(doc, lc, file)
  if (dups.length > 0)
    return {
      ok: false,
      issues: dups.map((d) => ({ file, line: d.line, column: d.column, message: d.message })),
    }
  let raw: unknown
  try {
    raw = doc.toJS({ maxAliasCount: 100 })
  } catch (e) {
    return { ok: false, issues: [at(0, `YAML: ${(e as Error).message}`)] }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    return { ok: false, issues: [at(0, 'a notebook is a YAML mapping starting with `format: 1`')] }
  let migrated: { raw: Raw; from: number }
  try {
    migrated = migrate(raw as Raw)
  } catch (e) {
    const n = nodeAt(doc, ['format'])
    const offset = 'format' in (raw as Raw) && n?.range ? n.range[0] : 0
    return { ok: false, issues: [at(offset, (e as Error).message)] }
  }
  const r = NotebookSchema.safeParse(migrated.raw)
  if (!r.success) {
    const issues = r.error.issues.map((i) => {
      const n = nodeAt(doc, i.path)
      const where = i.path.length ? `${i.path.map(String).join('.')}: ` : ''
      return at(n?.range ? n.range[0] : 0, `${where}${i.message}`)
    })
    issues.sort((a, b) => a.line - b.line || a.column - b.column)
    return { ok: false, issues }
  }
  // The notebook's own policies: names and sites as a scenario's `policies:` are checked.
  if (r.data.policies !== undefined) {
    const bad = definePolicies(r.data.policies).issues
    if (bad.length > 0)
      return {
        ok: false,
        issues: bad.map((i) => {
          const n = nodeAt(doc, i.path)
          return at(n?.range ? n.range[0] : 0, `${i.path.map(String).join('.')}: ${i.message}`)
        }),
      }
  }
  const cellLines = r.data.cells.map((c, i) => {
    const n = nodeAt(doc, ['cells', i])
    const line = n?.range ? lc.linePos(n.range[0]).line : 1
    let inlineLine: number | null = null
    if (c.kind === 'experiment' && 'inline' in c.scenario && migrated.from === NOTEBOOK_FORMAT) {
      const s = nodeAt(doc, ['cells', i, 'scenario', 'inline'])
      if (s?.range) {
        const l = lc.linePos(s.range[0]).line
        // A block scalar's header (`|`) sits on the key's line; the text starts on the next one.
        const header = (text.split('\n')[l - 1] ?? '').trimEnd()
        inlineLine = /[|>][-+0-9]*$/.test(header) ? l + 1 : l
      }
    }
    return { line, inlineLine }
  })
  return {
    ok: true,
    notebook: r.data,
    migratedFrom: migrated.from === NOTEBOOK_FORMAT ? null : migrated.from,
    cellLines,
  }
}

// ---- serializing (stable key order) ----

function orderedRecipe(r: Recipe): Recipe {
  return {
    policies: [...r.policies],
    mode: r.mode,
    seed: r.seed,
    executions: r.executions,
    schedule: [...r.schedule],
    max_states: r.max_states,
    timeout_ms: r.timeout_ms,
  }
}

/** The engine's invariants in its order, then any others (a newer engine's) by name. */
function orderedInvariants(inv: Readonly<Record<string, RecordedVerdict>>): Record<string, RecordedVerdict> {
  const known = INVARIANTS.filter((i) => i in inv)
  const rest = Object.keys(inv)
    .filter((k) => !(INVARIANTS as readonly string[]).includes(k))
    .sort()
  return Object.fromEntries([...known, ...rest].map((k) => [k, inv[k]!]))
}

function orderedPolicy(p: RecordedPolicy): RecordedPolicy {
  return {
    policy: p.policy,
    verdict: p.verdict,
    violated: [...p.violated],
    // Absent in results recorded before it existed: stays absent (no key written).
    ...(p.invariants ? { invariants: orderedInvariants(p.invariants) } : {}),
    expected: p.expected,
    matches: p.matches,
    cut_reason: p.cut_reason,
    metrics: {
      notifier_calls: p.metrics.notifier_calls,
      secondary_invalidations: p.metrics.secondary_invalidations,
      device_faults: p.metrics.device_faults,
      mirror_zaps: p.metrics.mirror_zaps,
      cpu_tlb_flushes: p.metrics.cpu_tlb_flushes,
      sim_ns: p.metrics.sim_ns,
    },
    counterexamples: p.counterexamples.map((c) => ({
      invariant: c.invariant,
      schedule: [...c.schedule],
      cycle: c.cycle ? [...c.cycle] : null,
      why: c.why,
    })),
  }
}

function orderedSynthesis(r: RecordedSynthesis): RecordedSynthesis {
  return {
    recipe_hash: r.recipe_hash,
    engine: r.engine,
    at: r.at,
    pinned: r.pinned,
    scenarios: [...r.scenarios],
    complete: r.complete,
    minimal: r.minimal.map((m) => ({
      placement: m.placement,
      cost: m.cost,
      needs: m.needs.map((n) => ({
        site: n.site,
        scenario: n.scenario,
        invariant: n.invariant,
        schedule: [...n.schedule],
        cycle: n.cycle ? [...n.cycle] : null,
      })),
    })),
    front: r.front.map((f) => ({ held: f.held, cost: f.cost, placements: [...f.placements] })),
    placements: r.placements.map((p) => ({
      placement: p.placement,
      held: p.held,
      cost: p.cost,
      verdicts: [...p.verdicts],
    })),
    search: {
      explored: r.search.explored,
      pruned: r.search.pruned,
      cost_runs: r.search.cost_runs,
      states: r.search.states,
      elapsed_ms: r.search.elapsed_ms,
    },
  }
}

function orderedCell(c: Cell): Cell {
  if (c.kind === 'note') return { kind: 'note', id: c.id, markdown: c.markdown }
  if (c.kind === 'synthesis')
    return {
      kind: 'synthesis',
      id: c.id,
      title: c.title,
      recipe: {
        scenarios: [...c.recipe.scenarios],
        sites: c.recipe.sites === null ? null : [...c.recipe.sites],
        objective: c.recipe.objective,
        policies: [...c.recipe.policies],
        max_states: c.recipe.max_states,
        timeout_ms: c.recipe.timeout_ms,
      },
      results: c.results.map(orderedSynthesis),
    }
  return {
    kind: 'experiment',
    id: c.id,
    title: c.title,
    scenario: 'inline' in c.scenario ? { inline: c.scenario.inline } : { path: c.scenario.path },
    recipe: orderedRecipe(c.recipe),
    results: c.results.map((r) => ({
      recipe_hash: r.recipe_hash,
      engine: r.engine,
      at: r.at,
      pinned: r.pinned,
      policies: r.policies.map(orderedPolicy),
    })),
  }
}

/** The file text: `format` first, stable key order, block scalars for multi-line strings. */
export function serializeNotebook(nb: Notebook): string {
  const doc = {
    format: NOTEBOOK_FORMAT,
    title: nb.title,
    // Written only when the notebook defines policies (older files stay byte for byte).
    ...(nb.policies !== undefined
      ? { policies: Object.fromEntries(Object.entries(nb.policies).map(([k, v]) => [k, [...v]])) }
      : {}),
    cells: nb.cells.map(orderedCell),
  }
  const d = new Document(doc, { aliasDuplicateObjects: false })
  // Lists of names (policies, schedules, invariants) stay on one line; everything else is block style.
  visit(d, {
    Seq(_k, node) {
      if (
        node.items.every(
          (it) => isScalar(it) && typeof it.value === 'string' && /^[\w.+-]{1,100}$/.test(it.value),
        )
      )
        node.flow = true
    },
  })
  return d.toString({ blockQuote: 'literal', lineWidth: 0, flowCollectionPadding: false })
}

export function emptyNotebook(title = 'Untitled notebook'): Notebook {
  return { format: NOTEBOOK_FORMAT, title, cells: [] }
}

// ---- recipe hash and staleness ----

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Raw)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Raw)[k])}`)
      .join(',')}}`
  return JSON.stringify(v)
}

/**
 * The notebook's policies a recipe names (an entry may be a list, `a,b`), or null for none:
 * their sites are part of what the recipe runs.
 */
export function usedPolicyDefs(recipe: Recipe, defs: PolicyDefs | undefined): PolicyDefs | null {
  if (defs === undefined) return null
  const names = new Set(recipe.policies.flatMap((e) => e.split(',').map((s) => s.trim())))
  const used = Object.entries(defs).filter(([k]) => names.has(k))
  return used.length ? Object.fromEntries(used) : null
}

/**
 * sha256 over the canonical JSON of the recipe and the scenario text it runs, and of the sites
 * of the notebook's policies it names (only when it names one: other hashes are unchanged), so
 * a changed definition makes its results stale.
 */
export function recipeHash(recipe: Recipe, scenarioText: string, defs?: PolicyDefs): string {
  const used = usedPolicyDefs(recipe, defs)
  return createHash('sha256')
    .update(
      canonicalJson({
        recipe: orderedRecipe(recipe),
        scenario: scenarioText,
        ...(used ? { policies: used } : {}),
      }),
    )
    .digest('hex')
}

/** The result shown for a cell: the latest pinned one, else the latest. */
export function referenceResult(cell: ExperimentCell): RecordedResult | null {
  return cell.results[referenceIndex(cell)] ?? null
}

/**
 * Status of a recorded result (by default the cell's reference result) against today's scenario
 * text and engine: a changed recipe or scenario wins over a changed engine. Null when the cell
 * has no result.
 */
export function resultStatus(
  cell: ExperimentCell,
  scenarioText: string,
  engineVersion: string,
  result: RecordedResult | null = referenceResult(cell),
  /** The notebook's `policies:`. */
  defs?: PolicyDefs,
): ResultStatus | null {
  if (!result) return null
  if (result.recipe_hash !== recipeHash(cell.recipe, scenarioText, defs)) return 'stale-recipe'
  if (result.engine !== engineVersion) return 'stale-engine'
  return 'current'
}

/**
 * The status of every recorded result of a cell, hashing the recipe and scenario once (a cell
 * may hold many results of a large scenario: linear in the text, not in results x text).
 */
export function resultStatuses(
  cell: ExperimentCell,
  scenarioText: string,
  engineVersion: string,
  /** The notebook's `policies:`. */
  defs?: PolicyDefs,
): ResultStatus[] {
  if (cell.results.length === 0) return []
  const h = recipeHash(cell.recipe, scenarioText, defs)
  return cell.results.map((r) =>
    r.recipe_hash !== h ? 'stale-recipe' : r.engine !== engineVersion ? 'stale-engine' : 'current',
  )
}

/** A run's result in the notebook's recorded form (no traces). */
export function recordResult(
  run: RunResult,
  recipe: Recipe,
  scenarioText: string,
  at: Date = new Date(),
  pinned = false,
  /** The notebook's `policies:`. */
  defs?: PolicyDefs,
): RecordedResult {
  return recordedResult(run, recipeHash(recipe, scenarioText, defs), at, pinned)
}

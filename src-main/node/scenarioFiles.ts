/**
 * Scenario files: YAML text -> validated Scenario, with every problem located at
 * file:line:column. The engine validates plain data and reports paths; this module maps the
 * paths back to source positions through the YAML document's node ranges.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  Scalar,
  visit,
  type Document,
  type Node,
} from 'yaml'
import {
  runExecution,
  ScenarioError,
  ScheduleError,
  scriptedChooser,
  validateScenario,
  type Policy,
  type Scenario,
  type ScenarioIssue,
} from '../engine'

export interface LocatedIssue {
  readonly file: string
  readonly line: number
  readonly column: number
  /** Length of the offending text, when known (for editor markers). */
  readonly length: number
  readonly message: string
}

export class ScenarioLoadError extends Error {
  constructor(readonly issues: readonly LocatedIssue[]) {
    super(issues.map(formatIssue).join('\n'))
    this.name = 'ScenarioLoadError'
  }
}

export function formatIssue(i: LocatedIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.message}`
}

/** Limits on scenario input, each refused with a located error. */
export const INPUT_LIMITS = {
  /** Characters in a scenario file (the LabApi accepts no more in a request either). */
  chars: 1_000_000,
  /** Problems reported for one file; the rest are counted in a last line. */
  issues: 50,
} as const

/**
 * One printable line: control characters and line or paragraph separators as escapes (an
 * error is one line of `file:line:column: message`), long quoted input cut to its start.
 */
export function cleanMessage(m: string): string {
  const oneLine = m.replace(
    // eslint-disable-next-line no-control-regex -- control characters are what this escapes
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) =>
      c === '\t'
        ? '\\t'
        : c === '\n'
          ? '\\n'
          : c === '\r'
            ? '\\r'
            : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
  const cut = oneLine.replace(/'([^']{60})[^']{20,}'/g, (_all, head: string) => `'${head}…'`)
  return cut.length > 2_000 ? `${cut.slice(0, 2_000)}… (${cut.length - 2_000} more characters)` : cut
}

/** At most INPUT_LIMITS.issues problems, with a last one saying how many more there are. */
/**
 * At most INPUT_LIMITS.issues problems, each one printable line, then one saying how many more
 * there are (of `total`, when only some were located). Notebook problems go through it too.
 */
export function capped<T extends { readonly message: string }>(
  issues: readonly T[],
  total: number = issues.length,
): T[] {
  const out = issues.slice(0, INPUT_LIMITS.issues).map((i) => ({ ...i, message: cleanMessage(i.message) }))
  const more = total - out.length
  if (more > 0) {
    const next = issues[out.length] ?? issues[issues.length - 1]!
    out.push({ ...next, message: `... and ${more} more problems (fix the ones above first)` })
  }
  return out
}

/** Finds the node at `path`, or the deepest existing ancestor. */
function locate(doc: Document, issue: ScenarioIssue): { node: Node | null; key: boolean; exact: boolean } {
  let node: unknown = doc.contents
  let exact = true
  const p = issue.path
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]!
    const last = i === p.length - 1
    if (isMap(node)) {
      const pair = node.items.find(
        (it) => isPair(it) && (isScalar(it.key) ? String(it.key.value) : String(it.key)) === String(seg),
      )
      if (!pair) {
        exact = false
        break
      }
      if (last && issue.at === 'key') return { node: pair.key as Node, key: true, exact: true }
      if (pair.value === null || pair.value === undefined)
        return { node: pair.key as Node, key: true, exact: false }
      node = pair.value
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg] !== undefined) {
      node = node.items[seg]
    } else {
      exact = false
      break
    }
  }
  return { node: (node as Node) ?? null, key: false, exact }
}

function positionOf(
  text: string,
  lc: LineCounter,
  doc: Document,
  issue: ScenarioIssue,
): { line: number; col: number; length: number } {
  const { node, exact } = locate(doc, issue)
  const range = node?.range
  if (!range) return { line: 1, col: 1, length: 1 }
  let offset = range[0]
  let length = Math.max(1, range[1] - range[0])
  if (exact && issue.offset !== null && isScalar(node) && typeof node.value === 'string') {
    const t = node.type
    if (t === Scalar.PLAIN || t === Scalar.QUOTE_DOUBLE || t === Scalar.QUOTE_SINGLE) {
      const quote = t === Scalar.PLAIN ? 0 : 1
      // Plain and simply-quoted scalars on one line map 1:1 onto the source.
      const src = text.slice(range[0] + quote, range[0] + quote + node.value.length)
      if (src === node.value) {
        offset = range[0] + quote + issue.offset
        length = issue.length ?? 1
      }
    }
  }
  const pos = lc.linePos(offset)
  return { line: pos.line, col: pos.col, length }
}

/** A YAML parser error as one line; the parser's stack overflow on deep nesting said plainly. */
export function yamlMessage(m: string): string {
  if (/Maximum call stack size exceeded/.test(m))
    return 'YAML: nested too deeply for the parser (a scenario needs only a few levels)'
  return `YAML: ${m.split('\n')[0]}`
}

/** Keys given twice in one mapping, each located at its second occurrence (one pass per map). */
export function duplicateKeys(doc: Document, lc: LineCounter, file: string): LocatedIssue[] {
  const out: LocatedIssue[] = []
  visit(doc, {
    Map(_key, node) {
      const seen = new Map<string, number>()
      for (const it of node.items) {
        if (!isScalar(it.key)) continue
        const k = String(it.key.value)
        const start = it.key.range?.[0] ?? 0
        const first = seen.get(k)
        if (first === undefined) {
          seen.set(k, start)
          continue
        }
        const pos = lc.linePos(start)
        out.push({
          file,
          line: pos.line,
          column: pos.col,
          length: Math.max(1, k.length),
          message: `YAML: key '${k}' is given twice in this mapping (first on line ${lc.linePos(first).line})`,
        })
      }
    },
  })
  return out
}

/** Parses and validates scenario text. Throws ScenarioLoadError with every problem located. */
export function loadScenarioText(text: string, file: string): Scenario {
  if (text.length > INPUT_LIMITS.chars)
    throw new ScenarioLoadError([
      {
        file,
        line: 1,
        column: 1,
        length: 1,
        message: `the file has ${text.length.toLocaleString('en-US')} characters; a scenario may have at most ${INPUT_LIMITS.chars.toLocaleString('en-US')}`,
      },
    ])
  const lc = new LineCounter()
  // Duplicate keys are found below in one pass: the yaml package's own check compares every
  // key with every other (20,000 keys took 12 s).
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false })
  if (doc.errors.length > 0) {
    throw new ScenarioLoadError(
      capped(
        doc.errors.map((e) => {
          const pos = lc.linePos(e.pos[0])
          return {
            file,
            line: pos.line,
            column: pos.col,
            length: 1,
            message: yamlMessage(e.message),
          }
        }),
      ),
    )
  }
  const dups = duplicateKeys(doc, lc, file)
  if (dups.length > 0) throw new ScenarioLoadError(capped(dups))
  // YAML aliases (`*name`) are refused: a scenario is short enough to write out, and an alias
  // either points nowhere (the yaml package then throws from toJS) or multiplies the input
  // (a 100-byte "billion laughs"). Anchors alone are harmless.
  const aliases: LocatedIssue[] = []
  visit(doc, {
    Alias(_key, node) {
      const start = node.range?.[0] ?? 0
      const pos = lc.linePos(start)
      aliases.push({
        file,
        line: pos.line,
        column: pos.col,
        length: Math.max(1, (node.range?.[1] ?? start + 1) - start),
        message: `YAML: aliases are not supported in scenarios (found *${node.source.slice(0, 40)}); write the value out`,
      })
    },
  })
  if (aliases.length > 0) throw new ScenarioLoadError(capped(aliases))
  try {
    return validateScenario(doc.toJS())
  } catch (err) {
    if (!(err instanceof ScenarioError)) throw err
    // Locate only what is shown (each lookup walks the document).
    const shown = err.issues.slice(0, INPUT_LIMITS.issues + 1)
    const issues = shown.map((i) => {
      const { line, col, length } = positionOf(text, lc, doc, i)
      return { file, line, column: col, length, message: i.message }
    })
    issues.sort((a, b) => a.line - b.line || a.column - b.column)
    throw new ScenarioLoadError(capped(issues, err.issues.length))
  }
}

export function loadScenarioFile(file: string): Scenario {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ScenarioLoadError([
      { file, line: 1, column: 1, length: 1, message: `cannot read: ${(err as Error).message}` },
    ])
  }
  return loadScenarioText(text, file)
}

/** Expands files and directories (recursively) into scenario files (*.yaml, *.yml), sorted. */
export function expandScenarioPaths(paths: readonly string[]): string[] {
  const out: string[] = []
  const walk = (p: string): void => {
    let st
    try {
      st = statSync(p)
    } catch {
      throw new ScenarioLoadError([
        { file: p, line: 1, column: 1, length: 1, message: 'no such file or directory' },
      ])
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(p).sort()) {
        const q = path.join(p, e)
        if (statSync(q).isDirectory() || /\.ya?ml$/.test(e)) walk(q)
      }
    } else out.push(p)
  }
  paths.forEach(walk)
  return out
}

/** A step of a scripted schedule that cannot be followed (a thread finished or blocked there). */
export interface UnfollowableStep {
  readonly index: number
  readonly policy: string
  readonly message: string
}

/**
 * The first step of a scripted schedule (thread indices) that cannot be followed under one of
 * `policies`, or null. Whether a thread is blocked or finished at a step depends on the policy
 * (the notifier calls are steps), so each policy runs the schedule once.
 */
export function unfollowableStep(
  sc: Scenario,
  policies: readonly Policy[],
  schedule: readonly number[],
  maxSteps: number,
): UnfollowableStep | null {
  for (const p of policies) {
    try {
      runExecution(sc, p, scriptedChooser(schedule), {
        tracing: false,
        maxSteps: Math.max(maxSteps, schedule.length + 1),
      })
    } catch (e) {
      if (e instanceof ScheduleError) return { index: e.index, policy: p.name, message: e.message }
      throw e
    }
  }
  return null
}

/** The located error for a step of the file's own `explore.schedule` that cannot be followed. */
export function scheduleStepIssue(text: string, file: string, u: UnfollowableStep): LocatedIssue {
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false })
  const issue: ScenarioIssue = {
    path: ['explore', 'schedule', u.index],
    message: '',
    at: 'value',
    offset: null,
    length: null,
  }
  const { line, col, length } = positionOf(text, lc, doc, issue)
  return {
    file,
    line,
    column: col,
    length,
    message: cleanMessage(
      `explore.schedule step ${u.index} cannot be followed under ${u.policy}: ${u.message}`,
    ),
  }
}

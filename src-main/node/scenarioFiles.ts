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
import { ScenarioError, validateScenario, type Scenario, type ScenarioIssue } from '../engine'

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

/** Parses and validates scenario text. Throws ScenarioLoadError with every problem located. */
export function loadScenarioText(text: string, file: string): Scenario {
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ScenarioLoadError(
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0])
        return {
          file,
          line: pos.line,
          column: pos.col,
          length: 1,
          message: `YAML: ${e.message.split('\n')[0]}`,
        }
      }),
    )
  }
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
  if (aliases.length > 0) throw new ScenarioLoadError(aliases)
  try {
    return validateScenario(doc.toJS())
  } catch (err) {
    if (!(err instanceof ScenarioError)) throw err
    const issues = err.issues.map((i) => {
      const { line, col, length } = positionOf(text, lc, doc, i)
      return { file, line, column: col, length, message: i.message }
    })
    issues.sort((a, b) => a.line - b.line || a.column - b.column)
    throw new ScenarioLoadError(issues)
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

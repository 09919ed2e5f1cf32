/**
 * Errors that cross the LabApi boundary as bad input (HTTP 400), and the request helpers that
 * raise them: shared by the lab service and the engine tasks it runs in worker threads.
 */
import type { ApiError, ValidationIssue } from '../api/labApi'
import { parsePolicyList, type Policy, type Scenario } from '../engine'
import { loadScenarioText, ScenarioLoadError } from './scenarioFiles'

/** An error that crosses the API boundary: a message and, for bad scenario text, where. */
export class LabApiError extends Error implements ApiError {
  constructor(
    message: string,
    readonly issues?: readonly ValidationIssue[],
  ) {
    super(message)
    this.name = 'LabApiError'
  }
}

export const toIssues = (e: ScenarioLoadError): ValidationIssue[] =>
  e.issues.map((i) => ({ line: i.line, column: i.column, length: i.length, message: i.message }))

export function loadOrReject(text: string, file: string | null): Scenario {
  try {
    return loadScenarioText(text, file ?? '<unsaved>')
  } catch (e) {
    if (!(e instanceof ScenarioLoadError)) throw e
    const issues = toIssues(e)
    const first = issues[0]
    const head = first ? `line ${first.line}, column ${first.column}: ${first.message}` : 'invalid scenario'
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problems)` : ''
    throw new LabApiError(`the scenario is invalid: ${head}${more}`, issues)
  }
}

export function policiesOf(entries: readonly string[]): Policy[] {
  const out: Policy[] = []
  for (const entry of entries) {
    const ps = parsePolicyList(entry)
    if (typeof ps === 'string') throw new LabApiError(`policies: ${ps}`)
    for (const p of ps) if (!out.some((q) => q.name === p.name)) out.push(p)
  }
  return out
}

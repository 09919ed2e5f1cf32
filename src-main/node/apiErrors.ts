/**
 * Errors that cross the LabApi boundary as bad input (HTTP 400), and the request helpers that
 * raise them: shared by the lab service and the engine tasks it runs in worker threads.
 */
import type { ApiError, ValidationIssue } from '../api/labApi'
import { definePolicies, mergePolicyDefs, parsePolicyList, type Policy, type Scenario } from '../engine'
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

/**
 * Loads a request's scenario text; `policyDefs` (a notebook's `policies:`) adds policies by
 * name to those the scenario defines.
 */
export function loadOrReject(
  text: string,
  file: string | null,
  policyDefs?: Readonly<Record<string, readonly string[]>>,
): Scenario {
  let sc: Scenario
  try {
    sc = loadScenarioText(text, file ?? '<unsaved>')
  } catch (e) {
    if (!(e instanceof ScenarioLoadError)) throw e
    const issues = toIssues(e)
    const first = issues[0]
    const head = first ? `line ${first.line}, column ${first.column}: ${first.message}` : 'invalid scenario'
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problems)` : ''
    throw new LabApiError(`the scenario is invalid: ${head}${more}`, issues)
  }
  return policyDefs === undefined ? sc : withPolicyDefs(sc, policyDefs)
}

/** The scenario with policies defined outside it (a notebook's `policies:`) added. */
export function withPolicyDefs(sc: Scenario, defs: Readonly<Record<string, readonly string[]>>): Scenario {
  const d = definePolicies(defs)
  if (d.problems.length > 0) throw new LabApiError(`policyDefs: ${d.problems.join('; ')}`)
  if (d.policies.length === 0) return sc
  const merged = mergePolicyDefs(sc.policies, d.policies)
  if (typeof merged === 'string') throw new LabApiError(`policyDefs: ${merged}`)
  return { ...sc, policies: merged }
}

/** The policies of a request, resolved as the scenario resolves names (its `policies:` too). */
export function policiesOf(entries: readonly string[], sc: Scenario): Policy[] {
  const out: Policy[] = []
  for (const entry of entries) {
    const ps = parsePolicyList(entry, sc.policies)
    if (typeof ps === 'string') throw new LabApiError(`policies: ${ps}`)
    for (const p of ps) if (!out.some((q) => q.name === p.name)) out.push(p)
  }
  return out
}

/**
 * Editing an experiment cell in the notebook view: the form's draft (strings and numbers as the
 * inputs hold them) and its conversion back to a cell, with every problem named by field. The
 * cell's results are kept: whether they still match the edited recipe is the services' call
 * (notebookStatus), since only they hash recipes.
 */
import type { ExperimentCell, Recipe } from '../../../src-main/api/notebook'
import { formatSchedule, parsePolicyList, parseSchedule, type PolicyNames } from './policies'

export interface CellDraft {
  title: string
  policies: string
  mode: Recipe['mode']
  seed: number
  executions: number
  maxStates: number
  /** Seconds; 0 means no timeout. */
  timeoutS: number
  schedule: string
  source: 'inline' | 'path'
  inline: string
  path: string
}

export function draftOf(cell: ExperimentCell): CellDraft {
  const r = cell.recipe
  return {
    title: cell.title,
    policies: r.policies.join(', '),
    mode: r.mode,
    seed: r.seed,
    executions: r.executions,
    maxStates: r.max_states,
    timeoutS: r.timeout_ms === null ? 0 : r.timeout_ms / 1000,
    schedule: formatSchedule(r.schedule),
    source: 'inline' in cell.scenario ? 'inline' : 'path',
    inline: 'inline' in cell.scenario ? cell.scenario.inline : '',
    path: 'path' in cell.scenario ? cell.scenario.path : '',
  }
}

export interface DraftProblem {
  readonly field: keyof CellDraft
  readonly message: string
}

const MAX_SEED = 2 ** 31 - 1

/** The cell with the draft applied, or the problems that stop it (nothing is changed then). */
export function applyDraft(
  cell: ExperimentCell,
  d: CellDraft,
  presets: readonly string[],
  variants: readonly string[],
  /** Sites and names beyond the presets (the notebook's and the cell's own policies). */
  names: PolicyNames = {},
): { cell: ExperimentCell; problems: [] } | { cell: null; problems: DraftProblem[] } {
  const problems: DraftProblem[] = []
  const bad = (field: keyof CellDraft, message: string) => problems.push({ field, message })
  const pl = parsePolicyList(d.policies, presets, variants, names)
  if (pl.error) bad('policies', pl.error)
  else if (pl.policies.length === 0) bad('policies', 'name at least one policy, e.g. start-end, arch-hook')
  else if (pl.policies.length > 32) bad('policies', 'at most 32 policies')
  const int = (field: keyof CellDraft, v: number, min: number, max: number, what: string) => {
    if (!Number.isInteger(v) || v < min || v > max)
      bad(field, `${what} must be a whole number from ${min} to ${max}`)
  }
  int('seed', d.seed, 0, MAX_SEED, 'the seed')
  int('executions', d.executions, 1, 1_000_000, 'executions')
  int('maxStates', d.maxStates, 1, 50_000_000, 'max states')
  if (!(d.timeoutS >= 0 && d.timeoutS <= 86_400))
    bad('timeoutS', 'the timeout must be 0 (none) to 86400 seconds')
  const schedule = parseSchedule(d.schedule)
  if (d.mode === 'scripted' && schedule.length === 0)
    bad('schedule', 'scripted mode needs a schedule: thread names in order')
  if (d.source === 'path') {
    const p = d.path.trim()
    if (p === '') bad('path', 'give the scenario file, relative to the notebook')
    else if (!/\.ya?ml$/.test(p)) bad('path', `'${p}' is not a .yaml file`)
    else if (p.includes('\0')) bad('path', 'the path contains a NUL character')
  } else if (d.inline.trim() === '') bad('inline', 'the inline scenario is empty')
  if (d.title.length > 500) bad('title', 'the title is longer than 500 characters')
  if (problems.length > 0) return { cell: null, problems }
  const timeoutMs = d.timeoutS > 0 ? Math.round(d.timeoutS * 1000) : null
  return {
    cell: {
      ...cell,
      title: d.title,
      scenario: d.source === 'path' ? { path: d.path.trim() } : { inline: d.inline },
      recipe: {
        policies: pl.policies,
        mode: d.mode,
        seed: d.seed,
        executions: d.executions,
        schedule: d.mode === 'scripted' ? schedule : [],
        max_states: d.maxStates,
        timeout_ms: timeoutMs,
      },
    },
    problems: [],
  }
}

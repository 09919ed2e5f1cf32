/** `explore:`: how the file asks to be explored (mode, seed, executions, schedule, budget). */
import { checkKeys, int, isObj, Issues, oneOf, typeName } from './common'
import type { ExploreDecl } from '../types'

/** The keys of `explore:`. */
export const EXPLORE_KEYS = ['mode', 'seed', 'executions', 'schedule', 'max_states'] as const

export function parseExplore(raw: unknown, issues: Issues, threadNames: Set<string>): ExploreDecl {
  const none: ExploreDecl = { mode: null, seed: null, executions: null, schedule: null, maxStates: null }
  if (raw === undefined) return none
  if (!isObj(raw)) {
    issues.add(
      ['explore'],
      `explore must be a mapping such as { mode: random, seed: 1, executions: 100 }; found ${typeName(raw)}`,
    )
    return none
  }
  checkKeys(raw, EXPLORE_KEYS, ['explore'], issues, 'explore')
  const mode =
    raw.mode === undefined
      ? null
      : oneOf(
          raw.mode,
          ['exhaustive', 'random', 'scripted'] as const,
          ['explore', 'mode'],
          issues,
          'explore.mode',
        )
  const seed = raw.seed === undefined ? null : int(raw.seed, ['explore', 'seed'], issues, 'explore.seed', 0)
  const executions =
    raw.executions === undefined
      ? null
      : int(raw.executions, ['explore', 'executions'], issues, 'explore.executions', 1)
  const maxStates =
    raw.max_states === undefined
      ? null
      : int(raw.max_states, ['explore', 'max_states'], issues, 'explore.max_states', 1)
  let schedule: string[] | null = null
  if (raw.schedule !== undefined) {
    const s = raw.schedule
    const list = typeof s === 'string' ? s.split(/[\s,]+/).filter(Boolean) : Array.isArray(s) ? s : null
    if (!list || !list.every((x) => typeof x === 'string')) {
      issues.add(['explore', 'schedule'], `schedule must be a list of thread names; found ${typeName(s)}`)
    } else {
      list.forEach((n, i) => {
        if (!threadNames.has(n as string))
          issues.add(
            Array.isArray(s) ? ['explore', 'schedule', i] : ['explore', 'schedule'],
            `unknown thread '${n}' in schedule`,
          )
      })
      schedule = list as string[]
    }
  }
  if (mode === 'scripted' && (schedule === null || schedule.length === 0) && raw.schedule === undefined)
    issues.add(
      ['explore', 'mode'],
      'mode: scripted needs a schedule: explore: { mode: scripted, schedule: [C0, D0, ...] }',
    )
  else if (mode === 'scripted' && schedule !== null && schedule.length === 0)
    issues.add(['explore', 'schedule'], 'mode: scripted needs a schedule with at least one step')
  return { mode, seed, executions, schedule, maxStates }
}

/** Which policies to run, how to explore, and the budgets. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { RunRequest } from '../../../src-main/api/labApi'
import { parsePolicyList, parseSchedule, sortPolicies, type PolicyNames } from '../logic/policies'
import { useEngineStore } from './engineStore'
import { useNotebookStore } from './notebookStore'
import { usePlacementStore } from './placementStore'

export type Mode = RunRequest['mode']

export const usePolicyStore = defineStore('policy', () => {
  const engine = useEngineStore()
  const presets = computed(() => engine.info?.presets.map((p) => p.name) ?? [])
  const variants = computed(() => engine.info?.variants.map((v) => v.name) ?? [])
  /** The names the open scenario's expect block uses (policies it may define in `policies:`). */
  const scenarioPolicies = ref<readonly string[]>([])
  /** The site grid's placements: names a run may use, sent with it as definitions. */
  const placements = usePlacementStore()
  /**
   * The open notebook's `policies:`: names a run may use too, sent with it as definitions. The
   * grid adopts them when the notebook opens, but one deleted from the grid since, or kept out
   * by a grid placement of the same name, is still the notebook's.
   */
  const notebook = useNotebookStore()
  const notebookDefs = computed(() => notebook.notebook?.policies ?? {})
  const names = computed((): PolicyNames => ({
    sites: engine.info?.sites?.map((s) => s.name),
    namedSites: engine.info?.namedSites,
    known: [...scenarioPolicies.value, ...placements.names, ...Object.keys(notebookDefs.value)],
  }))

  /**
   * The definitions of the named policies a run sends: the grid's placements, and the open
   * notebook's policies the grid does not hold (the grid's wins a name both have, as the
   * notebook view says). Compare, distinguish and replays of the result send the same.
   */
  function defsFor(policies: readonly string[]): Record<string, string[]> {
    const out: Record<string, string[]> = {}
    for (const n of policies) {
      const list = notebookDefs.value[n]
      if (list !== undefined) out[n] = [...list]
    }
    return { ...out, ...placements.defsFor(policies) }
  }

  const selected = ref<string[]>(['start-end', 'invalidate-range', 'arch-hook'])
  const mode = ref<Mode>('exhaustive')
  const seed = ref(1)
  const executions = ref(500)
  const scheduleText = ref('')
  const maxStates = ref(2_000_000)
  /** Seconds; 0 means no timeout. */
  const timeoutS = ref(60)
  /**
   * Exhaustive runs: stop each policy at its first violation (`mnlab run --first`). Off, the
   * first counterexample still shows as soon as it is found while exploration goes on.
   */
  const stopAtFirst = ref(false)

  const listText = computed(() => selected.value.join(', '))
  const schedule = computed(() => parseSchedule(scheduleText.value))

  function isSelected(name: string): boolean {
    return selected.value.includes(name)
  }

  function set(name: string, on: boolean): void {
    const has = selected.value.includes(name)
    if (on && !has) selected.value = sortPolicies([...selected.value, name], presets.value)
    if (!on && has) selected.value = selected.value.filter((p) => p !== name)
  }

  /** A placement was renamed: the selection follows it. */
  function rename(from: string, to: string): void {
    selected.value = selected.value.map((p) => (p === from ? to : p))
  }

  /** Replaces the selection from typed text; returns an error message or null. */
  function setFromText(t: string): string | null {
    const r = parsePolicyList(t, presets.value, variants.value, names.value)
    if (r.error) return r.error
    selected.value = r.policies
    return null
  }

  /** Selects the policies a scenario's expect block names (when it names any). */
  function selectFromExpect(policies: readonly string[]): void {
    scenarioPolicies.value = [...policies]
    const r = parsePolicyList(policies.join(','), presets.value, variants.value, names.value)
    if (!r.error && r.policies.length > 0) selected.value = r.policies
  }

  /** Problems that would make the service reject the request, shown before Run. */
  const problems = computed(() => {
    const out: string[] = []
    if (selected.value.length === 0) out.push('Select at least one policy.')
    if (mode.value === 'scripted' && schedule.value.length === 0) out.push('Scripted mode needs a schedule.')
    if (!Number.isInteger(seed.value) || seed.value < 0) out.push('Seed must be a non-negative integer.')
    if (!Number.isInteger(executions.value) || executions.value < 1)
      out.push('Executions must be at least 1.')
    if (!Number.isInteger(maxStates.value) || maxStates.value < 1) out.push('Max states must be at least 1.')
    if (!(timeoutS.value >= 0)) out.push('Timeout must be 0 (none) or more seconds.')
    return out
  })

  function request(text: string, file: string | null): RunRequest {
    const defs = defsFor(selected.value)
    return {
      text,
      file,
      policies: [...selected.value],
      // The placements it runs travel with it: compare, distinguish and replays reuse them.
      ...(Object.keys(defs).length > 0 ? { policyDefs: defs } : {}),
      mode: mode.value,
      seed: seed.value,
      executions: executions.value,
      schedule: mode.value === 'scripted' ? schedule.value : [],
      maxStates: maxStates.value,
      timeoutMs: timeoutS.value > 0 ? Math.round(timeoutS.value * 1000) : null,
      first: mode.value === 'exhaustive' && stopAtFirst.value,
    }
  }

  return {
    presets,
    variants,
    names,
    selected,
    mode,
    seed,
    executions,
    scheduleText,
    maxStates,
    timeoutS,
    stopAtFirst,
    listText,
    schedule,
    problems,
    isSelected,
    set,
    rename,
    setFromText,
    selectFromExpect,
    request,
  }
})

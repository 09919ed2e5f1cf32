/**
 * Test helper: a scenario written inline in a test as indented YAML, loaded as `mnlab` loads a
 * file (the engine's test kit, engine/kernel/traceTestkit.ts, stays pure and cannot parse YAML).
 */
import { dedent } from '../engine/kernel/traceTestkit'
import type { Scenario } from '../engine/types'
import { loadScenarioText } from './scenarioFiles'

/** `yaml` with its common indentation stripped, loaded under the name `file` (its errors say it). */
export function scenarioOf(yaml: string, file: string): Scenario {
  return loadScenarioText(dedent(yaml), file)
}

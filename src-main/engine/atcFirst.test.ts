/**
 * An atc-first driver's second command (the IOTLB invalidation) runs as its own step, and the
 * kernel code after every notifier call waits for it (kernel/proc.ts afterNotifier); step()
 * throws a model bug when a step changes the machine after such a command is owed. Run every
 * catalogue scenario with its hw-walkers turned into ATS devices with atc-first drivers, under
 * every preset (and the variants that invalidate from other places): no step may break the rule.
 */
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../node/scenarioFiles'
import { makePolicy, PRESETS, type Variant } from './policy'
import { defaultRunOptions, runPolicy } from './run'
import type { Scenario } from './types'

const DIR = path.join(__dirname, '../../scenarios')

describe('atc-first drivers: kernel work after a notifier call waits for the second command', () => {
  it('holds for every catalogue scenario, preset and invalidating variant (bounded exploration)', () => {
    let runs = 0
    for (const f of readdirSync(DIR).filter((x) => x.endsWith('.yaml'))) {
      const sc0 = loadScenarioText(readFileSync(path.join(DIR, f), 'utf8'), f)
      if (!sc0.secondaries.some((d) => d.type === 'hw-walker')) continue
      const sc: Scenario = {
        ...sc0,
        secondaries: sc0.secondaries.map((d) =>
          d.type === 'hw-walker' ? { ...d, ats: true, atcOrder: 'atc-first' as const, btm: false } : d,
        ),
      }
      for (const p of PRESETS)
        for (const v of [[], ['pri-flush'], ['kernel-notifier']] as Variant[][]) {
          const o = defaultRunOptions(sc)
          expect(
            () => runPolicy(sc, makePolicy(p, v), { ...o, budget: { ...o.budget, maxStates: 5_000 } }),
            `${f} under ${makePolicy(p, v).name}`,
          ).not.toThrow()
          runs++
        }
    }
    expect(runs).toBeGreaterThan(100)
  }, 240_000) // the whole catalogue, bounded: took 74 s at a load of 18 on the 2 cores
})

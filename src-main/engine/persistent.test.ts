/**
 * Persistent sets (persistent.ts) on shapes the generated scenarios of properties.test.ts do
 * not reach: several device threads (reduced states where only devices run), a livelock (the
 * reduced graph has a cycle: the run must fall back), and the futures' page sets.
 */
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioFile } from '../node/scenarioFiles'
import { scenarioOf } from '../node/scenarioTestkit'
import { DEFAULT_BUDGET, exploreExhaustive, hasCycle, type Budget } from './explore'
import { makePolicy, type Preset } from './policy'
import { Futures } from './persistent'

const load = (yaml: string) => scenarioOf(yaml, 'persistent.test.yaml')
const BUDGET: Budget = { maxStates: 500_000, maxSteps: 10_000 }
const PRESETS: Preset[] = ['start-end', 'invalidate-range', 'arch-hook']

function compare(yaml: string) {
  const sc = load(yaml)
  return PRESETS.map((p) => {
    const policy = makePolicy(p)
    const plain = exploreExhaustive(sc, policy, { ...BUDGET, checkFutures: true })
    const pers = exploreExhaustive(sc, policy, { ...BUDGET, persistent: true })
    const inv = (o: typeof plain) => o.found.map((f) => f.invariant).sort()
    return { p, plain, pers, same: inv(plain).join() === inv(pers).join(), inv: inv(plain) }
  })
}

describe('persistent sets', () => {
  it('keep the verdicts with two devices on independent pages of a sw-mirror, and cut states', () => {
    const rows = compare(`
      title: two devices read independent pages of a sw-mirror
      arch: x86_64
      pages:
        A: { value: 0, prot: rw, cow: true }
        B: { value: 0, prot: rw, cow: true }
      secondary:
        - { name: kvm, type: sw-mirror, cached: [A, B] }
      cpus:
        C0: [cow_fault A]
        C1: [write B 1]
      devices:
        D0: { via: kvm, ops: [read A -> r0] }
        D1: { via: kvm, ops: [read B -> r1] }
    `)
    for (const r of rows) {
      expect(r.plain.complete && r.pers.complete, r.p).toBe(true)
      expect(r.same, r.p).toBe(true)
      expect(r.pers.reduction, r.p).toMatch(/^persistent sets: [\d,]+ of/)
    }
    // The reduction is real on this shape: fewer states than the unreduced explorer.
    expect(rows.some((r) => r.pers.states < r.plain.states)).toBe(true)
  })

  it('are set aside when the reduced graph has a cycle, and the livelock is still found', () => {
    // upgrade-loop.smmu-no-btm.yaml with an independent CPU thread, so that some states are
    // reduced: the SMMU's fault-and-retry loop is a cycle.
    const rows = compare(`
      title: the SMMU upgrade loop beside an independent write
      arch: arm64
      pages:
        P: { value: 0, prot: rw, mapped: ro }
        Q: { value: 0, prot: rw }
      secondary:
        - { name: smmu, type: hw-walker, btm: false, cached: [P] }
      cpus:
        C0: [write_fault P]
        C1: [write Q 1]
      devices:
        D0: { via: smmu, ops: [write P 7] }
    `)
    for (const r of rows) expect(r.same, r.p).toBe(true)
    // Some preset livelocks here (the v6.6 upgrade loop), and that run fell back.
    const looping = rows.filter((r) => r.inv.includes('progress'))
    expect(looping.length).toBeGreaterThan(0)
    for (const r of looping) {
      expect(r.pers.reduction ?? '', r.p).toMatch(/set aside: the reduced graph/)
      expect(r.pers.states, r.p).toBe(r.plain.states)
    }
  })
})

describe('hasCycle', () => {
  it('finds a cycle, and none in a DAG with shared successors', () => {
    expect(hasCycle(3, [0, 1, 2], [1, 2, 0])).toBe(true)
    expect(hasCycle(1, [0], [0])).toBe(true)
    expect(hasCycle(4, [0, 0, 1, 2], [1, 2, 3, 3])).toBe(false)
    expect(hasCycle(2, [], [])).toBe(false)
  })
})

describe('Futures', () => {
  it('gives a read, write or fault its page, other ops every page, and a fork or KSM scenario every page', () => {
    const sc = load(`
      title: futures
      arch: x86_64
      pages:
        A: { value: 0, prot: rw }
        B: { value: 0, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        C0: [write A 1, munmap B]
        C1: [cow_fault A]
      devices:
        D0: { via: iommu, ops: [read A -> r0] }
    `)
    const f = new Futures(sc)
    const c0 = sc.threads.findIndex((t) => t.name === 'C0')
    const c1 = sc.threads.findIndex((t) => t.name === 'C1')
    expect([f.hasPage(c0, 1, 0), f.hasPage(c0, 1, 1), f.mayWriteMmap(c0, 1)]).toEqual([true, true, true])
    expect([f.hasPage(c1, 0, 0), f.hasPage(c1, 0, 1), f.mayWriteMmap(c1, 0)]).toEqual([true, false, false])
    expect(f.hasPage(c0, 2, 0)).toBe(false)
    const forked = load(`
      title: futures with fork
      arch: x86_64
      pages:
        A: { value: 0, prot: rw }
        B: { value: 0, prot: rw }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        C0: [fork]
        C1: [write A 1]
      devices:
        D0: { via: iommu, ops: [read A -> r0] }
    `)
    const g = new Futures(forked)
    expect(
      g.hasPage(
        forked.threads.findIndex((t) => t.name === 'C1'),
        0,
        1,
      ),
    ).toBe(true)
  })
})

describe('the catalogue under persistent sets', () => {
  it('every file, every preset: the same violated invariants as the default explorer, with merged steps and with components, every step inside its future', () => {
    const dir = path.resolve(__dirname, '..', '..', 'scenarios')
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'))
    let runs = 0
    const diffs: string[] = []
    for (const f of files) {
      const sc = loadScenarioFile(path.join(dir, f))
      for (const p of PRESETS) {
        const policy = makePolicy(p)
        const base = exploreExhaustive(sc, policy, { ...DEFAULT_BUDGET, checkFutures: true })
        const pers = exploreExhaustive(sc, policy, { ...DEFAULT_BUDGET, persistent: true })
        const merged = exploreExhaustive(sc, policy, { ...DEFAULT_BUDGET, persistent: true, merge: true })
        const comp = exploreExhaustive(sc, policy, { ...DEFAULT_BUDGET, persistent: true, components: true })
        const inv = (o: typeof base) =>
          o.found
            .map((x) => x.invariant)
            .sort()
            .join(',')
        if (inv(base) !== inv(pers) || base.complete !== pers.complete || pers.states > base.states)
          diffs.push(
            `${f} ${p}: [${inv(base)}] ${base.states} states, persistent [${inv(pers)}] ${pers.states}`,
          )
        if (inv(base) !== inv(merged) || base.complete !== merged.complete || merged.states > pers.states)
          diffs.push(
            `${f} ${p}: [${inv(base)}] ${base.states} states, merged [${inv(merged)}] ${merged.states} (persistent ${pers.states})`,
          )
        if (inv(base) !== inv(comp) || base.complete !== comp.complete || comp.states > base.states)
          diffs.push(
            `${f} ${p}: [${inv(base)}] ${base.states} states, components [${inv(comp)}] ${comp.states} (${comp.reduction})`,
          )
        runs++
      }
    }
    expect(diffs).toEqual([])
    expect(runs).toBe(files.length * PRESETS.length)
    expect(files.length).toBeGreaterThan(50)
  }, 240_000)
})

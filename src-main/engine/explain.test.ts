/**
 * Causal explanations (explain.ts): culprit steps computed from the traced execution's events and
 * states, for every invariant and every catalogue scenario picked below, and hookHint on the
 * COW-ordering example (issue 12).
 */
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadScenarioText } from '../node/scenarioFiles'
import { explainExecution, hookHint } from './explain'
import { runExecution, scriptedChooser, type Execution } from './explore'
import { makePolicy, parsePolicy, type Policy } from './policy'
import type { Counterexample, Culprit } from './results'
import { defaultRunOptions, runPolicy, scheduleIndices } from './run'
import type { Scenario } from './types'

const DIR = path.join(__dirname, '../../scenarios')

function load(f: string): Scenario {
  return loadScenarioText(readFileSync(path.join(DIR, f), 'utf8'), f)
}

function replay(sc: Scenario, policy: Policy, names: string): Execution {
  const sched = scheduleIndices(sc, names.split(' '))
  return runExecution(sc, policy, scriptedChooser(sched), { tracing: true, maxSteps: sched.length + 1000 })
}

function roles(cs: readonly Culprit[]): string[] {
  return cs.map((c) => `${c.role}@${c.step} ${c.thread}`)
}

// The start-end counterexample `mnlab run` prints for the COW example.
const COW = 'cow-ordering.invalidate-range-needed.yaml'
const COW_SCHEDULE = 'C0 C0 C0 C0 C1 C2 C2 D1 C0 C0 C1 C1 C1 C1 C1 C1 C2 C2 C2 D0 D0 C0'

describe('forbid: the cause, not the condition', () => {
  const sc = load(COW)
  const ex = replay(sc, makePolicy('start-end'), COW_SCHEDULE)
  const { why, culprits } = explainExecution(sc, makePolicy('start-end'), ex)

  it('names the refill under the PTL, the CPU-only flush, the stale read and the late range_end', () => {
    expect(ex.violations.map((v) => v.invariant)).toEqual(['forbid'])
    expect(roles(culprits)).toEqual([
      'fill@7 D1',
      'pte-change@8 C0',
      'missed-flush@8 C0',
      'pte-change@9 C0',
      'context@19 D0',
      'stale-use@20 D0',
      'context@21 C0',
    ])
    const by = (r: string): Culprit => culprits.find((c) => c.role === r)!
    expect(by('fill').text).toContain('iommu TLB A -> pfn 1 RO, while C0 (cow_fault A) held the PTL')
    expect(by('pte-change').text).toContain('ptep_clear_flush: PTE A: pfn 1 RO dirty -> none')
    expect(by('missed-flush').text).toBe(
      'flush_tlb_page (ptep_clear_flush) flushed only CPU TLBs; iommu TLB kept A -> pfn 1 RO',
    )
    expect(by('stale-use').text).toBe(
      'read A -> r0 = 0 through the stale iommu TLB entry (pfn 1 RO; PTE A maps pfn 3)',
    )
    expect(culprits.at(-1)!.text).toContain('mmu_notifier_invalidate_range_end dropped')
    // r1's read of B was up to date: named, but not as a stale use.
    expect(culprits.find((c) => c.step === 19)!.text).toContain('read B -> r1 = 1')
  })

  it('says it in one line, in time order, instead of restating the condition', () => {
    expect(why).toMatch(/^r1 == 1 && r0 == 0 at the end \(r1 = 1, r0 = 0, r2 = 0\): /)
    const order = [
      'D1 refilled iommu TLB A -> pfn 1 RO at step 7 while C0 (cow_fault A) held the PTL',
      "inside wp_page_copy's range (C0's invalidate_range_start at step 2 .. range_end at step 21), which had dropped it",
      'ptep_clear_flush (step 8) made it stale',
      'flush_tlb_page (ptep_clear_flush) flushed only CPU TLBs (step 8)',
      'D0 read A -> r0 = 0 at step 20 through the stale entry (PTE A maps pfn 3)',
      'mmu_notifier_invalidate_range_end dropped it at step 21, too late',
    ]
    const at = order.map((s) => why.indexOf(s))
    expect(at.every((i) => i >= 0)).toBe(true)
    expect([...at].sort((a, b) => a - b)).toEqual(at)
  })

  it('flags the stale IOTLB row in the steps between the PTE change and the late invalidation', () => {
    expect(ex.records[7]!.stale).toBeUndefined()
    expect(ex.records[8]!.stale).toEqual(['iommu TLB'])
    expect(ex.records[8]!.staleWhy).toEqual(['iommu TLB A -> pfn 1 RO, but PTE A is none'])
    expect(ex.records[9]!.staleWhy).toEqual(['iommu TLB A -> pfn 1 RO, but PTE A maps pfn 3'])
    expect(ex.records[20]!.stale).toEqual(['iommu TLB'])
    expect(ex.records[21]!.stale).toBeUndefined()
  })

  it('with no violation, says so and names no culprit', () => {
    const ok = replay(sc, makePolicy('arch-hook'), COW_SCHEDULE)
    expect(explainExecution(sc, makePolicy('arch-hook'), ok)).toEqual({
      why: 'no violation on this schedule (done)',
      culprits: [],
    })
  })
})

describe('use-after-free: the message, then the entry in step order', () => {
  it('tells the refill, the clear, the flushes that left it, the free and the write', () => {
    const sc = load('munmap-uaf.flush-at-start.yaml')
    const ex = replay(sc, makePolicy('start-end'), 'C0 C0 C0 D0 C0 C0 C0 C0 D0')
    const { why, culprits } = explainExecution(sc, makePolicy('start-end'), ex)
    expect(why.startsWith(`${ex.violations[0]!.message}: `)).toBe(true)
    const order = [
      'D0 refilled iommu TLB P -> pfn 1 RW at step 3 while C0 (munmap P) held the PTL',
      'ptep_get_and_clear_full (step 4) made it stale',
      'mmu_notifier_invalidate_range_end (step 5) left it',
      'tlb_flush (tlb_finish_mmu) flushed only CPU TLBs (step 7)',
      'munmap P returned (step 7)',
      'pfn 1 freed (step 7)',
      'D0 wrote P at step 8 through the stale entry (PTE P is none)',
    ]
    const at = order.map((x) => why.indexOf(x))
    expect(at.every((i) => i >= 0)).toBe(true)
    expect([...at].sort((a, b) => a - b)).toEqual(at)
    expect(roles(culprits)).toEqual([
      'fill@3 D0',
      'pte-change@4 C0',
      'missed-flush@5 C0',
      'missed-flush@7 C0',
      'context@7 C0',
      'context@7 C0',
      'stale-use@8 D0',
    ])
  })
})

describe('a TLB entry filled through a stale walk-cache entry', () => {
  const sc = load('thp-collapse.walk-cache-leaf-only.yaml')
  const ex = replay(sc, makePolicy('start-end'), 'K K K D0 K K K K K D0 K D0')
  const { why, culprits } = explainExecution(sc, makePolicy('start-end'), ex)

  it("names the walk cache's fill, the detach, the leaf-only invalidation and the walk", () => {
    expect(roles(culprits)).toEqual([
      'fill@3 D0',
      'pte-change@4 K',
      'missed-flush@4 K',
      'missed-flush@5 K',
      'stale-use@9 D0',
      'context@10 K',
      'stale-use@11 D0',
    ])
    expect(culprits[0]!.text).toBe('IOMMU page walk: smmu walk cache: PMD -> the PTE table of H')
    expect(culprits.find((c) => c.step === 5)!.text).toContain('leaf-only invalidation')
    expect(culprits.find((c) => c.step === 9)!.text).toContain('through the cached PTE table')
    expect(why).not.toContain('no flush or notifier covering it ran in between')
    const order = [
      "D0 cached the PMD's pointer to the PTE table of H in the smmu walk cache at step 3",
      'pmdp_collapse_flush (step 4) unlinked the table from the PMD',
      'invalidate_range_end (step 5) sent a leaf-only invalidation',
      'D0 walked A through that stale entry at step 9 (finds pfn 1)',
      'pfn 1 freed (step 10)',
      'D0 read A at step 11 through the stale entry',
    ]
    const at = order.map((x) => why.indexOf(x))
    expect(
      at.every((k) => k >= 0),
      why,
    ).toBe(true)
    expect([...at].sort((a, b) => a - b)).toEqual(at)
  })

  it('flags the walk-cache entry stale from the detach', () => {
    expect(ex.records[3]!.stale ?? []).not.toContain('smmu walk cache')
    expect(ex.records[4]!.stale).toContain('smmu walk cache')
    expect(ex.records[4]!.staleWhy).toContain(
      'smmu walk cache PMD -> the PTE table of H, but the PMD no longer links that table (detached, 2 PTEs still present)',
    )
  })

  it('gives the livelock on the emptied table the same walk-cache culprits', () => {
    const loop = replay(sc, makePolicy('start-end'), 'K K K D0 K K K K K K K D0 D0 D0 D0 D0 D0')
    expect(loop.violations.map((v) => v.invariant)).toContain('progress')
    const r = explainExecution(sc, makePolicy('start-end'), loop)
    expect(r.culprits.map((c) => c.role).slice(0, 3)).toEqual(['fill', 'pte-change', 'missed-flush'])
    expect(r.culprits.some((c) => c.role === 'stale-use' && c.text.includes('finds no PTE'))).toBe(true)
    expect(r.why).toContain('sent a leaf-only invalidation')
  })
})

describe('KSM: the why and the fill culprit tell the same story', () => {
  it("names write_protect_page's drop and replace_page's range in both", () => {
    const sc = load('ksm-merge.stale-read-after-free.yaml')
    // ksmd: get_page, trylock_page (try_to_merge_one_page), then write_protect_page's range.
    const ex = replay(
      sc,
      makePolicy('start-end'),
      'ksmd ksmd ksmd ksmd ksmd ksmd ksmd ksmd D0 ksmd ksmd ksmd D0',
    )
    const { why, culprits } = explainExecution(sc, makePolicy('start-end'), ex)
    const ctx = [
      "after write_protect_page's mmu_notifier_invalidate_range_start (step 2) had dropped it",
      "inside replace_page's range (ksmd's invalidate_range_start at step 7 .. range_end at step 11)",
    ]
    const fill = culprits.find((c) => c.role === 'fill')!
    for (const x of ctx) {
      expect(why).toContain(x)
      expect(fill.text).toContain(x)
    }
  })
})

describe('hookHint: what the holding policy did between the fill and the use', () => {
  const sc = load(COW)
  const bad = replay(sc, makePolicy('start-end'), COW_SCHEDULE)
  const violating = {
    policy: 'start-end',
    ex: bad,
    culprits: explainExecution(sc, makePolicy('start-end'), bad).culprits,
  }

  it('names the arch hook under arch-hook and ->invalidate_range under invalidate-range', () => {
    const arch = replay(sc, makePolicy('arch-hook'), COW_SCHEDULE)
    expect(hookHint(sc, violating, { policy: 'arch-hook', ex: arch })).toBe(
      "under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs (ptep_clear_flush, step 8) invalidated A's iommu TLB entry between the fill (step 7) and the read (step 20)",
    )
    const ir = replay(sc, makePolicy('invalidate-range'), COW_SCHEDULE)
    expect(hookHint(sc, violating, { policy: 'invalidate-range', ex: ir })).toContain(
      'under invalidate-range, mmu_notifier_invalidate_range (ptep_clear_flush_notify, step 8)',
    )
  })

  it('names the callback a range_end ran, and the arch hook that ends an upgrade livelock', () => {
    const mu = load('munmap-uaf.flush-at-start.yaml')
    const sched = 'C0 C0 C0 D0 C0 C0 C0 C0 D0'
    const uaf = replay(mu, makePolicy('start-end'), sched)
    const v = {
      policy: 'start-end',
      ex: uaf,
      culprits: explainExecution(mu, makePolicy('start-end'), uaf).culprits,
    }
    expect(
      hookHint(mu, v, { policy: 'invalidate-range', ex: replay(mu, makePolicy('invalidate-range'), sched) }),
    ).toBe(
      "under invalidate-range, mmu_notifier_invalidate_range_end (->invalidate_range (from range_end), step 5) invalidated P's iommu TLB entry between the fill (step 3) and the write (step 8)",
    )
    const up = load('upgrade-loop.smmu-no-btm.yaml')
    const loop = replay(up, makePolicy('start-end'), 'C0 C0 D0 D0 D0 D0')
    expect(loop.outcome).toBe('livelock')
    const lv = {
      policy: 'start-end',
      ex: loop,
      culprits: explainExecution(up, makePolicy('start-end'), loop).culprits,
    }
    expect(
      hookHint(up, lv, { policy: 'arch-hook', ex: replay(up, makePolicy('arch-hook'), 'C0 C0 D0 D0 D0 D0') }),
    ).toBe(
      "under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs (ptep_set_access_flags, step 1) invalidated P's smmu TLB entry that the retries kept faulting on",
    )
  })

  it("names the walk-cache invalidation for a walk through a freed page table, and pri-flush's for a loop", () => {
    const wc = load('munmap-free-pgtables.walk-cache.yaml')
    const sched = 'C0 C0 C0 C0 C0 D0 C0 C0 D0 D0 D0'
    const bad = replay(wc, makePolicy('start-end'), sched)
    const v = {
      policy: 'start-end',
      ex: bad,
      culprits: explainExecution(wc, makePolicy('start-end'), bad).culprits,
    }
    expect(hookHint(wc, v, { policy: 'arch-hook', ex: replay(wc, makePolicy('arch-hook'), sched) })).toBe(
      "under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs (tlb_flush (tlb_finish_mmu), step 7) invalidated the iommu walk cache entry for P's PTE table between the fill (step 5) and the walk (step 10)",
    )
    const up = load('upgrade-loop.variants.yaml')
    const loop = replay(up, makePolicy('start-end'), 'C0 C0 D0 D0 D0 D0')
    const lv = {
      policy: 'start-end',
      ex: loop,
      culprits: explainExecution(up, makePolicy('start-end'), loop).culprits,
    }
    const pri = parsePolicy('start-end+pri-flush') as Policy
    expect(
      hookHint(up, lv, { policy: 'start-end+pri-flush', ex: replay(up, pri, 'C0 C0 D0 D0 D0 D0') }),
    ).toBe(
      "under start-end+pri-flush, pri-flush: invalidate the faulting address before the response (step 5) invalidated P's smmu TLB entry that the retries kept faulting on",
    )
  })

  it('is null when the other run did not remove the entry in between, or there is no stale use', () => {
    expect(hookHint(sc, violating, { policy: 'start-end', ex: bad })).toBeNull()
    const noUse = { ...violating, culprits: violating.culprits.filter((c) => c.role !== 'stale-use') }
    expect(
      hookHint(sc, noUse, { policy: 'arch-hook', ex: replay(sc, makePolicy('arch-hook'), COW_SCHEDULE) }),
    ).toBeNull()
  })
})

/**
 * Every catalogue scenario that expects a violation under some policy (the issue-13 files
 * included: exit.*, mremap.*, truncate.*, oom-reap.*, hmm-fault.*, ...), explored in full so
 * that a file's livelock counterexample is checked too, not only its first violation.
 */
const CATALOGUE = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .filter((f) => load(f).expect.some(([, w]) => w !== 'holds'))
  .sort()

function counterexamples(f: string): Array<{ sc: Scenario; policy: string; c: Counterexample }> {
  const sc = load(f)
  const out: Array<{ sc: Scenario; policy: string; c: Counterexample }> = []
  for (const [name, want] of sc.expect) {
    if (want === 'holds') continue
    const policy = parsePolicy(name) as Policy
    const o = defaultRunOptions(sc)
    const r = runPolicy(sc, policy, o)
    for (const c of r.counterexamples) out.push({ sc, policy: name, c })
  }
  return out
}

describe('every violated counterexample of the catalogue names its culprit steps', () => {
  const seen = new Set<string>()
  it.each(CATALOGUE)('%s', (f) => {
    const cs = counterexamples(f)
    expect(cs.length).toBeGreaterThan(0)
    for (const { policy, c } of cs) {
      const where = `${f} ${policy} ${c.invariant}`
      seen.add(c.invariant)
      const steps = c.culprits.map((k) => k.step)
      expect(steps, where).toEqual([...steps].sort((a, b) => a - b))
      // Every culprit is a step of the trace, run by the thread it names.
      for (const k of c.culprits) {
        expect(c.trace[k.step], `${where}: ${k.role}@${k.step}`).toBeDefined()
        expect(c.trace[k.step]!.thread, `${where}: ${k.role}@${k.step}`).toBe(k.thread)
        expect(k.text.length).toBeGreaterThan(10)
      }
      const of = (r: string): number[] => c.culprits.filter((k) => k.role === r).map((k) => k.step)
      const uses = of('stale-use')
      expect(uses.length, `${where}: a stale use`).toBeGreaterThan(0)
      const lastUse = Math.max(...uses)
      for (const s of [...of('fill'), ...of('pte-change'), ...of('missed-flush')])
        expect(s, `${where}: culprits come before the use`).toBeLessThanOrEqual(lastUse)
      // A flush can only miss an entry that was already stale: after the PTE change.
      const firstChange = Math.min(...of('pte-change'))
      for (const s of of('missed-flush'))
        expect(s, `${where}: flush after the change`).toBeGreaterThanOrEqual(firstChange)
      // The stale use went through a row the trace flags as stale just before it (progress is the
      // other way round: an entry that allows less than its PTE, which is not flagged).
      if (c.invariant !== 'progress') {
        for (const u of uses) {
          // A walk through a walk-cache entry for a table the PMD no longer links.
          if (c.trace[u]!.events.some((e) => e.fn === 'IOMMU walk cache')) {
            expect(
              c.trace[u - 1]?.stale?.some((r) => r.endsWith(' walk cache')),
              `${where}: stale walk cache before ${u}`,
            ).toBe(true)
            continue
          }
          const acc = c.trace[u]!.events.find((e) => e.kind === 'access' && e.tlb)
          if (!acc) continue
          const rows = [acc.tlb!, acc.tlb!.replace(/ ATC$/, ' IOTLB')]
          expect(
            c.trace[u - 1]?.stale?.some((r) => rows.includes(r)),
            `${where}: stale row before ${u}`,
          ).toBe(true)
        }
      }
      // The PTE change that made the entry stale (or, for progress, let it allow more); a lockless
      // GUP-fast walk of a freed page table uses no cached translation.
      if (!c.violation.message.includes('GUP-fast'))
        expect(of('pte-change').length, `${where}: the PTE change`).toBeGreaterThan(0)
      // A walk through a stale walk-cache entry: the entry's fill, and each leaf-only invalidation
      // between the fill and the last use, are culprits.
      const walked = c.trace
        .slice(0, lastUse + 1)
        .some((r) => r.events.some((e) => e.fn === 'IOMMU walk cache'))
      if (walked || c.violation.message.includes('walk-cache entry')) {
        const wcFill = c.culprits.find((k) => k.role === 'fill' && k.text.includes('walk cache'))
        expect(wcFill, `${where}: the walk-cache fill`).toBeDefined()
        for (const r of c.trace.slice(wcFill!.step + 1, lastUse))
          if (r.events.some((e) => e.kind === 'sec-inval' && e.text.includes('leaf-only')))
            expect(of('missed-flush'), `${where}: leaf-only invalidation at ${r.step}`).toContain(r.step)
      }
      // The free of the frame (or page table) and the syscall return the invariants are about.
      const others = c.culprits.filter((k) => k.role === 'context').map((k) => k.text)
      if (c.invariant === 'use-after-free')
        expect(
          others.some((t) => t.includes('freed')),
          `${where}: the free`,
        ).toBe(true)
      if (c.invariant === 'stale-after-return')
        expect(
          others.some((t) => t.includes(' returned while ')),
          `${where}: the return`,
        ).toBe(true)
      if (c.invariant === 'lost-dirty')
        expect(
          c.culprits.some((k) => k.role === 'context' && k.text.startsWith('folio_test_clear_dirty')),
        ).toBe(true)
    }
  })

  it('covered every invariant a catalogue scenario can break', () => {
    // Runs after the table above (vitest runs a file's tests in order).
    expect([...seen].sort()).toEqual(
      ['forbid', 'lost-dirty', 'lost-write', 'progress', 'stale-after-return', 'use-after-free'].sort(),
    )
  })
})

describe("a mirror fill from a stale hmm_range_fault snapshot says why the retry didn't catch it", () => {
  // migrate_vma of a swapped-out page by the mirror's own driver: collect skips the swap entry,
  // the CPU swaps it in, and the owner filter keeps the MMU_NOTIFY_MIGRATE from the notifier, so
  // mmu_interval_read_retry passes (found by the kernel review: the text said "without").
  const yaml = (retry: string) => `title: t
arch: x86_64
pages:
  A: { value: 5, prot: rw }
secondary:
  - { name: hmm, type: sw-mirror, protocol: hmm, cached: [A]${retry} }
cpus:
  C0: [reclaim A, migrate_vma A owner hmm, read A -> c]
devices:
  D0: { via: hmm, ops: [read A -> d] }
expect: { start-end: use-after-free }
`
  it('the retry passed: no invalidation reached the notifier since read_begin', () => {
    const sc = loadScenarioText(yaml(''), 't.yaml')
    const r = runPolicy(sc, makePolicy('start-end'), defaultRunOptions(sc))
    const uaf = r.counterexamples.find((c) => c.invariant === 'use-after-free')!
    expect(uaf.why).toContain('which mmu_interval_read_retry let through')
    expect(uaf.why).not.toContain('without mmu_interval_read_retry')
  })
})

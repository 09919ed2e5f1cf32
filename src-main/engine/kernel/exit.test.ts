/**
 * exit_mmap (v6.6 mm/mmap.c) with mmu_notifier_release (mm/mmu_notifier.c) and the drivers'
 * ->release, and the OOM reaper's __oom_reap_task_mm (mm/oom_kill.c) with
 * mmu_notifier_invalidate_range_start_nonblock.
 */
import { describe, expect, it } from 'vitest'
import { loadScenarioText, ScenarioLoadError } from '../../node/scenarioFiles'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy, PRESETS } from '../policy'
import { allEvents, first, lines, traced } from './traceTestkit'

const exitScenario = (secondary: string, arch = 'x86_64') =>
  scenarioOf(
    `
      title: exit
      arch: ${arch}
      pages:
        A: { value: 1, prot: rw }
      secondary:
        - ${secondary}
      cpus:
        C0: [exit]
      devices:
        D0: { via: s, ops: [read A -> r0] }
    `,
    'exit.test.yaml',
  )

describe('exit_mmap: mmu_notifier_release first, then the zap with no notifier', () => {
  for (const preset of PRESETS) {
    it(`${preset}: ->release, then unmap_vmas, free_pgtables and tlb_finish_mmu call no notifier, and the page is freed after the flush`, () => {
      const sc = exitScenario('{ name: s, type: hw-walker, iommu: vt-d, cached: [A] }')
      const ex = traced(sc, makePolicy(preset), [0, 0, 0, 0, 0, 0, 0])
      expect(lines(ex, { thread: 'C0' })).toEqual([
        "notifier mmu_notifier_release: every subscriber's ->release, then unhook them all",
        "sec-inval intel_mm_release: intel_pasid_tear_down_entry: s: the PASID's entry is cleared: later DMA aborts",
        'sec-inval intel_mm_release: intel_pasid_tear_down_entry: s: invalidate all (1 entry dropped)',
        'lock mmap_read_lock: take mmap_lock for read',
        'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
        'pte ptep_get_and_clear_full: PTE A := none',
        'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
        'lock pte_unmap_unlock: release the page-table lock',
        'lock mmap_read_unlock: release mmap_lock',
        'lock mmap_write_lock: take mmap_lock for write',
        'cpu-flush tlb_flush (tlb_finish_mmu, fullmm): flush CPU TLBs: whole mm',
        'frame tlb_finish_mmu: tlb_table_flush: the PTE page unlinked by free_pgtables is freed',
        'frame tlb_batch_pages_flush: release 1 queued page',
        'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
        'lock mmap_write_unlock: release mmap_lock',
      ])
      // The free happens under mmap_lock for write, after the release.
      expect(first(ex, 'frame free_pages_and_swap_cache').locks).toEqual(['mmap_lock(w)'])
      // The device's read after the release aborts: no value, no violation.
      expect(ex.violations).toEqual([])
      expect(ex.final.regs[0]).toBeNull()
      expect(
        allEvents(ex).some(
          (e) => e.thread === 'D0' && e.text.includes('after ->release: the DMA is aborted'),
        ),
      ).toBe(true)
    })
  }

  it('release: none: the IOTLB keeps A through the free, and the device reads freed memory', () => {
    const sc = exitScenario('{ name: s, type: hw-walker, iommu: vt-d, cached: [A], release: none }')
    const ex = traced(sc, makePolicy('arch-hook'), [0, 0, 0, 0, 0, 0, 0])
    expect(lines(ex, { kinds: ['notifier', 'sec-inval'] })).toEqual([
      "notifier mmu_notifier_release: every subscriber's ->release, then unhook them all",
      'sec-inval ->release: s: release: none, the driver does nothing',
    ])
    expect(ex.violations.map((v) => v.invariant)).toEqual(['use-after-free'])
  })

  it('a read before the release completes; the walk after the zap would page-request, and iommu_sva_handle_iopf fails at mmget_not_zero', () => {
    const sc = exitScenario('{ name: s, type: hw-walker, iommu: vt-d, release: none }')
    // D0 reads before the exit: a walk, a fill, the value.
    const before = traced(sc, makePolicy('start-end'), [1])
    expect(before.final.regs[0]).toBe(1)
    // The device walks after the PTE is cleared (release: none: translation still enabled).
    const after = traced(sc, makePolicy('start-end'), [0, 0, 0, 0, 0, 1])
    expect(
      allEvents(after).some(
        (e) => e.fn === 'iommu_sva_handle_iopf' && e.text.includes('mmget_not_zero() fails'),
      ),
    ).toBe(true)
    expect(after.final.regs[0]).toBeNull()
    expect(after.violations).toEqual([])
  })

  it('SMMUv3: arm_smmu_mm_release invalidates the IOTLB and the ATC', () => {
    const sc = exitScenario('{ name: s, type: hw-walker, iommu: smmu-v3, ats: true, cached: [A] }', 'arm64')
    const ex = traced(sc, makePolicy('start-end'), [0])
    expect(lines(ex, { kinds: ['sec-inval'] })).toEqual([
      "sec-inval arm_smmu_mm_release: quiet_cd, arm_smmu_tlb_inv_asid, arm_smmu_atc_inv_domain: s: the PASID's CD disables translation: later DMA aborts",
      'sec-inval arm_smmu_mm_release: quiet_cd, arm_smmu_tlb_inv_asid, arm_smmu_atc_inv_domain: s: invalidate IOTLB all (1 entry dropped)',
      'sec-inval arm_smmu_mm_release: quiet_cd, arm_smmu_tlb_inv_asid, arm_smmu_atc_inv_domain: s: invalidate ATC all (1 entry dropped)',
    ])
  })

  it('KVM: a vCPU fault in flight holds mm_users, so exit_mmap (and kvm_flush_shadow_all) runs only after it returns', () => {
    const sc = exitScenario('{ name: s, type: sw-mirror }')
    // D0 faults (snapshots mmu_invalidate_seq, resolves the pfn): the exit cannot start.
    expect(() => traced(sc, makePolicy('start-end'), [1, 1, 0])).toThrow(
      'C0 cannot run at step 2: mm_users: a mirror fault (vCPU or dmirror_fault) still holds the mm',
    )
    // The first runnable thread after that is D0: its fault installs and returns, then the exit.
    const ex = traced(sc, makePolicy('start-end'), [1, 1])
    const ev = allEvents(ex).map((e) => `${e.thread} ${e.kind} ${e.fn}`)
    const fill = ev.indexOf('D0 fill kvm_tdp_mmu_map')
    const release = ev.indexOf('C0 notifier mmu_notifier_release')
    expect(fill).toBeGreaterThanOrEqual(0)
    expect(release).toBeGreaterThan(fill)
    expect(ex.final.regs[0]).toBe(1)
    // ->release (kvm_flush_shadow_all) zapped what the fault installed.
    expect(ex.final.secs[0]!.entries).toEqual([])
    expect(ex.final.mms[0]!.users).toBeUndefined()
    expect(ex.violations).toEqual([])
  })

  it("KVM with the OOM reaper: the vCPU waits on the reaper's range_start, the exit waits on the vCPU, the reaper's range_end reaches KVM", () => {
    const sc = loadScenarioText(
      [
        'title: kvm, exit and the oom reaper',
        'arch: x86_64',
        'pages:',
        '  A: { value: 1, prot: rw }',
        'secondary:',
        '  - { name: kvm, type: sw-mirror, cached: [A] }',
        'cpus:',
        '  C0: [exit]',
        '  R: [oom_reap]',
        'devices:',
        '  V0: { via: kvm, ops: [read A -> r0] }',
      ].join('\n'),
      'oomkvm.test.yaml',
    )
    // R: mmap_read_lock .. range_start (KVM's mmu_invalidate_in_progress up); V0 misses and
    // faults up to its install under mmu_lock, where it waits; C0 cannot start exit_mmap.
    const head = [1, 1, 2, 2]
    expect(() => traced(sc, makePolicy('start-end'), [...head, 0])).toThrow(
      'mm_users: a mirror fault (vCPU or dmirror_fault) still holds the mm',
    )
    expect(() => traced(sc, makePolicy('start-end'), [...head, 2])).toThrow(
      'invalidation in progress (mmu_invalidate_in_progress)',
    )
    const ex = traced(sc, makePolicy('start-end'), head)
    const r = lines(ex, { thread: 'R', kinds: ['notifier', 'sec-inval'] })
    expect(r).toEqual([
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'sec-inval kvm_mmu_notifier_invalidate_range_start: kvm: invalidate_in_progress++, zap 1 shadow entry',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval kvm_mmu_notifier_invalidate_range_end: kvm: mmu_invalidate_seq++, invalidate_in_progress--',
    ])
    const ev = allEvents(ex).map((e) => `${e.thread} ${e.kind} ${e.fn}`)
    // The reaper's range_end comes before the release, and the vCPU's fault before the release.
    const release = ev.indexOf('C0 notifier mmu_notifier_release')
    expect(ev.indexOf('R notifier mmu_notifier_invalidate_range_end')).toBeLessThan(release)
    expect(ev.lastIndexOf('V0 fault is_page_fault_stale')).toBeLessThan(release)
    expect(ex.final.threads.every((t) => t.done)).toBe(true)
    expect(ex.violations).toEqual([])
  })
})

describe('oom_reap: __oom_reap_task_mm', () => {
  const reap = (secondary: string, extra = '') =>
    loadScenarioText(
      [
        'title: oom reap',
        'arch: x86_64',
        'pages:',
        '  A: { value: 1, prot: rw }',
        '  F: { value: 2, prot: rw, kind: file }',
        'secondary:',
        `  - ${secondary}`,
        'cpus:',
        '  R: [oom_reap]',
        ...(extra ? [`  ${extra}`] : []),
      ].join('\n'),
      'oom.test.yaml',
    )

  it('mmap_read_lock, range_start_nonblock, the zap of the anon VMA, range_end, tlb_finish_mmu; the VM_SHARED file VMA is skipped', () => {
    const ex = traced(reap('{ name: s, type: hw-walker, cached: [A, F] }'), makePolicy('start-end'))
    expect(lines(ex, { thread: 'R' })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'notifier mmu_notifier_invalidate_range_start: MMU_NOTIFY_UNMAP A',
      'sec-inval invalidate_range_start: s: invalidate A (1 entry dropped)',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'pte ptep_get_and_clear_full: PTE A := none',
      'frame page_remove_rmap + __tlb_remove_page: pfn 1 mapcount 0, queued for freeing',
      'lock pte_unmap_unlock: release the page-table lock',
      'notifier mmu_notifier_invalidate_range_end: A',
      'sec-inval invalidate_range_end: s: invalidate A (0 entries dropped)',
      'cpu-flush tlb_flush (tlb_finish_mmu): flush CPU TLBs: A',
      'frame tlb_batch_pages_flush: release 1 queued page',
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(allEvents(ex).some((e) => e.text === 'skip F (VM_SHARED)')).toBe(true)
    expect(ex.final.mms[0]!.ptes[1]).not.toBeNull()
  })

  it('a notifier that must sleep (nonblock: eagain): -EAGAIN, the VMA is skipped, nothing is zapped or freed', () => {
    const ex = traced(
      reap('{ name: s, type: sw-mirror, cached: [A], nonblock: eagain }'),
      makePolicy('start-end'),
    )
    expect(lines(ex, { thread: 'R', kinds: ['notifier', 'pte', 'frame', 'sec-inval'] })).toEqual([
      'notifier mmu_notifier_invalidate_range_start_nonblock: MMU_NOTIFY_UNMAP A: s cannot proceed without sleeping: -EAGAIN',
    ])
    expect(ex.final.mms[0]!.ptes[0]).not.toBeNull()
    expect(ex.final.secs[0]!.entries.map((e) => e.page)).toEqual([0])
    expect(
      allEvents(ex).some((e) => e.text === 'failed to reap part of the address space: try again later'),
    ).toBe(true)
  })

  it('MMF_UNSTABLE: after the reaper started, a fault that would populate a new anon page gets VM_FAULT_SIGBUS', () => {
    // v6.6 __oom_reap_task_mm sets MMF_UNSTABLE before the first VMA; do_anonymous_page's
    // check_stable_address_space() under the PTL then fails the zero-page and new-page paths.
    const sc = reap('{ name: s, type: hw-walker }', 'C1: [read A -> r, write A 5]')
    const ex = traced(sc, makePolicy('start-end'))
    const r = lines(ex, { thread: 'R', kinds: ['info'] })
    expect(r[0]).toBe(
      'info __oom_reap_task_mm: set_bit(MMF_UNSTABLE): check_stable_address_space() fails every new anonymous page from now on',
    )
    const c1 = lines(ex, { thread: 'C1', kinds: ['fault', 'pte'] })
    expect(c1.filter((x) => x.includes('check_stable_address_space'))).toEqual([
      'fault check_stable_address_space: MMF_UNSTABLE (the OOM reaper): VM_FAULT_SIGBUS',
      'fault check_stable_address_space: MMF_UNSTABLE (the OOM reaper): VM_FAULT_SIGBUS',
    ])
    expect(c1.some((x) => x.startsWith('pte '))).toBe(false)
    expect(ex.final.regs).toEqual([null])
    expect(ex.final.mms[0]!.ptes[0]).toBeNull()
    // Before the reaper runs, the same read finds A's page.
    const before = traced(
      reap('{ name: s, type: hw-walker }', 'C1: [read A -> r]'),
      makePolicy('start-end'),
      [1],
    )
    expect(before.final.regs).toEqual([1])
  })

  it('mmap_read_trylock fails while a writer holds mmap_lock: the reaper gives up for now', () => {
    const sc = reap('{ name: s, type: hw-walker }', 'C1: [mprotect A ro]')
    // C1's mprotect takes mmap_lock for write in its first step; the reaper's trylock fails.
    const ex = traced(sc, makePolicy('start-end'), [1, 0])
    expect(allEvents(ex).some((e) => e.text.startsWith('mmap_read_trylock fails'))).toBe(true)
    expect(ex.final.mms[0]!.ptes[0]).not.toBeNull()
  })
})

describe('oom_reap beside exit_mmap: MMF_OOM_SKIP comes after unmap_vmas, not at the release', () => {
  // v6.6 exit_mmap: mmu_notifier_release; mmap_read_lock; unmap_vmas; mmap_read_unlock;
  // set_bit(MMF_OOM_SKIP); mmap_write_lock. oom_reap_task_mm: mmap_read_trylock, then
  // test_bit(MMF_OOM_SKIP) under it. Both zaps run under mmap_lock for read.
  const sc = scenarioOf(
    `
      title: reap during exit
      arch: x86_64
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: rw }
      secondary:
        - { name: s, type: hw-walker, iommu: vt-d, cached: [A] }
      cpus:
        C0: [exit]
        R: [oom_reap]
    `,
    'reap-during-exit.test.yaml',
  )
  const frees = (ex: ReturnType<typeof traced>, thread: string): string[] =>
    lines(ex, { thread, kinds: ['frame'] }).filter((l) => l.startsWith('frame free_pages_and_swap_cache'))

  it('after the release the reaper still reaps: both hold mmap_lock for read, its range_start_nonblock reaches no subscriber, exit clears first and the reaper finds pte_none', () => {
    // C0 releases; R trylocks; C0 takes mmap_lock for read too; R's range_start; C0 zaps.
    const ex = traced(sc, makePolicy('start-end'), [0, 1, 0, 1, 0, 0])
    const ev = allEvents(ex).map((e) => `${e.thread} ${e.fn}: ${e.locks.join(',')}`)
    expect(ev.indexOf('C0 mmap_read_lock: mmap_lock(r)')).toBeGreaterThan(
      ev.indexOf('R mmap_read_lock: mmap_lock(r)'),
    )
    expect(ev.indexOf('C0 mmap_read_lock: mmap_lock(r)')).toBeLessThan(ev.indexOf('R mmap_read_unlock: '))
    expect(lines(ex, { thread: 'R', kinds: ['info'] })).toContain(
      "info mmu_notifier_invalidate_range_start_nonblock: A,B: no subscriber (exit_mmap's mmu_notifier_release unhooked them)",
    )
    // Nothing reaches the device after the release: only ->release's invalidation.
    expect(lines(ex, { kinds: ['notifier'] })).toEqual([
      "notifier mmu_notifier_release: every subscriber's ->release, then unhook them all",
    ])
    // The reaper's zap takes the PTL after exit's and finds both PTEs none: it frees nothing;
    // its tlb_finish_mmu flushes the whole mm (exit's gather is still in flight).
    expect(lines(ex, { thread: 'R', kinds: ['lock', 'pte', 'frame', 'cpu-flush'] })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'lock zap_pte_range: pte_offset_map_lock: take the page-table lock',
      'lock pte_unmap_unlock: release the page-table lock',
      'cpu-flush tlb_flush (tlb_finish_mmu, fullmm): flush CPU TLBs: whole mm',
      'lock mmap_read_unlock: release mmap_lock',
    ])
    expect(frees(ex, 'C0')).toEqual([
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
      'frame free_pages_and_swap_cache: free pfn 2 (gen 1)',
    ])
    expect(ex.violations).toEqual([])
  })

  it('the reaper takes the PTL first: it clears, queues and frees both pages; exit finds pte_none and frees nothing', () => {
    const ex = traced(sc, makePolicy('start-end'), [0, 1, 0, 1, 1, 1, 1])
    expect(() => traced(sc, makePolicy('start-end'), [0, 1, 0, 1, 1, 0])).toThrow(
      'C0 cannot run at step 5: page-table lock held',
    )
    expect(lines(ex, { thread: 'R', kinds: ['pte'] })).toEqual([
      'pte ptep_get_and_clear_full: PTE A := none',
      'pte ptep_get_and_clear_full: PTE B := none',
    ])
    expect(lines(ex, { thread: 'C0', kinds: ['pte'] })).toEqual([])
    expect(frees(ex, 'R')).toEqual([
      'frame free_pages_and_swap_cache: free pfn 1 (gen 1)',
      'frame free_pages_and_swap_cache: free pfn 2 (gen 1)',
    ])
    expect(frees(ex, 'C0')).toEqual([])
    expect(ex.violations).toEqual([])
  })

  it("a trylock between exit's mmap_read_unlock and set_bit(MMF_OOM_SKIP) still reaps; one after it skips", () => {
    const between = traced(sc, makePolicy('start-end'), [0, 0, 0, 0, 0, 0, 0, 1])
    const ev = allEvents(between).map((e) => `${e.thread} ${e.fn}: ${e.text}`)
    const skip = ev.findIndex((e) => e.startsWith('C0 exit_mmap: set_bit(MMF_OOM_SKIP)'))
    expect(skip).toBeGreaterThan(ev.indexOf('C0 mmap_read_unlock: release mmap_lock'))
    expect(ev.indexOf('R mmap_read_lock: take mmap_lock for read')).toBeLessThan(skip)
    expect(allEvents(between).some((e) => e.text === 'reaped')).toBe(true)
    const after = traced(sc, makePolicy('start-end'), [0, 0, 0, 0, 0, 0, 0, 0, 1])
    expect(lines(after, { thread: 'R', kinds: ['lock', 'info'] })).toEqual([
      'lock mmap_read_lock: take mmap_lock for read',
      'info oom_reap_task_mm: MMF_OOM_SKIP: exit_mmap owns the mm, skip_task_reaping',
      'lock mmap_read_unlock: release mmap_lock',
    ])
  })
})

describe("exit with a walk cache: the violation names exit_mmap's free_pgtables", () => {
  it('release: none: the device walks the PTE page exit_mmap unlinked and freed', () => {
    const sc = scenarioOf(
      `
        title: exit walk cache
        arch: x86_64
        pages:
          A: { value: 1, prot: rw }
        secondary:
          - { name: iommu, type: hw-walker, walk_cache: true, release: none }
        cpus:
          C0: [exit]
        devices:
          D0: { via: iommu, ops: [read A -> r0, read A -> r1] }
      `,
      'exit-walk-cache.test.yaml',
    )
    // C0 zaps A; D0's read walks the PTE page (no PTE: a fault) and caches the PMD's pointer;
    // C0 sets MMF_OOM_SKIP, its free_pgtables and tlb_finish_mmu free the page; D0's retry walks
    // through the cache.
    const ex = traced(sc, makePolicy('arch-hook'), [0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    const uaf = ex.violations.find((v) => v.invariant === 'use-after-free')
    expect(uaf?.message).toBe(
      "D0: iommu walks A through its walk-cache entry for the PTE page, but exit_mmap's free_pgtables unlinked that page-table page and tlb_finish_mmu freed it (pte_free_tlb, freed_tables): the walk reads freed memory",
    )
  })
})

describe('exit: validation', () => {
  const bad = (cpus: string): string => {
    try {
      loadScenarioText(
        `title: bad\narch: x86_64\npages:\n  A: { value: 1, prot: rw }\ncpus:\n${cpus}\n`,
        'bad.yaml',
      )
    } catch (e) {
      if (e instanceof ScenarioLoadError) return e.message
      throw e
    }
    return ''
  }
  it('exit is the last op of its thread, once, and no other thread of the process uses its memory', () => {
    expect(bad('  C0: [exit, read A]')).toMatch(/exit must be the last op of C0/)
    expect(bad('  C0: [exit]\n  C1: [read A]')).toMatch(/C1 also uses the process's memory/)
    expect(bad('  C0: [exit]\n  C1: [exit]')).toMatch(/the process exits once/)
    expect(bad('  C0: [exit now]')).toMatch(/unexpected 'now' after exit/)
    expect(bad('  C0: [exit]\n  R: [oom_reap]')).toBe('')
  })
})

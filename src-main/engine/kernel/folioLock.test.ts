/**
 * The anon folio's lock and LRU isolation (PFrame.lk, PFrame.iso), v6.6:
 * - mm/vmscan.c shrink_folio_list(): works on folios isolate_lru_folios() took off the LRU (a
 *   folio another thread isolated is not there); `if (!folio_trylock(folio)) goto keep;`
 *   (putback_lru_page); folio_unlock() before the free or at keep.
 * - mm/migrate.c: the caller isolates (folio_isolate_lru, -EBUSY when that fails);
 *   migrate_folio_unmap(): `if (!folio_trylock(src)) { if (mode == MIGRATE_ASYNC) goto out;
 *   ... folio_lock(src); }` (the sync retry of migrate_pages_sync waits), then
 *   folio_trylock(dst); migrate_folio_move(): remove_migration_ptes(src, dst), then
 *   folio_unlock(dst), folio_unlock(src) (out_unlock_both).
 * - mm/migrate_device.c migrate_vma_collect_pmd(): `if (trylock_page(page))` the migration entry,
 *   else the page is skipped; migrate_device_unmap(): `if (!folio_isolate_lru(folio))` the page
 *   is restored, not migrated.
 * - mm/ksm.c try_to_merge_one_page(): `if (!trylock_page(page)) goto out;`.
 * With a fork child (A is a COW page both map) every op walks both VMAs; two of them on one
 * folio in two threads are accepted now: one backs off.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { runExecution, ScheduleError, scriptedChooser, type Execution } from '../explore'
import { makePolicy } from '../policy'
import { blockedReason } from '../step'
import type { Scenario } from '../types'
import { allEvents, lines, runUnder, traced } from './traceTestkit'

const load = (yaml: string) => scenarioOf(yaml, 'folio-lock.test.yaml')
const archHook = makePolicy('arch-hook')
const OPS = ['lock', 'frame', 'info', 'op'] as const

/** A COW page shared with a fork child, two isolating ops in two threads, a child read. */
const twoOps = (a: string, b: string, arch = 'x86_64') =>
  load(`
    title: two isolating ops on one anon folio
    arch: ${arch}
    pages:
      A: { value: 5, prot: rw, cow: true }
    secondary:
      - { name: iommu, type: hw-walker, cached: [A] }
    cpus:
      T0: [${a}]
      T1: [${b}]
      K: { mm: child, ops: [read A -> k0] }
    forbid: k0 != 5
  `)

/** Runs `head` (thread indices), then the reference schedule; null if `head` cannot run. */
function tryRun(sc: Scenario, head: readonly number[]): Execution | null {
  try {
    return traced(sc, archHook, head)
  } catch (e) {
    if (e instanceof ScheduleError) return null
    throw e
  }
}

describe('reclaim and migrate of one folio in two threads: the second isolation fails', () => {
  const sc = twoOps('reclaim A', 'migrate A')

  it('reclaim isolates and locks first: migrate_pages gets -EBUSY from folio_isolate_lru and does nothing; reclaim swaps A out of both VMAs', () => {
    const ex = traced(sc, archHook, [0, 1])
    expect(lines(ex, { thread: 'T0', kinds: OPS }).slice(0, 3)).toEqual([
      'op reclaim: T0: reclaim A',
      'frame isolate_lru_folios: pfn 1 off the LRU',
      'lock shrink_folio_list: folio_trylock: lock the folio pfn 1 (A)',
    ])
    expect(lines(ex, { thread: 'T1', kinds: OPS })).toEqual([
      'op migrate: T1: migrate A',
      'info folio_isolate_lru: pfn 1 is not on the LRU (isolated by another thread): isolation fails',
      'op migrate: A: folio_isolate_lru fails (another thread isolated the folio): -EBUSY, not migrated',
    ])
    // Both VMAs got the swap entry (K's read afterwards swaps the child's back in).
    expect(lines(ex, { thread: 'T0', kinds: ['pte'] }).filter((x) => x.includes('swap entry'))).toEqual([
      'pte set_pte_at (swap entry): PTE A := swap entry (slot 0)',
      'pte set_pte_at (swap entry): PTE A (child) := swap entry (slot 0)',
    ])
    expect(ex.final.mms[0]!.ptes[0]!.swp).toBe(0)
    // Freed unlocked and off the LRU (PFrame.lk and iso cleared; putFrame refuses otherwise).
    expect(allEvents(ex).some((e) => e.thread === 'T0' && e.text === 'free pfn 1 (gen 1)')).toBe(true)
    expect(ex.final.frames.every((fr) => fr.lk === undefined && fr.iso === undefined)).toBe(true)
    expect(ex.violations).toEqual([])
  })

  it('migrate isolates first: isolate_lru_folios does not take A; reclaim does nothing and the migration completes', () => {
    const ex = traced(sc, archHook, [1, 0])
    expect(lines(ex, { thread: 'T0', kinds: OPS })).toEqual([
      'op reclaim: T0: reclaim A',
      'info isolate_lru_folios: pfn 1 is not on the LRU (isolated by another thread): isolation fails',
      'op reclaim: A: not on the LRU (another thread isolated the folio): isolate_lru_folios does not take it, not reclaimed',
    ])
    const mv = lines(ex, { thread: 'T1', kinds: ['op'] })
    expect(mv.at(-1)).toMatch(/^op migrate: A: pfn 1 -> pfn \d+$/)
    expect(ex.final.mms[0]!.ptes[0]).toMatchObject({ present: true })
    expect(ex.final.mms[0]!.ptes[0]!.pfn).toBe(ex.final.mms[1]!.ptes[0]!.pfn)
    expect(ex.violations).toEqual([])
  })

  it("a reclaim between remove_migration_ptes' two PTEs isolates the new page but fails folio_trylock (migrate holds the destination locked): kept, the child's PTE still gets it", () => {
    const sc2 = twoOps('migrate A', 'reclaim A')
    // T0 runs n steps, then T1 (reclaim) runs whole: find the n where T0 has put the new page
    // into the process's PTE and the child's PTE is still a migration entry.
    let found: Execution | null = null
    for (let n = 1; n < 30 && found === null; n++) {
      const ex = tryRun(sc2, [...new Array<number>(n).fill(0), 1])
      if (!ex) continue
      const rec = lines(ex, { thread: 'T1', kinds: ['info'] })
      if (rec.some((l) => /folio_trylock of pfn \d+ \(A\) fails: locked by T0/.test(l))) found = ex
    }
    expect(found).not.toBeNull()
    const ex = found!
    expect(lines(ex, { thread: 'T1', kinds: OPS })).toEqual([
      'op reclaim: T1: reclaim A',
      'frame isolate_lru_folios: pfn 2 off the LRU',
      'info shrink_folio_list: folio_trylock: folio_trylock of pfn 2 (A) fails: locked by T0',
      'frame putback_lru_page: pfn 2 back on the LRU',
      'op reclaim: A: folio locked by another thread: kept, not reclaimed',
    ])
    // The destination stays mapped in both VMAs, and the migration ends with both unlocked.
    expect(ex.final.mms[0]!.ptes[0]).toMatchObject({ pfn: 2, present: true })
    expect(ex.final.mms[1]!.ptes[0]).toMatchObject({ pfn: 2, present: true })
    expect(ex.final.frames[2]).toMatchObject({ map: 2, ref: 2 })
    expect(ex.final.frames[2]!.lk).toBeUndefined()
    expect(ex.violations).toEqual([])
  })

  it('exhaustively: every interleaving holds under every preset (each op as alone, one backing off)', () => {
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const) {
      expect(runUnder(sc, p).verdict, p).toBe('holds')
      expect(runUnder(twoOps('migrate A sync', 'reclaim A', 'arm64'), p).verdict, p).toBe('holds')
    }
  })
})

describe('migrate_folio_unmap: folio_trylock(src), MIGRATE_ASYNC gives up, the sync retry waits in folio_lock', () => {
  const ksm = (mode: string) =>
    load(`
      title: ksmd holds the folio lock
      arch: x86_64
      pages:
        P: { value: 5, prot: rw }
      cpus:
        ksmd: [ksm_merge P]
        mover: [migrate P ${mode}]
    `)

  it('async: ksmd holds the lock (trylock_page): the trylock fails, the destination is freed and the source put back: -EAGAIN', () => {
    // ksmd: get_page (its scan), then try_to_merge_one_page's trylock_page.
    const ex = traced(ksm('async'), archHook, [0, 0, 1, 1])
    expect(lines(ex, { thread: 'mover', kinds: OPS })).toEqual([
      'op migrate: mover: migrate P async',
      'frame folio_isolate_lru: pfn 1 off the LRU',
      'frame get_new_folio (destination): allocate pfn 3 (gen 1)',
      'info migrate_folio_unmap: folio_trylock: folio_trylock of pfn 1 (P) fails: locked by ksmd',
      'frame migrate_folio_undo_dst: free pfn 3 (gen 1)',
      'frame putback_lru_page: pfn 1 back on the LRU',
      'op migrate: P: folio locked: -EAGAIN, not migrated',
    ])
  })

  it('sync: the MIGRATE_ASYNC pass fails the trylock; the sync retry blocks in folio_lock until ksmd unlocks, then migrates', () => {
    const sc = ksm('sync')
    // ksmd: get_page, trylock_page. mover: isolate and allocate, the failed trylock (retry),
    // the retry's allocation: its folio_lock now waits.
    const head = [0, 0, 1, 1, 1]
    const cut = runExecution(sc, archHook, scriptedChooser(head), { tracing: true, maxSteps: head.length })
    expect(blockedReason(sc, archHook, cut.final, 1)).toBe('folio locked')
    const ex = traced(sc, archHook, head)
    const l = lines(ex, { thread: 'mover', kinds: OPS })
    expect(l).toContain(
      'info migrate_pages_sync: retry P in MIGRATE_SYNC: folio_lock waits, try_to_migrate(src, 0)',
    )
    expect(l).toContain('lock migrate_folio_unmap: folio_lock: lock the folio pfn 1 (P)')
    // folio_lock comes after ksmd's unlock_page (ksmd's merge failed: the mover's isolation
    // reference is an extra one for write_protect_page's refcount check).
    const ev = allEvents(ex)
    const unlock = ev.findIndex((e) => e.thread === 'ksmd' && e.fn === 'try_to_merge_one_page: unlock_page')
    const lock = ev.findIndex((e) => e.thread === 'mover' && e.fn === 'migrate_folio_unmap: folio_lock')
    expect(unlock).toBeGreaterThanOrEqual(0)
    expect(lock).toBeGreaterThan(unlock)
    expect(l.at(-1)).toMatch(/^op migrate: P: pfn 1 -> pfn \d+$/)
    expect(ex.violations).toEqual([])
  })
})

describe('migrate_vma: trylock_page in collect, folio_isolate_lru in migrate_device_unmap', () => {
  it('reclaim holds the folio lock: migrate_vma_collect_pmd skips the page (no migration entry), nothing is migrated', () => {
    const sc = twoOps('reclaim A', 'migrate_vma A')
    const ex = traced(sc, archHook, [0, 1, 1, 1])
    const l = lines(ex, { thread: 'T1', kinds: ['info', 'pte', 'op'] })
    expect(l).toContain(
      'info migrate_vma_collect_pmd: trylock_page: folio_trylock of pfn 1 (A) fails: locked by T0',
    )
    expect(l.some((x) => x.startsWith('pte '))).toBe(false)
    expect(l).toContain(
      'info migrate_vma_setup: the page was unmapped (or its folio locked) meanwhile: nothing to migrate',
    )
    expect(ex.violations).toEqual([])
  })

  it('a migration isolated the folio first: collect sets up the migration entry, folio_isolate_lru fails, remove_migration_ptes restores the source', () => {
    const sc = twoOps('migrate A', 'migrate_vma A')
    // T0: folio_isolate_lru only (its folio_trylock is the next step); T1 runs whole.
    let ex: Execution | null = null
    for (let n = 20; n > 0 && ex === null; n--) ex = tryRun(sc, [0, ...new Array<number>(n).fill(1)])
    if (ex === null) throw new Error('T1 cannot run')
    const l = lines(ex, { thread: 'T1', kinds: ['lock', 'pte', 'info', 'op'] })
    expect(l).toContain('lock migrate_vma_collect_pmd: trylock_page: lock the folio pfn 1 (A)')
    expect(l).toContain('pte set_pte_at (migration entry): PTE A := migration entry (pfn 1, read-only)')
    expect(l).toContain(
      'info migrate_device_unmap: pfn 1 is isolated by another thread: restore it, not migrated',
    )
    expect(l).toContain('pte set_pte_at (remove_migration_pte: the source back): PTE A := pfn 1 RO dirty')
    expect(l.at(-1)).toBe('op migrate_vma: A: not migrated')
    expect(ex.violations).toEqual([])
  })
})

describe('khugepaged: __collapse_huge_page_isolate meets a locked or non-present page and backs out (v6.6 mm/khugepaged.c)', () => {
  const collapse = (cpu: string) =>
    load(`
      title: collapse beside reclaim or migration
      arch: x86_64
      pages:
        A: { value: 1, prot: rw }
        B: { value: 2, prot: rw }
      thp:
        H: { pages: [A, B], mapped: pte }
      secondary:
        - { name: iommu, type: hw-walker, cached: [A, B] }
      cpus:
        T0: [${cpu}]
        khugepaged: [thp_collapse H]
      devices:
        D0: { via: iommu, ops: [read A -> d0] }
      forbid: d0 != 1
    `)

  it('reclaim holds A locked: trylock_page fails (SCAN_PAGE_LOCK), release_pte_pages, pmd_populate puts the detached table back, the new huge page is freed', () => {
    // T0: reclaim_thp falls back to the small folio (one step), isolate_lru_folios + folio_trylock.
    const ex = traced(collapse('reclaim A'), archHook, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    const l = lines(ex, { thread: 'khugepaged', kinds: ['lock', 'pte', 'info', 'frame', 'op'] })
    const from = l.indexOf('info __collapse_huge_page_isolate: isolate the pages of H')
    expect(l.slice(from)).toEqual([
      'info __collapse_huge_page_isolate: isolate the pages of H',
      'info __collapse_huge_page_isolate: trylock_page: folio_trylock of pfn 1 (A) fails: locked by T0',
      'info __collapse_huge_page_isolate: SCAN_PAGE_LOCK: the collapse backs out',
      'lock pte_unmap_unlock: release the page-table lock',
      'lock collapse_huge_page: pmd_lock: take the PMD lock',
      'pte pmd_populate: PMD H := the detached PTE table again, PTEs A,B -> pfns 1,2',
      'lock spin_unlock (pmd_lock): release the PMD lock',
      'lock anon_vma_unlock_write: release the anon_vma lock',
      'lock mmap_write_unlock: release mmap_lock',
      'frame folio_put (unused huge page): free pfn 3 (gen 1)',
      'frame folio_put (unused huge page): free pfn 4 (gen 1)',
      'op thp_collapse: H: not collapsed (__collapse_huge_page_isolate failed)',
    ])
    // The PMD links the table again; reclaim then swaps A out of it.
    expect(ex.final.mms[0]!.pt[0]).toBe(true)
    expect(lines(ex, { thread: 'T0', kinds: ['op'] }).at(-1)).toBe('op reclaim: A swapped out to slot 0')
    expect(ex.final.mms[0]!.ptes[1]).toMatchObject({ pfn: 2, present: true })
    expect(ex.violations).toEqual([])
  })

  it("B's page locked after A's was taken: A is released again (unlock, putback) before the back-out", () => {
    const ex = traced(collapse('reclaim B'), archHook, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    const l = lines(ex, { thread: 'khugepaged', kinds: ['lock', 'info', 'frame'] })
    const from = l.indexOf('info __collapse_huge_page_isolate: isolate the pages of H')
    expect(l.slice(from, from + 8)).toEqual([
      'info __collapse_huge_page_isolate: isolate the pages of H',
      'lock __collapse_huge_page_isolate: trylock_page: lock the folio pfn 1 (A)',
      'frame __collapse_huge_page_isolate: isolate_lru_page: pfn 1 off the LRU',
      'info __collapse_huge_page_isolate: trylock_page: folio_trylock of pfn 2 (B) fails: locked by T0',
      'lock release_pte_pages: unlock_page: unlock the folio pfn 1 (A)',
      'frame release_pte_pages: putback_lru_page: pfn 1 back on the LRU',
      'info __collapse_huge_page_isolate: SCAN_PAGE_LOCK: the collapse backs out',
      'lock pte_unmap_unlock: release the page-table lock',
    ])
    expect(ex.final.frames.every((fr) => fr.lk === undefined && fr.iso === undefined)).toBe(true)
  })

  it("rmap_walk_anon's anon_vma_lock_read waits for the collapse's anon_vma_lock_write: a migration's try_to_migrate cannot start while the table is detached", () => {
    const sc = collapse('migrate A')
    // T0 isolates and locks A (migrate_thp falls back to the small folio, start, folio_trylock);
    // khugepaged scans and takes mmap_lock and the anon_vma lock for write; T0's walk
    // (range_start, anon_vma_lock_read) now waits.
    const head = [0, 0, 0, 1, 1]
    const cut = runExecution(sc, archHook, scriptedChooser(head), { tracing: true, maxSteps: head.length })
    expect(blockedReason(sc, archHook, cut.final, 0)).toBe('anon_vma lock held for write')
    // The collapse then finds A locked and backs out; the migration goes on once it released
    // the anon_vma lock.
    const ex = traced(sc, archHook, head)
    expect(lines(ex, { thread: 'khugepaged', kinds: ['op'] }).at(-1)).toBe(
      'op thp_collapse: H: not collapsed (__collapse_huge_page_isolate failed)',
    )
    const ev = allEvents(ex)
    const unlockW = ev.findIndex((e) => e.thread === 'khugepaged' && e.fn === 'anon_vma_unlock_write')
    const lockR = ev.findIndex((e) => e.thread === 'T0' && e.fn === 'rmap_walk_anon: anon_vma_lock_read')
    expect(lockR).toBeGreaterThan(unlockW)
    expect(lines(ex, { thread: 'T0', kinds: ['op'] }).at(-1)).toMatch(/^op migrate: A: pfn 1 -> pfn \d+$/)
    expect(ex.violations).toEqual([])
    // Exhaustively: every interleaving of the migration (and a reclaim) with the collapse holds.
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'] as const) {
      expect(runUnder(sc, p).verdict, p).toBe('holds')
      expect(runUnder(collapse('migrate B sync, reclaim A'), p).verdict, p).toBe('holds')
    }
  })
})

/** `secondary:`: the secondary TLBs (hw-walker IOMMUs and devices, sw-mirrors such as KVM). */
import {
  bool,
  checkKeys,
  int,
  isObj,
  Issues,
  NAME,
  oneOf,
  SCENARIO_LIMITS,
  typeName,
  type Obj,
} from './common'
import type { Arch, FlushAt, PageDecl, SecondaryDecl } from '../types'

export const HW_KEYS = [
  'name',
  'type',
  'btm',
  'flush_at',
  'cached',
  'retry_limit',
  'negative_caching',
  'iommu',
  'ats',
  'atc_order',
  'pasid',
  'walk_cache',
  'leaf_only',
  'release',
  'nonblock',
  'mm',
] as const
export const SW_KEYS = [
  'name',
  'type',
  'cached',
  'release',
  'nonblock',
  'protocol',
  'hmm_retry',
  'mm',
] as const

export function parseSecondaries(
  raw: Obj,
  issues: Issues,
  arch: Arch | null,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
  pageRef: (n: string) => number | null,
): { secondaries: SecondaryDecl[]; secIndex: Map<string, number> } {
  const secondaries: SecondaryDecl[] = []
  const secIndex = new Map<string, number>()
  const rawSec = raw.secondary === undefined ? [] : raw.secondary
  if (!Array.isArray(rawSec)) {
    issues.add(
      ['secondary'],
      `secondary must be a list of { name, type: hw-walker | sw-mirror, ... }; found ${typeName(rawSec)}`,
    )
  } else {
    rawSec.forEach((s, i) => {
      const path = ['secondary', i]
      if (i === SCENARIO_LIMITS.secondaries)
        issues.add(
          path,
          `too many secondaries: at most ${SCENARIO_LIMITS.secondaries} (this is secondary ${i + 1}); the engine keeps one bit per secondary`,
        )
      if (i >= SCENARIO_LIMITS.secondaries) return
      if (!isObj(s)) {
        issues.add(
          path,
          `each secondary must be a mapping such as { name: iommu, type: hw-walker }; found ${typeName(s)}`,
        )
        return
      }
      const type = oneOf<'hw-walker' | 'sw-mirror'>(
        s.type,
        ['hw-walker', 'sw-mirror'],
        [...path, 'type'],
        issues,
        'secondary type',
      )
      checkKeys(s, type === 'sw-mirror' ? SW_KEYS : HW_KEYS, path, issues, `secondary ${i}`)
      const name = typeof s.name === 'string' && NAME.test(s.name) ? s.name : null
      if (name === null)
        issues.add([...path, 'name'], `secondary name must be an identifier; found ${typeName(s.name)}`)
      else if (secIndex.has(name)) issues.add([...path, 'name'], `secondary '${name}' is declared twice`)
      const cached: number[] = []
      if (s.cached !== undefined) {
        if (!Array.isArray(s.cached))
          issues.add([...path, 'cached'], `cached must be a list of page names; found ${typeName(s.cached)}`)
        else
          s.cached.forEach((c, j) => {
            const pi = typeof c === 'string' ? pageRef(c) : null
            if (pi === null && typeof c === 'string' && pageIndex.get(c) === -1) return
            if (pi === null)
              issues.add(
                [...path, 'cached', j],
                `unknown page ${typeName(c)} in cached; pages are ${[...pageIndex.keys()].join(', ')}`,
              )
            else if (pages[pi]!.mapped === 'none')
              issues.add(
                [...path, 'cached', j],
                `page '${c}' has no PTE (mapped: none), so nothing can be cached for it`,
              )
            else if (cached.includes(pi)) issues.add([...path, 'cached', j], `page '${c}' is listed twice`)
            else cached.push(pi)
          })
      }
      const release =
        s.release === undefined
          ? undefined
          : (oneOf<'block' | 'none'>(s.release, ['block', 'none'], [...path, 'release'], issues, 'release') ??
            undefined)
      const nonblock =
        s.nonblock === undefined
          ? undefined
          : (oneOf<'proceed' | 'eagain'>(
              s.nonblock,
              ['proceed', 'eagain'],
              [...path, 'nonblock'],
              issues,
              'nonblock',
            ) ?? undefined)
      const mm = boundMm(s, path, issues, raw, pages, cached)
      // Only written when given: the decls of every other scenario stay as they were.
      const exitKeys = {
        ...(release ? { release } : {}),
        ...(nonblock ? { nonblock } : {}),
        ...(mm === 1 ? { mm } : {}),
      }
      if (name === null || type === null) return
      secIndex.set(name, secondaries.length)
      const kernelCached = cached.filter((pi) => pages[pi]!.kind === 'kernel')
      if (type === 'sw-mirror') {
        if (kernelCached.length > 0)
          issues.add(
            [...path, 'cached'],
            `a sw-mirror mirrors a process's address space; kernel page '${pages[kernelCached[0]!]!.name}' cannot be in it`,
          )
        secondaries.push({ type, name, cached, ...exitKeys, ...mirrorProtocol(s, path, issues) })
        return
      }
      const pasid =
        s.pasid === undefined
          ? 'user'
          : oneOf<'user' | 'supervisor'>(s.pasid, ['user', 'supervisor'], [...path, 'pasid'], issues, 'pasid')
      if (pasid === 'supervisor' && arch === 'arm64')
        issues.add(
          [...path, 'pasid'],
          'supervisor PASIDs are modelled for x86_64 (VT-d); mainline SMMUv3 SVA binds user address spaces only',
        )
      if (kernelCached.length > 0 && pasid !== 'supervisor')
        issues.add(
          [...path, 'cached'],
          `kernel page '${pages[kernelCached[0]!]!.name}' can be cached only by a device with pasid: supervisor`,
        )
      const btm = s.btm === undefined ? false : bool(s.btm, [...path, 'btm'], issues, 'btm')
      if (btm && arch === 'x86_64')
        issues.add(
          [...path, 'btm'],
          'btm (broadcast TLB maintenance snooped by an SMMU) exists only on arm64',
        )
      const flushAt =
        s.flush_at === undefined
          ? 'both'
          : oneOf<FlushAt>(s.flush_at, ['start', 'end', 'both'], [...path, 'flush_at'], issues, 'flush_at')
      const retryLimit =
        s.retry_limit === undefined || s.retry_limit === null
          ? null
          : int(s.retry_limit, [...path, 'retry_limit'], issues, 'retry_limit', 1)
      const negativeCaching =
        s.negative_caching === undefined
          ? true
          : bool(s.negative_caching, [...path, 'negative_caching'], issues, 'negative_caching')
      const iommu =
        s.iommu === undefined
          ? arch === 'x86_64'
            ? 'vt-d'
            : 'smmu-v3'
          : oneOf<'smmu-v3' | 'vt-d' | 'amd-v2'>(
              s.iommu,
              ['smmu-v3', 'vt-d', 'amd-v2'],
              [...path, 'iommu'],
              issues,
              'iommu',
            )
      const ats = s.ats === undefined ? false : bool(s.ats, [...path, 'ats'], issues, 'ats')
      const atcOrder =
        s.atc_order === undefined
          ? 'iotlb-first'
          : oneOf<'iotlb-first' | 'atc-first'>(
              s.atc_order,
              ['iotlb-first', 'atc-first'],
              [...path, 'atc_order'],
              issues,
              'atc_order',
            )
      const walkCache =
        s.walk_cache === undefined ? false : bool(s.walk_cache, [...path, 'walk_cache'], issues, 'walk_cache')
      const leafOnly =
        s.leaf_only === undefined ? false : bool(s.leaf_only, [...path, 'leaf_only'], issues, 'leaf_only')
      if (leafOnly && walkCache !== true)
        issues.add(
          [...path, 'leaf_only'],
          'leaf_only says the driver never invalidates its walk cache: it needs walk_cache: true',
        )
      if (s.atc_order !== undefined && ats !== true)
        issues.add(
          [...path, 'atc_order'],
          'atc_order orders the IOTLB and ATC invalidations: it needs ats: true (a device ATC)',
        )
      secondaries.push({
        type,
        name,
        pasid: pasid ?? 'user',
        ats: ats ?? false,
        atcOrder: atcOrder ?? 'iotlb-first',
        iommu: iommu ?? 'vt-d',
        btm: btm ?? false,
        flushAt: flushAt ?? 'both',
        cached,
        retryLimit,
        negativeCaching: negativeCaching ?? true,
        walkCache: walkCache ?? false,
        leafOnly: leafOnly ?? false,
        ...exitKeys,
      })
    })
  }

  return { secondaries, secIndex }
}

/**
 * `mm: process | child`: the mm the driver bound the secondary to (default process). A device
 * bound to the fork child (iommu_sva_bind_device, KVM_CREATE_VM or mmu_interval_notifier_insert
 * in the child, after fork returned: v6.6 dup_mmap copies no subscription) hears only the
 * notifier calls on the child's mm and translates and faults through the child's page table.
 * Whether the scenario has a fork child is checked with the threads (scenario/threads.ts).
 */
function boundMm(
  s: Obj,
  path: readonly (string | number)[],
  issues: Issues,
  raw: Obj,
  pages: readonly PageDecl[],
  cached: readonly number[],
): 0 | 1 {
  if (s.mm === undefined) return 0
  const m = oneOf<'process' | 'child'>(s.mm, ['process', 'child'], [...path, 'mm'], issues, 'mm')
  if (m !== 'child') return 0
  const notCow = cached.find((pi) => pages[pi]!.cow !== true)
  if (notCow !== undefined)
    issues.add(
      [...path, 'cached'],
      `a secondary bound to the fork child caches only what the child maps from the start: cow: true pages; '${pages[notCow]!.name}' is not one (with a fork op the driver binds after fork returns, with nothing cached)`,
    )
  // Keys the model gives a meaning on the process's mm only.
  const refused: ReadonlyArray<readonly [string, string]> = [
    [
      'release',
      "->release runs from the exit of the mm's last user, and the model's exit and oom_reap work on the process's mm: the fork child does not exit, so it would never apply",
    ],
    ['nonblock', "the OOM reaper's nonblocking range_start reaps the process's mm, not the child's"],
    ['pasid', 'a supervisor PASID is modelled for the process (kernel addresses through init_mm)'],
  ]
  for (const [key, why] of refused)
    // (Writing the default, pasid: user, is fine.)
    if (s[key] !== undefined && s[key] !== 'user')
      issues.add([...path, key], `${key} with mm: child is not modelled: ${why}`)
  if (raw.thp !== undefined)
    issues.add(
      [...path, 'mm'],
      "mm: child in a scenario with a huge page (thp:) is not modelled: a device bound to the child is not checked against the huge-page paths (the child's huge PMD, its 2 MiB entries, KVM's GUP-fast walk of it)",
    )
  return 1
}

/**
 * A sw-mirror's `protocol` (kvm | hmm) and `hmm_retry`; only written when given, so every other
 * scenario's decl stays as it was.
 */
function mirrorProtocol(
  s: Obj,
  path: readonly (string | number)[],
  issues: Issues,
): { protocol?: 'kvm' | 'hmm'; hmmRetry?: boolean } {
  const protocol =
    s.protocol === undefined
      ? undefined
      : (oneOf<'kvm' | 'hmm'>(s.protocol, ['kvm', 'hmm'], [...path, 'protocol'], issues, 'protocol') ??
        undefined)
  const hmmRetry =
    s.hmm_retry === undefined
      ? undefined
      : (bool(s.hmm_retry, [...path, 'hmm_retry'], issues, 'hmm_retry') ?? undefined)
  if (s.hmm_retry !== undefined && protocol !== 'hmm')
    issues.add(
      [...path, 'hmm_retry'],
      'hmm_retry says whether the driver calls mmu_interval_read_retry: it needs protocol: hmm (an mmu_interval_notifier)',
    )
  return {
    ...(protocol === 'hmm' ? { protocol } : {}),
    ...(protocol === 'hmm' && hmmRetry !== undefined ? { hmmRetry } : {}),
  }
}

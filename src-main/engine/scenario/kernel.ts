/** `mmu_gather:`, `kernel:` (toggles for the kernel versions before fixes) and `costs:`. */
import { bool, checkKeys, didYouMean, int, isObj, Issues, typeName, type Obj } from './common'
import type { ThpDecl } from '../types'
import { COST_KEYS } from '../costs'
import type { Scenario } from '../types'

/** The keys of `mmu_gather:`. */
export const MMU_GATHER_KEYS = ['batch'] as const

/** The `kernel:` toggles (YAML names), each defaulting to v6.6 behaviour (true). */
export const KERNEL_KEYS = [
  'pfnmap_flush',
  'dirty_flush_under_ptl',
  'delay_rmap',
  'vtd_full_range_fix',
  'migrate_vma_flush_under_ptl',
  'collapse_notify',
  'gup_fast_ipi',
  'mremap_flush_under_ptl',
] as const

export interface KernelSection {
  readonly gatherBatch: number | null
  readonly kernel: Scenario['kernel']
  readonly costs: Record<string, number>
}

export function parseKernel(raw: Obj, issues: Issues, thp: readonly ThpDecl[]): KernelSection {
  let gatherBatch: number | null = null
  if (raw.mmu_gather !== undefined) {
    if (!isObj(raw.mmu_gather))
      issues.add(
        ['mmu_gather'],
        `mmu_gather must be a mapping such as { batch: 2 }; found ${typeName(raw.mmu_gather)}`,
      )
    else {
      checkKeys(raw.mmu_gather, MMU_GATHER_KEYS, ['mmu_gather'], issues, 'mmu_gather')
      if (raw.mmu_gather.batch !== undefined && raw.mmu_gather.batch !== null) {
        gatherBatch = int(raw.mmu_gather.batch, ['mmu_gather', 'batch'], issues, 'mmu_gather.batch', 1)
      }
    }
  }

  let pfnmapFlush = true
  let dirtyFlushUnderPtl = true
  let delayRmap = true
  let vtdFullRangeFix = true
  let migrateVmaFlushUnderPtl = true
  let collapseNotify = true
  let gupFastIpi = true
  let mremapFlushUnderPtl = true
  if (raw.kernel !== undefined) {
    if (!isObj(raw.kernel))
      issues.add(
        ['kernel'],
        `kernel must be a mapping of toggles such as { pfnmap_flush: false }; found ${typeName(raw.kernel)}`,
      )
    else {
      const k = raw.kernel
      checkKeys(k, KERNEL_KEYS, ['kernel'], issues, 'kernel')
      const toggle = (key: (typeof KERNEL_KEYS)[number]): boolean | null =>
        k[key] === undefined ? null : bool(k[key], ['kernel', key], issues, `kernel.${key}`)
      pfnmapFlush = toggle('pfnmap_flush') ?? true
      vtdFullRangeFix = toggle('vtd_full_range_fix') ?? true
      migrateVmaFlushUnderPtl = toggle('migrate_vma_flush_under_ptl') ?? true
      const dirty = toggle('dirty_flush_under_ptl')
      const delay = toggle('delay_rmap')
      dirtyFlushUnderPtl = dirty ?? true
      collapseNotify = toggle('collapse_notify') ?? true
      gupFastIpi = toggle('gup_fast_ipi') ?? true
      mremapFlushUnderPtl = toggle('mremap_flush_under_ptl') ?? true
      if (k.collapse_notify !== undefined && !thp.some((h) => h.kind === 'file'))
        issues.add(
          ['kernel', 'collapse_notify'],
          'collapse_notify (f268f6cf875f) concerns the file/shmem collapse path: it needs a huge page with kind: file under thp:',
        )
      // The kernel before 1cf35d47712d had no delayed rmap either: delay_rmap follows it.
      delayRmap = delay ?? dirtyFlushUnderPtl
      if (delay === true && dirty === false)
        issues.add(
          ['kernel', 'delay_rmap'],
          'delay_rmap (5df397dec7c4, 2022) delays page_remove_rmap until the flush that 1cf35d47712d (2014) forces under the PTL; it needs dirty_flush_under_ptl: true',
        )
    }
  }

  const costs: Record<string, number> = {}
  if (raw.costs !== undefined) {
    if (!isObj(raw.costs))
      issues.add(
        ['costs'],
        `costs must map cost-table keys to nanoseconds, as in { iopf: 700000 }; found ${typeName(raw.costs)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.costs)) {
        if (!(COST_KEYS as readonly string[]).includes(k)) {
          issues.key(
            ['costs', k],
            `unknown cost '${k}'${didYouMean(k, COST_KEYS)}; keys are ${COST_KEYS.join(', ')}`,
          )
          continue
        }
        const ns = int(v, ['costs', k], issues, `costs.${k} (ns)`, 0)
        if (ns !== null) costs[k] = ns
      }
  }

  return {
    gatherBatch,
    kernel: {
      pfnmapFlush,
      dirtyFlushUnderPtl,
      delayRmap,
      vtdFullRangeFix,
      migrateVmaFlushUnderPtl,
      collapseNotify,
      gupFastIpi,
      mremapFlushUnderPtl,
    },
    costs,
  }
}

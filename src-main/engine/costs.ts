/**
 * Simulated-time cost table (reference §6). Every figure names its source and reliability:
 * H = measured in a primary source, M = primary source on another platform or derived,
 * L = secondary source or estimate. Results say which table they used.
 */
import type { Arch } from './types'

export type CostKey =
  | 'cpu_flush_local'
  | 'cpu_flush_ipi'
  | 'cpu_flush_tlbi'
  | 'smmu_tlbi_va'
  | 'smmu_tlbi_asid'
  | 'smmu_cmd_sync'
  | 'vtd_qi_sync'
  | 'amd_inv'
  | 'iopf'
  | 'mirror_zap'
  | 'mirror_fault'
  | 'cow_copy_fault'
  | 'reuse_fault'
  | 'iotlb_walk'
  | 'atc_inv'
  | 'ats_translation'

export interface CostEntry {
  readonly ns: number
  readonly source: string
  readonly reliability: 'H' | 'M' | 'L'
}

export const COST_TABLE_NAME = 'default-v2'

export const COSTS: Readonly<Record<CostKey, CostEntry>> = {
  cpu_flush_local: {
    ns: 100,
    source: 'x86 local INVLPG, "100s of cycles" (Nadav Amit, LKML 2019-05)',
    reliability: 'M',
  },
  cpu_flush_ipi: {
    ns: 2000,
    source: "x86 remote shootdown IPI round trip, ~1-3 us (Amit ATC'17; blogs)",
    reliability: 'L',
  },
  cpu_flush_tlbi: {
    ns: 350,
    source: 'arm64 TLBI+DSB saved by eliding an mprotect flush, 3.2 -> 2.85 us (c320dbb7c80d)',
    reliability: 'M',
  },
  smmu_tlbi_va: {
    ns: 130,
    source:
      'SMMU TLBI by VA, ~0.13 us amortized (32 MiB unmap with 8,192 TLBIVA = 1,033 us, qcom SMMUv2 tlb_flush_walk commit)',
    reliability: 'M',
  },
  smmu_tlbi_asid: {
    ns: 500,
    source: 'SMMUv3 CMD_TLBI_NH_ASID (one command; no primary figure, estimate)',
    reliability: 'L',
  },
  smmu_cmd_sync: {
    ns: 1700,
    source: 'SMMU CMD_SYNC wait: iommu_unmap of 4 KiB incl. TLBI+sync 1.854 us minus one TLBI (qcom SMMUv2)',
    reliability: 'M',
  },
  vtd_qi_sync: {
    ns: 1000,
    source:
      'VT-d qi_submit_sync IOTLB invalidation, 409 samples, max ~1 us (dmar_perf_latency, QEMU qpl-compression.rst)',
    reliability: 'H',
  },
  amd_inv: {
    ns: 1000,
    source: 'AMD IOMMUv2 INVALIDATE_IOMMU_PAGES + COMPLETION_WAIT (no primary figure; VT-d order assumed)',
    reliability: 'L',
  },
  iopf: {
    ns: 9000,
    source: 'VT-d I/O page fault (PRQ) handling, avg 9 us (dmar_perf_latency svm_prq)',
    reliability: 'H',
  },
  mirror_zap: {
    ns: 2000,
    source: 'KVM SPTE zap + kvm_flush_remote_tlbs; no primary figure (order of us, estimate)',
    reliability: 'L',
  },
  mirror_fault: {
    ns: 5000,
    source: 'KVM stage-2/EPT refault: exit, GUP, install; no primary figure (estimate)',
    reliability: 'L',
  },
  cow_copy_fault: {
    ns: 1500,
    source: 'x86 CoW copy fault ~1500 ns (Yuan-Hao Hsu, linux-mm 2026)',
    reliability: 'L',
  },
  reuse_fault: { ns: 420, source: 'x86 reuse fault ~420 ns (Yuan-Hao Hsu, linux-mm 2026)', reliability: 'L' },
  iotlb_walk: { ns: 300, source: 'IOMMU page-table walk on an IOTLB miss (estimate)', reliability: 'L' },
  atc_inv: {
    ns: 2000,
    source:
      'device ATC invalidation round trip: VT-d dev-IOTLB qi_submit_sync, max ~2 us on an on-die device (dmar_perf_latency, QEMU qpl-compression.rst); discrete PCIe devices likely slower; SMMU CMD_ATC_INV + CMD_SYNC assumed the same',
    reliability: 'M',
  },
  ats_translation: {
    ns: 1000,
    source: 'PCIe ATS translation request + completion on an ATC miss (no primary figure; estimate)',
    reliability: 'L',
  },
}

export const COST_KEYS = Object.keys(COSTS) as CostKey[]

/** The IOMMU drivers whose invalidation shapes the lab models (reference 4.1-4.3, v6.6). */
export type IommuKind = 'smmu-v3' | 'vt-d' | 'amd-v2'

/** SMMUv3 SVA: CMDQ_MAX_TLBI_OPS (d5afb4b47e13): at 512 pages or more, one ASID-wide TLBI. */
export const SMMU_MAX_TLBI_OPS = 512

export type InvalidationKind = 'page' | 'range' | 'full'

/**
 * What one arch_invalidate_secondary_tlbs / invalidate_range call costs the driver (v6.6):
 * - SMMUv3 (arm_smmu_mm_arch_invalidate_secondary_tlbs): a TLBI per page plus CMD_SYNC, or an
 *   ASID-wide TLBI at 512 pages or for the whole address space; with BTM no TLBI at all (the
 *   snoop did it); with ATS masters, one CMD_ATC_INV batch plus CMD_SYNC;
 * - VT-d (intel_flush_svm_range): one qi_submit_sync per naturally aligned power-of-two chunk,
 *   or one PASID-wide flush; with ATS, a dev-IOTLB qi_submit_sync per chunk as well;
 * - AMD IOMMUv2 (mn_arch_invalidate_secondary_tlbs): one page, else the whole PASID; with ATS
 *   one INVALIDATE_IOTLB_PAGES.
 */
export function invalidationCost(
  kind: IommuKind,
  pages: readonly number[] | null,
  ats = false,
  iotlb = true,
): { kind: InvalidationKind; cost: Array<[CostKey, number]> } {
  const n = pages === null ? Infinity : pages.length
  const shape: InvalidationKind = pages === null ? 'full' : n === 1 ? 'page' : 'range'
  switch (kind) {
    case 'smmu-v3': {
      const tlbi: Array<[CostKey, number]> = !iotlb
        ? []
        : n >= SMMU_MAX_TLBI_OPS
          ? [
              ['smmu_tlbi_asid', 1],
              ['smmu_cmd_sync', 1],
            ]
          : [
              ['smmu_tlbi_va', n],
              ['smmu_cmd_sync', 1],
            ]
      return {
        kind: n >= SMMU_MAX_TLBI_OPS ? 'full' : shape,
        cost: ats ? [...tlbi, ['atc_inv', 1]] : tlbi,
      }
    }
    case 'vt-d': {
      const chunks = pages === null ? 1 : alignedChunks(pages)
      return {
        kind: shape,
        cost: ats
          ? [
              ['vtd_qi_sync', chunks],
              ['atc_inv', chunks],
            ]
          : [['vtd_qi_sync', chunks]],
      }
    }
    case 'amd-v2':
      return {
        kind: n === 1 ? 'page' : 'full',
        cost: ats
          ? [
              ['amd_inv', 1],
              ['atc_inv', 1],
            ]
          : [['amd_inv', 1]],
      }
  }
}

/** Naturally aligned power-of-two blocks covering a set of page indices. */
export function alignedChunks(pages: readonly number[]): number {
  const sorted = [...new Set(pages)].sort((a, b) => a - b)
  let chunks = 0
  let i = 0
  while (i < sorted.length) {
    // Extend a run of consecutive pages, then split it into aligned power-of-two blocks.
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    let start = sorted[i]!
    const end = sorted[j]! + 1
    while (start < end) {
      let size = 1
      while (start % (size * 2) === 0 && start + size * 2 <= end) size *= 2
      chunks++
      start += size
    }
    i = j + 1
  }
  return chunks
}

export interface InvalidationKinds {
  page: number
  range: number
  full: number
  /** Device ATC invalidations (ATS): one per driver call that reaches an ATS device. */
  atc: number
}

export function defaultIommu(arch: Arch): IommuKind {
  return arch === 'arm64' ? 'smmu-v3' : 'vt-d'
}

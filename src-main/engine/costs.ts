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
  | 'sec_inval_vtd'
  | 'sec_inval_smmu'
  | 'iopf'
  | 'mirror_zap'
  | 'mirror_fault'
  | 'cow_copy_fault'
  | 'reuse_fault'
  | 'iotlb_walk'

export interface CostEntry {
  readonly ns: number
  readonly source: string
  readonly reliability: 'H' | 'M' | 'L'
}

export const COST_TABLE_NAME = 'default-v1'

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
  sec_inval_vtd: {
    ns: 1000,
    source:
      'VT-d qi_submit_sync IOTLB invalidation, 409 samples, max ~1 us (dmar_perf_latency, QEMU qpl-compression.rst)',
    reliability: 'H',
  },
  sec_inval_smmu: {
    ns: 1854,
    source: 'SMMU iommu_unmap 4 KiB incl. TLBI+CMD_SYNC, 1.854 us (qcom SMMUv2 tlb_flush_walk commit)',
    reliability: 'M',
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
}

export function secInvalCost(arch: Arch): CostKey {
  return arch === 'arm64' ? 'sec_inval_smmu' : 'sec_inval_vtd'
}

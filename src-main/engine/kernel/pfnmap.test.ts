/**
 * A VM_PFNMAP page with a driver ->fault (fault: insert_pfn, vfio_pci_mmap_fault): after the
 * driver's unmap_mapping_range revoke, a CPU fault or a device page request maps the same pfn
 * again under the PTL; without a ->fault it is VM_FAULT_SIGBUS.
 */
import { describe, expect, it } from 'vitest'
import { scenarioOf } from '../../node/scenarioTestkit'
import { makePolicy } from '../policy'
import { allEvents, lines, traced } from './traceTestkit'

const sc = (fault: string, dev = '', cpu = 'wait revoked, read BAR -> a') =>
  scenarioOf(
    `
      title: pfnmap refault
      arch: x86_64
      pages:
        BAR: { value: 1, prot: rw, kind: pfnmap${fault} }
      secondary:
        - { name: iommu, type: hw-walker }
      cpus:
        DRV: [unmap_mapping_range BAR, signal revoked]
        C1: [${cpu}]
      devices:
        D0: { via: iommu, ops: [${dev || 'wait revoked'}] }
    `,
    'pfnmap.test.yaml',
  )
const CPU_AFTER_REVOKE = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]

describe('pfnmap ->fault after a revoke (vfio_pci_mmap_fault -> vmf_insert_pfn)', () => {
  it('the fault takes mmap_lock, then the PTL, inserts the BAR pfn under it, and the read returns the BAR', () => {
    const ex = traced(sc(', fault: insert_pfn'), makePolicy('start-end'), CPU_AFTER_REVOKE)
    const l = lines(ex, { thread: 'C1', kinds: ['lock', 'info', 'pte', 'access'] })
    const ptl = l.indexOf('lock pte_offset_map_lock: take the page-table lock')
    const handler = l.indexOf(
      'info vfio_pci_mmap_fault: BAR: down_read(memory_lock), vmf_insert_pfn(pfn 1): VM_FAULT_NOPAGE',
    )
    const pte = l.indexOf('pte vfio_pci_mmap_fault -> vmf_insert_pfn: PTE BAR := pfn 1 RW dirty')
    const unlock = l.findIndex((x, i) => i > pte && x.startsWith('lock pte_unmap_unlock'))
    expect(ptl).toBeGreaterThan(l.indexOf('lock mmap_read_lock: take mmap_lock for read'))
    expect(l.indexOf('lock mmap_read_lock: take mmap_lock for read')).toBeGreaterThanOrEqual(0)
    expect(handler).toBeGreaterThan(ptl)
    expect(pte).toBe(handler + 1)
    expect(unlock).toBeGreaterThan(pte)
    expect(l).toContain('access load: read 1 from BAR (pfn 1) via CPU TLB -> a')
    expect(ex.violations).toEqual([])
  })

  it('without a ->fault the same access gets VM_FAULT_SIGBUS and reads nothing', () => {
    const ex = traced(sc(''), makePolicy('start-end'), CPU_AFTER_REVOKE)
    const evs = allEvents(ex).filter((e) => e.thread === 'C1')
    expect(evs.some((e) => e.text === 'BAR: VM_PFNMAP with no PTE: VM_FAULT_SIGBUS')).toBe(true)
    expect(evs.some((e) => e.kind === 'access')).toBe(false)
    expect(ex.final.regs[0]).toBeNull()
  })

  it('a device page request after the revoke is served by the same ->fault (iommu_sva_handle_iopf -> handle_mm_fault)', () => {
    const ex = traced(
      sc(', fault: insert_pfn', 'wait revoked, read BAR -> c', 'wait revoked'),
      makePolicy('start-end'),
    )
    const d = lines(ex, { thread: 'D0', kinds: ['info', 'access'] })
    expect(d).toContain(
      'info vfio_pci_mmap_fault: BAR: down_read(memory_lock), vmf_insert_pfn(pfn 1): VM_FAULT_NOPAGE',
    )
    expect(d.some((x) => x.startsWith('access load: read 1 from BAR (pfn 1)'))).toBe(true)
  })

  it('fault is a pfnmap key with values sigbus | insert_pfn', () => {
    expect(() => sc(', fault: insert')).toThrow(/fault must be one of sigbus, insert_pfn/)
    expect(() =>
      scenarioOf(
        `
          title: anon
          arch: x86_64
          pages:
            P: { value: 1, fault: insert_pfn }
          cpus:
            C0: [read P]
        `,
        'x.yaml',
      ),
    ).toThrow(
      /fault says what a driver's VM_PFNMAP mapping does .* it needs kind: pfnmap \(this page is anon\)/,
    )
  })
})

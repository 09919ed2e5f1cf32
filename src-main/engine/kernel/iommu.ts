/**
 * The second half of an IOMMU driver's invalidation when it sends the device-ATC command before
 * the IOTLB command (`atc_order: atc-first`, a hypothetical driver: v6.6 SMMUv3 and VT-d send the
 * IOTLB command first, reference 4.1-4.2). Each command is waited for (CMD_SYNC /
 * qi_submit_sync), so the window between them is real time in which the device can send an
 * ATS translation request. The calling thread runs this step next, with the locks it holds.
 */
import { num, type Proc } from './proc'

export const iotlbCommand: Proc = {
  start: {
    run: (c, f) => {
      const pages = f.l.pages
      c.iotlbCommand(num(f, 'sec'), Array.isArray(pages) ? pages : null, String(f.l.why))
      c.ret()
    },
  },
}

/** Human-readable differences between two states: what a step changed. */
import { pteText } from './ctx'
import {
  isKernelPage,
  pageMm,
  tableCount,
  tableOf,
  tableTag,
  type FileState,
  type LabState,
  type TlbEntry,
} from './state'
import type { Scenario, ThpDecl } from './types'
import { count } from './plural'

function entryText(e: TlbEntry): string {
  return `pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${e.huge ? ' (2 MiB)' : ''}${e.revoked ? ' (revoked)' : ''}`
}

function diffEntries(
  label: string,
  a: readonly TlbEntry[],
  b: readonly TlbEntry[],
  name: (p: number) => string,
  out: string[],
): void {
  const pages = new Set([...a.map((e) => e.page), ...b.map((e) => e.page)])
  for (const p of [...pages].sort((x, y) => x - y)) {
    const x = a.find((e) => e.page === p)
    const y = b.find((e) => e.page === p)
    if (x && !y) out.push(`${label}: -${name(p)} (${entryText(x)})`)
    else if (!x && y) out.push(`${label}: +${name(p)} -> ${entryText(y)}`)
    else if (x && y && JSON.stringify(x) !== JSON.stringify(y))
      out.push(`${label}: ${name(p)} ${entryText(x)} -> ${entryText(y)}`)
  }
}

export function diffStates(sc: Scenario, a: LabState, b: LabState): string[] {
  const out: string[] = []
  const name = (p: number): string => sc.pages[p]!.name
  const kernel = (p: number): boolean => isKernelPage(sc, p)
  const walkCaches = sc.secondaries.some((d) => d.type === 'hw-walker' && d.walkCache)
  a.mms.forEach((m, i) => {
    const n = b.mms[i]!
    const who = i === 0 ? 'PTE' : i === 1 ? 'child PTE' : 'kernel PTE'
    m.ptes.forEach((p, j) => {
      const q = n.ptes[j]!
      if (kernel(j) !== (i === 2)) return
      if (JSON.stringify(p) !== JSON.stringify(q))
        out.push(`${who} ${name(j)}: ${pteText(p)} -> ${pteText(q)}`)
    })
    const multi = tableCount(sc) > 1
    if (i === 0)
      m.pt.forEach((_, k) => {
        const tag = tableTag(sc, k)
        if (isThpTable(sc, k)) {
          if (JSON.stringify(m.tbl[k]) !== JSON.stringify(n.tbl[k]) || m.pt[k] !== n.pt[k])
            out.push(`PTE table${tag}: ${tableText(m, k)} -> ${tableText(n, k)}`)
        } else if (
          (walkCaches || multi) &&
          ((m.tbl[k] !== null) !== (n.tbl[k] !== null) || m.pt[k] !== n.pt[k])
        )
          out.push(
            `PTE page${tag}: ${pageText(m, k)} -> ${pageText(n, k)}${n.pt[k] || n.tbl[k] ? '' : ' (freed)'}`,
          )
      })
    m.vmas.forEach((v, j) => {
      if (v !== n.vmas[j])
        out.push(`${i === 0 ? 'VMA' : 'child VMA'} ${name(j)}: ${v ?? 'none'} -> ${n.vmas[j] ?? 'none'}`)
    })
  })
  sc.threads.forEach((t, i) => {
    if (t.kind === 'cpu') diffEntries(`${t.name} TLB`, a.tlbs[i]!, b.tlbs[i]!, name, out)
  })
  sc.secondaries.forEach((d, i) => {
    const ats = d.type === 'hw-walker' && d.ats
    diffEntries(
      `${d.name} ${d.type === 'hw-walker' ? (ats ? 'IOTLB' : 'TLB') : 'shadow'}`,
      a.secs[i]!.entries,
      b.secs[i]!.entries,
      name,
      out,
    )
    if (ats) diffEntries(`${d.name} ATC`, a.secs[i]!.atc, b.secs[i]!.atc, name, out)
    a.secs[i]!.wc.forEach((x, k) => {
      const y = b.secs[i]!.wc[k]!
      if (x === y) return
      const tag = tableTag(sc, k)
      out.push(`${d.name} walk cache: ${y ? '+' : '-'}PTE table${tag}`)
    })
  })
  b.frames.forEach((f, i) => {
    const o = a.frames[i]
    if (!o) out.push(`pfn ${i}: allocated (gen ${f.gen}, value ${f.v})`)
    else if (o.free !== f.free || o.gen !== f.gen)
      out.push(`pfn ${i}: ${f.free ? 'freed' : `allocated (gen ${f.gen}, value ${f.v})`}`)
    else if (o.v !== f.v) out.push(`pfn ${i}: value ${o.v} -> ${f.v}`)
  })
  sc.registers.forEach((r, i) => {
    if (a.regs[i] !== b.regs[i]) out.push(`${r} := ${b.regs[i]}`)
  })
  b.swap.forEach((v, i) => {
    if (a.swap[i] !== v) out.push(`swap slot ${i}: ${a.swap[i] ?? 'free'} -> ${v ?? 'free'}`)
  })
  b.files.forEach((f, i) => {
    const o = a.files[i]
    if (!f || !o) return
    if (o.dirty !== f.dirty)
      out.push(`folio ${name(i)}: ${o.dirty ? 'dirty' : 'clean'} -> ${f.dirty ? 'dirty' : 'clean'}`)
    if (o.disk !== f.disk) out.push(`disk ${name(i)}: ${o.disk} -> ${f.disk}`)
  })
  return out
}

/** The huge page whose PMD range table k is, or null. */
function thpOfTable(sc: Scenario, k: number): ThpDecl | null {
  return sc.thp.find((h) => tableOf(sc, h.pages[0]!) === k) ?? null
}
/** Whether table k holds a huge page. */
function isThpTable(sc: Scenario, k: number): boolean {
  return thpOfTable(sc, k) !== null
}

/** Where table k's PTE page is (free_pgtables: munmap's, mremap's or exit_mmap's). */
function pageText(m: LabState['mms'][number], k: number): string {
  if (m.pt[k]) return 'linked in the PMD'
  return m.tbl[k] ? 'unlinked by free_pgtables, not yet freed' : 'none'
}

/** Where the huge page's PTE table is (THP scenarios). */
function tableText(m: LabState['mms'][number], k: number): string {
  if (m.pt[k]) return 'linked in the PMD'
  const t = m.tbl[k]
  if (!t) return 'none (freed)'
  const live = t.filter((p) => p !== null).length
  return live > 0 ? `detached, ${live} PTEs still present` : 'deposited (empty)'
}

function fileText(sc: Scenario, f: FileState): string {
  const holder = f.lock >= 0 ? `, locked by ${sc.threads[f.lock]?.name ?? `thread ${f.lock}`}` : ''
  if (f.pfn < 0) return `truncated (out of the page cache)${holder}, disk ${f.disk}`
  return `pfn ${f.pfn}, ${f.dirty ? 'dirty' : 'clean'}${holder}, disk ${f.disk}${f.trunc ? ', beyond EOF' : ''}`
}

/** The whole machine as [subject, value] rows, with the subjects diffStates uses. */
export function stateView(sc: Scenario, s: LabState): Array<[string, string]> {
  const rows: Array<[string, string]> = []
  const name = (p: number): string => sc.pages[p]!.name
  const tname = (t: number): string => sc.threads[t]?.name ?? `thread ${t}`
  const entries = (es: readonly TlbEntry[]): string =>
    es.length === 0 ? '(empty)' : es.map((e) => `${name(e.page)} -> ${entryText(e)}`).join(', ')
  s.mms.forEach((m, i) => {
    if (!m.live) return
    const isKernel = (p: number): boolean => isKernelPage(sc, p)
    if (i === 2) {
      // init_mm: the vmalloc PTEs, and which areas wait for the lazy purge.
      m.ptes.forEach((p, j) => {
        if (isKernel(j))
          rows.push([
            `kernel PTE ${name(j)}`,
            `${pteText(p)}${s.vlazy[j] ? ' (area on the lazy purge list)' : ''}`,
          ])
      })
      return
    }
    const who = i === 0 ? '' : 'child '
    m.ptes.forEach((p, j) => {
      if (!isKernel(j)) rows.push([`${who}PTE ${name(j)}`, pteText(p)])
    })
    m.vmas.forEach((v, j) => {
      if (!isKernel(j)) rows.push([`${who === '' ? 'VMA' : 'child VMA'} ${name(j)}`, v ?? 'none'])
    })
    const locks = m.ptl.map((h, k) =>
      h >= 0 ? `ptl${tableTag(sc, k)} held by ${tname(h)}` : `ptl${tableTag(sc, k)} free`,
    )
    m.pmdl.forEach((h, k) => {
      if (h >= 0)
        locks.push(
          `pmd_lock${isThpTable(sc, k) ? (sc.thp.length > 1 ? ` of ${thpOfTable(sc, k)!.name}` : '') : tableTag(sc, k)} held by ${tname(h)}`,
        )
    })
    if (m.gupf > 0) locks.push(`${count(m.gupf, 'GUP-fast walker')} with IRQs off`)
    if (i === 0)
      m.pt.forEach((_, k) => {
        if (isThpTable(sc, k)) rows.push([`PTE table${tableTag(sc, k)}`, tableText(m, k)])
        // With several tables, where each PTE page is (one table: only a walk cache cares).
        else if (tableCount(sc) > 1) rows.push([`PTE page${tableTag(sc, k)}`, pageText(m, k)])
      })
    if (m.writer >= 0) locks.push(`mmap_lock write-held by ${tname(m.writer)}`)
    else if (m.readers > 0) locks.push(`mmap_lock read-held by ${m.readers}`)
    rows.push([`${who}locks`, locks.join(', ')])
  })
  sc.threads.forEach((t, i) => {
    if (t.kind === 'cpu') rows.push([`${t.name} TLB`, entries(s.tlbs[i]!)])
  })
  sc.secondaries.forEach((d, i) => {
    const x = s.secs[i]!
    const ats = d.type === 'hw-walker' && d.ats
    rows.push([
      `${d.name} ${d.type === 'hw-walker' ? (ats ? 'IOTLB' : 'TLB') : 'shadow'}`,
      entries(x.entries),
    ])
    if (ats) rows.push([`${d.name} ATC`, entries(x.atc)])
    if (d.type === 'hw-walker' && d.walkCache) {
      const held = x.wc.flatMap((v, k) => (v ? [`PMD${tableTag(sc, k)} -> PTE table${tableTag(sc, k)}`] : []))
      rows.push([`${d.name} walk cache`, held.length ? held.join(', ') : '(empty)'])
    }
    if (d.type === 'sw-mirror') {
      const busy = x.inProg.map((n, p) => (n > 0 ? name(p) : '')).filter(Boolean)
      rows.push([
        `${d.name} seq`,
        `${x.seq}${busy.length ? `, invalidation in progress on ${busy.join(',')}` : ''}`,
      ])
    }
  })
  s.frames.forEach((f, i) => {
    if (i === 0) return
    rows.push([
      `pfn ${i}`,
      f.free ? `free (gen ${f.gen})` : `value ${f.v}, refcount ${f.ref}, mapcount ${f.map}, gen ${f.gen}`,
    ])
  })
  s.swap.forEach((v, i) =>
    rows.push([
      `swap slot ${i}`,
      `${v ?? 'free'}${(s.swapCache[i] ?? -1) >= 0 ? `, swap cache pfn ${s.swapCache[i]}` : ''}`,
    ]),
  )
  s.files.forEach((f, i) => {
    if (f) rows.push([`folio ${name(i)}`, fileText(sc, f)])
  })
  sc.registers.forEach((r, i) => rows.push([r, String(s.regs[i] ?? 'none')]))
  sc.flags.forEach((fl, i) => rows.push([`flag ${fl}`, s.flags[i] ? 'set' : 'clear']))
  return rows
}

/**
 * A cache of translations in a state, named as its state row (`C0 TLB`, `iommu TLB`,
 * `iommu IOTLB`, `iommu ATC`, `kvm shadow`), and the address space its entries translate.
 */
export interface TlbRow {
  readonly subject: string
  readonly entries: readonly TlbEntry[]
  readonly mm: number
}

/** Every CPU TLB, secondary TLB, device ATC and shadow table of a state, as stateView names them. */
export function tlbRows(sc: Scenario, s: LabState): TlbRow[] {
  const rows: TlbRow[] = []
  sc.threads.forEach((t, i) => {
    if (t.kind === 'cpu') rows.push({ subject: `${t.name} TLB`, entries: s.tlbs[i]!, mm: t.mm })
  })
  sc.secondaries.forEach((d, i) => {
    const x = s.secs[i]!
    const ats = d.type === 'hw-walker' && d.ats
    const subject = `${d.name} ${d.type === 'hw-walker' ? (ats ? 'IOTLB' : 'TLB') : 'shadow'}`
    // A secondary translates the mm its driver is bound to (mm: child: the fork child's).
    const mm = d.mm ?? 0
    rows.push({ subject, entries: x.entries, mm })
    if (ats) rows.push({ subject: `${d.name} ATC`, entries: x.atc, mm })
  })
  return rows
}

/**
 * Why a cached translation disagrees with its PTE in `s`, or null when it agrees: the PTE is
 * none or not present, maps another pfn, or is read-only (or clean, where the MMU needs the
 * dirty bit to write) while the entry allows writes. `write: false` asks only about a read:
 * a writable entry over a read-only PTE of the same pfn still reads the right page.
 */
export function staleReason(sc: Scenario, s: LabState, mm: number, e: TlbEntry, write = true): string | null {
  const m = s.mms[pageMm(sc, e.page, mm)]
  const pte = m?.live ? (m.ptes[e.page] ?? null) : null
  const name = sc.pages[e.page]!.name
  if (!pte) return `PTE ${name} is none`
  if (!pte.present || pte.mig || pte.swp !== undefined) return `PTE ${name} is ${pteText(pte)}`
  if (pte.pfn !== e.pfn) return `PTE ${name} maps pfn ${pte.pfn}`
  const f = s.frames[e.pfn]
  if (f && (f.free || f.gen !== e.gen)) return `pfn ${e.pfn} was freed`
  if (write && e.write && !(pte.write && (sc.arch === 'x86_64' || pte.dirty)))
    return `PTE ${name} is ${pte.write ? 'clean' : 'read-only'}`
  // A dirty writable entry over a clean PTE: writes through it leave no dirty bit.
  if (write && e.write && e.dirty && !pte.dirty) return `PTE ${name} is clean`
  return null
}

/** One cached translation that disagrees with its PTE (see staleReason). */
export interface StaleEntry {
  /** The state row (`iommu TLB`). */
  readonly subject: string
  readonly page: string
  /** `iommu TLB A -> pfn 1 RO, but PTE A maps pfn 3`. */
  readonly text: string
}

/**
 * Why a hw-walker's walk-cache entry for table k (the PMD's pointer to the PTE table) is stale
 * in `s`, or null: the PMD no longer links that table (detached by pmdp_collapse_flush,
 * deposited under a huge PMD, unlinked by free_pgtables) or the table was freed. Only the user
 * mm the device is bound to, `mm`, is walked through the cache (access.ts iommuWalk).
 */
export function walkCacheStaleReason(sc: Scenario, s: LabState, k = 0, mm = 0): string | null {
  const m = s.mms[mm]
  if (!m || m.pt[k]) return null
  if (m.tbl[k] === null) return 'that page-table page was freed'
  return isThpTable(sc, k)
    ? `the PMD no longer links that table (${tableText(m, k)})`
    : `the PMD no longer links that page (${pageText(m, k)})`
}

/** Every cached translation in `s` that disagrees with its PTE, walk-cache entries included. */
export function staleEntries(sc: Scenario, s: LabState): StaleEntry[] {
  const out: StaleEntry[] = []
  sc.secondaries.forEach((d, i) => {
    if (d.type !== 'hw-walker' || !d.walkCache) return
    s.secs[i]?.wc.forEach((v, k) => {
      if (!v) return
      const why = walkCacheStaleReason(sc, s, k, d.mm ?? 0)
      const subject = `${d.name} walk cache`
      const hp = thpOfTable(sc, k)
      const table = hp ? `the PTE table of ${hp.name}` : `the PTE page${tableTag(sc, k)}`
      if (why) out.push({ subject, page: table, text: `${subject} PMD -> ${table}, but ${why}` })
    })
  })
  for (const row of tlbRows(sc, s)) {
    for (const e of row.entries) {
      const why = staleReason(sc, s, row.mm, e)
      if (why)
        out.push({
          subject: row.subject,
          page: sc.pages[e.page]!.name,
          text: `${row.subject} ${sc.pages[e.page]!.name} -> ${entryText(e)}, but ${why}`,
        })
    }
  }
  return out
}

/**
 * The stale flags of a traced step (StepRecord.stale and staleWhy), empty when every cached
 * translation agrees with its PTE.
 */
export function staleFields(
  sc: Scenario,
  s: LabState,
): { stale?: readonly string[]; staleWhy?: readonly string[] } {
  const xs = staleEntries(sc, s)
  if (xs.length === 0) return {}
  return { stale: [...new Set(xs.map((x) => x.subject))], staleWhy: xs.map((x) => x.text) }
}

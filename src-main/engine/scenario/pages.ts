/**
 * `pages:` and `kernel_pages:`: the scenario's pages in declaration order (address order; kernel
 * pages are vmalloc addresses in init_mm after them). `table: N` puts a page in PTE table N
 * (0..3, default 0): each table is one 2 MiB PMD range with its own page-table page, split PTL
 * and walk-cache entry. The pages of a table are adjacent in declaration order and tables come
 * in ascending order without gaps (table 0's pages, then table 1's, ...), so declaration order
 * stays address order; a VMA (adjacent pages with the same prot) may span two tables.
 */
import {
  bool,
  checkKeys,
  didYouMean,
  INT32_MAX,
  INT32_MIN,
  int,
  isObj,
  Issues,
  NAME,
  oneOf,
  typeName,
  type Obj,
} from './common'
import type { Arch, Mapped, PageDecl, Prot } from '../types'

export const KERNEL_PAGE_KEYS = ['value', 'mapped'] as const
export const PAGE_KEYS = ['value', 'prot', 'cow', 'mapped', 'kind', 'fault', 'file', 'table'] as const
/** The highest `table:` (four PTE tables: enough for a partial free_pgtables and two-table moves). */
export const MAX_TABLE = 3
export const PAGE_KINDS = ['anon', 'pfnmap', 'file'] as const

/** The pages, and each name's index (-1 for a page declared with errors). */
export function parsePages(
  raw: Obj,
  issues: Issues,
  arch: Arch | null,
): { pages: PageDecl[]; pageIndex: Map<string, number> } {
  const pages: PageDecl[] = []
  const pageIndex = new Map<string, number>()
  const aliases: Array<{ index: number; name: string; target: string; path: Array<string | number> }> = []
  const hasKernelPages = isObj(raw.kernel_pages) && Object.keys(raw.kernel_pages).length > 0
  if (raw.pages === undefined && hasKernelPages) {
    // A scenario about kernel mappings only.
  } else if (!isObj(raw.pages) || Object.keys(raw.pages).length === 0) {
    issues.add(
      ['pages'],
      `pages is required: a mapping from page name to { value, prot, cow, mapped }; found ${typeName(raw.pages)}`,
    )
  } else {
    // The previous page's table, for the adjacency check (tables ascend, without gaps).
    let prevTable: { table: number; name: string } | null = null
    for (const [name, decl] of Object.entries(raw.pages)) {
      const path = ['pages', name]
      if (!NAME.test(name)) issues.key(path, `page name '${name}' must be an identifier (letters, digits, _)`)
      if (pageIndex.has(name)) issues.key(path, `page '${name}' is declared twice`)
      const d = decl === null || decl === undefined ? {} : decl
      if (!isObj(d)) {
        issues.add(
          path,
          `page '${name}' must be a mapping such as { value: 0, prot: rw }; found ${typeName(decl)}`,
        )
        continue
      }
      checkKeys(d, PAGE_KEYS, path, issues, `page '${name}'`)
      const value =
        d.value === undefined ? 0 : int(d.value, [...path, 'value'], issues, 'value', INT32_MIN, INT32_MAX)
      const prot =
        d.prot === undefined
          ? 'rw'
          : oneOf<Prot>(d.prot, ['rw', 'ro', 'none'], [...path, 'prot'], issues, 'prot')
      const cow = d.cow === undefined ? false : bool(d.cow, [...path, 'cow'], issues, 'cow')
      const kind =
        d.kind === undefined
          ? 'anon'
          : oneOf<PageDecl['kind']>(d.kind, PAGE_KINDS, [...path, 'kind'], issues, 'kind')
      if (kind === 'pfnmap' && cow)
        issues.add([...path, 'cow'], 'a pfnmap page is a shared device mapping: it cannot be cow')
      // pfnmap: a driver ->fault that maps the pfn again (vfio_pci_mmap_fault), or none (SIGBUS).
      const fault =
        d.fault === undefined
          ? undefined
          : (oneOf<'sigbus' | 'insert_pfn'>(
              d.fault,
              ['sigbus', 'insert_pfn'],
              [...path, 'fault'],
              issues,
              'fault',
            ) ?? undefined)
      if (d.fault !== undefined && kind !== 'pfnmap')
        issues.add(
          [...path, 'fault'],
          `fault says what a driver's VM_PFNMAP mapping does on a fault after a revoke: it needs kind: pfnmap (this page is ${kind ?? 'invalid'})`,
        )
      if (kind === 'file' && cow)
        issues.add(
          [...path, 'cow'],
          'a file page is a MAP_SHARED mapping: writes go to the page cache, never to a copy; it cannot be cow',
        )
      if (kind === 'pfnmap' && d.mapped === 'none')
        issues.add(
          [...path, 'mapped'],
          'a pfnmap page is mapped by the driver (remap_pfn_range) when the file is mmapped: it cannot start unmapped',
        )
      let mapped: Mapped | null =
        d.mapped === undefined
          ? prot === 'rw' && !cow
            ? 'rw'
            : prot === 'none'
              ? 'none'
              : 'ro'
          : oneOf<Mapped>(d.mapped, ['rw', 'ro', 'clean', 'none'], [...path, 'mapped'], issues, 'mapped')
      if (prot && mapped) {
        if ((mapped === 'rw' || mapped === 'clean') && prot !== 'rw') {
          issues.add(
            [...path, 'mapped'],
            `mapped: ${mapped} needs a writable VMA (prot: rw); this page has prot: ${prot}`,
          )
          mapped = null
        }
        if (prot === 'none' && mapped !== 'none') {
          issues.add(
            [...path, 'mapped'],
            'a prot: none page has no accessible PTE; use mapped: none or another prot',
          )
          mapped = null
        }
        if (cow && mapped !== 'ro') {
          issues.add(
            [...path, cow && d.mapped !== undefined ? 'mapped' : 'cow'],
            'cow: true pages are mapped read-only (mapped: ro) in the process and its fork child',
          )
          mapped = null
        }
        if (mapped === 'none' && value !== 0 && value !== null && kind !== 'file') {
          issues.add(
            [...path, 'value'],
            'a page that is not mapped yet reads as zero when faulted in; value must be 0',
          )
        }
      }
      if (d.file !== undefined) {
        if (typeof d.file !== 'string' || !NAME.test(d.file))
          issues.add(
            [...path, 'file'],
            `file names the file page whose offset this address maps; found ${typeName(d.file)}`,
          )
        else if (kind !== 'file')
          issues.add(
            [...path, 'file'],
            `file: ${d.file} makes this address map a file page's folio: it needs kind: file`,
          )
        else if (d.value !== undefined)
          issues.add(
            [...path, 'value'],
            `the contents belong to file page '${d.file}' (this address maps its folio): drop value`,
          )
        else aliases.push({ index: pages.length, name, target: d.file, path: [...path, 'file'] })
      }
      const table =
        d.table === undefined ? 0 : int(d.table, [...path, 'table'], issues, 'table', 0, MAX_TABLE)
      if (table !== null) {
        const prev = prevTable
        if (prev === null && table !== 0)
          issues.add(
            [...path, 'table'],
            `the first page is in table 0 (tables are numbered from 0 in address order); '${name}' says table ${table}`,
          )
        else if (prev !== null && table < prev.table)
          issues.add(
            [...path, 'table'],
            `pages are declared in address order, so tables ascend: '${name}' (table ${table}) comes after '${prev.name}' (table ${prev.table}); declare table ${table}'s pages together, before table ${prev.table}'s`,
          )
        else if (prev !== null && table > prev.table + 1)
          issues.add(
            [...path, 'table'],
            `tables are numbered without gaps: '${name}' is in table ${table}, but no page is in table ${prev.table + 1}`,
          )
        prevTable = { table, name }
      }
      if (value !== null && prot && cow !== null && mapped && kind && table !== null) {
        pageIndex.set(name, pages.length)
        pages.push({
          name,
          value,
          prot,
          cow,
          mapped,
          kind,
          ...(fault && kind === 'pfnmap' ? { fault } : {}),
          ...(table > 0 ? { table } : {}),
        })
      } else {
        pageIndex.set(name, -1)
      }
    }
  }
  // `file: P`: this address maps file page P's offset (P's folio); P must be a file page of its own.
  for (const a of aliases) {
    const t = pageIndex.get(a.target)
    const decl = pages[a.index]
    if (t === undefined)
      issues.add(
        a.path,
        `unknown page '${a.target}'${didYouMean(a.target, [...pageIndex.keys()])}; pages are ${[...pageIndex.keys()].join(', ')}`,
      )
    else if (t >= 0 && (pages[t]!.kind !== 'file' || aliases.some((x) => x.index === t) || t === a.index))
      issues.add(a.path, `'${a.target}' must be a file page with its own folio (kind: file, no file: key)`)
    else if (t >= 0 && decl && decl.name === a.name)
      pages[a.index] = { ...decl, value: pages[t]!.value, fileOf: t }
  }
  // Kernel pages: vmalloc addresses in init_mm, after the process's pages.
  if (raw.kernel_pages !== undefined) {
    if (!isObj(raw.kernel_pages)) {
      issues.add(
        ['kernel_pages'],
        `kernel_pages must be a mapping from page name to { value, mapped: rw | none }; found ${typeName(raw.kernel_pages)}`,
      )
    } else {
      if (arch === 'arm64' && Object.keys(raw.kernel_pages).length > 0)
        issues.add(
          ['kernel_pages'],
          'kernel mappings are modelled on x86_64 (flush_tlb_kernel_range, VT-d supervisor PASIDs; reference 5.12)',
        )
      for (const [name, decl] of Object.entries(raw.kernel_pages)) {
        const path = ['kernel_pages', name]
        if (!NAME.test(name))
          issues.key(path, `page name '${name}' must be an identifier (letters, digits, _)`)
        if (pageIndex.has(name))
          issues.key(path, `page '${name}' is declared twice (pages and kernel_pages share one namespace)`)
        const d = decl === null || decl === undefined ? {} : decl
        if (!isObj(d)) {
          issues.add(
            path,
            `kernel page '${name}' must be a mapping such as { value: 1 }; found ${typeName(decl)}`,
          )
          continue
        }
        checkKeys(d, KERNEL_PAGE_KEYS, path, issues, `kernel page '${name}'`)
        const value =
          d.value === undefined ? 0 : int(d.value, [...path, 'value'], issues, 'value', INT32_MIN, INT32_MAX)
        const mapped =
          d.mapped === undefined
            ? 'rw'
            : oneOf<'rw' | 'none'>(d.mapped, ['rw', 'none'], [...path, 'mapped'], issues, 'mapped')
        if (value !== null && mapped) {
          pageIndex.set(name, pages.length)
          pages.push({ name, value, prot: 'rw', cow: false, mapped, kind: 'kernel' })
        } else pageIndex.set(name, -1)
      }
    }
  }
  return { pages, pageIndex }
}

/** `thp:`: one transparent huge page over the scenario's pages. */
import { checkKeys, isObj, Issues, NAME, oneOf, typeName, type Obj } from './common'
import type { PageDecl, ThpDecl } from '../types'

/** The keys of a huge page under `thp:`. */
export const THP_KEYS = ['pages', 'mapped', 'kind'] as const

/**
 * `thp: { H: { pages: [A, B], mapped: pmd | pte, kind: anon | file } }` (or `H: [A, B]`): one
 * huge page whose subpages are all the scenario's pages, 2 to 4 of them, in declaration order.
 */
export function parseThp(
  raw: unknown,
  issues: Issues,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
): ThpDecl | null {
  if (raw === undefined) return null
  if (!isObj(raw) || Object.keys(raw).length !== 1) {
    issues.add(
      ['thp'],
      `thp must map one huge page name to its subpages, as in thp: { H: { pages: [A, B] } }; found ${isObj(raw) ? `${Object.keys(raw).length} huge pages` : typeName(raw)}`,
    )
    return null
  }
  const [name, body] = Object.entries(raw)[0]!
  const path = ['thp', name]
  if (!NAME.test(name)) {
    issues.key(path, `huge page name '${name}' must be an identifier`)
    return null
  }
  if (pageIndex.has(name)) {
    issues.key(path, `huge page '${name}' has the name of a page; name it apart from its subpages`)
    return null
  }
  const d: Obj | null = Array.isArray(body) ? { pages: body } : isObj(body) ? body : null
  if (d === null) {
    issues.add(path, `huge page '${name}' must be { pages: [A, B], mapped, kind }; found ${typeName(body)}`)
    return null
  }
  checkKeys(d, THP_KEYS, path, issues, `huge page '${name}'`)
  const pPath = Array.isArray(body) ? path : [...path, 'pages']
  const mapped =
    d.mapped === undefined
      ? 'pmd'
      : oneOf<'pmd' | 'pte'>(d.mapped, ['pmd', 'pte'], [...path, 'mapped'], issues, 'mapped')
  const kind =
    d.kind === undefined
      ? 'anon'
      : oneOf<'anon' | 'file'>(d.kind, ['anon', 'file'], [...path, 'kind'], issues, 'kind')
  if (!Array.isArray(d.pages)) {
    issues.add(pPath, `pages must list the huge page's subpages, as in [A, B]; found ${typeName(d.pages)}`)
    return null
  }
  const sub: number[] = []
  let ok = true
  d.pages.forEach((w, j) => {
    const i = typeof w === 'string' ? pageIndex.get(w) : undefined
    if (i === undefined) {
      issues.add(
        [...pPath, j],
        `unknown page ${typeName(w)} in the huge page; pages are ${[...pageIndex.keys()].join(', ')}`,
      )
      ok = false
      return
    }
    if (i < 0) {
      ok = false
      return
    }
    if (sub.includes(i)) {
      issues.add([...pPath, j], `page '${w as string}' is listed twice`)
      ok = false
      return
    }
    const pg = pages[i]!
    if (pg.kind !== 'anon' || pg.prot !== 'rw' || pg.cow || pg.mapped !== 'rw') {
      issues.add(
        [...pPath, j],
        `a subpage of a huge page is modelled as anon memory mapped read-write (prot: rw, mapped: rw, not cow); '${pg.name}' is not`,
      )
      ok = false
      return
    }
    if (sub.length > 0 && (pg.table ?? 0) !== (pages[sub[0]!]!.table ?? 0)) {
      issues.add(
        [...pPath, j],
        `the subpages of a huge page are one PMD range, so they share one PTE table: '${pg.name}' is in table ${pg.table ?? 0}, '${pages[sub[0]!]!.name}' in table ${pages[sub[0]!]!.table ?? 0}`,
      )
      ok = false
      return
    }
    if (sub.length > 0 && i !== sub[sub.length - 1]! + 1) {
      issues.add(
        [...pPath, j],
        `the subpages of a huge page are adjacent pages in declaration order; '${pg.name}' is not next`,
      )
      ok = false
      return
    }
    sub.push(i)
  })
  if (!ok) return null
  if (sub.length < 2 || sub.length > 4) {
    issues.add(pPath, `a huge page is modelled with 2 to 4 subpages (standing for 512); found ${sub.length}`)
    return null
  }
  if (sub.length !== pages.length) {
    const others = pages.filter((_, i) => !sub.includes(i)).map((p) => p.name)
    issues.add(
      pPath,
      `every page of a scenario with a huge page is one of its subpages (one PMD range); ${others.join(', ')} ${others.length > 1 ? 'are' : 'is'} not`,
    )
    return null
  }
  if (mapped === null || kind === null) return null
  return { name, pages: sub, mapped, kind }
}

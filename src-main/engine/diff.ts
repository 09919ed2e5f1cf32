/** Human-readable differences between two states: what a step changed. */
import { pteText } from './ctx'
import type { LabState, TlbEntry } from './state'
import type { Scenario } from './types'

function entryText(e: TlbEntry): string {
  return `pfn ${e.pfn} ${e.write ? 'RW' : 'RO'}${e.revoked ? ' (revoked)' : ''}`
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
  a.mms.forEach((m, i) => {
    const n = b.mms[i]!
    const who = i === 0 ? 'PTE' : 'child PTE'
    m.ptes.forEach((p, j) => {
      const q = n.ptes[j]!
      if (JSON.stringify(p) !== JSON.stringify(q))
        out.push(`${who} ${name(j)}: ${pteText(p)} -> ${pteText(q)}`)
    })
    m.vmas.forEach((v, j) => {
      if (v !== n.vmas[j])
        out.push(`${i === 0 ? 'VMA' : 'child VMA'} ${name(j)}: ${v ?? 'none'} -> ${n.vmas[j] ?? 'none'}`)
    })
  })
  sc.threads.forEach((t, i) => {
    if (t.kind === 'cpu') diffEntries(`${t.name} TLB`, a.tlbs[i]!, b.tlbs[i]!, name, out)
  })
  sc.secondaries.forEach((d, i) =>
    diffEntries(
      `${d.name} ${d.type === 'hw-walker' ? 'TLB' : 'shadow'}`,
      a.secs[i]!.entries,
      b.secs[i]!.entries,
      name,
      out,
    ),
  )
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
  return out
}

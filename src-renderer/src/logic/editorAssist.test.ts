import { describe, expect, it } from 'vitest'
import { opCompletions, opDocsFromSchema, opHover, opSlotAt, quickFixFor, type OpDocs } from './editorAssist'

const DOCS: OpDocs = {
  cpu: {
    read: 'read P -> reg: a load',
    write: 'write P value: a store',
    write_fault: 'handle_mm_fault(FAULT_FLAG_WRITE) on P',
    cow_fault: 'a write fault expected to break COW',
    munmap: 'munmap P [Q...]',
  },
  device: { read: 'read P -> reg: a load', write: 'write P value: a store' },
}

const TEXT = [
  'title: t', //                                           1
  'arch: arm64',
  'pages:',
  '  A: { value: 0, prot: rw, cached: [A] }',
  'secondary:', //                                          5
  '  - { name: smmu, type: hw-walker, cached: [A] }',
  'cpus:',
  '  C0: [write_fault A, read A -> r0]',
  '  C1: { mm: child, ops: [ cow_fault A ,  wri] }',
  '  C2:', //                                               10
  '    - munmap A',
  '    - ',
  'devices:',
  '  D0: { via: smmu, ops: [read A -> r1, write A 1] }',
  'expect: { start-end: holds }', //                         15
]
const LINES = TEXT

/** 1-based column of the n-th occurrence of `s` in line `line`, plus `offset`. */
function col(line: number, s: string, offset = 0, n = 0): number {
  let i = -1
  for (let k = 0; k <= n; k++) i = LINES[line - 1]!.indexOf(s, i + 1)
  if (i < 0) throw new Error(`no '${s}' on line ${line}`)
  return i + 1 + offset
}

describe('opSlotAt: where an op name goes', () => {
  it('inside [ ] of a CPU thread: the first and the second item', () => {
    expect(opSlotAt(LINES, 8, col(8, 'write_fault', 3))).toEqual({
      kind: 'cpu',
      word: 'write_fault',
      startColumn: col(8, 'write_fault'),
      endColumn: col(8, 'write_fault', 11),
    })
    // Right after the `, `: an empty slot before the name, then the name `read`.
    expect(opSlotAt(LINES, 8, col(8, 'read', 0))?.word).toBe('read')
    expect(opSlotAt(LINES, 8, col(8, 'read', 4))?.word).toBe('read')
  })

  it('inside ops: [ ] of a flow map, with spaces around items, and a half-typed name', () => {
    expect(opSlotAt(LINES, 9, col(9, 'cow_fault', 2))?.word).toBe('cow_fault')
    const s = opSlotAt(LINES, 9, col(9, 'wri', 3))
    expect(s).toEqual({ kind: 'cpu', word: 'wri', startColumn: col(9, 'wri'), endColumn: col(9, 'wri', 3) })
    expect(opSlotAt(LINES, 14, col(14, 'write', 1))).toMatchObject({ kind: 'device', word: 'write' })
  })

  it('block items under a thread, including an empty one being typed', () => {
    expect(opSlotAt(LINES, 11, col(11, 'munmap', 6))).toMatchObject({ kind: 'cpu', word: 'munmap' })
    expect(opSlotAt(LINES, 12, 7)).toEqual({ kind: 'cpu', word: '', startColumn: 7, endColumn: 7 })
  })

  it('a flow sequence over several lines', () => {
    const lines = ['cpus:', '  C0: [write_fault A,', '       read A -> r0,', '       mun]', 'devices: {}']
    expect(opSlotAt(lines, 3, 9)).toEqual({ kind: 'cpu', word: 'read', startColumn: 8, endColumn: 12 })
    expect(opSlotAt(lines, 4, 11)).toEqual({ kind: 'cpu', word: 'mun', startColumn: 8, endColumn: 11 })
    expect(opSlotAt(lines, 3, 14)).toBeNull() // the operand A
    expect(opSlotAt(lines, 5, 11)).toBeNull()
  })

  it('not an op slot: operands, other keys, flow sequences outside cpus/devices', () => {
    expect(opSlotAt(LINES, 8, col(8, ' A,', 2))).toBeNull() // the operand A of write_fault
    expect(opSlotAt(LINES, 8, col(8, 'r0', 1))).toBeNull()
    expect(opSlotAt(LINES, 9, col(9, 'child', 1))).toBeNull() // mm: child
    expect(opSlotAt(LINES, 14, col(14, 'smmu', 1))).toBeNull() // via: smmu
    expect(opSlotAt(LINES, 6, col(6, '[A]', 1))).toBeNull() // secondary's cached: [A]
    expect(opSlotAt(LINES, 4, col(4, '[A]', 1))).toBeNull()
    expect(opSlotAt(LINES, 15, col(15, 'holds', 1))).toBeNull()
    expect(opSlotAt(LINES, 8, 3)).toBeNull() // the thread key C0
  })
})

describe('op completion and hover', () => {
  it('completes every op of the kind, the typed prefix first', () => {
    const s = opSlotAt(LINES, 9, col(9, 'wri', 3))!
    const labels = opCompletions(s, DOCS).map((c) => c.label)
    expect(labels.slice(0, 2)).toEqual(['write', 'write_fault'])
    expect([...labels].sort()).toEqual(Object.keys(DOCS.cpu).sort())
    const d = opSlotAt(LINES, 14, col(14, 'read', 1))!
    expect(opCompletions(d, DOCS).map((c) => c.label)).toEqual(['read', 'write'])
  })

  it('hover gives the doc of the one op under the cursor', () => {
    const h = opHover(LINES, 8, col(8, 'write_fault', 5), DOCS)
    expect(h).toEqual({
      op: 'write_fault',
      doc: DOCS.cpu.write_fault,
      startColumn: col(8, 'write_fault'),
      endColumn: col(8, 'write_fault', 11),
    })
    expect(opHover(LINES, 8, col(8, 'read', 2), DOCS)?.doc).toBe(DOCS.cpu.read)
    expect(opHover(LINES, 9, col(9, 'wri', 1), DOCS)).toBeNull() // not an op (yet)
    expect(opHover(LINES, 8, col(8, 'r0', 1), DOCS)).toBeNull()
  })

  it('reads the docs from the schema, or says there are none', () => {
    expect(opDocsFromSchema({ 'x-op-docs': DOCS })).toEqual(DOCS)
    expect(opDocsFromSchema({ type: 'object' })).toBeNull()
    expect(opDocsFromSchema(null)).toBeNull()
  })
})

describe('quickFixFor: the "did you mean" of a validation message', () => {
  // Messages as src-main/node/scenarioFiles.test.ts has them from the validator.
  const OP =
    "unknown cpu op 'write_falt' (did you mean 'write_fault'?); expected one of read, write, write_fault"
  it('an unknown op, key, page or enum value: replace the marked word by the suggestion', () => {
    expect(quickFixFor({ message: OP, text: 'write_falt' })).toEqual({
      title: "Change to 'write_fault'",
      replacement: 'write_fault',
    })
    expect(
      quickFixFor({
        message: `arch must be one of x86_64, arm64; found string "arm65" (did you mean 'arm64'?)`,
        text: 'arm65',
      }),
    ).toMatchObject({ replacement: 'arm64' })
    expect(
      quickFixFor({ message: "unknown page 'Z' (did you mean 'P'?); pages are P, Q", text: 'Z' }),
    ).toMatchObject({
      replacement: 'P',
    })
  })

  it('none without a suggestion, or when the marker covers other text', () => {
    expect(quickFixFor({ message: "unknown page 'Z'; pages are P, Q", text: 'Z' })).toBeNull()
    expect(quickFixFor({ message: 'the final state satisfies forbid', text: 'r0' })).toBeNull()
    expect(quickFixFor({ message: OP, text: 'write_falt P' })).toBeNull()
    expect(quickFixFor({ message: OP, text: '' })).toBeNull()
  })

  it('applied to the marked range, the fix yields the suggested op in place', () => {
    const line = '  C0: [write_falt A, read A -> r0]'
    const start = line.indexOf('write_falt')
    const fix = quickFixFor({ message: OP, text: line.slice(start, start + 10) })!
    expect(line.slice(0, start) + fix.replacement + line.slice(start + 10)).toBe(
      '  C0: [write_fault A, read A -> r0]',
    )
  })
})

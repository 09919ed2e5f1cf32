import { describe, expect, it } from 'vitest'
import { COST_KEYS } from './costs'
import {
  CPU_OPS,
  CPU_THREAD_KEYS,
  DEVICE_OPS,
  DEVICE_THREAD_KEYS,
  EXACT_EXPECT_KEYS,
  EXPLORE_KEYS,
  HW_KEYS,
  KERNEL_KEYS,
  KERNEL_PAGE_KEYS,
  MMU_GATHER_KEYS,
  PAGE_KEYS,
  PAGE_KINDS,
  SW_KEYS,
  THP_KEYS,
  TOP_KEYS,
} from './scenario'
import { scenarioJsonSchema } from './scenarioSchema'
import { SITE_NAMES } from './policy'
import { INVARIANTS, METRIC_NAMES, MIGRATE_MODES } from './types'

interface Node {
  readonly properties?: Record<string, Node>
  readonly additionalProperties?: Node | boolean
  readonly items?: Node
  readonly oneOf?: readonly Node[]
  readonly description?: string
  readonly enum?: readonly unknown[]
  readonly propertyNames?: { readonly enum: readonly string[] }
  readonly then?: Node
  readonly else?: Node
}

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort()
const keysOf = (n: Node | undefined): string[] => sorted(Object.keys(n?.properties ?? {}))

describe('scenario JSON schema for the editor', () => {
  const schema = scenarioJsonSchema() as Record<string, unknown>

  it('x-op-docs documents every op of each thread kind, one line each', () => {
    const docs = schema['x-op-docs'] as Record<'cpu' | 'device', Record<string, string>>
    expect(Object.keys(docs.cpu).sort()).toEqual([...CPU_OPS].sort())
    expect(Object.keys(docs.device).sort()).toEqual([...DEVICE_OPS].sort())
    for (const [op, doc] of [...Object.entries(docs.cpu), ...Object.entries(docs.device)]) {
      expect(doc, op).not.toBe(op)
      expect(doc).not.toContain('\n')
    }
  })

  it('expect values: a verdict word, or { violated: [...] } with invariant names (the exact set)', () => {
    const props = (schema.properties as Record<string, { properties: Record<string, unknown> }>).expect!
    const e = props.properties['start-end'] as { oneOf: Array<Record<string, unknown>> }
    expect(e.oneOf[0]).toEqual({ enum: ['holds', 'violated', ...INVARIANTS] })
    expect(e.oneOf[1]).toMatchObject({
      type: 'object',
      required: ['violated'],
      additionalProperties: false,
      properties: {
        violated: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: INVARIANTS } },
      },
    })
  })

  it('op items carry no description listing every op (the editor hovers the one op)', () => {
    const json = JSON.stringify({ ...schema, 'x-op-docs': null })
    expect(json).not.toContain('handle_mm_fault(FAULT_FLAG_WRITE)')
  })

  // The schema's keys are written out by hand (each with its hover text); the loader checks
  // against its *_KEYS lists. These tests keep the two equal, so a key added to the loader
  // without the editor learning it (or the other way round) fails here.
  describe("its keys are the loader's key lists", () => {
    const top = schema as Node
    const props = top.properties!
    const objectForm = (n: Node | undefined): Node | undefined =>
      (n?.additionalProperties as Node | undefined)?.oneOf?.find((x) => x.properties !== undefined)

    it('top level: TOP_KEYS', () => {
      expect(keysOf(top)).toEqual(sorted(TOP_KEYS))
      expect(sorted(top.propertyNames!.enum)).toEqual(sorted(TOP_KEYS))
    })
    it('a page: PAGE_KEYS (and x-page-keys), its kinds PAGE_KINDS; a kernel page: KERNEL_PAGE_KEYS', () => {
      const page = props.pages!.additionalProperties as Node
      expect(keysOf(page)).toEqual(sorted(PAGE_KEYS))
      expect(sorted((schema as Record<string, string[]>)['x-page-keys']!)).toEqual(sorted(PAGE_KEYS))
      expect(page.properties!.kind!.enum).toEqual([...PAGE_KINDS])
      expect(keysOf(props.kernel_pages!.additionalProperties as Node)).toEqual(sorted(KERNEL_PAGE_KEYS))
    })
    it('a secondary: HW_KEYS and SW_KEYS, each type held to its own', () => {
      const sec = props.secondary!.items!
      expect(keysOf(sec)).toEqual(sorted([...HW_KEYS, ...SW_KEYS]))
      expect(sorted(sec.then!.propertyNames!.enum)).toEqual(sorted(SW_KEYS))
      expect(sorted(sec.else!.propertyNames!.enum)).toEqual(sorted(HW_KEYS))
    })
    it('threads: CPU_THREAD_KEYS and DEVICE_THREAD_KEYS', () => {
      expect(keysOf(objectForm(props.cpus))).toEqual(sorted(CPU_THREAD_KEYS))
      expect(keysOf(props.devices!.additionalProperties as Node)).toEqual(sorted(DEVICE_THREAD_KEYS))
    })
    it('thp: THP_KEYS; kernel: KERNEL_KEYS; mmu_gather: MMU_GATHER_KEYS; explore: EXPLORE_KEYS; costs: COST_KEYS', () => {
      expect(keysOf(objectForm(props.thp))).toEqual(sorted(THP_KEYS))
      expect(keysOf(props.kernel)).toEqual(sorted(KERNEL_KEYS))
      expect(keysOf(props.mmu_gather)).toEqual(sorted(MMU_GATHER_KEYS))
      expect(keysOf(props.explore)).toEqual(sorted(EXPLORE_KEYS))
      expect(keysOf(props.costs)).toEqual(sorted(COST_KEYS))
    })
    it('expect: an exact expectation has EXACT_EXPECT_KEYS; expect_metrics names METRIC_NAMES', () => {
      const exact = (props.expect!.additionalProperties as Node).oneOf![1]!
      expect(keysOf(exact)).toEqual(sorted(EXACT_EXPECT_KEYS))
      expect(keysOf(props.expect_metrics!.additionalProperties as Node)).toEqual(sorted(METRIC_NAMES))
    })
    it('every key of a page, a secondary, a thread, kernel, mmu_gather and explore has hover text', () => {
      const nodes: Array<[string, Node | undefined]> = [
        ['pages', props.pages!.additionalProperties as Node],
        ['secondary', props.secondary!.items],
        ['cpus', objectForm(props.cpus)],
        ['devices', props.devices!.additionalProperties as Node],
        ['kernel', props.kernel],
        ['mmu_gather', props.mmu_gather],
        ['explore', props.explore],
      ]
      for (const [where, n] of nodes)
        for (const [k, v] of Object.entries(n!.properties!))
          expect(v.description, `${where}.${k}`).toBeTruthy()
    })
    it("migrate's doc names every migrate_mode", () => {
      const doc = (schema['x-op-docs'] as Record<'cpu', Record<string, string>>).cpu.migrate!
      for (const m of MIGRATE_MODES) expect(doc).toContain(m)
    })
  })
})

describe('policies: in the editor schema', () => {
  it('completes each site (documented with its kernel function) and the presets as list items', () => {
    const schema = scenarioJsonSchema() as { properties: Record<string, Record<string, unknown>> }
    const items = (
      schema.properties.policies!.additionalProperties as { items: { anyOf: Array<Record<string, unknown>> } }
    ).items.anyOf
    expect(items.filter((i) => 'const' in i).map((i) => i.const)).toEqual([...SITE_NAMES])
    for (const i of items.filter((x) => 'const' in x))
      expect(String(i.description)).toMatch(/v4\.15|v6\.6|2017|2023/)
    expect(items.find((i) => 'enum' in i)!.enum).toContain('arch-hook+upgrade-notify')
  })
})

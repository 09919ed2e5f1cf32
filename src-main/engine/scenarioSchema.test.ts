import { describe, expect, it } from 'vitest'
import { CPU_OPS, DEVICE_OPS } from './scenario'
import { scenarioJsonSchema } from './scenarioSchema'
import { SITE_NAMES } from './policy'
import { INVARIANTS } from './types'

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

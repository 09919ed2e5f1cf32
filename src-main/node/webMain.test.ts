import os from 'node:os'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { parseWebArgs, webMain } from './webMain'

describe('webMain', () => {
  it('parses --port and --scenarios, with defaults', () => {
    expect(parseWebArgs([])).toEqual({ port: 5199, scenariosDir: path.resolve('scenarios') })
    expect(parseWebArgs(['--port', '0', '--scenarios=/tmp/s'])).toEqual({ port: 0, scenariosDir: '/tmp/s' })
    expect(parseWebArgs(['--port', 'x'])).toMatch(/--port takes/)
    expect(parseWebArgs(['--bogus'])).toMatch(/unknown argument '--bogus'/)
  })

  it('exits 2 with a clear message when the renderer is not built', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
    try {
      expect(await webMain([], path.join(os.tmpdir(), 'no-such-renderer-dir'))).toBe(2)
      expect(String(err.mock.calls[0]?.[0])).toMatch(/Run `npm run build` first/)
    } finally {
      err.mockRestore()
    }
  })
})

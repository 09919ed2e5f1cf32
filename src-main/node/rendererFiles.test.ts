/**
 * The renderer's files as the browser host and the desktop app's app://lab/ scheme serve them
 * (rendererFiles.ts): the page and its assets with their types and the CSP header, nothing else.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CSP, rendererFile, rendererHeaders } from './rendererFiles'

const base = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mnlab-renderer-')))
const dir = path.join(base, 'renderer')
mkdirSync(path.join(dir, 'assets'), { recursive: true })
writeFileSync(path.join(dir, 'index.html'), '<html><head></head></html>')
writeFileSync(path.join(dir, 'assets', 'app.js'), 'export {}')
writeFileSync(path.join(base, 'secret.txt'), 'not for the page')
symlinkSync(path.join(base, 'secret.txt'), path.join(dir, 'assets', 'leak.txt'))
afterAll(() => rmSync(base, { recursive: true, force: true }))

describe('renderer files', () => {
  it('serves the page at / and /index.html, and assets with their types, under the CSP', async () => {
    for (const p of ['/', '/index.html']) {
      const f = await rendererFile(dir, p)
      expect(f?.rel).toBe('index.html')
      expect(rendererHeaders(f!)).toMatchObject({
        'Content-Security-Policy': CSP,
        'Content-Type': 'text/html; charset=utf-8',
        'Cache-Control': 'no-store',
      })
    }
    const js = await rendererFile(dir, '/assets/app.js')
    expect(js?.contentType).toBe('text/javascript; charset=utf-8')
    expect(rendererHeaders(js!)['X-Content-Type-Options']).toBe('nosniff')
    expect(CSP).toContain("script-src 'self'")
    expect(CSP).not.toContain('unsafe-eval')
  })

  it('names nothing outside the folder: traversal, encoded or not, symlinks out, folders, bad escapes', async () => {
    for (const p of [
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/assets/leak.txt',
      '/assets',
      '/assets/',
      '/missing.js',
      '/%zz',
      '/a%00.js',
      '/..\\secret.txt',
    ])
      expect(await rendererFile(dir, p), p).toBeNull()
  })
})

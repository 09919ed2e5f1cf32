/**
 * Test support for the store tests: a scripted stand-in for `../lab` (the renderer's one door to
 * the lab services). Use it with `vi.mock('../lab', () => import('./fakeLab'))`, then set the
 * replies a test needs in `fake.api` and send run events with `fake.emit`.
 */
import { vi } from 'vitest'

/** The scripted LabApi: methods by name, and the run-event listeners. */
export const fake = (() => {
  const listeners = new Set<(e: unknown) => void>()
  return {
    listeners,
    emit: (e: unknown) => listeners.forEach((l) => l(e)),
    api: {} as Record<string, unknown>,
  }
})()

export class LabError extends Error {
  constructor(
    message: string,
    readonly issues: unknown[] = [],
  ) {
    super(message)
  }
}

export const lab = new Proxy(
  {},
  {
    get: (_t, k: string) =>
      k === 'onDidRunEvent'
        ? (l: (e: unknown) => void) => {
            fake.listeners.add(l)
            return () => fake.listeners.delete(l)
          }
        : fake.api[k],
  },
)

export const toLabError = (e: unknown): LabError =>
  e instanceof LabError ? e : new LabError(String((e as Error).message ?? e))

export const transport = 'http'

/**
 * The browser's storage, in memory (the store tests run in node): stubs the global localStorage
 * and returns its contents. Call it before importing a store that reads storage at load time.
 */
export function stubLocalStorage(): Map<string, string> {
  const stored = new Map<string, string>()
  vi.stubGlobal('localStorage', {
    getItem: (k: string) => stored.get(k) ?? null,
    setItem: (k: string, v: string) => void stored.set(k, String(v)),
    removeItem: (k: string) => void stored.delete(k),
    clear: () => stored.clear(),
  })
  return stored
}

/**
 * `npm run web`: the browser host (bundled by bin/build.cjs, started by bin/web.cjs).
 *   --port N        127.0.0.1 port (default 5199; 0 picks a free one)
 *   --scenarios DIR the scenarios folder (default ./scenarios)
 * Serves out/renderer (built by `npm run build`) and prints one line: the URL with its token.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { startHost } from './host'

interface WebArgs {
  readonly port: number
  readonly scenariosDir: string
}

export function parseWebArgs(argv: readonly string[]): WebArgs | string {
  let port = 5199
  let scenariosDir = 'scenarios'
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined]
    const value = (): string | undefined => inline ?? argv[++i]
    if (k === '--port') {
      const v = value()
      if (v === undefined || !/^\d+$/.test(v) || Number(v) > 65535)
        return `--port takes 0-65535, got '${v ?? ''}'`
      port = Number(v)
    } else if (k === '--scenarios') {
      const v = value()
      if (!v) return '--scenarios needs a folder'
      scenariosDir = v
    } else return `unknown argument '${argv[i]}' (expected --port N, --scenarios DIR)`
  }
  return { port, scenariosDir: path.resolve(scenariosDir) }
}

export async function webMain(
  argv: readonly string[],
  rendererDir = path.resolve(__dirname, '../../out/renderer'),
): Promise<number> {
  const args = parseWebArgs(argv)
  if (typeof args === 'string') {
    process.stderr.write(`mnlab web: ${args}\n`)
    return 2
  }
  if (!existsSync(path.join(rendererDir, 'index.html'))) {
    process.stderr.write(
      `mnlab web: no built renderer in ${rendererDir}. Run \`npm run build\` first (or use \`npm run web\`, which builds).\n`,
    )
    return 2
  }
  if (!existsSync(args.scenariosDir)) {
    process.stderr.write(`mnlab web: no scenarios folder at ${args.scenariosDir} (use --scenarios DIR)\n`)
    return 2
  }
  let host
  try {
    host = await startHost({ port: args.port, scenariosDir: args.scenariosDir, rendererDir })
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    process.stderr.write(
      err.code === 'EADDRINUSE'
        ? `mnlab web: port ${args.port} is in use; pick another with --port N (0: any free port)\n`
        : `mnlab web: ${err.message}\n`,
    )
    return 2
  }
  process.stdout.write(`MMU Notifier Lab: ${host.url}\n`)
  const stop = (): void => {
    void host.close().then(() => process.exit(0))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return 0
}

/** The process entry: bin/web.cjs loads the bundle and calls this explicitly. */
export function runWeb(argv: readonly string[], rendererDir: string): void {
  webMain(argv, rendererDir).then(
    (code) => {
      if (code !== 0) process.exit(code)
    },
    (e: unknown) => {
      process.stderr.write(`mnlab web: internal error: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exit(3)
    },
  )
}

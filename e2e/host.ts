/**
 * Starts a browser host (`node bin/web.cjs --port 0`) and returns its URL (with the per-launch
 * token the host prints) and the child process. Used by globalSetup for the shared host, and by
 * specs that need a host of their own to kill (crash recovery).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'

export const ROOT = path.resolve(__dirname, '..')

export async function startHost(
  scenariosDir: string,
  dataDir: string,
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['bin/web.cjs', '--port', '0', '--scenarios', scenariosDir], {
    cwd: ROOT,
    env: { ...process.env, MNLAB_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`browser host did not start in 30 s\n${stderr}`)), 30_000)
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /MMU Notifier Lab: (http:\/\/\S+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`browser host exited with ${code}\n${stderr}`))
    })
  })
  return { url, child }
}

#!/usr/bin/env node
'use strict'
// `npm start`: build, then launch the Electron app if an Electron binary is installed; otherwise
// say so and start the browser host (the same as `npm run web`). Never downloads anything:
// `require('electron')` would try to download the binary, so this reads electron's path.txt.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const args = process.argv.slice(2)

function electronBinary() {
  let pkg
  try {
    pkg = require.resolve('electron/package.json', { paths: [root] })
  } catch {
    return null
  }
  const dir = path.dirname(pkg)
  let rel = null
  try {
    rel = fs.readFileSync(path.join(dir, 'path.txt'), 'utf8').trim()
  } catch {
    // no path.txt: the binary was never downloaded
  }
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH
  if (override) {
    const p = path.join(override, rel || 'electron')
    return fs.existsSync(p) ? p : null
  }
  if (!rel) return null
  const p = path.join(dir, 'dist', rel)
  return fs.existsSync(p) ? p : null
}

function run(cmd, argv) {
  const child = spawn(cmd, argv, { cwd: root, stdio: 'inherit' })
  child.on('exit', (code, signal) => process.exit(signal ? 1 : (code ?? 1)))
  for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => child.kill(s))
}

if (!require('./buildApp.cjs').buildApp()) process.exit(1)

const electron = electronBinary()
if (electron) {
  run(electron, ['.', ...args])
} else {
  process.stderr.write('No Electron binary is installed here; starting the browser host instead.\n')
  run(process.execPath, [path.join(__dirname, 'web.cjs'), ...args])
}

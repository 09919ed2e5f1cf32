#!/usr/bin/env node
'use strict'
// The mnlab command. Loads the bundled CLI (built from src-main/node/cli.ts by bin/build.cjs,
// rebuilt when a source changed) and calls its entry explicitly: it runs under any name it is
// invoked by (npm's bin link, npx, `npm link`, a symlink). Never decide from process.argv[1]
// whether to run: that guard once made every `npx mnlab` print nothing and exit 0.
require('./build.cjs').loadBundle('mnlab').runCli(process.argv.slice(2))

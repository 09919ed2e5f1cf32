#!/usr/bin/env node
'use strict'
// Launcher for the mnlab CLI: runs the TypeScript source through tsx's CommonJS hook, so there is no
// build step. cli.ts is therefore loaded as CommonJS: no top-level await, no import.meta.
require('tsx/cjs')
require('../src-main/node/cli.ts')

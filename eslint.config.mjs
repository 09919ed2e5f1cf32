// Flat config. Layer fences follow docs "Dependency rules": the engine is pure and deterministic.
import { builtinModules } from 'node:module'
import js from '@eslint/js'
import pluginVue from 'eslint-plugin-vue'
import tseslint from 'typescript-eslint'

const nodeBuiltins = builtinModules.flatMap((m) => [m, `${m}/*`])

/** Imports the engine may not use, plus relative paths that climb out of src-main/engine at `depth`. */
function enginePatterns(depth) {
  const up = '../'.repeat(depth + 1)
  return [
    {
      group: ['node:*', ...nodeBuiltins, 'electron', 'electron/*', 'vue', 'vue/*', 'pinia', 'yaml'],
      message: 'The engine is pure: no Node, Electron, UI or YAML imports (parse in src-main/node).',
    },
    {
      group: [`${up}*`, `!${up}engine`, `!${up}engine/**`],
      message: 'The engine imports only from src-main/engine.',
    },
  ]
}

/** One config block per nesting depth under src-main/engine, because '../' means different things. */
const engineImportFences = [0, 1, 2, 3].map((depth) => ({
  files: [`src-main/engine/${'*/'.repeat(depth)}*.ts`],
  ignores: ['**/*.test.ts'],
  rules: { 'no-restricted-imports': ['error', { patterns: enginePatterns(depth) }] },
}))

/** The renderer's .vue single-file components. */
const VUE_FILES = ['src-renderer/**/*.vue']

/**
 * eslint-plugin-vue's flat/recommended, scoped to the renderer, with typescript-eslint's parser for
 * <script lang="ts"> (vue-eslint-parser parses the template and hands the script to it).
 */
const vueConfigs = [
  ...pluginVue.configs['flat/recommended'].map((c) => ({ ...c, files: VUE_FILES })),
  {
    files: VUE_FILES,
    languageOptions: {
      parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.vue'], sourceType: 'module' },
    },
    rules: {
      // TypeScript (vue-tsc) already reports undefined names, as for .ts files.
      'no-undef': 'off',
      // Template layout belongs to Prettier (`npm run format`); these rules would fight it (the
      // same ones eslint-config-prettier turns off).
      'vue/html-indent': 'off',
      'vue/max-attributes-per-line': 'off',
      'vue/singleline-html-element-content-newline': 'off',
      'vue/multiline-html-element-content-newline': 'off',
      'vue/html-closing-bracket-newline': 'off',
      'vue/html-closing-bracket-spacing': 'off',
      'vue/mustache-interpolation-spacing': 'off',
      'vue/html-quotes': 'off',
      'vue/html-end-tags': 'off',
      'vue/first-attribute-linebreak': 'off',
      // Prettier prints void elements as `<input />`; empty elements and components self-close.
      'vue/html-self-closing': [
        'warn',
        { html: { void: 'any', normal: 'always', component: 'always' }, svg: 'always', math: 'always' },
      ],
    },
  },
]

const onlyCall =
  "CallExpression[callee.type='MemberExpression'][callee.property.name='only']" +
  '[callee.object.name=/^(describe|it|test|suite)$/]'

export default tseslint.config(
  { ignores: ['out/', 'dist/', 'node_modules/', 'test-results/', 'playwright-report/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...vueConfigs,
  {
    files: ['**/*.ts', '**/*.mts', '**/*.cts'],
    // TypeScript already reports undefined names; no-undef does not know TS globals/types.
    rules: { 'no-undef': 'off' },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        exports: 'writable',
        __dirname: 'readonly',
        process: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        { selector: onlyCall, message: 'Do not commit focused tests (.only).' },
      ],
    },
  },
  ...engineImportFences,
  {
    files: ['src-main/engine/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...[
          'Date',
          'setTimeout',
          'setInterval',
          'setImmediate',
          'clearTimeout',
          'clearInterval',
          'clearImmediate',
          'queueMicrotask',
          'performance',
          'console',
          'process',
          'require',
          'window',
          'self',
        ].map((name) => ({
          name,
          message:
            'The engine is a deterministic function of (scenario, policy, seed): no clocks, timers, I/O or hosts.',
        })),
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Take a seeded PRNG as an argument instead.' },
        { object: 'globalThis', property: 'Date', message: 'No clocks in the engine.' },
        { object: 'globalThis', property: 'console', message: 'Return events as data instead of logging.' },
        { object: 'globalThis', property: 'process', message: 'No process access in the engine.' },
      ],
    },
  },
  {
    files: ['src-renderer/**/*.ts', ...VUE_FILES],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', ...nodeBuiltins, 'electron', 'electron/*'],
              message: 'The renderer is a plain web page.',
            },
            {
              // Except pure, DOM-free helpers shared with the services: the Markdown renderer
              // (notes look the same in the app and in the HTML export), the recorded form of
              // a run (a cell run in the app records what `mnlab notebook record` would), the trace
              // diff (the app and `mnlab distinguish` align traces alike) and kernel source links.
              regex: '(^|/)src-main/(?!api/(markdown|record|traceDiff|kernelLinks)$)',
              allowTypeImports: true,
              message:
                'Renderer may import only types from src-main (the LabApi contract); runtime goes through src/lab.ts.',
            },
          ],
        },
      ],
    },
  },
)

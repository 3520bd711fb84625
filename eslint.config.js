// @ts-check
// `npm run -s lint` (and so `npm test`): typescript-eslint strict + stylistic, type-checked, on the code
// that ships (lib/, bin/); the untyped recommended sets on tests, benchmarks and scripts. Layering is
// dependency-cruiser's job (.dependency-cruiser.mjs), not this file's.
//
// Type information comes from TypeScript 6 (`typescript` → @typescript/typescript6, the JS compiler
// API) while the build and typecheck run TypeScript 7 (`tsc` from @typescript/native): typescript-eslint
// has no stable TypeScript 7 backend yet (see package.json and CONTRIBUTING.md, "Lint").
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** Shared by every TypeScript file: a leading `_` marks a name kept on purpose (a callback's shape, a key left out). */
const unusedVars = ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true }];

/**
 * TODO(lint-wave): the findings on main (2026-12-02) in files that other changes of issue 14 were rewriting at
 * the time, so they were not fixed with the linter's introduction. For those files only, each entry turns off the
 * rules they break; the numbers are the findings then (per file for the grouped folders: the notes of the change
 * that added the linter). Fix a file's findings, then delete its entry, so `npm run -s lint` checks it in full.
 */
const PENDING = {
  'lib/connectors/**': {
    '@typescript-eslint/no-non-null-assertion': 36, '@typescript-eslint/non-nullable-type-assertion-style': 15,
    '@typescript-eslint/no-base-to-string': 13, '@typescript-eslint/no-empty-function': 13,
    '@typescript-eslint/no-unnecessary-type-assertion': 12, '@typescript-eslint/no-unnecessary-condition': 11,
    '@typescript-eslint/no-unsafe-call': 7, '@typescript-eslint/no-unsafe-member-access': 7,
    '@typescript-eslint/require-await': 7, '@typescript-eslint/unbound-method': 6,
    '@typescript-eslint/prefer-optional-chain': 5, '@typescript-eslint/no-misused-spread': 3,
    '@typescript-eslint/consistent-type-definitions': 2, '@typescript-eslint/no-invalid-void-type': 2,
    '@typescript-eslint/no-explicit-any': 1, '@typescript-eslint/no-unnecessary-type-arguments': 1,
    '@typescript-eslint/no-unnecessary-type-conversion': 1, '@typescript-eslint/no-unnecessary-type-parameters': 1,
    '@typescript-eslint/no-unsafe-return': 1, '@typescript-eslint/restrict-plus-operands': 1,
    '@typescript-eslint/use-unknown-in-catch-callback-variable': 1,
  },
  'lib/connectors/ldap/lifecycle.ts': { 'no-control-regex': 1 },
};

export default defineConfig(
  { ignores: ['dist/', 'coverage/', 'data/', '.services/', '.test-results/', 'node_modules/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    files: ['**/*.{js,mjs,cjs}'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
  },
  {
    name: 'outpost/shipped (lib, bin): strict, type-checked',
    files: ['lib/**/*.ts', 'bin/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.strictTypeChecked, tseslint.configs.stylisticTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': unusedVars,
      // A number in a message (`port ${port}`) is what a reader wants; objects, nullish and unions still fail.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // `() => done()` returning a callee's void is the ordinary callback shape.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // `cursor || undefined`: an empty string means "none" as much as a missing one does.
      '@typescript-eslint/prefer-nullish-coalescing': ['error', { ignorePrimitives: { string: true } }],
      // New in typescript-eslint 8.7x: false positives on winston's `export =` transport classes (every value
      // it flagged here was made by `new`), and the slowest rule of the set (17% of the lint time).
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      // `T[]` for simple types, `Array<{ pool: string; n: number }>` where the brackets would get lost.
      '@typescript-eslint/array-type': ['error', { default: 'array-simple' }],
    },
  },
  {
    name: 'outpost/tests, benchmarks: recommended, untyped',
    files: ['spec/**/*.ts', 'bench/**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-unused-vars': unusedVars,
      // Tests hand deliberately wrong values to the code under test (`{} as any`).
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  ...Object.entries(PENDING).map(([files, rules]) => ({
    name: `TODO(lint-wave) ${files}`,
    files: [files],
    rules: Object.fromEntries(Object.keys(rules).map((rule) => [rule, 'off'])),
  })),
);

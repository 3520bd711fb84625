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
 * rules they break, with the number of findings. Fix a file's findings, then delete its entry, so `npm run -s lint`
 * checks it in full. What is left (lib/connectors only) was not reached by the lint wave in its time box; the SQL
 * drivers' no-unsafe-* findings need typed wrappers of untyped driver APIs, and ldap/search.ts's `void | 'stop'`
 * callback type changes every caller: both want their own change with the connector suites run.
 */
const PENDING = {
  'lib/connectors/ldap/index.ts': { '@typescript-eslint/no-unnecessary-condition': 1 },
  'lib/connectors/ldap/passwords.ts': { '@typescript-eslint/no-unnecessary-condition': 1 },
  'lib/connectors/ldap/search.ts': { '@typescript-eslint/no-invalid-void-type': 2 },
  'lib/connectors/sql/database.ts': {
    '@typescript-eslint/no-empty-function': 4, '@typescript-eslint/no-unsafe-call': 3,
    '@typescript-eslint/no-unsafe-member-access': 3, '@typescript-eslint/consistent-type-definitions': 1,
    '@typescript-eslint/no-base-to-string': 1, '@typescript-eslint/no-unnecessary-condition': 1,
    '@typescript-eslint/no-unsafe-return': 1,
  },
  'lib/connectors/sql/drivers/mssql.ts': {
    '@typescript-eslint/no-unnecessary-condition': 2, '@typescript-eslint/consistent-type-definitions': 1,
    '@typescript-eslint/require-await': 1,
  },
  'lib/connectors/sql/drivers/mysql.ts': {
    '@typescript-eslint/no-unsafe-call': 2, '@typescript-eslint/no-unsafe-member-access': 2,
    '@typescript-eslint/no-unnecessary-condition': 1, '@typescript-eslint/no-unnecessary-type-assertion': 1,
    '@typescript-eslint/no-unnecessary-type-conversion': 1,
    '@typescript-eslint/use-unknown-in-catch-callback-variable': 1,
  },
  'lib/connectors/sql/drivers/pg-copy.ts': {
    '@typescript-eslint/non-nullable-type-assertion-style': 7, '@typescript-eslint/no-empty-function': 5,
  },
  'lib/connectors/sql/drivers/pg.ts': {
    '@typescript-eslint/no-unnecessary-condition': 3, '@typescript-eslint/no-unsafe-call': 2,
    '@typescript-eslint/no-unsafe-member-access': 2, '@typescript-eslint/no-unnecessary-type-assertion': 1,
  },
  'lib/connectors/sql/drivers/sqlite.ts': {
    '@typescript-eslint/non-nullable-type-assertion-style': 2, '@typescript-eslint/require-await': 2,
    '@typescript-eslint/no-empty-function': 1,
  },
  'lib/connectors/sql/lifecycle.ts': {
    '@typescript-eslint/no-base-to-string': 3, '@typescript-eslint/prefer-optional-chain': 1,
  },
  'lib/connectors/sql/models.ts': {
    '@typescript-eslint/unbound-method': 3, '@typescript-eslint/no-base-to-string': 1,
    '@typescript-eslint/no-empty-function': 1, '@typescript-eslint/prefer-optional-chain': 1,
    '@typescript-eslint/require-await': 1,
  },
  'lib/connectors/sql/native/mssql-accounts.ts': {
    '@typescript-eslint/no-misused-spread': 2, '@typescript-eslint/no-base-to-string': 1,
  },
  'lib/connectors/sql/native/mssql.ts': { '@typescript-eslint/no-base-to-string': 1 },
  'lib/connectors/sql/native/mysql-accounts.ts': {
    '@typescript-eslint/no-base-to-string': 2, '@typescript-eslint/no-misused-spread': 1,
    '@typescript-eslint/non-nullable-type-assertion-style': 1,
  },
  'lib/connectors/sql/native/mysql.ts': { '@typescript-eslint/no-base-to-string': 1 },
  'lib/connectors/sql/native/postgres-accounts.ts': { '@typescript-eslint/no-base-to-string': 1 },
  'lib/connectors/sql/native/postgres.ts': { '@typescript-eslint/no-base-to-string': 1 },
  'lib/connectors/sql/queries-lifecycle.ts': {
    '@typescript-eslint/no-base-to-string': 1, '@typescript-eslint/no-empty-function': 1,
    '@typescript-eslint/non-nullable-type-assertion-style': 1, '@typescript-eslint/prefer-optional-chain': 1,
    '@typescript-eslint/require-await': 1,
  },
  'lib/connectors/types.ts': {
    '@typescript-eslint/no-explicit-any': 1, '@typescript-eslint/no-unnecessary-type-arguments': 1,
  },
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

// Layering of CONTRIBUTING.md ("Layout and imports"), checked by `npm run -s depcruise` (and so by
// `npm test`): bin → agent | proxy; agent → connectors; all may use protocol | config | log | util,
// which import nothing above them; protocol is a leaf; the agent never imports the proxy, nor the
// proxy the agent. Each rule names the direction it protects, so a failure reads as the fix.
// spec/ and bench/ may import anything; nothing shipped imports them.

/** The shipped modules, which the layer rules order (npm packages and node: builtins are not layers;
 * spec/ and bench/ have their own rule below). */
const OURS = '^(lib|bin)/';

/** A rule: modules under `from` import nothing of ours outside `allowed` (regexes on paths). */
const onlyImports = (name, comment, from, allowed) => ({
  name,
  comment,
  severity: 'error',
  from: { path: from },
  to: { path: OURS, pathNot: allowed },
});

export default {
  forbidden: [
    onlyImports('protocol-is-a-leaf', 'lib/protocol (wire types, schemas, error codes) imports only lib/protocol and npm packages.',
      '^lib/protocol/', '^lib/protocol/'),
    onlyImports('util-above-protocol-only', 'lib/util imports only lib/util and lib/protocol.',
      '^lib/util/', '^lib/(util|protocol)/'),
    onlyImports('log-above-util-only', 'lib/log imports only lib/log, lib/util and lib/protocol.',
      '^lib/log/', '^lib/(log|util|protocol)/'),
    onlyImports('config-above-log-only', 'lib/config imports only lib/config, lib/log, lib/util and lib/protocol.',
      '^lib/config/', '^lib/(config|log|util|protocol)/'),
    onlyImports('connectors-below-agent', 'lib/connectors imports only itself and protocol | config | log | util (never the agent, the proxy or bin).',
      '^lib/connectors/', '^lib/(connectors|config|log|util|protocol)/'),
    onlyImports('agent-never-imports-proxy', 'lib/agent imports the connectors and protocol | config | log | util, never lib/proxy or bin.',
      '^lib/agent/', '^lib/(agent|connectors|config|log|util|protocol)/'),
    onlyImports('proxy-never-imports-agent', 'lib/proxy imports protocol | config | log | util, never lib/agent, the connectors or bin.',
      '^lib/proxy/', '^lib/(proxy|config|log|util|protocol)/'),
    onlyImports('agent-bin-never-imports-proxy', 'bin/agent*.ts start the agent: never lib/proxy or a proxy command.',
      '^bin/agent', '^(bin/(agent|signals)|lib/(agent|connectors|config|log|util|protocol)/)'),
    onlyImports('proxy-bin-never-imports-agent', 'bin/integration-proxy.ts and bin/proxy-*.ts start the proxy: never lib/agent, the connectors or an agent command.',
      '^bin/(integration-proxy|proxy-)', '^(bin/(integration-proxy|proxy-|signals)|lib/(proxy|config|log|util|protocol)/)'),
    {
      name: 'shipped-code-never-imports-tests',
      comment: 'lib/ and bin/ ship; spec/ (FakeClock and other doubles) and bench/ do not.',
      severity: 'error',
      from: { path: '^(lib|bin)/' },
      to: { path: '^(spec|bench)/' },
    },
    {
      name: 'shipped-code-uses-no-dev-dependency',
      comment: 'lib/ and bin/ run from the image after `npm prune --omit=dev`: a runtime import of a devDependency breaks it (type-only imports are erased).',
      severity: 'error',
      from: { path: '^(lib|bin)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-circular',
      comment: 'An import cycle between our modules.',
      severity: 'error',
      from: { path: '^(lib|bin)/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing on disk.',
      severity: 'error',
      from: { path: '^(lib|bin)/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    // Type-only imports count: a layer that needs another's types depends on it as much as on its values.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.d.ts', '.js', '.mjs', '.cjs', '.json'],
    },
  },
};

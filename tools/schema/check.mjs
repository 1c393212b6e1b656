/**
 * Checks of `schema.graphql` with the community's tools, run by CI (`.ci/run`):
 *
 * 1. graphql-schema-linter: Relay connection, argument and PageInfo rules, descriptions on every
 *    type, field, argument, input value and enum value, deprecations with a reason, naming.
 * 2. @graphql-inspector/core: the breaking changes from `released.graphql` (the schema of the last
 *    release). Each must be acknowledged, by its message, in `acknowledged-breaks.txt`: an
 *    accidental break fails, an intended one is acknowledged in the change that makes it.
 * 3. graphql-codegen (typescript, typescript-operations, strict scalars): client types generated
 *    from `schema.graphql` and the documents the explorer page sends (`web/explorer/documents.js`)
 *    and the README shows (its graphql blocks); every document must validate.
 *
 * Usage: `npm ci && node check.mjs` in this directory. Exits 1 when a check fails.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { CriticalityLevel, diff } from '@graphql-inspector/core';
import { generate } from '@graphql-codegen/cli';
import { buildSchema } from 'graphql';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..', '..');
const schemaFile = join(root, 'schema.graphql');
const failed = [];

function section(title) {
  console.log(`\n== ${title}`);
}

section('lint (graphql-schema-linter)');
const RULES = [
  'types-have-descriptions',
  'fields-have-descriptions',
  'arguments-have-descriptions',
  'input-object-values-have-descriptions',
  'enum-values-have-descriptions',
  'deprecations-have-a-reason',
  'descriptions-are-capitalized',
  'relay-connection-types-spec',
  'relay-connection-arguments-spec',
  'relay-page-info-spec',
  'defined-types-are-used',
  'types-are-capitalized',
  'fields-are-camel-cased',
  'input-object-values-are-camel-cased',
  'enum-values-all-caps',
];
const lint = spawnSync(
  join(here, 'node_modules', '.bin', 'graphql-schema-linter'),
  ['--rules', RULES.join(','), schemaFile],
  { encoding: 'utf8' },
);
process.stdout.write(lint.stdout ?? '');
process.stderr.write(lint.stderr ?? '');
if (lint.status !== 0) {
  failed.push('lint');
}

section('breaking changes since released.graphql (@graphql-inspector/core)');
const released = buildSchema(readFileSync(join(here, 'released.graphql'), 'utf8'));
const current = buildSchema(readFileSync(schemaFile, 'utf8'));
const changes = await diff(released, current);
const acknowledged = new Set(
  readFileSync(join(here, 'acknowledged-breaks.txt'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#')),
);
const breaking = changes.filter((change) => change.criticality.level === CriticalityLevel.Breaking);
const unacknowledged = breaking.filter((change) => !acknowledged.has(change.message));
const dangerous = changes.filter((change) => change.criticality.level === CriticalityLevel.Dangerous);
console.log(
  `${changes.length} changes: ${breaking.length} breaking (${breaking.length - unacknowledged.length} acknowledged), ` +
    `${dangerous.length} dangerous`,
);
for (const change of dangerous) {
  console.log(`  dangerous: ${change.message}`);
}
for (const change of unacknowledged) {
  console.log(`  BREAKING, not acknowledged: ${change.message}`);
}
const stale = [...acknowledged].filter((message) => !breaking.some((change) => change.message === message));
for (const message of stale) {
  console.log(`  acknowledged but no longer a change (remove it from acknowledged-breaks.txt): ${message}`);
}
if (unacknowledged.length) {
  console.log(
    'A breaking change fails the check unless intended: then add its message, as printed, to ' +
      'tools/schema/acknowledged-breaks.txt in the same change, and say how clients migrate (README).',
  );
  failed.push('breaking changes');
}
if (stale.length) {
  failed.push('stale acknowledgements');
}

section('client code generation (graphql-codegen)');
const work = mkdtempSync(join(tmpdir(), 'auditgraph-codegen-'));
try {
  const explorer = await import(pathToFileURL(join(root, 'web', 'explorer', 'documents.js')).href);
  const operations = Object.entries(explorer).filter(([, text]) => /^\s*(query|mutation|subscription)\b/.test(text));
  for (const [name, text] of operations) {
    writeFileSync(join(work, `explorer-${name}.graphql`), text);
  }
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```graphql\n([\s\S]*?)^```/gm)].map((match) => match[1]);
  blocks.forEach((text, n) => writeFileSync(join(work, `readme-${n + 1}.graphql`), text));
  console.log(`${operations.length} explorer documents, ${blocks.length} README documents`);
  const output = join(work, 'types.ts');
  await generate(
    {
      schema: schemaFile,
      documents: join(work, '*.graphql'),
      silent: true,
      generates: {
        [output]: {
          plugins: ['typescript', 'typescript-operations'],
          config: {
            strictScalars: true,
            scalars: { Date: 'string', DateTime: 'string', JSON: 'unknown', UUID: 'string' },
          },
        },
      },
    },
    true,
  );
  const types = readFileSync(output, 'utf8');
  const generated = [...types.matchAll(/^export type (\w+(?:Query|Mutation|Subscription)) =/gm)].map((m) => m[1]);
  console.log(`generated ${types.length} bytes of TypeScript: ${generated.join(', ')}`);
  for (const name of ['PlaceQuery', 'DetailQuery', 'SearchQuery', 'LiveSubscription']) {
    if (!generated.includes(name)) {
      console.log(`  missing the type ${name}`);
      failed.push('codegen output');
    }
  }
} catch (error) {
  console.log(`code generation failed: ${error.message ?? error}`);
  for (const detail of error.errors ?? []) {
    console.log(`  ${detail.message ?? detail}`);
  }
  failed.push('codegen');
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (failed.length) {
  console.log(`\nschema checks failed: ${failed.join(', ')}`);
  process.exit(1);
}
console.log('\nschema checks passed');

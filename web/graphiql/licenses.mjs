// Prints the licences of every npm package that went into the bundles, from esbuild metafiles.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const packages = new Map();
for (const metafile of process.argv.slice(2)) {
  const { inputs } = JSON.parse(readFileSync(metafile, 'utf8'));
  for (const input of Object.keys(inputs)) {
    const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g);
    if (!match) continue;
    const dir = input.slice(0, input.lastIndexOf(match[match.length - 1]) + match[match.length - 1].length);
    packages.set(dir, true);
  }
}

const sections = [];
for (const dir of [...packages.keys()].sort()) {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const licenceFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const text = licenceFile && existsSync(join(dir, licenceFile))
    ? readFileSync(join(dir, licenceFile), 'utf8').trim()
    : `(no licence file in the package; package.json says ${manifest.license})`;
  sections.push(`${manifest.name}@${manifest.version} — ${manifest.license}\n\n${text}`);
}
console.log(
  `Third-party software in the GraphiQL playground served by auditgraph (${sections.length} packages)\n` +
    `${'='.repeat(80)}\n\n` +
    sections.join(`\n\n${'-'.repeat(80)}\n\n`),
);

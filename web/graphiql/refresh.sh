#!/usr/bin/env bash
# Rebuilds dist/, the GraphiQL playground that the auditgraph binary serves, from the versions
# pinned in package-lock.json (npm registry). Nothing is fetched when auditgraph is built or runs:
# dist/ is committed, and the binary embeds it.
#
#   web/graphiql/refresh.sh           rebuild from the lock file
#   web/graphiql/refresh.sh --update  move package.json and the lock to the newest versions first
#
# Then review the diff, run `cargo test graphiql`, and commit dist/ with the lock file.
set -euo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" = "--update" ]; then
    npm install --no-audit --no-fund --save-exact --save-dev \
        graphiql@latest @graphiql/toolkit@latest graphql@16 react@latest react-dom@latest esbuild@latest
fi
[ -f package-lock.json ] || npm install --no-audit --no-fund --package-lock-only
npm ci --no-audit --no-fund

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
esbuild=node_modules/.bin/esbuild
common=(--bundle --minify --target=es2020 --legal-comments=none --log-level=warning)

# The page's bundle (ES module) and its style sheet; fonts are inlined as data: URLs.
"$esbuild" src/main.js "${common[@]}" --format=esm \
    --define:process.env.NODE_ENV='"production"' --loader:.ttf=dataurl \
    --metafile="$build/page.meta.json" --outfile="$build/graphiql.js"
# The editor's web workers, as classic scripts.
"$esbuild" node_modules/monaco-editor/esm/vs/editor/editor.worker.js \
    node_modules/monaco-editor/esm/vs/language/json/json.worker.js \
    node_modules/monaco-graphql/esm/graphql.worker.js \
    "${common[@]}" --format=iife --entry-names='[name]' \
    --metafile="$build/workers.meta.json" --outdir="$build"

rm -rf dist
mkdir dist
for file in graphiql.js graphiql.css editor.worker.js json.worker.js graphql.worker.js; do
    gzip -9 -n -c "$build/$file" > "dist/$file.gz"
done
node licenses.mjs "$build/page.meta.json" "$build/workers.meta.json" > dist/LICENSES.txt
(cd dist && sha256sum -- *.gz LICENSES.txt > SHA256SUMS)
ls -l dist

#!/usr/bin/env bash
# Re-fetch the vendored browser assets from the npm registry (see README.md here).
# Usage: book/_static/vendor/refresh.sh   (needs node/npm and the npm registry)
set -euo pipefail

MATHJAX=3.2.2
REQUIREJS=2.3.8
HTML_MANAGER=1.0.15

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "mathjax@$MATHJAX" "requirejs@$REQUIREJS" \
    "@jupyter-widgets/html-manager@$HTML_MANAGER" >/dev/null
for tgz in *.tgz; do
    mkdir "${tgz%.tgz}"
    tar xzf "$tgz" -C "${tgz%.tgz}"
done

# Replace the assets; the LICENSE files here are kept (check them on a major upgrade).
rm -rf "$here/mathjax/es5" "$here/requirejs/require.js" "$here/html-manager/"*.js \
    "$here/html-manager/"*.woff2 "$here/html-manager/embed.js.LICENSE.txt"

# MathJax: one self-contained file (all TeX packages, CommonHTML output) and the
# woff-v2 fonts it loads relative to its own location.
mj="mathjax-$MATHJAX/package"
mkdir -p "$here/mathjax/es5/output/chtml/fonts"
cp "$mj/es5/tex-chtml-full.js" "$here/mathjax/es5/"
cp -r "$mj/es5/output/chtml/fonts/woff-v2" "$here/mathjax/es5/output/chtml/fonts/"
cp "$mj/LICENSE" "$here/mathjax/LICENSE"

# RequireJS: the loader the widget manager's AMD bundle needs.
mkdir -p "$here/requirejs"
cp "requirejs-$REQUIREJS/package/require.js" "$here/requirejs/"

# ipywidgets HTML manager: the AMD bundle (base and controls for ipywidgets 7 and 8)
# and the Font Awesome 5 woff2 fonts its CSS loads relative to the bundle.
hm="jupyter-widgets-html-manager-$HTML_MANAGER/package/dist"
mkdir -p "$here/html-manager"
cp "$hm/embed-amd.js" "$hm/embed.js.LICENSE.txt" "$here/html-manager/"
cp "$hm"/*.woff2 "$here/html-manager/"

echo "vendored assets refreshed in $here"
du -sh "$here"

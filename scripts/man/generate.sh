#!/usr/bin/env bash
# Makes the man pages from their sources, so that they never drift from them:
#   barge(1)           from the argument parser (swift-argument-parser's generate-manual plugin: every command,
#                      option and help text the binary has)
#   barge.yaml(5)      from docs/config.md
#   barge-manifest(5)  from docs/manifest.md
# The two section-5 pages are the docs as pandoc renders them, under a NAME and a SYNOPSIS of their own.
#
#   scripts/man/generate.sh VERSION OUTPUT-DIRECTORY
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$1
out=$2
mkdir -p "$out"
date=$(date -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}" +%Y-%m-%d)

# barge(1): the plugin builds the package's executables (debug: the test build's, reused) and dumps their help;
# only `barge` uses the parser. The page says what the options are, whatever the build's optimisation.
swift package generate-manual --configuration debug --authors "The Barge developers" --section 1 >&2
cp .build/plugins/GenerateManual/outputs/barge/barge.1 "$out/barge.1"

# barge.yaml(5) and barge-manifest(5).
page() {
    local name=$1 source=$2 summary=$3 synopsis=$4 see_also=$5
    {
        printf '# NAME\n\n%s - %s\n\n# SYNOPSIS\n\n%s\n\n# DESCRIPTION\n\n' "$name" "$summary" "$synopsis"
        # The document's own headings one level down, under DESCRIPTION; its first heading is the page's title.
        pandoc -f gfm -t gfm --wrap=none --shift-heading-level-by=1 "$source" | sed '1{/^## /d}'
        printf '\n# SEE ALSO\n\n%s\n' "$see_also"
    } | pandoc -s -f gfm -t man --lua-filter scripts/man/tables.lua \
        --metadata title="$(echo "$name" | tr a-z A-Z)" --metadata section=5 \
        --metadata header="Barge Manual" --metadata footer="barge $version" --metadata date="$date" \
        | sed -e '/^\.TH /a .ad l\n.nh' -e '/^\.hy$/d' > "$out/$name.5"
}
page barge.yaml docs/config.md "the Barge agent's configuration file" \
    "**/etc/barge/barge.yaml** (the system agent)\\
**\$XDG_CONFIG_HOME/barge/barge.yaml** (a user's agent)" \
    "**barge**(1), **barge-manifest**(5), /usr/share/doc/barge/"
page barge-manifest docs/manifest.md "the manifests Barge keeps mirrored" \
    "**/etc/barge/manifests.d/\\*.yaml** (the system agent)\\
**\$XDG_CONFIG_HOME/barge/manifests.d/\\*.yaml** (a user's agent)" \
    "**barge**(1), **barge.yaml**(5), /usr/share/doc/barge/"

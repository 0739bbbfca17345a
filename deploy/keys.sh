#!/bin/sh
# The compose file's CURVE keys, made once: deploy/secrets/{store,local}.key[_secret] and
# deploy/secrets/authorized/local.key, owned by the image's user (uid 10001) so the containers can
# read the secret halves. Runs `flowlens keys generate` inside the image, so the host needs only
# the engine:  deploy/keys.sh [IMAGE]     (ENGINE=podman deploy/keys.sh to use podman)
# Add a collector on another host by dropping its NAME.key into deploy/secrets/authorized.
set -eu
image=${1:-flowlens:latest}
engine=${ENGINE:-docker}
dir=${SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}
if [ -e "$dir/store.key_secret" ]; then
    echo "keys.sh: $dir/store.key_secret exists; remove $dir to make new keys" >&2
    exit 1
fi
mkdir -p "$dir"
"$engine" run --rm --user 0 --network none -v "$dir:/keys" --entrypoint sh "$image" -c '
    set -e
    flowlens keys generate --dir /keys --name store
    flowlens keys generate --dir /keys --name local
    mkdir -p /keys/authorized && cp /keys/local.key /keys/authorized/
    chown -R 10001 /keys && chmod 0755 /keys /keys/authorized'
echo "keys.sh: CURVE keys in $dir (store.key_secret and local.key_secret are secret)"

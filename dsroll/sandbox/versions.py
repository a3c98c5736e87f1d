"""The one place where the sandbox's component versions are pinned.

Bumping a version here changes the cache key (``~/.cache/dsroll/<component>-<version>``),
so the next ``sandbox up`` builds the new binaries and the old cache stays untouched.
"""

KUBERNETES = "v1.35.4"
ETCD = "v3.6.16"
KWOK = "v0.7.0"
# kwok as the sandbox builds it: the release above plus the patch ``build.kwok_patched``
# applies (the suffix names it; a new patch bumps it, so the cache key changes too).
KWOK_BUILD = f"{KWOK}+dsroll.1"

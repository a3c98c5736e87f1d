"""The one place where the sandbox's component versions are pinned.

Bumping a version here changes the cache key (``~/.cache/dsroll/<component>-<version>``),
so the next ``sandbox up`` builds the new binaries and the old cache stays untouched.
"""

KUBERNETES = "v1.35.4"
ETCD = "v3.6.16"
KWOK = "v0.7.0"
